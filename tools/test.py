"""Evaluate a checkpoint on the config's test set, and on robustness benchmarks.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--cfg-options ...]
    python tools/test.py CONFIG CHECKPOINT --corruptions benchmark [--severities 1 2 3 4 5]
        [--corruption-root DIR [--imagenet-c-resize] | --imagenet-c-protocol] [--legacy-bgr] [--seed 0]
        [--workers N]
    python tools/test.py CONFIG CHECKPOINT --ood imagenet-r imagenet-a --ood-root imagenet-r=PATH ...
    python tools/test.py --report work_dirs/x/robustness.json      # table + plot of a finished run
    tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

The robustness flags only set ``test_cfg`` to a ``RobustnessTestLoop`` (mmdat/robustness/loops.py);
the same benchmark can be written in a config. Corruption results go to <work dir>/robustness.json
after every (corruption, severity) cell; running the same command again resumes. See "Robustness
benchmarks" in README.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mmdat.apis import add_common_args, build_runner, close_cpu_distributed, load_config
from mmdat.datasets.transforms import CORRUPTION_GROUPS, resolve_corruptions
from mmdat.robustness import OOD_BENCHMARKS, RESULT_FILE, load_record, resolve_severities, write_report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and robustness-benchmark) a checkpoint with mmdat')
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint to evaluate')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file (with --corruptions: '
                        'one file per cell, <stem>_<corruption>_<severity>.pkl)')
    rob = parser.add_argument_group('corruption benchmarks (ImageNet-C, COCO-C, ADE20K-C)')
    rob.add_argument('--corruptions', nargs='+', metavar='NAME',
                     help=f'corruption names or groups: {", ".join(CORRUPTION_GROUPS)}')
    rob.add_argument('--severities', nargs='+', type=int, default=[1, 2, 3, 4, 5], metavar='S',
                     help='severities 1-5 (default: all); 0, the clean pass, is always run')
    rob.add_argument('--corruption-root', metavar='DIR',
                     help='pre-generated <corruption>/<severity>/ folders: released ImageNet-C '
                     '(<wnid>/*.JPEG) or copies by tools/dataset_converters/make_corrupted.py; '
                     'default: corrupt the test set on the fly')
    rob.add_argument('--imagenet-c-resize', action='store_true',
                     help="ImageNet-C folders through easyrobust's Resize(256, bicubic)+CenterCrop(224), "
                     "as DAT's published mCE (default: images as stored, the ImageNet-C protocol)")
    rob.add_argument('--imagenet-c-protocol', action='store_true',
                     help='classification: corrupt on the fly as ImageNet-C was made, Resize(256) -> '
                     'CenterCrop(224) -> corrupt -> JPEG 85, then the test pipeline without its resizing '
                     '(default without --corruption-root: corrupt at the original resolution, which gives '
                     'no mCE comparable with published ones)')
    rob.add_argument('--legacy-bgr', action='store_true',
                     help="corrupt the BGR array as mmdet's test_robustness.py does (default: RGB); "
                     'frost, snow, spatter and jpeg_compression then differ, see docs/robustness.md')
    rob.add_argument('--seed', type=int, default=0, help='corruption seed (default 0)')
    rob.add_argument('--workers', type=int, help='dataloader workers of the test set (default: the config)')
    rob.add_argument('--report', nargs='?', const='', metavar='JSON',
                     help='print the table of an existing robustness.json and write its .md/.png '
                     '(without a path: <work dir>/robustness.json); evaluates nothing')
    ood = parser.add_argument_group('out-of-distribution benchmarks (classification)')
    ood.add_argument('--ood', nargs='+', metavar='NAME', choices=list(OOD_BENCHMARKS),
                     help=f'benchmarks: {" ".join(OOD_BENCHMARKS)}')
    ood.add_argument('--ood-root', nargs='+', default=[], metavar='NAME=PATH',
                     help='data root of a benchmark (default: the one documented for it)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.report is None and (args.config is None or args.checkpoint is None):
        parser.error('CONFIG and CHECKPOINT are required (unless --report JSON)')
    if args.report == '' and args.config is None and args.work_dir is None:
        parser.error('--report needs a JSON path, a CONFIG or --work-dir')
    if args.workers is not None and args.workers < 0:
        parser.error('--workers must be >= 0')
    try:  # bad names and severities fail here, before anything is built
        if args.corruptions:
            resolve_corruptions(args.corruptions)
            resolve_severities(args.severities)
        args.ood_roots = dict(_name_path(item) for item in args.ood_root)
    except ValueError as e:
        parser.error(str(e))
    for flag in ('corruption_root', 'imagenet_c_resize', 'imagenet_c_protocol', 'legacy_bgr'):
        if getattr(args, flag) and not args.corruptions:
            parser.error(f'--{flag.replace("_", "-")} needs --corruptions')
    if args.ood_roots and not args.ood:
        parser.error('--ood-root needs --ood')
    problem = checkpoint_problem(args.checkpoint)
    if problem:
        parser.error(problem)
    return args


def checkpoint_problem(checkpoint: str | None) -> str | None:
    """Why a local checkpoint path cannot be read (checked before anything is built), else None.

    URLs and other ``scheme://`` paths are left to mmengine's checkpoint loader.
    """
    if checkpoint is None or '://' in checkpoint:
        return None
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return f'checkpoint {checkpoint} is a directory; give the .pth file (e.g. {path}/epoch_N.pth)'
    if not path.is_file():
        return f'checkpoint {checkpoint} not found'
    return None


def _name_path(item: str) -> tuple[str, str]:
    name, sep, path = item.partition('=')
    if not sep or not name or not path:
        raise ValueError(f'--ood-root takes NAME=PATH, got {item!r}')
    if name not in OOD_BENCHMARKS:
        raise ValueError(f'--ood-root: unknown benchmark {name!r}; choose from {", ".join(OOD_BENCHMARKS)}')
    return name, path


def robustness_test_cfg(args: argparse.Namespace) -> dict | None:
    """``test_cfg`` of the robustness flags (a :class:`~mmdat.robustness.RobustnessTestLoop`), or None."""
    if not args.corruptions and not args.ood:
        return None
    loop = dict(type='RobustnessTestLoop')
    if args.corruptions:
        loop['corruptions'] = dict(corruptions=args.corruptions, severities=args.severities, seed=args.seed,
                                   source=args.corruption_root, legacy_bgr=args.legacy_bgr,
                                   imagenet_c_resize=args.imagenet_c_resize,
                                   imagenet_c_protocol=args.imagenet_c_protocol, out=args.out)
    if args.ood:
        loop['ood'] = dict(benchmarks=args.ood, data_roots=args.ood_roots)
    return loop


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.report is not None:
        path = Path(args.report) if args.report else Path(args.work_dir or load_config(args).work_dir) / RESULT_FILE
        print(write_report(load_record(path), path))
        return {}
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.workers is not None:
        cfg.test_dataloader.num_workers = args.workers
        cfg.test_dataloader.persistent_workers = args.workers > 0 and cfg.test_dataloader.get(
            'persistent_workers', False)
    robustness = robustness_test_cfg(args)
    if robustness is not None:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, **robustness)
    elif args.out:  # as mmpretrain's and mmdet's tools: one more metric dumps the predictions
        cfg.test_evaluator = [*([cfg.test_evaluator] if isinstance(cfg.test_evaluator, dict)
                                else cfg.test_evaluator),
                              dict(type='DumpResults', out_file_path=args.out)]
    metrics = build_runner(cfg).test()
    if robustness is None:
        print(metrics)
    return metrics


if __name__ == '__main__':
    main()
    close_cpu_distributed()
