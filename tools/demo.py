"""The embedded-default demo: plain vs DAT on the built-in shapes data, clean and under corruptions.

Writes the dataset, trains the task's demo model (configs/demo/) without and with DAT (same seed,
data order and budget; for det, fine-tuned from a backbone pretrained on shape classification),
evaluates both on the clean test split and under the ImageNet-C corruptions at severities 1-5,
prints the side-by-side table and writes two pictures. ``--ablation`` adds the reconstruction-only
model (DAT with eps 0: trains on Q(Q(x)) without the attack).

    python tools/demo.py [--task cls|det|seg] [--work-dir work_dirs/demo/<task>] [--ablation]
                         [--corruptions gaussian_noise ...] [--severities 1 2 3 4 5]
                         [--cfg-options train_cfg.max_epochs=1 ...]
    python tools/demo.py --task cls|det|seg --data-only   # write the dataset only (for tools/train.py)
"""
import argparse
import os
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')  # noise from mmengine's imports

from mmengine.config import DictAction

from mmdat.apis.demo import (ABLATION_MODELS, BENCHMARK_CORRUPTIONS, DEFAULT_MODELS, DEMO_MODELS, DEMO_TASKS,
                             build_demo_data, build_pretrain_data, pretrain_data_root, run_demo)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(DEMO_TASKS), default='cls')
    parser.add_argument('--work-dir', help='output directory (default: work_dirs/demo/<task>)')
    parser.add_argument('--data-root', help="dataset directory (default: the task's, e.g. data/shapes_cls)")
    parser.add_argument('--corruptions', nargs='+', default=list(BENCHMARK_CORRUPTIONS))
    parser.add_argument('--severities', nargs='+', type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument('--num-train', type=int, help="training images (per class for cls); default: the task's")
    parser.add_argument('--num-val', type=int, help="held-out images (per class for cls); default: the task's")
    parser.add_argument('--seed', type=int, default=0)
    models = parser.add_mutually_exclusive_group()
    models.add_argument('--ablation', action='store_true',
                        help='also train the reconstruction-only model (recon: DAT with eps 0, no attack)')
    models.add_argument('--models', nargs='+', choices=list(DEMO_MODELS),
                        help=f'models to compare, the first is the mCE reference (default: {" ".join(DEFAULT_MODELS)})')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (tiny models: 1 is fastest)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help="config overrides for every compared run")
    parser.add_argument('--verbose', action='store_true', help="keep mmengine's INFO logging")
    parser.add_argument('--data-only', action='store_true',
                        help="write the task's dataset (what configs/demo/ read) and stop: no training")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.data_only:
        write_data_only(args)
        return
    os.environ.setdefault('OMP_NUM_THREADS', str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    run_demo(args.task, args.work_dir or f'work_dirs/demo/{args.task}', args.data_root,
             corruptions=args.corruptions, severities=args.severities, seed=args.seed,
             num_train=args.num_train, num_val=args.num_val, cfg_options=args.cfg_options,
             models=args.models or (ABLATION_MODELS if args.ablation else DEFAULT_MODELS), verbose=args.verbose)


def write_data_only(args: argparse.Namespace) -> None:
    """The demo's dataset of ``args.task``, for ``python tools/train.py configs/demo/...``."""
    spec = DEMO_TASKS[args.task]
    data_root = args.data_root or spec.data_root
    info = build_demo_data(args.task, data_root, args.seed, args.num_train, args.num_val)
    sizes = ', '.join(f'{split}: {s.get("num_images")} images' for split, s in info.get('splits', {}).items())
    print(f'Wrote the {args.task} demo dataset to {data_root} ({sizes}). Train on it with\n'
          f'    python tools/train.py {spec.config}'
          + ('' if args.data_root is None else f' (with its data_root set to {data_root})'))
    if spec.pretrain is not None:
        pretrain_root = pretrain_data_root(args.task, args.data_root)
        info = build_pretrain_data(args.task, pretrain_root, args.seed)
        sizes = ', '.join(f'{split}: {s.get("num_images")} images' for split, s in info.get('splits', {}).items())
        print(f"Wrote its backbone's pretraining dataset to {pretrain_root} ({sizes}): "
              f'python tools/train.py {spec.pretrain.config}')


if __name__ == '__main__':
    main()
