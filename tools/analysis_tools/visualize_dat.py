"""Look at what DAT feeds a model: clean | VQGAN reconstruction | adversarial example, per image.

    python tools/analysis_tools/visualize_dat.py CONFIG --num N --out DIR \\
        [--checkpoint MODEL.pth] [--vqgan-checkpoint PATH] [--seed S] [--scale K] [--cfg-options ...]

Training batches go through the config's data pipeline and the upstream part of its DAT data
preprocessor (normalisation, padding, batch augments), then through the DAT attack exactly as in
training (the model in train mode, the attack objective being the model's total training loss).
One PNG per image is written to DIR, three panels side by side, each cropped to the image's valid
(unpadded) region, with the annotations drawn on all three: ground-truth boxes (and instance masks)
for detection, the ground-truth label map blended in for segmentation, the class name for
classification. ``--num`` counts images: training batches are drawn until N images are written.
``DIR/index.json`` lists the files with each image's DAT statistics (``images``) and the
batch-level ones once per batch (``batches``).

The VQGAN is the one of the config's ``DATHook``; ``--vqgan-checkpoint`` replaces its checkpoint
(e.g. a local copy of the published weights). ``--checkpoint`` loads trained model weights (by
default the attack runs against the freshly initialised model of the config).
"""
from __future__ import annotations

import argparse

import torch
from mmengine.config import DictAction

from mmdat.apis import load_config
from mmdat.apis.visualize_dat import visualize_dat


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write clean | reconstruction | adversarial triplets of DAT training batches')
    parser.add_argument('config', help='a DAT training config')
    parser.add_argument('--num', type=int, default=8,
                        help='number of images to write (batches are drawn until there are N)')
    parser.add_argument('--out', required=True, help='output directory for the PNG files')
    parser.add_argument('--checkpoint', help='model weights to attack (default: the initialised model)')
    parser.add_argument('--vqgan-checkpoint', help="replace the checkpoint of the DATHook's VQGAN")
    parser.add_argument('--seed', type=int, default=0, help='seed of data sampling and DAT decisions')
    parser.add_argument('--scale', type=int, default=0,
                        help='integer up-scaling of the panels (0: so that each is >= 128 px high)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_dataloader.batch_size=4')
    parser.set_defaults(launcher='none', local_rank=0, work_dir=None)  # for load_config
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.num < 1:
        raise SystemExit('--num must be >= 1')
    index = visualize_dat(load_config(args), args.num, args.out, checkpoint=args.checkpoint,
                          vqgan_checkpoint=args.vqgan_checkpoint, seed=args.seed, scale=args.scale,
                          device=args.device)
    print(f'Wrote {len(index["images"])} DAT triplets (clean | reconstruction | adversarial) to {args.out}')


if __name__ == '__main__':
    main()
