"""The embedded default: DAT on the built-in shapes dataset with the tiny VQGAN, on the CPU.

Writes the dataset, trains a tiny ResNet with DAT (configs/demo/resnet-tiny_dat_shapes.py),
optionally the same model without DAT, and evaluates on the clean validation set and on
corrupted copies of it (ImageNet-C-style corruptions from `imagecorruptions`).

    python tools/demo.py [--work-dir work_dirs/demo] [--compare-plain] [--epochs N]
"""
from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path

import numpy as np
from _common import ROOT
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner
from PIL import Image

from mmdat.datasets import make_shapes_classification

CONFIG = ROOT / 'configs/demo/resnet-tiny_dat_shapes.py'
CORRUPTIONS = ('gaussian_noise', 'defocus_blur', 'contrast', 'jpeg_compression')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/shapes_cls')
    parser.add_argument('--num-per-class', type=int, default=64)
    parser.add_argument('--epochs', type=int, default=None, help='default: the config')
    parser.add_argument('--severity', type=int, default=3, help='corruption severity 1-5')
    parser.add_argument('--compare-plain', action='store_true',
                        help='also train without DAT and print both side by side')
    return parser.parse_args()


def write_corrupted_copy(data_root: Path, corruption: str, severity: int) -> Path:
    """A copy of the val split with one corruption applied (same layout, same annotation file)."""
    from imagecorruptions import corrupt
    out = data_root.parent / f'{data_root.name}-c' / f'{corruption}-{severity}'
    if (out / 'meta' / 'val.txt').exists():
        return out
    rng_state = np.random.get_state()
    np.random.seed(severity)  # imagecorruptions draws from numpy's global RNG
    for line in (data_root / 'meta' / 'val.txt').read_text().splitlines():
        rel = line.split()[0]
        img = np.asarray(Image.open(data_root / 'val' / rel).convert('RGB'))
        bad = np.uint8(np.clip(corrupt(img, corruption_name=corruption, severity=severity), 0, 255))
        (out / 'val' / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(bad[:img.shape[0], :img.shape[1]]).save(out / 'val' / rel)
    np.random.set_state(rng_state)
    (out / 'meta').mkdir(parents=True, exist_ok=True)
    (out / 'meta' / 'val.txt').write_text((data_root / 'meta' / 'val.txt').read_text())
    return out


def train_and_evaluate(args, name: str, dat_enabled: bool, corrupted: dict) -> dict:
    cfg = Config.fromfile(str(CONFIG))
    cfg.work_dir = str(Path(args.work_dir) / name)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = args.data_root
    cfg.data_preprocessor.dat.enabled = dat_enabled
    if args.epochs is not None:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.param_scheduler[0].T_max = args.epochs
    runner = Runner.from_cfg(cfg)
    runner.train()
    results = {'clean': runner.test()['accuracy/top1']}
    for corruption, root in corrupted.items():
        loader = copy.deepcopy(cfg.test_dataloader)
        loader.dataset.data_root = str(root)
        runner.test_loop.dataloader = runner.build_dataloader(loader)
        results[corruption] = runner.test()['accuracy/top1']
    results['mean corrupted'] = float(np.mean([results[c] for c in corrupted]))
    return results


def main() -> None:
    args = parse_args()
    data_root = Path(args.data_root)
    info = make_shapes_classification(data_root, num_per_class=args.num_per_class, size=32)
    print_log(f'built-in shapes dataset at {data_root}: {info}', logger='current')
    corrupted = {c: write_corrupted_copy(data_root, c, args.severity) for c in CORRUPTIONS}
    runs = {'DAT': train_and_evaluate(args, 'dat', True, corrupted)}
    if args.compare_plain:
        runs['plain'] = train_and_evaluate(args, 'plain', False, corrupted)
    rows = list(runs['DAT'])
    lines = [f"{'top-1 (%)':<18}" + ''.join(f'{k:>10}' for k in runs)]
    lines += [f'{r:<18}' + ''.join(f'{runs[k][r]:>10.2f}' for k in runs) for r in rows]
    table = '\n'.join(lines)
    print_log(f'\nDAT demo results (severity {args.severity} corruptions):\n{table}\n'
              f"logs, checkpoints and DAT pictures: {args.work_dir}", logger='current',
              level=logging.INFO)
    (Path(args.work_dir) / 'results.txt').write_text(table + '\n')


if __name__ == '__main__':
    main()
