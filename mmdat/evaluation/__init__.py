"""Evaluation: robustness aggregates (ImageNet-C mCE, COCO-C / ADE20K-C P, mPC, rPC) and metrics."""
from . import metrics  # noqa: F401  (registers the metrics)
from .robustness import (ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, corruption_errors, headline_metrics,
                         mean_corruption_error, metric_scale, performance_under_corruption,
                         relative_corruption_errors, summarize_metric)

__all__ = ['ALEXNET_CLEAN_ERROR', 'ALEXNET_ERRORS', 'corruption_errors', 'headline_metrics',
           'mean_corruption_error', 'metric_scale', 'performance_under_corruption',
           'relative_corruption_errors', 'summarize_metric']
