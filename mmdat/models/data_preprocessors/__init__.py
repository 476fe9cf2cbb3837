"""DAT data preprocessors: one shared mixin, thin per-task subclasses.

Each task subclass derives from its OpenMMLab package's preprocessor (mmpretrain's, mmdet's,
mmseg's): importing this package imports none of those packages; the registry builds them deferred
(:mod:`mmdat.registry`), and ``from mmdat.models.data_preprocessors import DATDetDataPreprocessor``
imports mmdet only then.
"""
from mmdat.registry import deferred_attributes
from .dat_mixin import DATPreprocessorMixin

#: class name -> (defining module, the OpenMMLab package it needs)
TASK_PREPROCESSORS = {
    'DATClsDataPreprocessor': (f'{__name__}.cls_preprocessor', 'mmpretrain'),
    'DATDetDataPreprocessor': (f'{__name__}.det_preprocessor', 'mmdet'),
    'DATSegDataPreProcessor': (f'{__name__}.seg_preprocessor', 'mmseg'),
}

__getattr__ = deferred_attributes(__name__, TASK_PREPROCESSORS)

__all__ = ['DATPreprocessorMixin', 'TASK_PREPROCESSORS', *TASK_PREPROCESSORS]
