"""DAT data preprocessors: one shared mixin, thin per-task subclasses.

A task family is registered only when its OpenMMLab package is installed.
"""
from importlib.util import find_spec

from .dat_mixin import DATPreprocessorMixin

__all__ = ['DATPreprocessorMixin']

if find_spec('mmpretrain') is not None:
    from .cls_preprocessor import DATClsDataPreprocessor  # noqa: F401
    __all__.append('DATClsDataPreprocessor')
if find_spec('mmdet') is not None:
    from .det_preprocessor import DATDetDataPreprocessor  # noqa: F401
    __all__.append('DATDetDataPreprocessor')
if find_spec('mmseg') is not None:
    from .seg_preprocessor import DATSegDataPreProcessor  # noqa: F401
    __all__.append('DATSegDataPreProcessor')
