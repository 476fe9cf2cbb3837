"""Aggregation of corruption benchmarks: ImageNet-C CE/mCE and COCO-C style P/mPC/rPC.

All functions take per-cell results as ``{corruption: {severity: value}}`` (severity 1..5) plus the
clean value, and average only the cells that are present: a cell that did not run is never counted
as zero. Conventions follow the papers:

* ImageNet-C (Hendrycks & Dietterich, ICLR 2019): ``CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}``
  over severities 1..5, ``mCE`` = mean of ``CE_c`` over the 15 benchmark corruptions, and
  ``relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^AlexNet_{s,c} - E^AlexNet_clean)``;
  reported x100. AlexNet's errors are only published as means over the 5 severities, so a CE
  needs all 5 severities of its corruption.
* COCO-C / ADE20K-C (Michaelis et al., 2019): ``P`` = clean metric, ``mPC`` = mean metric over the
  benchmark corruptions x severities 1..5, ``rPC = mPC / P`` (in %).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from mmdat.datasets.transforms.corruption import BENCHMARK_CORRUPTIONS

__all__ = ['ALEXNET_ERRORS', 'ALEXNET_CLEAN_ERROR', 'SEVERITIES', 'corruption_errors',
           'relative_corruption_errors', 'mean_corruption_error', 'performance_under_corruption',
           'headline_metrics', 'metric_scale', 'summarize_metric']

SEVERITIES = (1, 2, 3, 4, 5)
# AlexNet's top-1 error on ImageNet-C, mean over severities 1-5 (Hendrycks & Dietterich; the same
# numbers as AugMix's ALEXNET_ERR and easyrobust's imagenet_c.py).
ALEXNET_ERRORS = {
    'gaussian_noise': 0.886428, 'shot_noise': 0.894468, 'impulse_noise': 0.922640,
    'defocus_blur': 0.819880, 'glass_blur': 0.826268, 'motion_blur': 0.785948, 'zoom_blur': 0.798360,
    'snow': 0.866816, 'frost': 0.826572, 'fog': 0.819324, 'brightness': 0.564592,
    'contrast': 0.853204, 'elastic_transform': 0.646056, 'pixelate': 0.717840,
    'jpeg_compression': 0.606500,
}
# AlexNet's clean top-1 error: 1 - 0.56522 (torchvision's AlexNet acc@1 = 56.522 %). NEEDS
# VERIFICATION against Hendrycks' mCE spreadsheet before relative mCE values are compared with papers.
ALEXNET_CLEAN_ERROR = 0.43478

Cells = Mapping[str, Mapping[int, float]]


def _complete(severities: Mapping[int, float]) -> bool:
    return all(s in severities for s in SEVERITIES)


def corruption_errors(errors: Cells) -> dict[str, float]:
    """``CE_c`` (x100) for every corruption with AlexNet numbers and all 5 severities.

    Args:
        errors (Mapping): ``{corruption: {severity: top-1 error in [0, 1]}}``.

    Returns:
        dict[str, float]: ``{corruption: CE_c x 100}``; corruptions without a complete row or
        without an AlexNet reference are left out.
    """
    out = {}
    for corruption, row in errors.items():
        if corruption in ALEXNET_ERRORS and _complete(row):
            mean_error = sum(row[s] for s in SEVERITIES) / len(SEVERITIES)
            out[corruption] = 100.0 * mean_error / ALEXNET_ERRORS[corruption]
    return out


def relative_corruption_errors(errors: Cells, clean_error: float,
                               alexnet_clean_error: float = ALEXNET_CLEAN_ERROR) -> dict[str, float]:
    """Relative ``CE_c`` (x100): the degradation from the clean error, normalised by AlexNet's.

    Args:
        errors (Mapping): ``{corruption: {severity: top-1 error in [0, 1]}}``.
        clean_error (float): the model's clean top-1 error in [0, 1].
        alexnet_clean_error (float): AlexNet's clean error. Defaults to :data:`ALEXNET_CLEAN_ERROR`.

    Returns:
        dict[str, float]: ``{corruption: relative CE_c x 100}`` for the complete rows.
    """
    out = {}
    for corruption, row in errors.items():
        if corruption in ALEXNET_ERRORS and _complete(row):
            ours = sum(row[s] - clean_error for s in SEVERITIES)
            alexnet = len(SEVERITIES) * (ALEXNET_ERRORS[corruption] - alexnet_clean_error)
            out[corruption] = 100.0 * ours / alexnet
    return out


def mean_corruption_error(ces: Mapping[str, float]) -> tuple[Optional[float], int]:
    """Mean of the benchmark corruptions' CEs that are available.

    Returns:
        tuple: (mean or None when none is available, how many of the 15 it averages). Only a
        count of 15 is the published mCE.
    """
    values = [ces[c] for c in BENCHMARK_CORRUPTIONS if c in ces]
    return (sum(values) / len(values) if values else None), len(values)


def performance_under_corruption(values: Cells, clean: Optional[float],
                                 corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> dict:
    """P, mPC and rPC over the cells that ran.

    Args:
        values (Mapping): ``{corruption: {severity: metric}}``; severity 0 entries are ignored.
        clean (float, optional): the clean metric (P).
        corruptions (Sequence[str]): the corruptions mPC averages over. Defaults to the 15
            benchmark corruptions.

    Returns:
        dict: ``P``, ``mPC`` (None without cells), ``rPC`` in % (None without P, mPC or when
        P is 0), ``cells`` (how many cells mPC averages) and ``complete`` (all 15 x 5 cells).
    """
    cells = [v for c in corruptions for s, v in values.get(c, {}).items() if int(s) in SEVERITIES]
    mpc = sum(cells) / len(cells) if cells else None
    rpc = 100.0 * mpc / clean if mpc is not None and clean else None
    complete = len(cells) == len(corruptions) * len(SEVERITIES)
    return dict(P=clean, mPC=mpc, rPC=rpc, cells=len(cells), complete=complete)


def headline_metrics(keys: Sequence[str]) -> list[str]:
    """The metrics a robustness table reports, out of an evaluator's metric names.

    Top-1 accuracy (mmpretrain ``accuracy/top1``), box and mask AP (mmdet ``coco/bbox_mAP``,
    ``coco/segm_mAP``; VOC ``pascal_voc/mAP``) and mIoU (mmseg ``mIoU``); the first metric when none
    of these is present.
    """
    keys = list(keys)
    picked = [k for k in keys if k.endswith('top1')]
    picked += [k for k in keys if k.endswith(('bbox_mAP', 'segm_mAP')) or k.split('/')[-1] == 'mAP']
    picked += [k for k in keys if k.split('/')[-1] == 'mIoU']
    return picked or keys[:1]


def metric_scale(key: str) -> float:
    """Factor that turns a metric into % for display (mmdet reports AP in [0, 1])."""
    return 100.0 if 'mAP' in key.split('/')[-1] else 1.0


def summarize_metric(key: str, cells: Mapping[str, Mapping[int, float]], clean: Optional[float],
                     classification: bool) -> dict:
    """All aggregates of one metric, in % (display units).

    Args:
        key (str): metric name (decides the scale, see :func:`metric_scale`).
        cells (Mapping): ``{corruption: {severity: raw metric}}`` of the cells that ran.
        clean (float, optional): the raw clean metric.
        classification (bool): also compute CE, mCE and relative mCE (the metric must be top-1
            accuracy in %).

    Returns:
        dict: ``metric``, ``clean``, ``rows`` (``{corruption: {severity: value}}``), ``means``
        (per corruption, over the severities that ran), the P/mPC/rPC dict of
        :func:`performance_under_corruption` under ``pc`` and, for classification, ``CE``,
        ``mCE``, ``mCE_corruptions``, ``relative_CE``, ``relative_mCE``, ``relative_mCE_corruptions``
        (the counts say how many of the 15 corruptions each mean covers; whether it may be called
        an mCE also depends on the source, see :func:`mmdat.robustness.report.summarize_record`).
    """
    scale = metric_scale(key)
    rows = {c: {int(s): float(v) * scale for s, v in row.items() if int(s) in SEVERITIES}
            for c, row in cells.items()}
    rows = {c: row for c, row in rows.items() if row}
    clean_v = None if clean is None else float(clean) * scale
    out = dict(metric=key, clean=clean_v, rows=rows,
               means={c: sum(row.values()) / len(row) for c, row in rows.items()},
               pc=performance_under_corruption(rows, clean_v))
    extra = [c for c in rows if c not in BENCHMARK_CORRUPTIONS]
    if extra:  # the held-out corruptions are reported apart, as mmdet's "all" aggregate
        out['pc_all'] = performance_under_corruption(rows, clean_v, corruptions=list(rows))
    if classification:
        errors = {c: {s: 1.0 - v / 100.0 for s, v in row.items()} for c, row in rows.items()}
        ce = corruption_errors(errors)
        out['CE'] = ce
        out['mCE'], out['mCE_corruptions'] = mean_corruption_error(ce)
        if clean_v is not None:
            rel = relative_corruption_errors(errors, 1.0 - clean_v / 100.0)
            out['relative_CE'] = rel
            out['relative_mCE'], out['relative_mCE_corruptions'] = mean_corruption_error(rel)
    return out

