"""Run the published VQGAN code itself (taming-transformers, easyrobust) on the weights of a :class:`VQGAN`.

The benchmark's real baseline (``tools/analysis_tools/benchmark_dat.py --reference-code FILE ...``):
the user points to the files of the code that DAT users run today, for example easyrobust's
``easyrobust/third_party/vqgan.py`` (self-contained) or taming-transformers'
``taming/models/vqgan.py`` (which imports ``taming.modules.diffusionmodules.model`` and
``taming.modules.vqvae.quantize``). mmdat never ships that code; it is imported from where it lies.

* A file that imports its own top-level package (taming's ``from taming.modules ... import``) is
  imported as a module of that package, with the package's parent directory on ``sys.path`` during
  the import; any other file is imported on its own.
* Import-time dependencies that inference never uses are replaced, during the import only, by
  minimal stand-ins (:data:`STAND_INS`): ``pytorch_lightning`` / ``lightning`` when not installed
  (``LightningModule`` = ``torch.nn.Module``, the base class of taming's ``VQModel``) and, always,
  taming's training script ``main`` (``instantiate_from_config``, which raises if called; the real
  one imports omegaconf, Lightning and torchvision). They are logged and removed from
  ``sys.modules`` again. Any other missing module (e.g. ``einops``, imported by both codes) is a
  :class:`ReferenceCodeError` that names it.
* The model: the file's ``VQModel`` when it can be built from ``(ddconfig, n_embed, embed_dim)``
  alone (easyrobust), run through its ``forward``; otherwise (taming's ``VQModel`` also needs a
  training loss) the file's ``Encoder``, ``Decoder`` and ``VectorQuantizer2`` / ``VectorQuantizer``
  composed exactly as taming's ``VQModel.encode`` / ``decode`` compose them. Our ``state_dict``
  (taming's key names) is loaded strictly, and images go in and out as easyrobust's
  ``reconstruct_with_vqgan`` does (``2x - 1``, clamp, ``(y + 1) / 2``).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import types
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from torch import Tensor

from .vqgan import VQGAN, model_input, nearest_code_indices

__all__ = ['ReferenceCodeVQGAN', 'ReferenceCodeError', 'load_reference_modules', 'STAND_INS']


class ReferenceCodeError(RuntimeError):
    """The reference code cannot be imported or does not provide a taming-layout VQGAN."""


def _lightning_stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.LightningModule = nn.Module

    def missing(attr: str):
        raise AttributeError(f'{name} is a stand-in of mmdat\'s reference-code benchmark that only provides '
                             f'LightningModule (= torch.nn.Module); the reference code uses {name}.{attr} '
                             f'at import time: install {name} to benchmark it')

    module.__getattr__ = missing
    return module


def _taming_main_stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def instantiate_from_config(config):
        raise ReferenceCodeError('taming\'s main.instantiate_from_config is a stand-in here (the benchmark '
                                 'builds the VQGAN from its Encoder, Decoder and quantiser, without a loss)')

    module.instantiate_from_config = instantiate_from_config
    return module


#: import-time dependencies of the reference codes that inference never uses, and their stand-ins
STAND_INS: dict[str, Callable[[str], types.ModuleType]] = {
    'pytorch_lightning': _lightning_stand_in,
    'lightning': _lightning_stand_in,
    'main': _taming_main_stand_in,
}
#: stood in even when importable (taming's ``main.py`` is its training script)
ALWAYS_STOOD_IN = ('main',)


def _top_level_imports(source: str) -> set[str]:
    return set(re.findall(r'^\s*(?:from|import)\s+([A-Za-z_]\w*)', source, flags=re.MULTILINE))


def _package_root(path: Path) -> Optional[tuple[Path, str]]:
    """(directory to put on sys.path, dotted module name) when ``path`` imports its own top package."""
    source = path.read_text(encoding='utf-8', errors='replace')
    imported = set(re.findall(r'^\s*(?:from|import)\s+([A-Za-z_]\w*)\.', source, flags=re.MULTILINE))
    for ancestor in path.parents:
        if ancestor.name in imported:
            parts = path.relative_to(ancestor.parent).with_suffix('').parts
            return ancestor.parent, '.'.join(parts)
    return None


def _stand_in(name: str, stand_ins: list[str]) -> None:
    stand_ins.append(name)
    sys.modules[name] = STAND_INS[name](name)


def _import_file(path: Path, stand_ins: list[str]):
    root = _package_root(path)
    for name in _top_level_imports(path.read_text(encoding='utf-8', errors='replace')) & set(ALWAYS_STOOD_IN):
        if name not in stand_ins:
            _stand_in(name, stand_ins)
    before = set(sys.modules)
    added_path = False
    try:
        if root is not None:
            loaded = sys.modules.get(root[1])
            if loaded is not None and Path(getattr(loaded, '__file__', '') or '').resolve() != path:
                top = root[1].split('.')[0]  # another checkout of the same package: import this one afresh
                for name in [n for n in sys.modules if n == top or n.startswith(top + '.')]:
                    del sys.modules[name]
            if str(root[0]) not in sys.path:
                sys.path.insert(0, str(root[0]))
                added_path = True
            return importlib.import_module(root[1])
        name = '_mmdat_reference_code_' + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    except ModuleNotFoundError as error:
        for name in set(sys.modules) - before:  # a half-imported package must not stay behind
            if name not in STAND_INS:
                del sys.modules[name]
        missing = (error.name or '').split('.')[0]
        if missing in STAND_INS and missing not in stand_ins:
            _stand_in(missing, stand_ins)
            return _import_file(path, stand_ins)
        raise ReferenceCodeError(f'reference code {path} imports {error.name!r}, which is not installed in this '
                                 f'environment; install it to benchmark this code (easyrobust\'s and '
                                 f'taming\'s VQGAN code need einops)') from error
    finally:
        if added_path:
            sys.path.remove(str(root[0]))


def load_reference_modules(paths: Sequence[Union[str, os.PathLike]]) -> tuple[list[types.ModuleType], list[str]]:
    """Import the reference code files; returns the modules and the names of the stand-ins used."""
    if not paths:
        raise ReferenceCodeError('no reference code files given')
    modules, stand_ins = [], []
    try:
        for raw in paths:
            path = Path(raw).expanduser().resolve()
            if not path.is_file() or path.suffix != '.py':
                raise ReferenceCodeError(f'reference code {raw} is not a Python file')
            with contextlib.redirect_stdout(sys.stderr):  # keep the tool's stdout for its tables
                modules.append(_import_file(path, stand_ins))
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    for name in stand_ins:
        print_log(f'reference code: a minimal stand-in module {name!r} (mmdat.models.vqgan_reference_code.STAND_INS) '
                  f'was used while importing it', logger='current', level=logging.WARNING)
    return modules, stand_ins


def _find(modules: Sequence[types.ModuleType], *names: str):
    for name in names:
        for module in modules:
            obj = getattr(module, name, None)
            if inspect.isclass(obj):
                return obj
    return None


def _needs_only(cls: type, available: set[str]) -> bool:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    required = {p.name for p in params if p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    return required <= available


class _ComposedVQModel(nn.Module):
    """The reference's parts in taming's ``VQModel`` layout and order: encode -> quant_conv -> quantize,
    post_quant_conv -> decode (what taming's ``VQModel.forward`` runs, without its training loss)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, quantize: nn.Module, z_channels: int,
                 embed_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.quantize = quantize
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def encode(self, x: Tensor):
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, quant: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(quant))

    def forward(self, x: Tensor):
        quant = self.encode(x)
        return self.decode(quant[0] if isinstance(quant, tuple) else quant)


class ReferenceCodeVQGAN(nn.Module):
    """The published VQGAN code at ``paths``, loaded with the weights of ``vqgan``.

    Args:
        paths (Sequence[str]): the reference code's Python files (see the module docstring).
        vqgan (VQGAN): the model whose ``state_dict`` is loaded (strictly: every key must match).
        config (dict): its ``ddconfig`` keywords plus ``n_embed`` and ``embed_dim`` (a
            :data:`~mmdat.models.vqgan.VQGAN_PRESETS` ``config``).

    ``reconstruct`` is the timed call; ``encode`` returns the reference's own code indices (read
    back from its quantised latents, which are rows of its codebook). ``description`` says what ran.
    """

    def __init__(self, paths: Sequence[Union[str, os.PathLike]], vqgan: VQGAN, config: dict) -> None:
        super().__init__()
        if not isinstance(vqgan, VQGAN):
            raise TypeError(f'ReferenceCodeVQGAN needs an mmdat VQGAN, got {type(vqgan).__name__}')
        modules, self.stand_ins = load_reference_modules(paths)
        self.paths = [str(Path(p).expanduser().resolve()) for p in paths]
        self.downsample_factor = vqgan.downsample_factor
        self.chunk_size = vqgan.chunk_size
        ddconfig = dict(double_z=False, z_channels=config['z_channels'], resolution=config.get('resolution', 256),
                        in_channels=config.get('in_channels', 3), out_ch=config.get('out_ch', 3), ch=config['ch'],
                        ch_mult=list(config['ch_mult']), num_res_blocks=config['num_res_blocks'],
                        attn_resolutions=list(config['attn_resolutions']), dropout=config.get('dropout', 0.0))
        n_embed, embed_dim = config['n_embed'], config['embed_dim']
        vq_model = _find(modules, 'VQModel')
        with contextlib.redirect_stdout(sys.stderr):  # taming's constructors print
            if vq_model is not None and _needs_only(vq_model, {'ddconfig', 'n_embed', 'embed_dim'}):
                self.model = vq_model(ddconfig=ddconfig, n_embed=n_embed, embed_dim=embed_dim)
                how = f'{vq_model.__name__}.forward'
            else:
                parts = {'Encoder': _find(modules, 'Encoder'), 'Decoder': _find(modules, 'Decoder'),
                         'quantiser': _find(modules, 'VectorQuantizer2', 'VectorQuantizer')}
                absent = [name for name, cls in parts.items() if cls is None]
                if absent:
                    raise ReferenceCodeError(f'reference code {self.paths} defines no usable VQModel and no '
                                             f'{", ".join(absent)} class (taming layout expected)')
                self.model = _ComposedVQModel(parts['Encoder'](**ddconfig), parts['Decoder'](**ddconfig),
                                              parts['quantiser'](n_embed, embed_dim, beta=0.25),
                                              ddconfig['z_channels'], embed_dim)
                how = (f'{parts["Encoder"].__name__}, {parts["Decoder"].__name__} and '
                       f'{parts["quantiser"].__name__} composed as taming\'s VQModel.encode/decode')
        try:
            self.model.load_state_dict(vqgan.state_dict(), strict=True)
        except RuntimeError as error:
            raise ReferenceCodeError(f'the weights do not fit the reference code {self.paths}: {error}') from error
        self.model.requires_grad_(False).eval()
        self.model.to(next(vqgan.parameters()).device)
        stand_ins = f'; stand-ins for {", ".join(self.stand_ins)} at import' if self.stand_ins else ''
        self.description = f'{" + ".join(self.paths)} ({how}{stand_ins})'

    def train(self, mode: bool = True) -> 'ReferenceCodeVQGAN':
        """Frozen: stays in eval mode."""
        return super().train(False)

    def _in_chunks(self, fn: Callable[[Tensor], Tensor], batch: Tensor) -> Tensor:
        if self.chunk_size is None or batch.shape[0] <= self.chunk_size:
            return fn(batch)
        return torch.cat([fn(part) for part in batch.split(self.chunk_size)])

    def _reconstruct(self, images: Tensor) -> Tensor:
        with torch.autocast(images.device.type, enabled=False):
            y = self.model(model_input(images, self.downsample_factor))
        y = y[0] if isinstance(y, tuple) else y  # taming's VQModel.forward returns (dec, diff)
        y = (torch.clamp(y, -1.0, 1.0) + 1.0) / 2.0
        return y[..., :images.shape[-2], :images.shape[-1]].contiguous()

    def _encode(self, images: Tensor) -> Tensor:
        with torch.autocast(images.device.type, enabled=False):
            out = self.model.encode(model_input(images, self.downsample_factor))
        quant = out[0] if isinstance(out, tuple) else out
        b, d, h, w = quant.shape
        info = out[-1] if isinstance(out, tuple) else None  # taming: (perplexity, one-hot, indices)
        if isinstance(info, tuple) and isinstance(info[-1], Tensor) and not info[-1].is_floating_point():
            return info[-1].reshape(b, h, w)
        rows = quant.permute(0, 2, 3, 1).reshape(-1, d)  # easyrobust returns only z_q: rows of the codebook
        codebook = self.model.quantize.embedding.weight
        indices = nearest_code_indices(rows, codebook)
        inexact = (codebook[indices] != rows).any(1).nonzero().flatten()
        for i in inexact.tolist():  # rounding between near-identical codes: find the exact row
            match = (codebook == rows[i]).all(1).nonzero()
            if len(match) == 0:
                raise ReferenceCodeError('the reference quantiser returned a latent that is no codebook row')
            indices[i] = match[0, 0]
        return indices.view(b, h, w)

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """The reference code's reconstruction of RGB images in [0, 1] (float32, the input's shape)."""
        return self._in_chunks(self._reconstruct, images)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """The reference code's code indices (B, ceil(H/f), ceil(W/f)) for RGB images in [0, 1]."""
        return self._in_chunks(self._encode, images)

    def forward(self, images: Tensor) -> Tensor:
        return self.reconstruct(images)
