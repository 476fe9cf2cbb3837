"""Installing a newly trained tiny VQGAN as the shipped asset: an explicit step, never a side effect.

``python tools/train.py configs/vqgan/tiny-shapes.py`` exports its VQGAN into the work dir only.
:func:`install_tiny_vqgan` (command line: ``tools/model_converters/install_tiny_vqgan.py``) then
replaces ``mmdat/assets/tiny_vqgan_shapes.pth`` with it, after measuring both files on the same
held-out images, and refuses a model whose held-out PSNR is lower than the installed one's
unless ``force`` is given.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from . import TINY_VQGAN_CHECKPOINT, TINY_VQGAN_CONFIG

__all__ = ['HELD_OUT_IMAGES', 'InstallResult', 'held_out_psnr', 'install_tiny_vqgan']

#: the held-out set of configs/vqgan/tiny-shapes.py: ShapeImageDataset(num_images=128, size=32, split='val')
HELD_OUT_IMAGES = dict(num=128, size=32, split='val', seed=0)

PathLike = Union[str, os.PathLike]


@torch.no_grad()
def held_out_psnr(checkpoint: PathLike, num_images: int = HELD_OUT_IMAGES['num'], batch_size: int = 32) -> float:
    """Mean per-image PSNR (dB) of a tiny-shapes VQGAN on the first ``num_images`` held-out shape images.

    With the default 128 images, the same number as ``vqgan/psnr`` of ``tools/test.py
    configs/vqgan/tiny-shapes.py`` (the images are never trained on). The file must hold the architecture of
    :data:`~mmdat.assets.TINY_VQGAN_CONFIG`; loading is weights-only.
    """
    from mmdat.datasets import sample_shape_images
    from mmdat.models import VQGAN
    vqgan = VQGAN(**TINY_VQGAN_CONFIG, checkpoint=str(checkpoint))
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    images, _ = sample_shape_images(int(num_images), HELD_OUT_IMAGES['size'],
                                    split=HELD_OUT_IMAGES['split'], seed=HELD_OUT_IMAGES['seed'])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    psnrs = []
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        mse = (vqgan.reconstruct(batch) - batch).square().flatten(1).mean(1)
        psnrs.append(-10 * torch.log10(mse.clamp_min(1e-10)))
    return float(torch.cat(psnrs).mean())


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install_tiny_vqgan` did: ``installed`` False means the destination is unchanged."""

    installed: bool
    candidate_psnr: float
    current_psnr: Optional[float]  # None: no loadable file at the destination
    destination: Path
    message: str


def install_tiny_vqgan(candidate: PathLike, force: bool = False, destination: PathLike = TINY_VQGAN_CHECKPOINT,
                       num_images: int = HELD_OUT_IMAGES['num']) -> InstallResult:
    """Copy a VQGAN exported by ``configs/vqgan/tiny-shapes.py`` over the shipped asset.

    Both the candidate and the file it would replace are measured with :func:`held_out_psnr`. A
    candidate with a lower PSNR is refused (nothing is written) unless ``force``. The copy is
    atomic (a temporary file in the destination folder, then a rename).

    Args:
        candidate: the exported file, e.g. ``work_dirs/tiny-shapes/tiny_vqgan_shapes.pth``.
        force: install even a worse model.
        destination: the file to replace. Defaults to the shipped asset.
        num_images: held-out images both files are measured on. Defaults to the config's 128.

    Raises:
        FileNotFoundError: the candidate does not exist.
        ValueError, RuntimeError: the candidate is not a loadable tiny-shapes VQGAN.
    """
    candidate, destination = Path(candidate), Path(destination)
    if not candidate.is_file():
        raise FileNotFoundError(f'{candidate} not found: train with `python tools/train.py '
                                'configs/vqgan/tiny-shapes.py` first (it exports into its work dir)')
    new = held_out_psnr(candidate, num_images)
    try:
        old = held_out_psnr(destination, num_images) if destination.is_file() else None
    except Exception as error:  # noqa: BLE001  (an unreadable asset is replaced, and the message says so)
        old, broken = None, f' (the current file does not load: {error})'
    else:
        broken = '' if old is not None else ' (no current file)'
    numbers = f'held-out PSNR {new:.2f} dB, installed: ' + (f'{old:.2f} dB' if old is not None else 'none')
    if old is not None and new < old and not force:
        return InstallResult(False, new, old, destination,
                             f'refused: {candidate} is worse than {destination} ({numbers}); '
                             'pass force=True (--force) to install it anyway')
    if candidate.resolve() != destination.resolve():
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f'.{destination.name}.')
        os.close(fd)
        try:
            shutil.copyfile(candidate, tmp)
            os.replace(tmp, destination)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    worse = ' (worse, forced)' if old is not None and new < old else ''
    return InstallResult(True, new, old, destination,
                         f'installed {candidate} as {destination}{worse}{broken} ({numbers})')
