"""Write corrupted copies of a config's test set: <OUT>/<corruption>/<severity>/ mirrors the data root.

    python tools/dataset_converters/make_corrupted.py CONFIG OUT --corruptions benchmark \
        [--severities 1 2 3 4 5] [--workers 8] [--seed 0] [--legacy-bgr] [--jpeg-quality 95] [--split test]

Each image is corrupted exactly as tools/test.py corrupts it on the fly (same dataset index and
seed), whatever the number of workers; annotation files are linked or copied. Evaluate with
`tools/test.py CONFIG CKPT --corruptions ... --corruption-root OUT`. Re-running continues an
interrupted copy.
"""
from __future__ import annotations

import argparse

from mmengine.config import Config, DictAction

from mmdat.datasets.transforms import CORRUPTION_GROUPS
from mmdat.robustness import make_corrupted_copy


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config whose test (or val) dataset is copied')
    parser.add_argument('out', help='output root')
    parser.add_argument('--corruptions', nargs='+', default=['benchmark'], metavar='NAME',
                        help=f'corruption names or groups: {", ".join(CORRUPTION_GROUPS)} (default: benchmark)')
    parser.add_argument('--severities', nargs='+', type=int, default=[1, 2, 3, 4, 5], metavar='S')
    parser.add_argument('--workers', type=int, default=1, help='worker processes (default 1)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--legacy-bgr', action='store_true', help="corrupt the BGR array as mmdet's tool does")
    parser.add_argument('--jpeg-quality', type=int, default=95, help='quality of JPEG outputs (default 95)')
    parser.add_argument('--split', choices=['test', 'val'], default='test')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error('--workers must be >= 1')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    info = make_corrupted_copy(cfg, args.out, args.corruptions, args.severities, seed=args.seed,
                               legacy_bgr=args.legacy_bgr, workers=args.workers,
                               jpeg_quality=args.jpeg_quality, split=args.split)
    print(f'{info["cells"]} folders of {info["images"]} images in {args.out} '
          f'({info["written"]} images written, {info["seconds"]} s)')


if __name__ == '__main__':
    main()
