"""What DAT costs: VQGAN throughput and memory, training-step time, FLOPs against the device's bound.

The logic of ``tools/analysis_tools/benchmark_dat.py``. Four sections, each timed as the median of
repeated runs after warm-up, with the variants of a section interleaved round-robin so that
machine noise hits all of them alike (on a shared machine only ratios measured in one run count):

* ``vqgan``: :meth:`VQGAN.reconstruct` images/s and peak memory per input size, for the published
  reference code itself when given (``reference-code``:
  :class:`~mmdat.models.vqgan_reference_code.ReferenceCodeVQGAN`, e.g. easyrobust's or taming's
  ``vqgan.py``), mmdat's re-implementation of the straightforward taming forward (``baseline``:
  :class:`~mmdat.models.vqgan_reference.ReferenceVQGAN`), the default path and each option, with the
  fraction of code indices equal to those of the reference the ratios use (the first of
  ``reference-code``, ``baseline`` that ran).
* ``step``: one training step of a classifier, plain, with mmdat's DAT, and with the literal
  reference procedure (parameter gradients in the attack's backward and the unused extra forward,
  as easyrobust's code does), on the same model and VQGAN, for each VQGAN trunk dtype asked for;
  with a bf16 trunk also the agreement of DAT's codes (of x_rec and x_adv) with the fp32 VQGAN's.
* ``amp``: the attack alone (the model's loss and its input gradient, :meth:`DATAttack.perturb`)
  as mmdat runs it under mixed precision (float32, autocast off inside the attack) against the
  same attack run inside the autocast (mmdat before issue 16, which loses the input gradient of
  small losses in fp16), per autocast dtype.
* ``flops``: matmul/convolution FLOPs of each part (``torch.utils.flop_counter``), the device's
  achievable matmul FLOP/s measured in the same run, the lower bound on time this implies, and
  each measured time as a fraction of its bound.

Only public API is used: DAT's attack through :class:`~mmdat.dat.DATAttack` (``quantize``,
``perturb``) and the preprocessor's ``preprocess`` / ``to_unit_rgb`` / ``from_unit_rgb``.
"""
from __future__ import annotations

import copy
import functools
import json
import math
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmdat.dat import DATAttack
from mmdat.models.vqgan import VQGAN, native_bf16
from mmdat.models.vqgan_reference import ReferenceVQGAN
from mmdat.testing import IdentityQuantizer

__all__ = ['BenchmarkSettings', 'run_benchmark', 'render_markdown', 'save_result', 'parse_size',
           'vqgan_flops', 'vqgan_memory_bound', 'model_flops', 'reference_step',
           'RSSSampler', 'PeakProbe', 'CLASSIFIERS']

#: classifiers of the ``step`` section (mmpretrain configs), input size each was built for
CLASSIFIERS = {
    'tiny': dict(backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=10, in_channels=128)),
    'resnet50': dict(backbone=dict(type='ResNet', depth=50), neck=dict(type='GlobalAveragePooling'),
                     head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048)),
    'vit-b': dict(backbone=dict(type='VisionTransformer', arch='base', img_size=224, patch_size=16),
                  neck=None, head=dict(type='VisionTransformerClsHead', num_classes=1000, in_channels=768)),
}
#: a VQGAN small enough for smoke tests (``--quick``)
TINY_VQGAN = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16,
                  z_channels=4, embed_dim=4, n_embed=64)
#: VQGAN variants: VQGAN keyword overrides; ``reference-code`` is the published code given by the user
#: (``--reference-code``), ``baseline`` mmdat's re-implementation of it, both on the same weights
VARIANTS = {
    'reference-code': None,
    'baseline': None,
    'default': dict(),
    'nchw': dict(channels_last=False),
    'compile': dict(compile_trunk=True),
    'bf16': dict(trunk_dtype='bf16'),
    'fp16': dict(trunk_dtype='fp16'),
    'no-subpixel': dict(subpixel_upsample=False),
}
#: what each reference variant is, for the reports
BASELINE_DESCRIPTIONS = {
    'baseline': 'mmdat.models.vqgan_reference.ReferenceVQGAN, mmdat\'s re-implementation of the straightforward '
                'taming-transformers forward',
}
NOT_MEASURED = 'not measured'


def parse_size(text: str) -> tuple[int, int]:
    """``'224'`` -> (224, 224); ``'800x1344'`` -> (800, 1344) (height x width)."""
    parts = str(text).lower().split('x')
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image size must be 'N' or 'HxW' with positive integers, got {text!r}")
    return size


@dataclass
class BenchmarkSettings:
    """What to measure. Defaults depend on the device (see :meth:`for_device`).

    Args:
        device (str): 'cpu' or 'cuda[:i]'.
        sections (Sequence[str]): any of 'vqgan', 'step', 'amp', 'flops' (default: all but 'amp').
        vqgan (str): VQGAN preset (random weights: same cost as the published ones) or 'tiny'.
        vqgan_sizes (Sequence[tuple]): (H, W) sizes of the vqgan section.
        vqgan_batch (int): images per reconstruct call at sizes up to 512 px.
        chunk_size (int): above 512 px, the VQGAN's ``chunk_size`` and the images per call.
        variants (Sequence[str]): VQGAN variants (keys of :data:`VARIANTS`).
        reference_code (Sequence[str], optional): the published VQGAN code's files (easyrobust's
            ``third_party/vqgan.py`` or taming's ``taming/models/vqgan.py``); adds the
            ``reference-code`` variant, which then is the reference of every ratio.
        models (Sequence[str]): classifiers of the step section (keys of :data:`CLASSIFIERS`).
        step_vqgan (str): VQGAN of the step section.
        step_trunk_dtypes (Sequence[str]): its trunk dtypes, each timed ('fp32', 'bf16', 'fp16'); a
            non-fp32 one is also compared with fp32 (DAT's codes of x_rec and x_adv).
        step_size (int): input side of the step section.
        step_batch (int): batch of the step section.
        amp_dtypes (Sequence[str]): autocast dtypes of the amp section ('bf16', 'fp16'); it times the
            step section's models at its size and batch.
        warmup (int): untimed runs of each variant before timing (the first also measures memory).
        repeats (int): timed runs of each variant (the median is reported); 0: the vqgan section
            times its first (memory) call instead, for sizes that take minutes per call.
    """

    device: str = 'cpu'
    sections: Sequence[str] = ('vqgan', 'step', 'flops')
    vqgan: str = 'openimages-f8-16384'
    vqgan_sizes: Sequence[tuple] = ((224, 224),)
    vqgan_batch: int = 4
    chunk_size: int = 2
    variants: Sequence[str] = ('baseline', 'default', 'nchw')
    reference_code: Optional[Sequence[str]] = None
    models: Sequence[str] = ('tiny',)
    step_vqgan: str = 'tiny'
    step_trunk_dtypes: Sequence[str] = ('fp32',)
    step_size: int = 32
    step_batch: int = 8
    amp_dtypes: Sequence[str] = ('bf16', 'fp16')
    warmup: int = 1
    repeats: int = 3

    @classmethod
    def for_device(cls, device: str, quick: bool = False) -> 'BenchmarkSettings':
        """Defaults that finish in a few minutes: on a CPU fp32, plus bf16 where the CPU computes it
        natively (:func:`~mmdat.models.vqgan.native_bf16`); on CUDA every size, bf16, fp16 and
        ``torch.compile``; ``quick``: tiny sizes for a smoke test."""
        if quick:
            return cls(device=device, vqgan='tiny', vqgan_sizes=((32, 32), (24, 40)), vqgan_batch=2,
                       variants=('baseline', 'default', 'nchw'), models=('tiny',), step_vqgan='tiny',
                       step_size=32, step_batch=2, warmup=1, repeats=1)
        if torch.device(device).type == 'cuda':
            return cls(device=device, vqgan_sizes=((224, 224), (512, 512), (800, 1344)),
                       variants=('baseline', 'default', 'nchw', 'bf16', 'fp16', 'compile'),
                       models=('tiny', 'resnet50', 'vit-b'), step_vqgan='openimages-f8-16384',
                       step_trunk_dtypes=('bf16',), step_size=224, step_batch=32, warmup=2, repeats=5)
        if native_bf16(device)[0]:
            return cls(device=device, variants=('baseline', 'default', 'nchw', 'bf16'))
        return cls(device=device)


# ----------------------------------------------------------------------------- measurement helpers
def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class RSSSampler:
    """Peak growth of the process's resident memory over a ``with`` block (CPU), sampled every
    ``interval`` s by a thread; on CUDA the allocator's peak over the block instead.

    Args:
        device (torch.device): where the measured work runs.
        interval (float): sampling period in seconds. Defaults to 0.002.
    """

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak_bytes: Optional[int] = None

    def __enter__(self) -> 'RSSSampler':
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        if not os.path.exists('/proc/self/statm'):
            return self  # no RSS on this OS: peak stays None
        self._base = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        elif hasattr(self, '_thread'):
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.peak_bytes = self._peak - self._base


def _interleaved(runs: dict[str, Callable[[], object]], device: torch.device, warmup: int,
                 repeats: int) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` times, round-robin after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _vqgan_config(name: str) -> tuple[dict, Optional[str]]:
    if name == 'tiny':
        return dict(TINY_VQGAN), None
    from mmdat.models.vqgan import VQGAN_PRESETS
    if name not in VQGAN_PRESETS:
        raise ValueError(f"unknown VQGAN {name!r}; valid: tiny, {', '.join(VQGAN_PRESETS)}")
    preset = VQGAN_PRESETS[name]
    checkpoint = preset['checkpoint_url'] if name == 'tiny-shapes' else None  # the shipped weights
    return dict(preset['config']), checkpoint


class PeakProbe:
    """The device's achievable FLOP/s, measured among a section's runs (under the same load).

    Each call times one dense GEMM (``torch.mm``, n x n x n) and one channels-last 3x3 convolution
    (256 -> 256 channels, 2 x 64 x 64: the VQGAN's kind of work, done by oneDNN/cuDNN, which can
    outrun the BLAS behind ``torch.mm``, e.g. MKL on AMD CPUs); :attr:`rate` is the best FLOP/s seen.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32, n: Optional[int] = None) -> None:
        self.device = torch.device(device)
        n = n or (1536 if self.device.type == 'cpu' else 8192)
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(n, n, generator=g).to(self.device, dtype)
        self.b = torch.randn(n, n, generator=g).to(self.device, dtype)
        self.x = torch.randn(2, 256, 64, 64, generator=g).to(self.device, dtype).contiguous(
            memory_format=torch.channels_last)
        self.w = (torch.randn(256, 256, 3, 3, generator=g) * 0.02).to(self.device, dtype).contiguous(
            memory_format=torch.channels_last)
        self.work = {'gemm': 2.0 * n ** 3, 'conv3x3': 2.0 * 2 * 256 * 256 * 9 * 64 * 64}
        self.best = {'gemm': 0.0, 'conv3x3': 0.0}

    def __call__(self) -> None:
        ops = {'gemm': lambda: torch.mm(self.a, self.b),
               'conv3x3': lambda: torch.nn.functional.conv2d(self.x, self.w, padding=1)}
        for kind, op in ops.items():
            _sync(self.device)
            start = time.perf_counter()
            op()
            _sync(self.device)
            self.best[kind] = max(self.best[kind], self.work[kind] / (time.perf_counter() - start))

    @property
    def rate(self) -> float:
        return max(self.best.values())

    def summary(self) -> dict[str, float]:
        return {f'{kind}_gflops_per_s': v / 1e9 for kind, v in self.best.items()}


def build_vqgan(name: str, device: torch.device, seed: int = 0, **options) -> VQGAN:
    """VQGAN ``name`` (a preset or 'tiny': :data:`TINY_VQGAN`) with random weights (the cost of the
    published ones) and a codebook drawn N(0, 1), so that codes spread like a trained model's;
    'tiny-shapes' loads its shipped weights. ``options``: VQGAN keywords (trunk_dtype, ...)."""
    config, checkpoint = _vqgan_config(name)
    torch.manual_seed(seed)
    vqgan = VQGAN(**config, **options, checkpoint=checkpoint)
    if checkpoint is None:
        with torch.no_grad():
            vqgan.quantize.embedding.weight.normal_(generator=torch.Generator().manual_seed(seed))
    return vqgan.to(device)


def vqgan_variant(base: VQGAN, name: str, config: dict, reference_code: Optional[Sequence[str]] = None):
    """Variant ``name`` (key of :data:`VARIANTS`) of ``base``, sharing its weight tensors (the
    ``reference-code`` variant, built from the files ``reference_code``, holds a copy)."""
    if name not in VARIANTS:
        raise ValueError(f'unknown VQGAN variant {name!r}; valid: {", ".join(VARIANTS)}')
    if name == 'reference-code':
        if not reference_code:
            raise ValueError("variant 'reference-code' needs the reference code's files (--reference-code)")
        from mmdat.models.vqgan_reference_code import ReferenceCodeVQGAN
        return ReferenceCodeVQGAN(reference_code, base, config)
    if name == 'baseline':
        return ReferenceVQGAN(base)
    options = dict(trunk_dtype=base.trunk_dtype, chunk_size=base.chunk_size, channels_last=base.channels_last,
                   compile_trunk=base.compile_trunk)
    options.update(VARIANTS[name])
    with torch.device('meta'):
        variant = VQGAN(**config, **options)
    variant.load_state_dict(base.state_dict(), assign=True)
    return variant.requires_grad_(False)


# ----------------------------------------------------------------------------- FLOPs
def vqgan_flops(config: dict, size: Sequence[int], batch: int = 1, subpixel_upsample: bool = False) -> dict[str, float]:
    """Matmul/convolution FLOPs of one VQGAN reconstruct of ``batch`` images of ``size`` (H, W).

    ``subpixel_upsample=False`` counts the published architecture (nearest x2 then a 3x3 conv in each
    upsampling); True counts what :class:`VQGAN`'s default inference path executes (the upsampling
    convolutions as stride-2 transposed convolutions: 4/9 of their multiply-adds).

    Counted by ``torch.utils.flop_counter`` on the meta device (no compute): ``encoder`` and
    ``decoder`` (each including its attention), ``attention`` (the attention blocks of both, q/k/v/proj
    convolutions and the two products), ``quantizer`` (quant_conv and post_quant_conv) and
    ``code_search`` (one ``z @ codebook^T`` product, analytic). ``total`` is their sum.
    """
    from mmdat.models.vqgan import AttnBlock
    with torch.device('meta'):
        vqgan = VQGAN(**config, channels_last=False, subpixel_upsample=subpixel_upsample)
    f = vqgan.downsample_factor
    h, w = (-(-int(s) // f) * f for s in size)  # padded like VQGAN.encode
    x = torch.empty(batch, 3, h, w, device='meta')
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        latent = vqgan.quant_conv(vqgan.encoder(x))
        vqgan.decoder(vqgan.post_quant_conv(latent))
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    attention = sum(counts.get(f'{prefix}.{name}', 0) for prefix, part in (('Encoder', vqgan.encoder),
                                                                            ('Decoder', vqgan.decoder))
                    for name, module in part.named_modules() if isinstance(module, AttnBlock))
    n_embed, dim = vqgan.quantize.embedding.weight.shape
    flops = dict(encoder=counts.get('Encoder', 0), decoder=counts.get('Decoder', 0), attention=attention,
                 quantizer=sum(v for k, v in counts.items() if k.startswith('Conv2d')),
                 code_search=2.0 * batch * (h // f) * (w // f) * n_embed * dim)
    flops['total'] = flops['encoder'] + flops['decoder'] + flops['quantizer'] + flops['code_search']
    return {k: float(v) for k, v in flops.items()}


def vqgan_memory_bound(config: dict, size: Sequence[int], images: int) -> dict[str, float]:
    """Stated bound on the memory growth of one fp32 reconstruct pass of ``images`` images (bytes).

    The largest activation (found on the meta device) times 4, plus the code search's distance block:
    the peak of the fast path is inside the decoder's widest full-resolution ResNet block, where the
    block input, its normalised copy and the convolution outputs coexist (2.5 of the largest tensor;
    the rest is headroom for oneDNN's buffers and the allocator).
    """
    from mmdat.models.vqgan import MAX_DISTANCE_ELEMENTS
    with torch.device('meta'):
        vqgan = VQGAN(**config, channels_last=False)
    f = vqgan.downsample_factor
    h, w = (-(-int(s) // f) * f for s in size)
    largest = [0]

    def record(module, args, output):
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel())

    handles = [m.register_forward_hook(record) for m in vqgan.modules()]
    with torch.no_grad():
        vqgan.decoder(vqgan.post_quant_conv(vqgan.quant_conv(vqgan.encoder(torch.empty(images, 3, h, w,
                                                                                        device='meta')))))
    for handle in handles:
        handle.remove()
    n_embed = vqgan.quantize.embedding.weight.shape[0]
    positions = images * (h // f) * (w // f)
    distances = min(positions, max(1, MAX_DISTANCE_ELEMENTS // n_embed)) * n_embed
    largest_bytes = 4.0 * largest[0]
    return dict(largest_activation=largest_bytes, bound=4 * largest_bytes + 4.0 * distances)


def model_flops(model: torch.nn.Module, inputs: torch.Tensor, samples: list) -> dict[str, float]:
    """FLOPs of the classifier's loss forward, full backward (parameters and input) and input-only
    backward (what DAT's attack takes), counted on the given batch."""
    def counted(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    leaf = inputs.detach().clone().requires_grad_(True)

    def loss() -> torch.Tensor:
        return model.parse_losses(model.loss(leaf, copy.deepcopy(samples)))[0]

    forward = counted(loss)
    full = counted(lambda: loss().backward()) - forward
    # ``backward(inputs=[leaf])`` runs what ``autograd.grad(loss, leaf)`` runs (the counter's module
    # tracker does not support autograd.grad itself)
    input_only = counted(lambda: loss().backward(inputs=[leaf])) - forward
    model.zero_grad(set_to_none=True)
    return dict(forward=forward, backward=full, input_backward=input_only)


# ----------------------------------------------------------------------------- sections
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _peaks_and_outputs(runs: dict[str, Callable[[], torch.Tensor]], device: torch.device):
    """One untimed (warm-up) call of each run: its output and peak memory growth in bytes."""
    outputs, peaks, seconds = {}, {}, {}
    for name, fn in runs.items():
        with RSSSampler(device) as sampler:
            _sync(device)
            start = time.perf_counter()
            outputs[name] = fn()
            _sync(device)
            seconds[name] = time.perf_counter() - start
        peaks[name] = sampler.peak_bytes
    return outputs, peaks, seconds


def bench_vqgan(settings: BenchmarkSettings, rates: dict[torch.dtype, float]) -> list[dict]:
    """Section ``vqgan``: reconstruct throughput, peak memory and code agreement per size and variant."""
    device = torch.device(settings.device)
    config, _ = _vqgan_config(settings.vqgan)
    rows = []
    for size in settings.vqgan_sizes:
        large = max(size) > 512
        batch = settings.chunk_size if large else settings.vqgan_batch
        chunk = settings.chunk_size if large else None
        base = build_vqgan(settings.vqgan, device, chunk_size=chunk)
        names = list(settings.variants)
        if settings.reference_code and 'reference-code' not in names:
            names.insert(0, 'reference-code')
        variants = {name: vqgan_variant(base, name, config, settings.reference_code) for name in names}
        images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(1)).to(device)
        runs = {name: (lambda v=v: v.reconstruct(images)) for name, v in variants.items()}
        dtypes = {getattr(v, 'trunk_dtype', None) or torch.float32 for v in variants.values()}
        probes = {dtype: PeakProbe(device, dtype) for dtype in dtypes}
        compile_s = {}
        for name, v in variants.items():
            if isinstance(v, VQGAN) and v.compile_trunk:  # first call compiles: timed on its own
                _sync(device)
                start = time.perf_counter()
                v.reconstruct(images)
                _sync(device)
                compile_s[name] = time.perf_counter() - start
        outputs, peaks, first = _peaks_and_outputs(runs, device)
        probe_runs = {f'probe {dtype}': probe for dtype, probe in probes.items()}
        if settings.repeats == 0:  # a single call per variant (large sizes on a CPU): time the first one
            _interleaved(probe_runs, device, 0, 3)
            times = {name: [first[name]] for name in runs}
        else:
            times = _interleaved({**runs, **probe_runs}, device, max(0, settings.warmup - 1), settings.repeats)
        section_rates = {**rates, **{dtype: probe.rate for dtype, probe in probes.items()}}
        reference = next((n for n in ('reference-code', 'baseline') if n in variants), next(iter(variants)))
        ref_codes = variants[reference].encode(images) if len(variants) > 1 else None  # nothing to compare
        # FLOPs each variant executes: the published architecture's, or with sub-pixel upsampling
        flops_of = {subpixel: vqgan_flops(config, size, batch, subpixel_upsample=subpixel)['total']
                    for subpixel in (False, True)}
        memory_bound = vqgan_memory_bound(config, size, chunk or batch)['bound']
        for name, v in variants.items():
            flops = flops_of[isinstance(v, VQGAN) and any(getattr(m, 'subpixel', False) for m in v.decoder.modules())]
            codes = ref_codes if name == reference else v.encode(images)
            seconds = _median(times[name])
            dtype = getattr(v, 'trunk_dtype', None) or torch.float32
            bound = flops / section_rates[dtype]
            rows.append(dict(
                size=f'{size[0]}x{size[1]}', batch=batch, chunk_size=chunk, variant=name, reference=reference,
                description=getattr(v, 'description', BASELINE_DESCRIPTIONS.get(name)),
                seconds=seconds, images_per_s=batch / seconds, speedup=None,
                peak_mb=None if peaks[name] is None else peaks[name] / 2 ** 20,
                memory_bound_mb=memory_bound / 2 ** 20 if isinstance(v, VQGAN) else None,
                code_agreement=None if codes is None else float((codes == ref_codes).float().mean()),
                max_abs_diff=float((outputs[name] - outputs[reference]).abs().max()),
                compile_s=compile_s.get(name), gflops=flops / 1e9, peak_gflops_per_s=section_rates[dtype] / 1e9,
                bound_s=bound, fraction_of_bound=bound / seconds,
                times=times[name]))
        ref_row = next(r for r in rows[-len(variants):] if r['variant'] == reference)
        for row in rows[-len(variants):]:
            row['speedup'] = ref_row['seconds'] / row['seconds']
        del variants, base, outputs
    return rows


def build_classifier(name: str, device: torch.device, dat: Optional[dict], seed: int = 0) -> torch.nn.Module:
    """An mmpretrain ``ImageClassifier`` ``name`` with a DAT preprocessor (``dat=None``: DAT off)."""
    from mmpretrain.registry import MODELS
    if name not in CLASSIFIERS:
        raise ValueError(f'unknown model {name!r}; valid: {", ".join(CLASSIFIERS)}')
    cfg = copy.deepcopy(CLASSIFIERS[name])
    pre = dict(type='DATClsDataPreprocessor', num_classes=cfg['head']['num_classes'], to_rgb=True,
               mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
               dat=dict(enabled=False) if dat is None else dat)
    torch.manual_seed(seed)
    return MODELS.build(dict(type='ImageClassifier', data_preprocessor=pre, **cfg)).to(device)


def reference_step(model: torch.nn.Module, data: dict, optim_wrapper) -> None:
    """One training step of the literal reference procedure (easyrobust's DAT code) on the same pieces.

    Its two extra costs against mmdat: the attack's backward is ``loss.backward()`` (it fills the
    parameter gradients too, which are zeroed before the real backward), and one more forward of the
    model on the perturbed image follows the attack, its result unused. The attack itself is mmdat's
    :meth:`DATAttack.perturb`, handed the gradient that backward computed.
    """
    pre = model.data_preprocessor
    data = pre.preprocess(data, training=True)
    inputs, samples = data['inputs'], data['data_samples']
    attack = pre.dat_attack

    def loss_of(images: torch.Tensor) -> torch.Tensor:
        return model.parse_losses(model.loss(pre.from_unit_rgb(images), copy.deepcopy(samples)))[0]

    def attack_loss(leaf: torch.Tensor) -> torch.Tensor:
        loss = loss_of(leaf)
        loss.backward()  # the reference's backward: parameter and input gradients
        grad = leaf.grad.detach()
        # the same value, with ``grad`` as its input gradient, so that perturb backpropagates nothing more
        return loss.detach() + (leaf * grad).sum() - (leaf.detach() * grad).sum()

    x_rec = attack.quantize(pre.to_unit_rgb(inputs))
    perturbation = attack.perturb(x_rec, attack_loss, random_start=attack.draw(None, 'start')
                                  < attack.random_start_prob)
    if perturbation.error is not None:
        raise RuntimeError(f'reference step: {perturbation.error}')
    loss_of(perturbation.perturbed)  # the unused extra forward
    x_adv = attack.quantize(perturbation.perturbed)
    optim_wrapper.zero_grad()
    clean = model.parse_losses(model.loss(inputs, samples))[0]
    adv = model.parse_losses(model.loss(pre.from_unit_rgb(x_adv), samples))[0]
    optim_wrapper.update_params(clean + adv)


def _classification_batch(num_classes: int, size: int, batch: int) -> dict:
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(batch)],
                data_samples=[DataSample().set_gt_label(i % num_classes) for i in range(batch)])


def _trunk_option(dtype_name: str) -> Optional[str]:
    return None if dtype_name in ('fp32', 'float32') else dtype_name


def dat_code_agreement(model: torch.nn.Module, data: dict, vqgans: dict) -> dict[str, dict]:
    """DAT's codes with each VQGAN of ``vqgans`` (name -> VQGAN; the first is the reference) on one batch.

    For each VQGAN: x_rec = Q(x), one attack step of ``model``'s DAT settings from x_rec (its own,
    as in training), x_adv = Q(x'); returns per name the fraction of code indices of x_rec and of
    x_adv equal to the reference VQGAN's, and the largest pixel difference of x_adv from its x_adv.
    """
    pre = model.data_preprocessor
    prepared = pre.preprocess(copy.deepcopy(data), training=True)
    inputs, samples = prepared['inputs'], prepared['data_samples']
    settings = pre.dat_attack

    def loss_fn(images: torch.Tensor) -> torch.Tensor:
        return model.parse_losses(model.loss(pre.from_unit_rgb(images), copy.deepcopy(samples)))[0]

    out = {}
    for name, vqgan in vqgans.items():
        attack = DATAttack(vqgan, eps=settings.eps, step_size=settings.step_size, steps=settings.steps,
                           norm=settings.norm, random_start_prob=0.0)
        x_rec, rec_codes = attack.quantize(pre.to_unit_rgb(inputs), return_codes=True)
        perturbed, _, error = attack.perturb(x_rec, loss_fn)
        if error is not None:
            raise RuntimeError(f'dat_code_agreement: {error}')
        x_adv, adv_codes = attack.quantize(perturbed, return_codes=True)
        out[name] = dict(rec_codes=torch.cat([c.flatten() for c in rec_codes]),
                         adv_codes=torch.cat([c.flatten() for c in adv_codes]), x_adv=x_adv)
    first = out[next(iter(vqgans))]
    return {name: dict(x_rec_codes=float((o['rec_codes'] == first['rec_codes']).float().mean()),
                       x_adv_codes=float((o['adv_codes'] == first['adv_codes']).float().mean()),
                       x_adv_max_abs_diff=float((o['x_adv'] - first['x_adv']).abs().max()))
            for name, o in out.items()}


def bench_step(settings: BenchmarkSettings, rates: dict[torch.dtype, float]) -> tuple[list[dict], list[dict]]:
    """Section ``step``: plain, mmdat DAT and reference-procedure training steps, and one VQGAN
    reconstruct, for each VQGAN trunk dtype; returns the timing rows and, when a dtype other than
    fp32 ran, DAT's code agreement with the fp32 VQGAN (:func:`dat_code_agreement`)."""
    from mmengine.optim import OptimWrapper
    device = torch.device(settings.device)
    dtypes = list(dict.fromkeys(settings.step_trunk_dtypes))
    vqgans = {dtype: build_vqgan(settings.step_vqgan, device, trunk_dtype=_trunk_option(dtype)) for dtype in dtypes}
    config, _ = _vqgan_config(settings.step_vqgan)
    size, batch = settings.step_size, settings.step_batch
    vq_flops = vqgan_flops(config, (size, size), batch)['total']
    rows, agreement = [], []
    for name in settings.models:
        dat = dict(random_start_prob=0.0)  # the same work every step
        models = {('plain', None): build_classifier(name, device, None)}
        for i, dtype in enumerate(dtypes):
            models[('dat', dtype)] = build_classifier(name, device, dat)
            if i == 0:  # the literal reference procedure once, with the first dtype
                models[('reference', dtype)] = build_classifier(name, device, dat)
        optims = {}
        for (mode, dtype), model in models.items():
            model.data_preprocessor.attach_dat(model, vqgans[dtype or dtypes[0]])
            optims[mode, dtype] = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4))
        data = _classification_batch(CLASSIFIERS[name]['head']['num_classes'], size, batch)
        images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)

        def step(key):
            if key[0] == 'reference':
                return lambda: reference_step(models[key], copy.deepcopy(data), optims[key])
            return lambda: models[key].train_step(copy.deepcopy(data), optims[key])

        runs = {key: step(key) for key in models}
        runs.update({('vqgan', dtype): (lambda v=vqgans[dtype]: v.reconstruct(images)) for dtype in dtypes})
        probe = PeakProbe(device)
        times = _interleaved({**runs, 'probe': probe}, device, settings.warmup, settings.repeats)
        times.pop('probe')
        rate = probe.rate
        plain_model = models['plain', None]
        pre_data = plain_model.data_preprocessor.preprocess(copy.deepcopy(data), training=True)
        mf = model_flops(plain_model, pre_data['inputs'], pre_data['data_samples'])
        fwd, bwd, ibwd = mf['forward'], mf['backward'], mf['input_backward']
        flops = {'plain': fwd + bwd, 'dat': 2 * vq_flops + fwd + ibwd + 2 * (fwd + bwd),
                 'reference': 2 * vq_flops + 2 * fwd + bwd + 2 * (fwd + bwd), 'vqgan': vq_flops}
        plain = _median(times['plain', None])
        for mode, dtype in runs:
            seconds = _median(times[mode, dtype])
            rows.append(dict(model=name, vqgan=settings.step_vqgan, vqgan_trunk=dtype or '-',
                             size=size, batch=batch, mode=mode,
                             seconds=seconds, x_plain=seconds / plain, gflops=flops[mode] / 1e9,
                             peak_gflops_per_s=rate / 1e9, bound_s=flops[mode] / rate,
                             fraction_of_bound=flops[mode] / rate / seconds,
                             times=times[mode, dtype]))
        rows[-len(runs)]['model_flops'] = mf
        others = [d for d in dtypes if d != 'fp32']
        if others:
            compared = {'fp32': vqgans['fp32'] if 'fp32' in vqgans else build_vqgan(settings.step_vqgan, device),
                        **{d: vqgans[d] for d in others}}
            found = dat_code_agreement(models['dat', dtypes[0]], data, compared)
            agreement += [dict(model=name, vqgan=settings.step_vqgan, vqgan_trunk=d, size=size, batch=batch,
                               **found[d]) for d in others]
    return rows, agreement


AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def bench_amp(settings: BenchmarkSettings) -> list[dict]:
    """Section ``amp``: the attack's loss and input gradient in float32 (mmdat, whatever the autocast)
    against the same attack inside the autocast, on the step section's classifiers and batch."""
    device = torch.device(settings.device)
    size, batch = settings.step_size, settings.step_batch
    rows = []
    for name in settings.models:
        model = build_classifier(name, device, dict(random_start_prob=0.0))
        pre = model.data_preprocessor
        attack = DATAttack(IdentityQuantizer(), random_start_prob=0.0)
        data = pre.preprocess(_classification_batch(CLASSIFIERS[name]['head']['num_classes'], size, batch),
                              training=True)
        x_rec = pre.to_unit_rgb(data['inputs'])  # the attack's start; the VQGAN passes are not timed here

        def loss_of(images: torch.Tensor, samples=data['data_samples']) -> torch.Tensor:
            return model.parse_losses(model.loss(pre.from_unit_rgb(images), copy.deepcopy(samples)))[0]

        runs = {'fp32': functools.partial(attack.perturb, x_rec, loss_of)}
        for dtype_name in settings.amp_dtypes:
            autocast = functools.partial(torch.autocast, device.type, dtype=AMP_DTYPES[dtype_name])
            runs[f'{dtype_name}/mmdat'] = functools.partial(_under, autocast, attack.perturb, x_rec, loss_of)
            runs[f'{dtype_name}/inside'] = functools.partial(
                attack.perturb, x_rec, functools.partial(_under, autocast, loss_of))
        times = _interleaved(runs, device, settings.warmup, settings.repeats)
        fp32 = _median(times['fp32'])
        for variant, seconds in times.items():
            autocast, _, where = variant.partition('/')
            rows.append(dict(model=name, size=size, batch=batch, autocast=None if autocast == 'fp32' else autocast,
                             attack_dtype=autocast if where == 'inside' else 'fp32',
                             seconds=_median(seconds), x_fp32=_median(seconds) / fp32, times=seconds))
    return rows


def _under(context: Callable, fn: Callable, *args):
    with context():
        return fn(*args)


def bench_flops(settings: BenchmarkSettings) -> list[dict]:
    """Section ``flops``: the VQGAN's FLOPs per part for one image at each size."""
    config, _ = _vqgan_config(settings.vqgan)
    rows = []
    sizes = list(settings.vqgan_sizes)
    for size in [(224, 224), (512, 512), (800, 1344)] if settings.vqgan != 'tiny' else []:
        if size not in sizes:
            sizes.append(size)  # counting is free (meta device): always show the paper's sizes
    for size in sizes:
        rows.append(dict(vqgan=settings.vqgan, size=f'{size[0]}x{size[1]}',
                         **{k: v / 1e9 for k, v in vqgan_flops(config, size, 1).items()},
                         total_subpixel=vqgan_flops(config, size, 1, subpixel_upsample=True)['total'] / 1e9))
    return rows


# ----------------------------------------------------------------------------- driver and report
def _load() -> str:
    try:
        return ', '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'unknown'


def machine_info(device: torch.device) -> dict:
    """Where the numbers come from: CPU/GPU, threads and load (load average over 1, 5, 15 min)."""
    info = dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                device=str(device))
    if os.path.exists('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            names = [ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')]
        if names:
            info['processor'] = names[0]
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    native, reason = native_bf16(device)
    info['bf16'] = dict(native=native, reason=reason)
    return info


def run_benchmark(settings: BenchmarkSettings, log: Callable[[str], None] = lambda msg: None) -> dict:
    """Measure the selected sections; returns the JSON-ready result (see :func:`render_markdown`)."""
    unknown = set(settings.sections) - {'vqgan', 'step', 'amp', 'flops'}
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; valid: vqgan, step, amp, flops")
    if set(settings.amp_dtypes) - set(AMP_DTYPES):
        raise ValueError(f'unknown amp dtypes {settings.amp_dtypes}; valid: {", ".join(AMP_DTYPES)}')
    device = torch.device(settings.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'device {settings.device} requested but CUDA is not available')
    result = dict(settings={k: (list(v) if isinstance(v, (list, tuple)) else v)
                            for k, v in settings.__dict__.items()},
                  machine=machine_info(device), load_before=_load())
    dtypes = [torch.float32] + ([torch.bfloat16, torch.float16] if device.type == 'cuda' else [])
    probes = {dtype: PeakProbe(device, dtype) for dtype in dtypes}
    _interleaved(probes, device, 1, 3)
    rates = {dtype: probe.rate for dtype, probe in probes.items()}
    result['peak_at_start'] = {str(k).replace('torch.', ''): p.summary() for k, p in probes.items()}
    log(f'peak: {rates[torch.float32] / 1e9:.1f} GFLOP/s fp32 on {device}')
    if 'vqgan' in settings.sections:
        log('section vqgan ...')
        result['vqgan'] = bench_vqgan(settings, rates)
    if 'step' in settings.sections:
        log('section step ...')
        result['step'], agreement = bench_step(settings, rates)
        if agreement:
            result['step_precision'] = agreement
    if 'amp' in settings.sections:
        log('section amp ...')
        result['amp'] = bench_amp(settings)
    if 'flops' in settings.sections:
        result['flops'] = bench_flops(settings)
    result['load_after'] = _load()
    return result


def _fmt(value, spec: str = '.2f', none: str = '-') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    return format(value, spec)


def _bound(megabytes: Optional[float]) -> str:
    return '' if megabytes is None else f' (bound {megabytes:.0f})'


def _pct(fraction: Optional[float]) -> str:
    return '-' if fraction is None else f'{100 * fraction:.2f}%'


def render_markdown(result: dict) -> str:
    """The result as Markdown: the machine, then one table per measured section."""
    m = result['machine']
    device = torch.device(m['device'])
    bf16 = m.get('bf16')
    bf16_text = '' if bf16 is None else f"; bf16 {'native' if bf16['native'] else 'not native'} ({bf16['reason']})"
    lines = [f"Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} with {m['torch_threads']} "
             f"thread(s){', GPU ' + m['gpu'] if 'gpu' in m else ''}; device `{m['device']}`{bf16_text}; load average "
             f"(1, 5, 15 min) {result['load_before']} before, {result['load_after']} after.",
             'Achievable at the start (GEMM, channels-last 3x3 conv): ' + '; '.join(
                 f"{k} {v['gemm_gflops_per_s']:.1f}, {v['conv3x3_gflops_per_s']:.1f} GFLOP/s"
                 for k, v in result['peak_at_start'].items())
             + '. Each table\'s bound = FLOPs / the best of those two rates measured between its runs (same '
             'load; "peak GFLOP/s" column); "% of bound" = bound / measured time.', '']
    other = 'cuda' if device.type == 'cpu' else 'cpu'
    if 'vqgan' in result:
        ref = result['vqgan'][0].get('reference', 'baseline') if result['vqgan'] else 'baseline'
        lines += [f"### VQGAN reconstruct ({result['settings']['vqgan']}, fp32 unless the variant says otherwise)", '',
                  f'Ratios ("x {ref}"), "codes = {ref}" and "max abs diff" are against `{ref}`. ' + ' '.join(
                      f"`{name}`: {text}." for name, text in dict.fromkeys(
                          (r['variant'], r['description']) for r in result['vqgan'] if r.get('description'))), '',
                  f'| device | size | batch | variant | img/s | x {ref} | peak mem MiB | codes = {ref} | '
                  'max abs diff | compile s | GFLOP | peak GFLOP/s | % of bound |',
                  '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
        for r in result['vqgan']:
            batch = f"{r['batch']}" + ('' if r['chunk_size'] is None else f" (chunk {r['chunk_size']})")
            lines.append(f"| {device.type} | {r['size']} | {batch} | {r['variant']} "
                         f"| {_fmt(r['images_per_s'], '.3g')} | {_fmt(r['speedup'])} "
                         f"| {_fmt(r['peak_mb'], '.0f')}{_bound(r.get('memory_bound_mb'))} "
                         f"| {_pct(r['code_agreement'])} "
                         f"| {_fmt(r['max_abs_diff'], '.1e')} | {_fmt(r['compile_s'], '.1f')} "
                         f"| {_fmt(r['gflops'], '.0f')} "
                         f"| {_fmt(r['peak_gflops_per_s'], '.1f')} | {_fmt(100 * r['fraction_of_bound'], '.1f')} |")
        lines += [f'| {other} | all | | all | {NOT_MEASURED} | | | | | | | | |', '']
    if 'step' in result:
        lines += ['### Training step (SGD; DAT: eps 0.1, 1 step, no random start)', '',
                  '| device | model | VQGAN | input | mode | ms/step | x plain | GFLOP | peak GFLOP/s | % of bound |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for r in result['step']:
            mode = 'VQGAN reconstruct (1 pass)' if r['mode'] == 'vqgan' else r['mode']
            trunk = r.get('vqgan_trunk', 'fp32')
            vqgan = '-' if trunk == '-' else f"{r['vqgan']} ({trunk})"
            lines.append(f"| {device.type} | {r['model']} | {vqgan} "
                         f"| {r['batch']}x3x{r['size']}x{r['size']} "
                         f"| {mode} | {_fmt(1e3 * r['seconds'], '.1f')} | {_fmt(r['x_plain'])} "
                         f"| {_fmt(r['gflops'], '.3g')} | {_fmt(r['peak_gflops_per_s'], '.1f')} "
                         f"| {_fmt(100 * r['fraction_of_bound'], '.1f')} |")
        lines += [f'| {other} | all | | | all | {NOT_MEASURED} | | | | |', '']
    if result.get('step_precision'):
        lines += ['### DAT with a lower-precision VQGAN trunk against fp32 (same model, batch and attack)', '',
                  '| device | model | VQGAN | input | trunk | x_rec codes = fp32 | x_adv codes = fp32 | '
                  'x_adv max abs diff |', '|---|---|---|---|---|---|---|---|']
        for r in result['step_precision']:
            lines.append(f"| {device.type} | {r['model']} | {r['vqgan']} | {r['batch']}x3x{r['size']}x{r['size']} "
                         f"| {r['vqgan_trunk']} | {_pct(r['x_rec_codes'])} | {_pct(r['x_adv_codes'])} "
                         f"| {_fmt(r['x_adv_max_abs_diff'], '.1e')} |")
        lines.append('')
    if 'amp' in result:
        lines += ["### The attack under mixed precision (the model's loss and input gradient, 1 step; no VQGAN)", '',
                  '| device | model | input | autocast | attack computed in | ms/attack | x fp32 |',
                  '|---|---|---|---|---|---|---|']
        for r in result['amp']:
            where = 'fp32 (no autocast)' if r['autocast'] is None else (
                'fp32, autocast off (mmdat)' if r['attack_dtype'] == 'fp32' else f"{r['attack_dtype']} (inside autocast)")
            lines.append(f"| {device.type} | {r['model']} | {r['batch']}x3x{r['size']}x{r['size']} "
                         f"| {r['autocast'] or '-'} | {where} | {_fmt(1e3 * r['seconds'], '.1f')} "
                         f"| {_fmt(r['x_fp32'])} |")
        lines += [f'| {other} | all | | all | | {NOT_MEASURED} | |', '']
    if 'flops' in result:
        lines += ['### VQGAN FLOPs per image (matmul/convolution FLOPs, 2 per multiply-add; attention is part of '
                  'encoder and decoder)', '',
                  '| VQGAN | size | encoder GFLOP | decoder GFLOP | attention GFLOP | quant convs GFLOP | '
                  'code search GFLOP | total GFLOP | total, sub-pixel upsampling (executed by default) |',
                  '|---|---|---|---|---|---|---|---|---|']
        for r in result['flops']:
            lines.append(f"| {r['vqgan']} | {r['size']} | {r['encoder']:.1f} | {r['decoder']:.1f} "
                         f"| {r['attention']:.1f} "
                         f"| {r['quantizer']:.3f} | {r['code_search']:.2f} | {r['total']:.1f} "
                         f"| {_fmt(r.get('total_subpixel'), '.1f')} |")
        steps = [r for r in result.get('step', []) if 'model_flops' in r]
        if steps:
            lines += ['', '| model | input | forward GFLOP | backward GFLOP | input-only backward GFLOP |',
                      '|---|---|---|---|---|']
            for r in steps:
                mf = r['model_flops']
                lines.append(f"| {r['model']} | {r['batch']}x3x{r['size']}x{r['size']} | {mf['forward'] / 1e9:.3g} "
                             f"| {mf['backward'] / 1e9:.3g} | {mf['input_backward'] / 1e9:.3g} |")
        lines.append('')
    return '\n'.join(lines)


def save_result(result: dict, json_path: Optional[str], md_path: Optional[str]) -> str:
    """Write the JSON and Markdown files (either may be None); returns the Markdown."""
    text = render_markdown(result)
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, 'w') as f:
            json.dump(result, f, indent=1)
    if md_path:
        os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
        with open(md_path, 'w') as f:
            f.write(text)
    return text
