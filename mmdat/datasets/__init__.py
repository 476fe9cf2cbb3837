"""Datasets: mmdat's small built-in synthetic shape datasets (numpy + Pillow only) and the
out-of-distribution ImageNet test sets (:mod:`mmdat.datasets.imagenet_variants`, which needs
mmpretrain: importing this package does not import it)."""
from mmdat.registry import deferred_attributes, registered_by
from . import transforms  # noqa: F401
from .shape_images import ShapeImageDataset
from .shapes import (ADE20K_SPLIT_DIRS, CLASSIFICATION_CLASSES, DETECTION_CLASSES, SHAPES, make_shapes_ade20k,
                     make_shapes_classification, make_shapes_coco, sample_shape_images, shape_polygon)

_VARIANTS = registered_by(f'{__name__}.imagenet_variants')
#: the dataset classes of mmdat.datasets.imagenet_variants (mmpretrain's BaseDataset)
IMAGENET_VARIANTS = tuple(_VARIANTS)

__getattr__ = deferred_attributes(__name__, _VARIANTS)

__all__ = ['ShapeImageDataset', 'SHAPES', 'CLASSIFICATION_CLASSES', 'DETECTION_CLASSES', 'ADE20K_SPLIT_DIRS',
           'make_shapes_classification', 'make_shapes_coco', 'make_shapes_ade20k', 'sample_shape_images',
           'shape_polygon', 'IMAGENET_VARIANTS', *IMAGENET_VARIANTS]
