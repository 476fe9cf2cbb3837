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
"""
from __future__ import annotations

import functools
import importlib.resources
import io
import math
import zlib
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from mmdat.registry import TRANSFORMS

__all__ = ['CORRUPTIONS', 'BENCHMARK_CORRUPTIONS', 'CORRUPTION_GROUPS', 'ImageCorruption',
           'ImageNetCCorruption', 'corrupt_image', 'imagenet_c_protocol', 'resolve_corruptions', 'FROST_TEXTURES',
           'IMAGENET_C_RESIZE', 'IMAGENET_C_CROP', 'IMAGENET_C_JPEG_QUALITY', 'MIN_SIDE']

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
    _check(corruption, severity)
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


_announced = set()


def _as_uint8(img: np.ndarray, who: str) -> np.ndarray:
    """The 8-bit image, converted only when that is exact (float arrays holding 0..255 integers)."""
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.floating):
        finite = bool(np.isfinite(img).all())
        if finite and img.size and img.min() >= 0 and img.max() <= 255 and np.array_equal(img, np.rint(img)):
            if (who, str(img.dtype)) not in _announced:
                _announced.add((who, str(img.dtype)))
                print_log(f'{who}: {img.dtype} images hold the integers 0..255; converted to uint8 exactly for '
                          f'the corruption and back to {img.dtype} after it', logger='current')
            return img.astype(np.uint8)
        lo, hi = (float(np.nanmin(img)), float(np.nanmax(img))) if img.size else (0.0, 0.0)
        raise ValueError(f'{who} corrupts 8-bit images; this {img.dtype} image is not 0..255 integers '
                         f'(values {lo:g}..{hi:g}{"" if finite else ", with NaN/inf"}), so it cannot be '
                         'converted exactly: corrupt before normalising, or load it as 8 bits')
    raise ValueError(f'{who} corrupts 8-bit images, got {img.dtype} (e.g. a 16-bit PNG or TIFF read with '
                     "color_type='unchanged'); mmdat does not rescale it silently: load it as 8 bits "
                     "(LoadImageFromFile(color_type='color')) or convert the files first")


def _split_channels(img: np.ndarray, who: str) -> tuple[np.ndarray, Optional[np.ndarray], bool]:
    """(colour or grey image, alpha channel or None, had a trailing channel axis of 1)."""
    if img.ndim == 2:
        return img, None, False
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0], None, True
    if img.ndim == 3 and img.shape[2] == 3:
        return img, None, False
    if img.ndim == 3 and img.shape[2] == 4:  # BGRA (cv2) / RGBA: corrupt the colour, keep the alpha
        return img[..., :3], img[..., 3], False
    raise ValueError(f'{who} corrupts grey (H, W) / (H, W, 1), colour (H, W, 3) or colour + alpha (H, W, 4) '
                     f'images, got shape {img.shape} (a multi-channel or multi-image loader?)')


def _join_channels(out: np.ndarray, alpha: Optional[np.ndarray], channel_axis: bool) -> np.ndarray:
    if alpha is not None:
        out = np.concatenate([out, alpha[..., None]], axis=2)
    elif channel_axis:
        out = out[..., None]
    return np.ascontiguousarray(out)


class _SeededCorruption(BaseTransform):
    """What both corruption transforms share: checked arguments and the checked input image."""

    def __init__(self, corruption: str, severity: int, seed: int = 0) -> None:
        _check(corruption, severity)
        self.corruption = corruption
        self.severity = int(severity)
        self.seed = int(seed)

    def _image(self, results: dict) -> tuple[np.dtype, np.ndarray, Optional[np.ndarray], bool]:
        """(input dtype, uint8 grey or colour image, alpha or None, had a trailing channel axis of 1)."""
        name = type(self).__name__
        if 'sample_idx' not in results:
            raise KeyError(f'{name} needs results["sample_idx"] (the dataset index, set by mmengine\'s '
                           'BaseDataset.get_data_info) to corrupt reproducibly')
        img = results['img']
        return (img.dtype, *_split_channels(_as_uint8(img, name), name))


@TRANSFORMS.register_module()
class ImageCorruption(_SeededCorruption):
    """Apply one ImageNet-C corruption to ``results['img']``; nothing else changes.

    Place it right after the image-loading transform: the corruption then acts at the original
    resolution and ground truth (boxes, masks, segmentation maps) is untouched, as in COCO-C.
    The random stream of each image is a pure function of (``seed``, corruption, severity,
    ``results['sample_idx']``), which mmengine's ``BaseDataset.get_data_info`` sets to the dataset
    index; without it the transform refuses to run.

    Images: uint8 grey (H, W) or (H, W, 1), BGR (H, W, 3), or BGRA (H, W, 4), whose colour is
    corrupted and whose alpha is kept. Float images holding the integers 0..255 (e.g.
    ``LoadImageFromFile(to_float32=True)``) are converted exactly (and the log says so); any
    other dtype (16-bit images) or shape is refused with a ``ValueError``, never clipped.

    Required keys: ``img`` (BGR, as OpenMMLab loaders decode it), ``sample_idx``.
    Modified keys: ``img``.

    Args:
        corruption (str): one of the 19 imagecorruptions names (:data:`CORRUPTIONS`).
        severity (int): 1..5.
        seed (int): benchmark seed. Defaults to 0.
        legacy_bgr (bool): corrupt the BGR array as it is, as mmdet's ``Corrupt`` does, to compare
            with mmdet's published COCO-C numbers; the corruptions that depend on the channel order
            then differ (frost, snow, spatter, jpeg_compression, ...; see docs/robustness.md).
            Defaults to False (convert to RGB, corrupt, convert back).
    """

    def __init__(self, corruption: str, severity: int, seed: int = 0, legacy_bgr: bool = False) -> None:
        super().__init__(corruption, severity, seed)
        self.legacy_bgr = legacy_bgr

    def transform(self, results: dict) -> Optional[dict]:
        dtype, colour, alpha, channel_axis = self._image(results)
        bgr_to_rgb = colour.ndim == 3 and not self.legacy_bgr
        if bgr_to_rgb:
            colour = colour[..., ::-1]
        out = corrupt_image(np.ascontiguousarray(colour), self.corruption, self.severity, results['sample_idx'],
                            self.seed)
        if bgr_to_rgb:
            out = out[..., ::-1]
        results['img'] = _join_channels(out, alpha, channel_axis).astype(dtype, copy=False)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(corruption={self.corruption!r}, severity={self.severity}, '
                f'seed={self.seed}, legacy_bgr={self.legacy_bgr})')


@TRANSFORMS.register_module()
class ImageNetCCorruption(_SeededCorruption):
    """The ImageNet-C generation protocol on the fly: Resize(256) -> CenterCrop(224) -> corrupt -> JPEG 85.

    Place it right after the image-loading transform of a classification test pipeline and drop
    the pipeline's own Resize / CenterCrop: the image then reaches the model as the matching file of
    the released ImageNet-C decodes (224x224), see :func:`imagenet_c_protocol`. The random stream
    is that of :class:`ImageCorruption` for the 224x224 crop.

    Images: uint8 (or exactly convertible float) BGR (H, W, 3); grey and BGRA images are turned
    into colour as PIL's ``convert('RGB')`` does in Hendrycks' loader (grey replicated, alpha
    dropped).

    Required keys: ``img``, ``sample_idx``. Modified keys: ``img``, ``img_shape``.

    Args:
        corruption (str): one of :data:`CORRUPTIONS`.
        severity (int): 1..5.
        seed (int): benchmark seed. Defaults to 0.
    """

    def transform(self, results: dict) -> Optional[dict]:
        dtype, colour, _, _ = self._image(results)
        rgb = np.stack([colour] * 3, axis=-1) if colour.ndim == 2 else colour[..., ::-1]
        out = imagenet_c_protocol(np.ascontiguousarray(rgb), self.corruption, self.severity,
                                  results['sample_idx'], self.seed)
        results['img'] = np.ascontiguousarray(out[..., ::-1]).astype(dtype, copy=False)
        results['img_shape'] = out.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(corruption={self.corruption!r}, severity={self.severity}, '
                f'seed={self.seed})')
