"""Data transforms: reproducible ImageNet-C style corruptions (COCO-C, ADE20K-C, on-the-fly ImageNet-C).

The corruption functions and names need numpy only; the two transforms derive from mmcv's
``BaseTransform`` (:mod:`~mmdat.datasets.transforms.corruption_transforms`): importing this package
does not import mmcv.
"""
from mmdat.registry import deferred_attributes, registered_by
from .corruption import (BENCHMARK_CORRUPTIONS, CORRUPTION_GROUPS, CORRUPTIONS, corrupt_image, imagenet_c_protocol,
                         resolve_corruptions)

__getattr__ = deferred_attributes(__name__, registered_by(f'{__name__}.corruption_transforms'))

__all__ = ['BENCHMARK_CORRUPTIONS', 'CORRUPTION_GROUPS', 'CORRUPTIONS', 'ImageCorruption', 'ImageNetCCorruption',
           'corrupt_image', 'imagenet_c_protocol', 'resolve_corruptions']
