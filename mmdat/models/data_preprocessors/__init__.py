"""DAT data preprocessors: one shared mixin, thin per-task subclasses.

Each task subclass derives from its OpenMMLab package's preprocessor (mmpretrain's, mmdet's,
mmseg's): importing this package imports none of those packages; the registry builds them deferred
(:mod:`mmdat.registry`), and ``from mmdat.models.data_preprocessors import DATDetDataPreprocessor``
imports mmdet only then.
"""
from mmdat.registry import deferred_attributes, registered_by
from .dat_mixin import DATPreprocessorMixin

#: class name -> (defining module, the OpenMMLab package it needs), from mmdat.registry.REGISTERED
TASK_PREPROCESSORS = registered_by(*(f'{__name__}.{task}_preprocessor' for task in ('cls', 'det', 'seg')))

__getattr__ = deferred_attributes(__name__, TASK_PREPROCESSORS)

__all__ = ['DATPreprocessorMixin', 'TASK_PREPROCESSORS', *TASK_PREPROCESSORS]
