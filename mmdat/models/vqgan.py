"""Frozen VQGAN with the taming-transformers layout, used by DAT to discretise images.

Pure PyTorch. Module and parameter names follow taming-transformers (``Encoder``,
``Decoder``, ``VectorQuantizer`` inside ``VQModel``) so that published checkpoints
load key for key; see :data:`VQGAN_PRESETS` for the configurations and where their
weights are published. The model never carries gradient: it is built frozen, stays
in eval mode and its public methods run under ``torch.no_grad()``.

Inference is the fast path (channels-last trunk kept through every layer, in-place SiLU and
residuals when autograd is off, each upsampling as one stride-2 transposed convolution, 1x1
convolutions through oneDNN on CPUs, SDPA attention, chunked one-matmul code search, optional
``torch.compile``); :class:`mmdat.models.vqgan_reference.ReferenceVQGAN` evaluates the same weights
the straightforward taming way, and :mod:`mmdat.models.vqgan_reference_code` runs the published
taming / easyrobust code itself on them: the baselines of ``tools/analysis_tools/benchmark_dat.py``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .vqgan_checkpoint import VQGANCheckpointError, load_vqgan_state_dict
from ..assets import TINY_VQGAN_CHECKPOINT, TINY_VQGAN_CONFIG

__all__ = ['VQGAN', 'VQGAN_PRESETS', 'nearest_code_indices', 'native_bf16', 'subpixel_upsample_kernel']

_TAMING_F16 = dict(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                   z_channels=256, embed_dim=256, resolution=256)
_TAMING_NOTE = ('Published by taming-transformers (README, "VQGAN ImageNet (f=16), {n}" row): {url} '
                '(configs/model.yaml, ckpts/last.ckpt). Not downloaded automatically: download last.ckpt and '
                'pass checkpoint=<path> (the Lightning file loads directly).')

VQGAN_PRESETS: dict[str, dict] = {
    'openimages-f8-16384': dict(
        config=dict(ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(32,),
                    z_channels=4, embed_dim=4, n_embed=16384, resolution=256),
        checkpoint_url='http://alisec-competition.oss-cn-shanghai.aliyuncs.com/xiaofeng/easy_robust/'
                       'pretrained_models/vqgan_openimages_f8_16384.ckpt',
        # not recorded: the published file could not be downloaded where this was written; a
        # download is still checked for completeness (Content-Length) and renamed atomically
        checkpoint_sha256=None,
        notes='DAT default: easyrobust re-host of the latent-diffusion "vq-f8" first stage, also published as '
              'https://ommer-lab.com/files/latent-diffusion/vq-f8.zip (model.ckpt inside; rFID 1.14, PSNR 23.07).',
    ),
    'imagenet-f16-1024': dict(
        config=dict(_TAMING_F16, n_embed=1024),
        checkpoint_url=None,
        notes=_TAMING_NOTE.format(n=1024, url='https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/'),
    ),
    'imagenet-f16-16384': dict(
        config=dict(_TAMING_F16, n_embed=16384),
        checkpoint_url=None,
        notes=_TAMING_NOTE.format(n=16384, url='https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/'),
    ),
    'tiny-shapes': dict(
        config=dict(TINY_VQGAN_CONFIG),
        checkpoint_url=str(TINY_VQGAN_CHECKPOINT),
        notes='The embedded default: a tiny VQGAN trained on the built-in shapes dataset by '
              '`python tools/train.py configs/vqgan/tiny-shapes.py`, shipped in mmdat/assets. '
              'For CPU demos and tests only.',
    ),
}

MAX_DISTANCE_ELEMENTS = 2 ** 26  # largest (positions x codes) distance block computed at once (256 MB fp32)

_DTYPES = {'float32': None, 'fp32': None, 'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16,
           'fp16': torch.float16, 'float16': torch.float16, 'half': torch.float16}


def _parse_trunk_dtype(value: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    if value is None or value == torch.float32:
        return None
    if value in (torch.bfloat16, torch.float16):
        return value
    if isinstance(value, str) and value.lower() in _DTYPES:
        return _DTYPES[value.lower()]
    raise ValueError(f"trunk_dtype must be None, 'float32', 'bf16', 'fp16' or 'auto' (or a torch dtype), "
                     f"got {value!r}")


def _cpu_flags() -> set[str]:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: Union[str, torch.device]) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and why: CPU flags ``amx_bf16`` / ``avx512_bf16``
    (from /proc/cpuinfo), CUDA compute capability >= 8.0. Without them bf16 is emulated and slow."""
    device = torch.device(device)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            return False, 'CUDA is not available'
        major, minor = torch.cuda.get_device_capability(device)
        return major >= 8, f'CUDA compute capability {major}.{minor} ({">=" if major >= 8 else "<"} 8.0)'
    if device.type != 'cpu':
        return False, f'no bf16 rule for device type {device.type!r}'
    flags = _cpu_flags() & {'amx_bf16', 'avx512_bf16'}
    if flags:
        return True, 'CPU flags ' + ', '.join(sorted(flags))
    return False, 'no amx_bf16 or avx512_bf16 CPU flag' + ('' if os.path.exists('/proc/cpuinfo') else ' (no /proc/cpuinfo)')


@contextmanager
def _ieee_fp32_matmul(device: torch.device) -> Iterator[None]:
    """Keep CUDA fp32 matmuls exact (no TF32) so that code selection does not depend on global flags."""
    if device.type != 'cuda':
        yield
        return
    matmul = torch.backends.cuda.matmul
    attr, exact = ('fp32_precision', 'ieee') if hasattr(matmul, 'fp32_precision') else ('allow_tf32', False)
    previous = getattr(matmul, attr)
    setattr(matmul, attr, exact)
    try:
        yield
    finally:
        setattr(matmul, attr, previous)


def nearest_code_indices(z: Tensor, codebook: Tensor, max_elements: int = MAX_DISTANCE_ELEMENTS) -> Tensor:
    """Index of the nearest codebook row (squared L2) for each row of ``z`` (N, D); ties -> lowest index.

    Runs in float32 with autocast disabled, over chunks of rows so that at most
    ``max_elements`` distances exist at a time. ``||z||^2`` is the same for every code of a
    row, so the argmin is taken over ``||e||^2 - 2 z.e`` (precomputed ``||e||^2``).
    """
    with torch.autocast(z.device.type, enabled=False), _ieee_fp32_matmul(z.device):
        z, codebook = z.float(), codebook.float()
        code_sq = codebook.square().sum(1)
        codebook_t = codebook.t()
        rows = max(1, max_elements // codebook.shape[0])
        indices = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, z.shape[0], rows):
            dist = torch.addmm(code_sq, z[start:start + rows], codebook_t, alpha=-2.0)
            indices[start:start + rows] = dist.argmin(1)
    return indices


def model_input(images: Tensor, factor: int) -> Tensor:
    """RGB images (B, 3, H, W) in [0, 1] -> float32 in [-1, 1], replicate-padded (bottom/right) to a
    multiple of the downsampling ``factor``: what every VQGAN forward here starts from."""
    if images.dim() != 4:
        raise ValueError(f'expected images of shape (B, C, H, W), got {tuple(images.shape)}')
    x = images.float() * 2 - 1
    pad_h, pad_w = -x.shape[-2] % factor, -x.shape[-1] % factor
    return F.pad(x, (0, pad_w, 0, pad_h), mode='replicate') if pad_h or pad_w else x


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


def _pointwise(conv: nn.Module, x: Tensor) -> Tensor:
    """``conv(x)`` for a 1x1 convolution (or ``nn.Identity``); in CPU inference through oneDNN.

    PyTorch sends single-threaded 1x1 convolutions of small batches to its im2col + GEMM kernel,
    which returns NCHW (dropping the trunk's channels-last layout for everything after it) and ran
    2.3x slower than oneDNN on the benchmark CPU (docs/benchmarks.md). A dilation changes nothing
    for a 1x1 kernel but routes the call to oneDNN, which keeps the layout.
    """
    if (isinstance(conv, nn.Conv2d) and x.device.type == 'cpu' and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available()):
        return F.conv2d(x, conv.weight, conv.bias, dilation=2)
    return conv(x)


class ResnetBlock(nn.Module):
    """norm1, swish, conv1, norm2, swish, dropout, conv2, plus a (1x1 when widening) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        inplace = not torch.is_grad_enabled()  # inference: no new buffer for SiLU and the residual
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=inplace)))
        return h.add_(_pointwise(self.nin_shortcut, x)) if inplace else self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions (scale C^-0.5) with a residual, via SDPA."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (_pointwise(conv, y).flatten(2).transpose(1, 2).unsqueeze(1).contiguous()
                   for conv in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C); never materialises HW x HW here
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        y = y.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous(memory_format=layout)  # keep the trunk's layout
        return _pointwise(self.proj_out, y).add_(x) if not torch.is_grad_enabled() else x + self.proj_out(y)


class Downsample(nn.Module):
    """Zero-pad right/bottom by one, then a 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def subpixel_upsample_kernel(weight: Tensor) -> Tensor:
    """The 4x4 stride-2 transposed-convolution kernel equal to nearest x2 upsampling then ``weight`` (3x3).

    Along each axis, output pixel ``2m`` sees ``w0 x[m-1] + (w1 + w2) x[m]`` and ``2m + 1`` sees
    ``(w0 + w1) x[m] + w2 x[m+1]``; a transposed convolution with stride 2 and padding 1 adds
    ``x[i] K[k]`` into output ``2i + k - 1``, so ``K = (w2, w1 + w2, w0 + w1, w0)``. The result is
    laid out for :func:`torch.nn.functional.conv_transpose2d`: (in, out, 4, 4).
    """
    def taps(w: Tensor) -> Tensor:  # (..., 3) -> (..., 4) along the last axis
        return torch.stack((w[..., 2], w[..., 1] + w[..., 2], w[..., 0] + w[..., 1], w[..., 0]), dim=-1)

    return taps(taps(weight).transpose(-1, -2)).transpose(-1, -2).transpose(0, 1)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv.

    Without autograd (inference) the two run as one stride-2 transposed convolution with the kernel
    of :func:`subpixel_upsample_kernel`: the same function with 4 instead of 9 multiply-adds per
    output pixel and channel, no 4x upsampled copy, and the input's memory format kept. ``subpixel``
    (set by :class:`VQGAN`) turns it off; with autograd the taming form runs, so training is unchanged.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.subpixel = True

    def forward(self, x: Tensor) -> Tensor:
        if self.subpixel and not torch.is_grad_enabled():
            return F.conv_transpose2d(x, subpixel_upsample_kernel(self.conv.weight), self.conv.bias,
                                      stride=2, padding=1)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class _Level(nn.Module):
    """One resolution level: res blocks, each followed by attention when the level has it.

    The owner attaches ``downsample`` (encoder) or ``upsample`` (decoder) where taming has one.
    """

    def __init__(self, blocks: Sequence[nn.Module], attns: Sequence[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def forward(self, x: Tensor) -> Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


class _Mid(nn.Module):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 z_channels: int, resolution: int, in_channels: int, dropout: float, double_z: bool) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        channels, res = ch, resolution
        for i, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(channels, ch * mult, dropout))
                channels = ch * mult
                if res in attn_resolutions:
                    attns.append(AttnBlock(channels))
            level = _Level(blocks, attns)
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(channels)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(channels, dropout)
        self.norm_out = _group_norm(channels)
        self.conv_out = nn.Conv2d(channels, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, 'downsample'):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))


class Decoder(nn.Module):
    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 z_channels: int, resolution: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        channels = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, channels, 3, padding=1)
        self.mid = _Mid(channels, dropout)
        levels = []
        for i in reversed(range(len(ch_mult))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(channels, ch * ch_mult[i], dropout))
                channels = ch * ch_mult[i]
                if res in attn_resolutions:
                    attns.append(AttnBlock(channels))
            level = _Level(blocks, attns)
            if i != 0:
                level.upsample = Upsample(channels)
                res *= 2
            levels.append(level)
        self.up = nn.ModuleList(levels[::-1])  # taming stores levels in index order and runs them in reverse
        self.norm_out = _group_norm(channels)
        self.conv_out = nn.Conv2d(channels, out_ch, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, 'upsample'):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))


class VectorQuantizer(nn.Module):
    """Codebook ``embedding`` [n_embed, embed_dim]; nearest-code search and lookup."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def forward(self, z: Tensor) -> Tensor:
        """Code indices (B, h, w) for latents (B, D, h, w)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        return nearest_code_indices(flat, self.embedding.weight).view(b, h, w)

    def lookup(self, indices: Tensor, channels_last: bool = False) -> Tensor:
        """Latents (B, D, h, w) for code indices (B, h, w); ``channels_last`` skips the NCHW copy."""
        z = F.embedding(indices, self.embedding.weight).permute(0, 3, 1, 2)
        return z if channels_last else z.contiguous()


class VQGAN(nn.Module):
    """Frozen taming-transformers VQGAN: images in [0, 1] -> code indices -> images in [0, 1].

    Args:
        ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, resolution, in_channels,
        out_ch, dropout, double_z: taming ``ddconfig``. ``resolution`` only decides where
            attention sits (levels whose ``resolution // 2**level`` is in ``attn_resolutions``);
            any input size works.
        n_embed, embed_dim: codebook size and code dimension.
        checkpoint: path or URL (``http(s)://``, ``file://``) of the weights, loaded here at build
            time (weights-only, see :mod:`mmdat.models.vqgan_checkpoint`); None keeps the random
            initialisation.
        checkpoint_sha256: SHA-256 that a downloaded checkpoint must have (None: not checked).
        trunk_dtype: None/'float32' runs everything in float32 with autocast disabled, even
            inside a caller's ``torch.autocast``. 'bf16'/'fp16' (or the torch dtypes) run the
            encoder and decoder under autocast with that dtype on the input's device type.
            'auto' picks bf16 on devices that compute it natively (:func:`native_bf16`: AMX or
            AVX512-BF16 CPUs, CUDA compute capability >= 8.0) and float32 elsewhere; bf16 changes
            a few percent of a reconstruction's codes and many more of DAT's x_adv codes
            (docs/benchmarks.md), hence float32 is the default.
            The quantiser (quant_conv, nearest code, post_quant_conv) always runs in float32
            and outputs are always float32.
        chunk_size: max images per VQGAN pass; larger batches are processed in chunks
            (None: the whole batch at once).
        channels_last (bool): run the encoder and decoder on channels-last (NHWC) tensors, which
            oneDNN/cuDNN convolve without layout reorders; outputs stay NCHW, the weights and the
            state_dict are unchanged (docs/benchmarks.md: with the in-place inference path, 1.4x
            the straightforward taming forward at 224 px on a CPU, identical codes). Defaults to True.
        compile_trunk (bool): wrap the encoder and decoder in ``torch.compile`` (fused
            GroupNorm+SiLU, one graph per input shape, compiled at the first call of each shape;
            needs a C++ compiler on CPU). Defaults to False.
        subpixel_upsample (bool): in inference, run each decoder upsampling (nearest x2, then a
            3x3 conv) as one stride-2 transposed convolution (:class:`Upsample`): 2.25x fewer
            multiply-adds in those convolutions, the same function up to float rounding. Defaults to True.
    """

    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 z_channels: int, n_embed: int, embed_dim: int, resolution: int = 256, in_channels: int = 3,
                 out_ch: int = 3, dropout: float = 0.0, double_z: bool = False,
                 checkpoint: Union[None, str, os.PathLike] = None, checkpoint_sha256: Optional[str] = None,
                 trunk_dtype: Union[None, str, torch.dtype] = None, chunk_size: Optional[int] = None,
                 channels_last: bool = True, compile_trunk: bool = False, subpixel_upsample: bool = True) -> None:
        super().__init__()
        if double_z:
            raise ValueError('double_z=True is the KL-autoencoder layout; a VQGAN needs double_z=False')
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f'chunk_size must be a positive int or None, got {chunk_size!r}')
        self.ch_mult = tuple(ch_mult)
        self.trunk_dtype_auto = isinstance(trunk_dtype, str) and trunk_dtype.lower() == 'auto'
        self.trunk_dtype = None if self.trunk_dtype_auto else _parse_trunk_dtype(trunk_dtype)
        self.chunk_size = chunk_size
        self.channels_last = bool(channels_last)
        self.compile_trunk = bool(compile_trunk)
        self._compiled: dict[str, Callable[[Tensor], Tensor]] = {}
        self._auto_dtypes: dict[tuple, Optional[torch.dtype]] = {}
        common = dict(ch=ch, ch_mult=self.ch_mult, num_res_blocks=num_res_blocks,
                      attn_resolutions=tuple(attn_resolutions), z_channels=z_channels,
                      resolution=resolution, dropout=dropout)
        self.encoder = Encoder(**common, in_channels=in_channels, double_z=double_z)
        self.decoder = Decoder(**common, out_ch=out_ch)
        for module in self.decoder.modules():
            if isinstance(module, Upsample):
                module.subpixel = bool(subpixel_upsample)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self._freeze()
        if checkpoint is not None:
            self.load_checkpoint(checkpoint, sha256=checkpoint_sha256)

    @classmethod
    def from_preset(cls, name: str, checkpoint: Union[None, str, os.PathLike] = 'default', **overrides) -> 'VQGAN':
        """Build a published configuration; ``checkpoint='default'`` loads the preset's URL, None = random init."""
        if name not in VQGAN_PRESETS:
            raise ValueError(f'Unknown VQGAN preset {name!r}; valid names: {", ".join(VQGAN_PRESETS)}')
        preset = VQGAN_PRESETS[name]
        if checkpoint == 'default':
            checkpoint = preset['checkpoint_url']
            if checkpoint is None:
                raise ValueError(f'VQGAN preset {name!r} has no automatic download; pass checkpoint=<local path>. '
                                 + preset['notes'])
            overrides.setdefault('checkpoint_sha256', preset.get('checkpoint_sha256'))
        return cls(**{**preset['config'], **overrides}, checkpoint=checkpoint)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> 'VQGAN':
        """The VQGAN is never trained: it stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    def load_checkpoint(self, path_or_url: Union[str, os.PathLike], sha256: Optional[str] = None) -> None:
        """Load weights, checking keys and shapes; raises :class:`VQGANCheckpointError` on any mismatch."""
        state = load_vqgan_state_dict(path_or_url, sha256=sha256)
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f'{k} (checkpoint {list(state[k].shape)}, model {list(own[k].shape)})'
                      for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or mismatched:
            raise VQGANCheckpointError(_mismatch_message(path_or_url, missing, unexpected, mismatched))
        if any(t.is_meta for t in own.values()):  # built on the meta device: take the loaded tensors
            self.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, assign=True)
        else:
            self.load_state_dict(state)
        self._freeze()

    # ------------------------------------------------------------------ inference
    def resolved_trunk_dtype(self, device: Union[str, torch.device]) -> Optional[torch.dtype]:
        """The trunk dtype used on ``device`` (None: float32); resolves ``trunk_dtype='auto'``."""
        if self.trunk_dtype_auto:
            device = torch.device(device)
            key = (device.type, device.index)
            if key not in self._auto_dtypes:
                self._auto_dtypes[key] = torch.bfloat16 if native_bf16(device)[0] else None
            return self._auto_dtypes[key]
        return self.trunk_dtype

    def _autocast(self, device: torch.device, trunk: bool) -> torch.autocast:
        dtype = self.resolved_trunk_dtype(device) if trunk else None
        if dtype is not None:
            return torch.autocast(device.type, dtype=dtype)
        return torch.autocast(device.type, enabled=False)

    def _trunk(self, name: str) -> Callable[[Tensor], Tensor]:
        """The encoder or decoder, through ``torch.compile`` when ``compile_trunk`` is set (built once)."""
        module = getattr(self, name)
        if not self.compile_trunk:
            return module
        if name not in self._compiled:
            self._compiled[name] = torch.compile(module, dynamic=False)
        return self._compiled[name]

    def _memory_format(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _in_chunks(self, fn: Callable[[Tensor], Tensor], batch: Tensor) -> Tensor:
        if self.chunk_size is None or batch.shape[0] <= self.chunk_size:
            return fn(batch)
        return torch.cat([fn(chunk) for chunk in batch.split(self.chunk_size)])

    def _encode(self, images: Tensor) -> Tensor:
        x = model_input(images, self.downsample_factor)
        with self._autocast(x.device, trunk=True):
            h = self._trunk('encoder')(self._memory_format(x))
        with self._autocast(x.device, trunk=False):
            return self.quantize(self.quant_conv(h.float()))  # channels-last: the (N, D) rows are a view

    def _decode(self, indices: Tensor, size: Optional[Sequence[int]]) -> Tensor:
        with self._autocast(indices.device, trunk=False):
            z = self.post_quant_conv(self.quantize.lookup(indices, channels_last=self.channels_last))
        with self._autocast(indices.device, trunk=True):
            y = self._trunk('decoder')(self._memory_format(z))
        y = y.float().clamp(-1, 1).add_(1).div_(2)  # = (clamp + 1) / 2, without two more buffers
        if size is not None:
            height, width = int(size[0]), int(size[1])
            if height > y.shape[-2] or width > y.shape[-1]:
                raise ValueError(f'size {(height, width)} exceeds the decoded size {tuple(y.shape[-2:])}')
            y = y[..., :height, :width]
        return y.contiguous()

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Code indices, int64 (B, ceil(H/f), ceil(W/f)), for RGB images (B, 3, H, W) in [0, 1].

        H and W are padded up to a multiple of the downsample factor f by replicating the
        last row/column (bottom/right) before encoding.
        """
        return self._in_chunks(self._encode, images)

    @torch.no_grad()
    def decode(self, indices: Tensor, size: Optional[Sequence[int]] = None) -> Tensor:
        """Float32 images in [0, 1], (B, 3, h*f, w*f), for code indices (B, h, w); cropped to ``size`` (H, W)."""
        return self._in_chunks(lambda chunk: self._decode(chunk, size), indices)

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """``decode(encode(images), size=(H, W))``: float32 images in [0, 1] of the input's shape.

        Inputs are padded like :meth:`encode` (replicate, bottom/right) and the output is
        cropped back to H x W.
        """
        size = images.shape[-2:]
        return self._in_chunks(lambda chunk: self._decode(self._encode(chunk), size), images)

    def forward(self, images: Tensor) -> Tensor:
        return self.reconstruct(images)


def _mismatch_message(source: Union[str, os.PathLike], missing: list[str], unexpected: list[str],
                      mismatched: list[str], limit: int = 10) -> str:
    lines = [f'VQGAN checkpoint {source} does not match the model:']
    for title, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', mismatched)):
        if items:
            more = f', ... and {len(items) - limit} more' if len(items) > limit else ''
            lines.append(f'  {len(items)} {title}: {", ".join(items[:limit])}{more}')
    if mismatched:
        lines.append(f'  Shape mismatches usually mean a wrong preset/config for this checkpoint '
                     f'(presets: {", ".join(VQGAN_PRESETS)}).')
    return '\n'.join(lines)
