"""Loading taming-transformers / latent-diffusion VQGAN checkpoints directly and safely.

Published VQGANs are PyTorch Lightning checkpoints (``.ckpt``, or ``model.ckpt`` inside a
latent-diffusion ``.zip``) that pickle Lightning's callbacks, numpy scalars and optimizer states
beside the weights. They are read with mmdat's restricted unpickler
(:func:`mmdat.utils.checkpoint_safety.load_checkpoint_file`): every global outside torch's tensor
rebuilders and the checked numpy/mmengine objects becomes an inert stand-in (nothing is imported,
Lightning need not be installed), and only the tensors of the state dict are kept. Downloads
(``http(s)://``, ``file://``) happen once per machine (local rank 0), to a temporary name, verified,
then renamed; cached downloads and extractions are keyed by URL / archive content, and a file whose
load is refused is removed from the cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log

from mmdat.utils.checkpoint_safety import CheckpointSecurityError, load_checkpoint_file

__all__ = ['VQGANCheckpointError', 'load_vqgan_state_dict', 'resolve_checkpoint_path', 'resolved_checkpoint',
           'download_cache_path',
           'extract_state_dict', 'is_checkpoint_url', 'max_extract_bytes', 'CACHE_DIR', 'URL_SCHEMES']

CACHE_DIR = Path(os.environ.get('MMDAT_CACHE_DIR', '~/.cache/mmdat/checkpoints')).expanduser()
URL_SCHEMES = ('http://', 'https://', 'file://')
_DEFAULT_MAX_EXTRACT_BYTES = 8 << 30  # published VQGAN checkpoints are 1 GB or less


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


def download_cache_path(url: str) -> Path:
    """Where :func:`resolve_checkpoint_path` caches ``url``: one entry per URL (a digest of it,
    then the file name), so files of the same name at different URLs never share an entry."""
    name = Path(urlparse(url).path).name or 'vqgan.ckpt'
    return CACHE_DIR / f'{_digest(url.encode())}-{name}'


def _download(url: str, sha256: Optional[str] = None) -> Path:
    """Download ``url`` once into :data:`CACHE_DIR` and return the local file.

    In a multi-process run only local rank 0 (``LOCAL_RANK``) downloads; the other processes of the
    machine wait for the verified file, at most ``MMDAT_DOWNLOAD_TIMEOUT`` seconds (default 3600).
    """
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    target = download_cache_path(url)
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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def max_extract_bytes() -> int:
    """Largest ``model.ckpt`` extracted from an archive (``MMDAT_MAX_EXTRACT_BYTES``, default 8 GiB)."""
    return int(os.environ.get('MMDAT_MAX_EXTRACT_BYTES', _DEFAULT_MAX_EXTRACT_BYTES))


def _extract_model_ckpt(archive: Path) -> Path:
    """Extract ``model.ckpt`` from a latent-diffusion style zip (e.g. ``vq-f8.zip``) into the cache.

    The cached name holds the archive's SHA-256, so archives of the same name in different folders
    (or a replaced archive) never share an extraction; the member may be at most
    :func:`max_extract_bytes` long, counted while copying.
    """
    target = CACHE_DIR / f'{_sha256(archive)[:16]}-{archive.stem}-model.ckpt'
    if target.is_file():
        return target
    limit = max_extract_bytes()
    tmp = target.with_name(f'{target.name}.{os.getpid()}.partial')
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if Path(m.filename).name == 'model.ckpt' and not m.is_dir()]
            if len(members) != 1:
                raise VQGANCheckpointError(
                    f'{archive}: expected one model.ckpt inside the zip archive, found {len(members)}.')
            if members[0].file_size > limit:
                raise VQGANCheckpointError(
                    f'{archive}: {members[0].filename} is {members[0].file_size} bytes, more than the '
                    f'{limit} that mmdat extracts (MMDAT_MAX_EXTRACT_BYTES).')
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            copied = 0
            with zf.open(members[0]) as src, open(tmp, 'wb') as dst:
                for block in iter(lambda: src.read(1 << 20), b''):
                    copied += len(block)
                    if copied > limit:
                        raise VQGANCheckpointError(
                            f'{archive}: {members[0].filename} extracts to more than {limit} bytes '
                            '(MMDAT_MAX_EXTRACT_BYTES).')
                    dst.write(block)
        tmp.replace(target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
        raise VQGANCheckpointError(f'{archive}: not a valid zip archive ({type(err).__name__}: {err}).') from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_checkpoint_path(path_or_url: str | os.PathLike, sha256: Optional[str] = None) -> Path:
    """Local checkpoint file for a path or URL (``http(s)://``, ``file://``; downloaded once, verified
    against ``sha256`` when given); ``.zip`` archives yield their ``model.ckpt``."""
    return _resolve(path_or_url, sha256)[0]


def _resolve(path_or_url: str | os.PathLike, sha256: Optional[str]) -> tuple[Path, list[Path]]:
    """The local checkpoint file, and the cache files it came from (removed if its load is refused)."""
    cached: list[Path] = []
    if is_checkpoint_url(path_or_url):
        path = _download(str(path_or_url), sha256)
        cached.append(path)
    else:
        path = Path(path_or_url).expanduser()
    if not path.is_file():
        raise VQGANCheckpointError(f'VQGAN checkpoint file not found: {path}')
    if path.suffix == '.zip':
        try:
            path = _extract_model_ckpt(path)
        except VQGANCheckpointError:
            _discard(cached)
            raise
        cached.append(path)
    return path, cached


@contextlib.contextmanager
def resolved_checkpoint(path_or_url: str | os.PathLike, sha256: Optional[str] = None) -> Iterator[Path]:
    """The local file of a path or URL (see :func:`resolve_checkpoint_path`) for one load: the cache
    files it came from (download, extraction) are removed if the load inside is refused."""
    path, cached = _resolve(path_or_url, sha256)
    try:
        yield path
    except (CheckpointSecurityError, VQGANCheckpointError):
        _discard(cached)
        raise


def _discard(cached: list[Path]) -> None:
    for path in cached:
        path.unlink(missing_ok=True)


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
    state = {k: v for k, v in state.items() if type(k) is str and type(v) in (torch.Tensor, torch.nn.Parameter)
             and v.layout == torch.strided and not v.is_meta and not v.is_quantized}
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
    """Load a VQGAN state dict on CPU from a local file, a URL (downloaded once, cached) or a zip.

    Lightning checkpoints load directly, whatever else they pickle: globals outside torch's tensor
    rebuilders and mmengine's/numpy's checked objects become inert stand-ins and are dropped with
    everything else that is not a state-dict tensor. Objects the restricted unpickler refuses
    (forged numpy dtypes, gadgets through torch's rebuilders, ...) raise
    :class:`VQGANCheckpointError` naming the file; a refused file is removed from the cache.
    """
    with resolved_checkpoint(path_or_url, sha256) as path:
        try:
            obj = load_checkpoint_file(path, map_location='cpu')
        except CheckpointSecurityError as err:
            raise VQGANCheckpointError(f'VQGAN checkpoint: {err}') from err
        return extract_state_dict(obj, path)
