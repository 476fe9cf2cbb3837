"""The corruption transforms: :class:`ImageCorruption` (ImageNet-C style corruptions for any
OpenMMLab pipeline) and :class:`ImageNetCCorruption` (the exact ImageNet-C protocol on the fly).

They derive from mmcv's ``BaseTransform`` and are registered deferred by
:mod:`mmdat.datasets.transforms` (importing mmdat does not import mmcv); the corruptions themselves
are :func:`~mmdat.datasets.transforms.corruption.corrupt_image` and
:func:`~mmdat.datasets.transforms.corruption.imagenet_c_protocol`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from mmdat.registry import TRANSFORMS
from .corruption import check_corruption, corrupt_image, imagenet_c_protocol

__all__ = ['ImageCorruption', 'ImageNetCCorruption']

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
        check_corruption(corruption, severity)
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


@TRANSFORMS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
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


@TRANSFORMS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
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
