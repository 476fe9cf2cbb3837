"""Data transforms: reproducible ImageNet-C style corruptions (COCO-C, ADE20K-C, on-the-fly ImageNet-C)."""
from .corruption import (BENCHMARK_CORRUPTIONS, CORRUPTION_GROUPS, CORRUPTIONS, ImageCorruption, ImageNetCCorruption,
                         corrupt_image, imagenet_c_protocol, resolve_corruptions)

__all__ = ['BENCHMARK_CORRUPTIONS', 'CORRUPTION_GROUPS', 'CORRUPTIONS', 'ImageCorruption', 'ImageNetCCorruption',
           'corrupt_image', 'imagenet_c_protocol', 'resolve_corruptions']
