"""Robustness benchmarks: corruptions (ImageNet-C, COCO-C, ADE20K-C) and their reports."""
from .corruption import insert_corruption, resolve_severities, run_corruption_benchmark, task_family
from .ood import OOD_BENCHMARKS, evaluate_ood
from .pregenerate import make_corrupted_copy
from .report import (RESULT_FILE, compare_markdown, load_record, markdown_table, plot_comparison, plot_record,
                     summarize_record, write_report)

__all__ = ['OOD_BENCHMARKS', 'evaluate_ood', 'run_corruption_benchmark', 'resolve_severities', 'task_family', 'insert_corruption',
           'make_corrupted_copy', 'RESULT_FILE', 'load_record', 'summarize_record', 'markdown_table',
           'plot_record', 'write_report', 'compare_markdown', 'plot_comparison']
