"""Safe loading of taming-transformers / latent-diffusion VQGAN checkpoints.

Only ``torch.load(..., weights_only=True)`` is used here. Lightning checkpoints that
carry pickled Python objects (hyper-parameters, callbacks, ...) are refused with a
:class:`VQGANCheckpointError` that points to the one-off converter
``tools/model_converters/vqgan_to_state_dict.py``.
"""
from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import torch

__all__ = ['VQGANCheckpointError', 'load_vqgan_state_dict', 'resolve_checkpoint_path',
           'extract_state_dict', 'CACHE_DIR', 'CONVERTER']

CACHE_DIR = Path('~/.cache/mmdat/checkpoints').expanduser()
CONVERTER = 'tools/model_converters/vqgan_to_state_dict.py'
_ZIP_MAGIC = b'PK\x03\x04'  # torch.save's default format is a zip archive
_PICKLE_MAGIC = b'\x80'  # legacy torch.save format starts with a pickle protocol opcode


class VQGANCheckpointError(RuntimeError):
    """A VQGAN checkpoint is missing, unreadable, unsafe to unpickle or does not fit the model."""


def _is_url(path_or_url: str | os.PathLike) -> bool:
    return str(path_or_url).startswith(('http://', 'https://'))


def _download(url: str) -> Path:
    """Download ``url`` once into :data:`CACHE_DIR` and return the local file."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    name = Path(urlparse(url).path).name or 'vqgan.ckpt'
    target = CACHE_DIR / name
    if not target.is_file():
        try:
            torch.hub.download_url_to_file(url, str(target), progress=True)
        except Exception as err:  # network errors come in many types
            raise VQGANCheckpointError(
                f'Could not download the VQGAN checkpoint {url} to {target}: {err}. '
                'Download it by hand and pass the local path instead.') from err
    return target


def _extract_model_ckpt(archive: Path) -> Path:
    """Extract ``model.ckpt`` from a latent-diffusion style zip (e.g. ``vq-f8.zip``)."""
    target = CACHE_DIR / f'{archive.stem}.ckpt'
    if target.is_file():
        return target
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if Path(m).name == 'model.ckpt']
            if not members:
                raise VQGANCheckpointError(f'{archive}: zip archive has no model.ckpt inside.')
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix('.ckpt.partial')
            with zf.open(members[0]) as src, open(tmp, 'wb') as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
    except zipfile.BadZipFile as err:
        raise VQGANCheckpointError(f'{archive}: not a valid zip archive ({err}).') from err
    return target


def resolve_checkpoint_path(path_or_url: str | os.PathLike) -> Path:
    """Local checkpoint file for a path or http(s) URL; ``.zip`` archives yield their ``model.ckpt``."""
    path = _download(str(path_or_url)) if _is_url(path_or_url) else Path(path_or_url).expanduser()
    if not path.is_file():
        raise VQGANCheckpointError(f'VQGAN checkpoint file not found: {path}')
    if path.suffix == '.zip':
        path = _extract_model_ckpt(path)
    return path


def extract_state_dict(obj: object, source: str | os.PathLike = '<checkpoint>') -> dict[str, torch.Tensor]:
    """The VQGAN tensors of a loaded checkpoint object.

    Accepts a Lightning-style dict (``obj['state_dict']``) or a plain state dict, keeps only
    tensors, strips a ``model.``/``module.`` prefix shared by every key and drops the
    training-only ``loss.*`` entries (discriminator, LPIPS).
    """
    if not isinstance(obj, dict):
        raise VQGANCheckpointError(f'{source}: expected a dict, got {type(obj).__name__}.')
    state = obj.get('state_dict', obj)
    if not isinstance(state, dict):
        raise VQGANCheckpointError(f"{source}: 'state_dict' is a {type(state).__name__}, not a dict.")
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    state = {k: v for k, v in state.items() if not k.startswith('loss.')}
    for prefix in ('model.', 'module.'):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith('loss.')}
    if not state:
        raise VQGANCheckpointError(f'{source}: no VQGAN weights (tensors) found in the checkpoint.')
    return state


def _short_reason(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or ['']
    detail = [ln for ln in lines if 'WeightsUnpickler error' in ln]
    return (detail or lines)[0][:300]


def load_vqgan_state_dict(path_or_url: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a VQGAN state dict on CPU from a local file or an http(s) URL (cached).

    Uses ``torch.load(weights_only=True)`` only; raises :class:`VQGANCheckpointError`
    when the file is missing, is not a PyTorch checkpoint, or holds pickled Python
    objects (convert such a trusted file once with :data:`CONVERTER`).
    """
    path = resolve_checkpoint_path(path_or_url)
    with open(path, 'rb') as f:
        head = f.read(4)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC)):
        raise VQGANCheckpointError(f'{path}: not a PyTorch checkpoint (unrecognised file header {head!r}).')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        raise VQGANCheckpointError(
            f'{path}: the checkpoint contains pickled Python objects (e.g. a full Lightning '
            'training state), which mmdat does not load for safety (torch.load weights_only=True). '
            f'If you trust the file, convert it once with\n    python {CONVERTER} {path} OUT.pth\n'
            f'and use OUT.pth as the checkpoint. Loader message: {_short_reason(err)}'
        ) from err
    except Exception as err:
        raise VQGANCheckpointError(f'{path}: could not read the checkpoint ({type(err).__name__}: {err}).') from err
    return extract_state_dict(obj, path)
