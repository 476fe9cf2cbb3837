"""Robustness benchmarks: corruptions (ImageNet-C, COCO-C, ADE20K-C), OOD sets, their loops and reports."""
from .corruption import (CheckpointFitCheck, CorruptionBenchmark, insert_corruption, resolve_severities,
                         task_family)
from .loops import CorruptionTestLoop, OODTestLoop, RobustnessTestLoop, RobustnessValLoop, VAL_CORRUPTIONS
from .ood import OOD_BENCHMARKS, OODSuite
from .pregenerate import make_corrupted_copy
from .report import (RESULT_FILE, compare_markdown, load_record, markdown_table, plot_comparison, plot_record,
                     summarize_record, write_report)

__all__ = ['RobustnessTestLoop', 'CorruptionTestLoop', 'OODTestLoop', 'RobustnessValLoop', 'VAL_CORRUPTIONS',
           'CorruptionBenchmark', 'CheckpointFitCheck', 'OODSuite', 'OOD_BENCHMARKS', 'resolve_severities',
           'task_family', 'insert_corruption', 'make_corrupted_copy', 'RESULT_FILE', 'load_record',
           'summarize_record', 'markdown_table', 'plot_record', 'write_report', 'compare_markdown',
           'plot_comparison']
