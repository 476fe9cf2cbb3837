"""ImageNet-C style corruptions as a data transform, reproducible image by image.

``imagecorruptions`` (the numpy-2 compatible ``imagecorruptions-imaug`` fork) draws its noise from
numpy's global generator, except ``glass_blur`` (numba's own generator) and ``impulse_noise``
(scikit-image's ``default_rng``), which only follow an explicit ``seed=``. :class:`ImageCorruption`
seeds all three from (seed, corruption, severity, dataset index) for every image and restores
numpy's global state afterwards, so an image is corrupted the same way in every run, whatever the
number of dataloader workers or GPUs, and the pipeline's other random transforms are unaffected.

Where the library differs from Hendrycks' ``make_imagenet_c.py`` (the code that made the released
ImageNet-C), mmdat either follows Hendrycks or documents the difference (``docs/robustness.md``):
frost is mmdat's own implementation of Hendrycks' rule (one of 5 textures, cropped unscaled; the
library draws one of 6 and magnifies it by 1.1). :class:`ImageNetCCorruption` is the exact
ImageNet-C generation protocol on the fly: Resize(256) -> CenterCrop(224) -> corrupt -> JPEG 85.

This module needs numpy only at import (imagecorruptions, cv2 and PIL are imported where used); the
two transforms, which derive from mmcv's ``BaseTransform``, are in
:mod:`mmdat.datasets.transforms.corruption_transforms`.
"""
from __future__ import annotations

import functools
import importlib.resources
import io
import math
import zlib
from typing import Sequence

import numpy as np

__all__ = ['CORRUPTIONS', 'BENCHMARK_CORRUPTIONS', 'CORRUPTION_GROUPS', 'corrupt_image', 'imagenet_c_protocol',
           'resolve_corruptions', 'check_corruption', 'FROST_TEXTURES', 'IMAGENET_C_RESIZE', 'IMAGENET_C_CROP',
           'IMAGENET_C_JPEG_QUALITY', 'MIN_SIDE']

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
# Hendrycks' frost draws np.random.randint(5) over these textures (bethgelab's imagecorruptions too);
# imagecorruptions-imaug 1.1.5 draws randint(6) and can pick frost6.jpg as well.
FROST_TEXTURES = ('frost1.png', 'frost2.png', 'frost3.png', 'frost4.jpg', 'frost5.jpg')
# (image weight, frost weight) per severity, Hendrycks' values
FROST_BLEND = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
# make_imagenet_c.py: torchvision Resize(256) (bilinear, PIL) -> CenterCrop(224) -> corrupt -> JPEG quality 85
IMAGENET_C_RESIZE = 256
IMAGENET_C_CROP = 224
IMAGENET_C_JPEG_QUALITY = 85


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


def check_corruption(corruption: str, severity: int) -> None:
    """ValueError unless ``corruption`` is one of :data:`CORRUPTIONS` and ``severity`` an integer in 1..5."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f'unknown corruption {corruption!r}; available: {", ".join(CORRUPTIONS)}')
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f'corruption severity must be an integer in 1..5, got {severity!r}')


def _image_seeds(seed: int, corruption: str, severity: int, index: int) -> tuple[int, int]:
    """Two 32-bit seeds (numpy's global generator, the ``seed=`` argument) for one image."""
    sequence = np.random.SeedSequence([int(seed), zlib.crc32(corruption.encode()), int(severity), int(index)])
    first, second = sequence.generate_state(2)
    return int(first), int(second)


@functools.lru_cache(maxsize=None)
def _frost_texture(k: int) -> np.ndarray:
    """Frost texture ``k`` shipped with imagecorruptions, as an RGB uint8 array."""
    import cv2
    ref = importlib.resources.files('imagecorruptions') / 'frost' / FROST_TEXTURES[k]
    with importlib.resources.as_file(ref) as path:
        bgr = cv2.imread(str(path))
    if bgr is None:
        raise FileNotFoundError(f'cannot read the frost texture {ref} of the imagecorruptions package')
    return np.ascontiguousarray(bgr[..., ::-1])


def _frost(rgb: np.ndarray, severity: int) -> np.ndarray:
    """Frost as in Hendrycks' code: one of 5 textures, a random unscaled crop, blended.

    Draws from numpy's global generator (seeded by the caller): the texture, then the crop's top
    and left corner. A texture smaller than the image (only at original resolution; the textures
    exceed 224x224) is first enlarged with bicubic interpolation just enough to cover it.
    """
    import cv2
    image_weight, frost_weight = FROST_BLEND[severity - 1]
    texture = _frost_texture(np.random.randint(len(FROST_TEXTURES)))
    h, w = rgb.shape[:2]
    th, tw = texture.shape[:2]
    if th <= h or tw <= w:
        scale = max((h + 1) / th, (w + 1) / tw)
        texture = cv2.resize(texture, (math.ceil(tw * scale), math.ceil(th * scale)), interpolation=cv2.INTER_CUBIC)
    top = np.random.randint(0, texture.shape[0] - h)
    left = np.random.randint(0, texture.shape[1] - w)
    layer = texture[top:top + h, left:left + w].astype(np.float64)
    return np.uint8(np.clip(image_weight * rgb + frost_weight * layer, 0, 255))


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
    check_corruption(corruption, severity)
    try:
        from imagecorruptions import corrupt
    except ImportError as e:
        raise ImportError('corruptions need the `imagecorruptions` package: '
                          'pip install -r requirements/optional.txt (imagecorruptions-imaug)') from e
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f'expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}')
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f'imagecorruptions needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, '
                         f'got {h}x{w} (dataset index {index})')
    rgb = np.ascontiguousarray(np.stack([image] * 3, axis=-1) if image.ndim == 2 else image)
    global_seed, arg_seed = _image_seeds(seed, corruption, severity, index)
    kwargs = dict(seed=arg_seed) if corruption in _SEEDED else {}
    state = np.random.get_state()
    try:
        np.random.seed(global_seed)
        if corruption == 'frost':
            out = _frost(rgb, int(severity))
        else:
            out = corrupt(rgb, corruption_name=corruption, severity=int(severity), **kwargs)
    finally:
        np.random.set_state(state)
    out = np.asarray(out, dtype=np.uint8)[:h, :w]
    if out.shape[:2] != (h, w):
        raise RuntimeError(f'{corruption} returned a {out.shape[:2]} image for a {(h, w)} input')
    if image.ndim == 2:  # imagecorruptions works on 3 channels; back to grey (ITU-R 601 luma)
        out = np.clip(np.rint(out.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])), 0, 255)
        out = out.astype(np.uint8)
    return out


def imagenet_c_protocol(rgb: np.ndarray, corruption: str, severity: int, index: int, seed: int = 0) -> np.ndarray:
    """One image as the released ImageNet-C holds it: Resize(256) -> CenterCrop(224) -> corrupt -> JPEG 85.

    The steps of Hendrycks' ``make_imagenet_c.py``: torchvision's ``Resize(256)`` on a PIL image
    (short side 256, long side ``int(256 * long / short)``, PIL bilinear), ``CenterCrop(224)``
    (offsets ``int(round((size - 224) / 2))``), the corruption, then ``Image.save(quality=85,
    optimize=True)``; here the JPEG is decoded back at once with PIL (``convert('RGB')``).

    Args:
        rgb (np.ndarray): uint8 RGB (H, W, 3) image of any size.
        corruption (str): one of :data:`CORRUPTIONS`.
        severity (int): 1..5.
        index (int): the image's index in its dataset.
        seed (int): benchmark seed. Defaults to 0.

    Returns:
        np.ndarray: the uint8 RGB 224x224 image.
    """
    from PIL import Image
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}')
    image = Image.fromarray(np.ascontiguousarray(rgb), mode='RGB')
    w, h = image.size
    if w <= h:
        size = (IMAGENET_C_RESIZE, int(IMAGENET_C_RESIZE * h / w))
    else:
        size = (int(IMAGENET_C_RESIZE * w / h), IMAGENET_C_RESIZE)
    image = image.resize(size, Image.BILINEAR)
    left = int(round((size[0] - IMAGENET_C_CROP) / 2.0))
    top = int(round((size[1] - IMAGENET_C_CROP) / 2.0))
    image = image.crop((left, top, left + IMAGENET_C_CROP, top + IMAGENET_C_CROP))
    corrupted = corrupt_image(np.asarray(image), corruption, severity, index, seed)
    buffer = io.BytesIO()
    Image.fromarray(corrupted).save(buffer, format='JPEG', quality=IMAGENET_C_JPEG_QUALITY, optimize=True)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert('RGB'))
