"""Evaluation metrics registered in mmengine's root METRICS registry.

``SubsetAccuracy`` derives from mmpretrain's ``Accuracy``: importing this package does not import
mmpretrain, ``from mmdat.evaluation.metrics import SubsetAccuracy`` does.
"""
from mmdat.registry import deferred_attributes, registered_by
from .logits import LOGITS_FIELD, keep_classifier_logits
from .reconstruction import VQGANReconstructionMetric

__getattr__ = deferred_attributes(__name__, registered_by(f'{__name__}.subset_accuracy'))

__all__ = ['SubsetAccuracy', 'VQGANReconstructionMetric', 'keep_classifier_logits', 'LOGITS_FIELD']
