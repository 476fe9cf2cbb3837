"""ImageNet-C style corruptions as a data transform, reproducible image by image.

``imagecorruptions`` (the numpy-2 compatible ``imagecorruptions-imaug`` fork) draws its noise from
numpy's global generator, except ``glass_blur`` (numba's own generator) and ``impulse_noise``
(scikit-image's ``default_rng``), which only follow an explicit ``seed=``. :class:`ImageCorruption`
seeds all three from (seed, corruption, severity, dataset index) for every image and restores
numpy's global state afterwards, so an image is corrupted the same way in every run, whatever the
number of dataloader workers or GPUs, and the pipeline's other random transforms are unaffected.
"""
from __future__ import annotations

import zlib
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmdat.registry import TRANSFORMS

__all__ = ['CORRUPTIONS', 'BENCHMARK_CORRUPTIONS', 'CORRUPTION_GROUPS', 'ImageCorruption',
           'corrupt_image', 'resolve_corruptions']

# imagecorruptions' order: the 15 ImageNet-C benchmark corruptions, then the 4 held-out ones.
BENCHMARK_CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur',
    'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate',
    'jpeg_compression')
HOLDOUT_CORRUPTIONS = ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
CORRUPTIONS = BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS
CORRUPTION_GROUPS = {
    'benchmark': BENCHMARK_CORRUPTIONS,
    'all': CORRUPTIONS,
    'noise': BENCHMARK_CORRUPTIONS[0:3],
    'blur': BENCHMARK_CORRUPTIONS[3:7],
    'weather': BENCHMARK_CORRUPTIONS[7:11],
    'digital': BENCHMARK_CORRUPTIONS[11:15],
    'holdout': HOLDOUT_CORRUPTIONS,
}
_SEEDED = ('glass_blur', 'impulse_noise')  # the only functions that take (and need) ``seed=``
MIN_SIDE = 32  # imagecorruptions refuses smaller images


def resolve_corruptions(names: Sequence[str]) -> list[str]:
    """Expand group names (``benchmark``, ``all``, ``noise``, ...) and check corruption names.

    Args:
        names (Sequence[str]): corruption or group names, in any mix.

    Returns:
        list[str]: the corruptions, in imagecorruptions' order, without duplicates.
    """
    if isinstance(names, str):
        names = [names]
    wanted = set()
    for name in names:
        if name in CORRUPTION_GROUPS:
            wanted.update(CORRUPTION_GROUPS[name])
        elif name in CORRUPTIONS:
            wanted.add(name)
        else:
            raise ValueError(f'unknown corruption {name!r}; use a group '
                             f'({", ".join(CORRUPTION_GROUPS)}) or one of: {", ".join(CORRUPTIONS)}')
    if not wanted:
        raise ValueError('no corruption given')
    return [c for c in CORRUPTIONS if c in wanted]


def _check(corruption: str, severity: int) -> None:
    if corruption not in CORRUPTIONS:
        raise ValueError(f'unknown corruption {corruption!r}; available: {", ".join(CORRUPTIONS)}')
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f'corruption severity must be an integer in 1..5, got {severity!r}')


def _image_seeds(seed: int, corruption: str, severity: int, index: int) -> tuple[int, int]:
    """Two 32-bit seeds (numpy's global generator, the ``seed=`` argument) for one image."""
    sequence = np.random.SeedSequence([int(seed), zlib.crc32(corruption.encode()), int(severity), int(index)])
    first, second = sequence.generate_state(2)
    return int(first), int(second)


def corrupt_image(image: np.ndarray, corruption: str, severity: int, index: int, seed: int = 0) -> np.ndarray:
    """Corrupt one RGB image as image ``index`` of a dataset is corrupted.

    Args:
        image (np.ndarray): uint8 RGB (H, W, 3) or grey (H, W) image, both sides >= 32.
        corruption (str): one of :data:`CORRUPTIONS`.
        severity (int): 1..5.
        index (int): the image's index in its dataset (part of its random stream).
        seed (int): benchmark seed. Defaults to 0.

    Returns:
        np.ndarray: the corrupted uint8 image, same shape as ``image``.
    """
    _check(corruption, severity)
    try:
        from imagecorruptions import corrupt
    except ImportError as e:
        raise ImportError('corruptions need the `imagecorruptions` package: '
                          'pip install imagecorruptions-imaug') from e
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f'expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}')
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f'imagecorruptions needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, '
                         f'got {h}x{w} (dataset index {index})')
    global_seed, arg_seed = _image_seeds(seed, corruption, severity, index)
    kwargs = dict(seed=arg_seed) if corruption in _SEEDED else {}
    state = np.random.get_state()
    try:
        np.random.seed(global_seed)
        out = corrupt(np.ascontiguousarray(image), corruption_name=corruption, severity=int(severity),
                      **kwargs)
    finally:
        np.random.set_state(state)
    out = np.asarray(out, dtype=np.uint8)[:h, :w]
    if out.shape[:2] != (h, w):
        raise RuntimeError(f'{corruption} returned a {out.shape[:2]} image for a {(h, w)} input')
    if image.ndim == 2:  # imagecorruptions works on 3 channels; back to grey (ITU-R 601 luma)
        out = np.clip(np.rint(out.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])), 0, 255)
        out = out.astype(np.uint8)
    return out


@TRANSFORMS.register_module()
class ImageCorruption(BaseTransform):
    """Apply one ImageNet-C corruption to ``results['img']``; nothing else changes.

    Place it right after the image-loading transform: the corruption then acts at the original
    resolution and ground truth (boxes, masks, segmentation maps) is untouched, as in COCO-C.
    The random stream of each image is a pure function of (``seed``, corruption, severity,
    ``results['sample_idx']``), which mmengine's ``BaseDataset.get_data_info`` sets to the dataset
    index; without it the transform refuses to run.

    Required keys: ``img`` (BGR, as OpenMMLab loaders decode it), ``sample_idx``.
    Modified keys: ``img``.

    Args:
        corruption (str): one of the 19 imagecorruptions names (:data:`CORRUPTIONS`).
        severity (int): 1..5.
        seed (int): benchmark seed. Defaults to 0.
        legacy_bgr (bool): corrupt the BGR array as it is, as mmdet's ``Corrupt`` does (frost and
            snow then differ slightly, since imagecorruptions assumes RGB), to compare with mmdet's
            published COCO-C numbers. Defaults to False (convert to RGB, corrupt, convert back).
    """

    def __init__(self, corruption: str, severity: int, seed: int = 0, legacy_bgr: bool = False) -> None:
        _check(corruption, severity)
        self.corruption = corruption
        self.severity = int(severity)
        self.seed = int(seed)
        self.legacy_bgr = legacy_bgr

    def transform(self, results: dict) -> Optional[dict]:
        if 'sample_idx' not in results:
            raise KeyError('ImageCorruption needs results["sample_idx"] (the dataset index, set by '
                           "mmengine's BaseDataset.get_data_info) to corrupt reproducibly")
        img = results['img']
        dtype = img.dtype
        if dtype != np.uint8:  # e.g. LoadImageFromFile(to_float32=True)
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        colour = img.ndim == 3
        if colour and img.shape[2] != 3:
            raise ValueError(f'ImageCorruption expects 1 or 3 channels, got an image of shape {img.shape}')
        if colour and not self.legacy_bgr:
            img = img[..., ::-1]
        out = corrupt_image(img, self.corruption, self.severity, results['sample_idx'], self.seed)
        if colour and not self.legacy_bgr:
            out = out[..., ::-1]
        results['img'] = np.ascontiguousarray(out).astype(dtype, copy=False)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(corruption={self.corruption!r}, severity={self.severity}, '
                f'seed={self.seed}, legacy_bgr={self.legacy_bgr})')
