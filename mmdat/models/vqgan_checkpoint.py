"""Safe loading of taming-transformers / latent-diffusion VQGAN checkpoints.

Only ``torch.load(..., weights_only=True)`` is used here, behind a static check of every global
the file references (torch's built-in weights-only set and mmengine's checkpoint objects only,
whatever the process allow-list holds). Lightning checkpoints that carry pickled Python objects
(hyper-parameters, callbacks, ...) are refused with a :class:`VQGANCheckpointError` that points to
the one-off converter ``tools/model_converters/vqgan_to_state_dict.py``. Downloads (``http(s)://``,
``file://``) happen once per machine (local rank 0), to a temporary name, verified, then renamed.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log

from mmdat.utils.checkpoint_safety import (CheckpointSecurityError, mmengine_checkpoint_objects,
                                           refused_global_names, unpickling_reason)

__all__ = ['VQGANCheckpointError', 'load_vqgan_state_dict', 'resolve_checkpoint_path',
           'extract_state_dict', 'is_checkpoint_url', 'CACHE_DIR', 'CONVERTER', 'URL_SCHEMES']

CACHE_DIR = Path(os.environ.get('MMDAT_CACHE_DIR', '~/.cache/mmdat/checkpoints')).expanduser()
CONVERTER = 'tools/model_converters/vqgan_to_state_dict.py'
URL_SCHEMES = ('http://', 'https://', 'file://')
_ZIP_MAGIC = b'PK\x03\x04'  # torch.save's default format is a zip archive
_PICKLE_MAGIC = b'\x80'  # legacy torch.save format starts with a pickle protocol opcode


class VQGANCheckpointError(RuntimeError):
    """A VQGAN checkpoint is missing, unreadable, unsafe to unpickle or does not fit the model."""


def is_checkpoint_url(path_or_url: object) -> bool:
    """Whether a checkpoint setting is a URL that :func:`resolve_checkpoint_path` downloads."""
    return isinstance(path_or_url, (str, os.PathLike)) and str(path_or_url).startswith(URL_SCHEMES)


def _local_rank() -> int:
    return int(os.environ.get('LOCAL_RANK', '0'))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _fetch_verified(url: str, target: Path, sha256: Optional[str]) -> None:
    """Download ``url`` to a temporary name beside ``target``, verify it, then rename it atomically."""
    tmp = target.with_name(f'{target.name}.{os.getpid()}.partial')
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, 'wb') as out:
            expected = response.headers.get('Content-Length')
            shutil.copyfileobj(response, out, 1 << 20)
        size = tmp.stat().st_size
        if expected is not None and int(expected) != size:
            raise VQGANCheckpointError(f'{url}: download incomplete ({size} of {expected} bytes)')
        digest = _sha256(tmp) if sha256 is not None else None
        if digest is not None and digest != sha256.lower():
            raise VQGANCheckpointError(
                f'{url}: SHA-256 {digest} does not match the published {sha256}; '
                'the file is corrupt or not the published checkpoint')
        tmp.replace(target)
    except VQGANCheckpointError:
        raise
    except Exception as err:  # network errors come in many types
        raise VQGANCheckpointError(
            f'Could not download the VQGAN checkpoint {url} to {target}: {err}. '
            'Download it by hand and pass the local path instead.') from err
    finally:
        tmp.unlink(missing_ok=True)


def _download(url: str, sha256: Optional[str] = None) -> Path:
    """Download ``url`` once into :data:`CACHE_DIR` and return the local file.

    In a multi-process run only local rank 0 (``LOCAL_RANK``) downloads; the other processes of the
    machine wait for the verified file, at most ``MMDAT_DOWNLOAD_TIMEOUT`` seconds (default 3600).
    """
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    name = Path(urlparse(url).path).name or 'vqgan.ckpt'
    target = CACHE_DIR / name
    if target.is_file():
        if sha256 is not None and _sha256(target) != sha256.lower():
            raise VQGANCheckpointError(
                f'{target}: cached file does not match the SHA-256 published for {url}; delete it '
                'to download it again')
        return target
    if _local_rank() == 0:
        print_log(f'VQGAN: downloading {url} to {target}', logger='current')
        _fetch_verified(url, target, sha256)
        return target
    timeout = float(os.environ.get('MMDAT_DOWNLOAD_TIMEOUT', 3600))
    deadline = time.monotonic() + timeout
    while not target.is_file():
        if time.monotonic() > deadline:
            raise VQGANCheckpointError(
                f'local rank {_local_rank()} waited {timeout:.0f} s for local rank 0 to download {url} '
                f'to {target}; check rank 0\'s log for a download error, or download the file by '
                'hand and pass its local path (MMDAT_DOWNLOAD_TIMEOUT sets the wait)')
        time.sleep(0.5)
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
            tmp = target.with_name(f'{target.name}.{os.getpid()}.partial')
            with zf.open(members[0]) as src, open(tmp, 'wb') as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
    except zipfile.BadZipFile as err:
        raise VQGANCheckpointError(f'{archive}: not a valid zip archive ({err}).') from err
    return target


def resolve_checkpoint_path(path_or_url: str | os.PathLike, sha256: Optional[str] = None) -> Path:
    """Local checkpoint file for a path or URL (``http(s)://``, ``file://``; downloaded once, verified
    against ``sha256`` when given); ``.zip`` archives yield their ``model.ckpt``."""
    path = _download(str(path_or_url), sha256) if is_checkpoint_url(path_or_url) else Path(path_or_url).expanduser()
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


def load_vqgan_state_dict(path_or_url: str | os.PathLike,
                          sha256: Optional[str] = None) -> dict[str, torch.Tensor]:
    """Load a VQGAN state dict on CPU from a local file or a URL (downloaded once, cached).

    Weights-only, with a policy of its own whatever the process allow-list holds: the file may
    reference only torch's built-in weights-only globals and the objects mmengine writes into its
    checkpoints (so checkpoints of mmdat's VQGAN trainer load too). Anything else (pickled Python
    objects of a Lightning training state, crafted gadgets) raises :class:`VQGANCheckpointError`
    naming the file; convert a *trusted* file once with :data:`CONVERTER`.
    """
    path = resolve_checkpoint_path(path_or_url, sha256)
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise VQGANCheckpointError(
            f'{path}: legacy (torch < 1.6) checkpoint format, which mmdat does not read. If you trust '
            f'the file, convert it once with\n    python {CONVERTER} {path} OUT.pth')
    if not head.startswith(_ZIP_MAGIC):
        raise VQGANCheckpointError(f'{path}: not a PyTorch checkpoint (unrecognised file header {head!r}).')
    try:
        refused = refused_global_names(path)
    except CheckpointSecurityError as err:
        raise VQGANCheckpointError(f'{path}: {err}') from err
    if refused:
        raise VQGANCheckpointError(
            f'{path}: the checkpoint references Python objects that mmdat does not load for safety: '
            f'{", ".join(refused[:8])}{" ..." if len(refused) > 8 else ""}. A Lightning training state '
            f'holds such objects; if you trust the file, convert it once with\n'
            f'    python {CONVERTER} {path} OUT.pth\nand use OUT.pth as the checkpoint.')
    try:
        with mmengine_checkpoint_objects():
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, CheckpointSecurityError) as err:
        raise VQGANCheckpointError(
            f'{path}: refused to unpickle the checkpoint (weights-only loading): {unpickling_reason(err, limit=300)}. '
            f'If you trust the file, convert it once with\n    python {CONVERTER} {path} OUT.pth'
        ) from err
    except Exception as err:
        raise VQGANCheckpointError(f'{path}: could not read the checkpoint ({type(err).__name__}: {err}).') from err
    return extract_state_dict(obj, path)
