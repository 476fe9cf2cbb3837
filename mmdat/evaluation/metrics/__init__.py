"""Evaluation metrics registered in mmengine's root METRICS registry (one import line per module)."""
from .subset_accuracy import SubsetAccuracy  # noqa: F401
from .reconstruction import VQGANReconstructionMetric  # noqa: F401
