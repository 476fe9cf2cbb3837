"""Datasets: mmdat's small built-in synthetic shape datasets (numpy + Pillow only)."""
from . import transforms  # noqa: F401  (registers ImageCorruption)
from .shape_images import ShapeImageDataset
from .imagenet_variants import ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2, StylizedImageNet  # noqa: F401
from .shapes import (ADE20K_SPLIT_DIRS, CLASSIFICATION_CLASSES, DETECTION_CLASSES, SHAPES, make_shapes_ade20k,
                        make_shapes_classification, make_shapes_coco, sample_shape_images, shape_polygon)

__all__ = ['ShapeImageDataset', 'SHAPES', 'CLASSIFICATION_CLASSES', 'DETECTION_CLASSES', 'ADE20K_SPLIT_DIRS',
           'make_shapes_classification', 'make_shapes_coco', 'make_shapes_ade20k', 'sample_shape_images',
           'shape_polygon']
