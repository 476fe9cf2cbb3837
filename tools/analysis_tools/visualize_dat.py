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
``DIR/index.json`` lists the files with the per-batch DAT statistics.

The VQGAN is the one of the config's ``DATHook``; ``--vqgan-checkpoint`` replaces its checkpoint
(e.g. a local copy of the published weights). ``--checkpoint`` loads trained model weights (by
default the attack runs against the freshly initialised model of the config).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/: the shared set-up

from _common import load_config  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402
from mmengine.runner import Runner, load_checkpoint, set_random_seed  # noqa: E402

from mmdat.models.data_preprocessors import DATPreprocessorMixin  # noqa: E402
from mmdat.utils import side_by_side, to_uint8_image  # noqa: E402

TITLES = ('clean', 'VQGAN reconstruction', 'adversarial')
GAP = 4          # white columns between the panels
HEADER = 14      # white strip above the panels, for their titles


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


def dat_hook_vqgan_cfg(cfg) -> dict:
    for hook in cfg.get('custom_hooks') or []:
        hook_type = hook.get('type')
        if hook_type == 'DATHook' or getattr(hook_type, '__name__', None) == 'DATHook':
            return copy.deepcopy(dict(hook['vqgan']))
    raise KeyError('the config has no DATHook in custom_hooks: nothing tells which VQGAN DAT uses')


def build_model(cfg, device: str, checkpoint: str | None = None) -> torch.nn.Module:
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:  # mmpretrain keeps it at the top level
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    model = MODELS.build(model_cfg)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    elif hasattr(model, 'init_weights'):
        model.init_weights()
    return model.to(device)


# ----------------------------------------------------------------------------- drawing
def palette_for(metainfo: dict, n: int) -> list[tuple[int, int, int]]:
    palette = [tuple(int(c) for c in p) for p in (metainfo.get('palette') or [])]
    rng = np.random.RandomState(42)
    while len(palette) < n:
        palette.append(tuple(int(c) for c in rng.randint(0, 256, 3)))
    return palette


def class_name(classes, label: int) -> str:
    return str(classes[label]) if classes is not None and 0 <= label < len(classes) else str(label)


def put_text(img: np.ndarray, text: str, org: tuple[int, int], colour=(255, 255, 255),
             outline=(0, 0, 0), scale: float = 0.35) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    if outline is not None:
        cv2.putText(img, text, org, font, scale, outline, 2, cv2.LINE_AA)
    cv2.putText(img, text, org, font, scale, colour, 1, cv2.LINE_AA)


def upscale(img: np.ndarray, k: int, nearest: bool = True) -> np.ndarray:
    if k == 1:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (w * k, h * k), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def annotate(panel: np.ndarray, sample, k: int, h: int, w: int, classes, palette) -> np.ndarray:
    """Draw the ground truth of ``sample`` on an RGB panel up-scaled by ``k``."""
    panel = panel.copy()
    if 'gt_sem_seg' in sample:  # segmentation: blend the label map in (255 = ignored: left as is)
        seg = sample.gt_sem_seg.data[0, :h, :w].cpu().numpy().astype(np.int64)
        seg = upscale(seg.astype(np.uint8), k) if k > 1 else seg
        colours = np.zeros_like(panel)
        known = np.zeros(seg.shape, bool)
        for label in np.unique(seg):
            if 0 <= label < len(palette):
                colours[seg == label] = palette[label]
                known |= seg == label
        panel[known] = (0.5 * panel[known] + 0.5 * colours[known]).round().astype(np.uint8)
    if 'gt_instances' in sample:  # detection: masks blended in, boxes and class names on top
        inst = sample.gt_instances
        labels = [int(v) for v in inst.labels.tolist()] if 'labels' in inst else []
        if 'masks' in inst and len(labels):
            masks = inst.masks.to_ndarray()[:, :h, :w].astype(bool)
            for mask, label in zip(masks, labels):
                mask = upscale(mask.astype(np.uint8), k).astype(bool)
                colour = np.array(palette[label % len(palette)], np.float64)
                panel[mask] = (0.6 * panel[mask] + 0.4 * colour).round().astype(np.uint8)
        if 'bboxes' in inst:
            boxes = inst.bboxes
            boxes = getattr(boxes, 'tensor', boxes).detach().cpu().numpy()
            for box, label in zip(boxes, labels):
                x0, y0, x1, y1 = (int(round(float(v) * k)) for v in box)
                colour = palette[label % len(palette)]
                cv2.rectangle(panel, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, 1)
                put_text(panel, class_name(classes, label), (x0 + 1, max(9, y0 - 2)), colour)
    if 'gt_label' in sample or 'gt_score' in sample:  # classification: the class name
        if 'gt_score' in sample and sample.gt_score.numel() > 1:
            label = int(sample.gt_score.argmax())
            text = f'{class_name(classes, label)} {float(sample.gt_score[label]):.2f}'
        else:
            label = int(sample.gt_label.reshape(-1)[0])
            text = class_name(classes, label)
        put_text(panel, text, (2, panel.shape[0] - 4))
    return panel


def triplet(images: list[np.ndarray]) -> np.ndarray:
    """Panels side by side (white gaps) under a white header with their titles; RGB uint8."""
    w = images[0].shape[1]
    row = side_by_side(images, GAP)
    header = np.full((HEADER, row.shape[1], 3), 255, np.uint8)
    for i, title in enumerate(TITLES):
        put_text(header, title, (i * (w + GAP) + 2, HEADER - 4), colour=(0, 0, 0), outline=None,
                 scale=0.3)
    return np.concatenate([header, row], axis=0)


# ----------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    if args.num < 1:
        raise SystemExit('--num must be >= 1')
    cfg = load_config(args)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    set_random_seed(args.seed)

    model = build_model(cfg, args.device, args.checkpoint)
    pre = model.data_preprocessor
    if not isinstance(pre, DATPreprocessorMixin):
        raise SystemExit(f'{args.config}: the model uses {type(pre).__name__}, not a DAT data preprocessor '
                         '(DATClsDataPreprocessor, DATDetDataPreprocessor or DATSegDataPreProcessor)')
    vqgan_cfg = dat_hook_vqgan_cfg(cfg)
    if args.vqgan_checkpoint:
        vqgan_cfg['checkpoint'] = args.vqgan_checkpoint
    vqgan = MODELS.build(vqgan_cfg).to(args.device).requires_grad_(False).eval()
    pre.attach_dat(model, vqgan, seed=args.seed)
    model.train()  # as in training: the attack's objective is the training loss

    dataloader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=args.seed)
    metainfo = dict(getattr(dataloader.dataset, 'metainfo', None) or {})
    classes = metainfo.get('classes')
    palette = palette_for(metainfo, len(classes) if classes else 256)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index, written = [], 0
    for batch_idx, data in enumerate(dataloader):
        # the upstream preprocessing of a training batch (no DAT), then the DAT examples
        data = pre.preprocess(data, True)
        inputs, samples = data['inputs'], data['data_samples']
        pre.dat_step = batch_idx
        result = pre.generate_dat_examples(inputs, samples, collect_stats=True)
        clean = pre.to_unit_rgb(inputs.detach())
        adversarial = result.reconstruction if result.skipped else result.adversarial
        stats = dict(result.stats, random_start=result.random_start, start_loss=result.start_loss,
                     skipped=result.skipped_reason)
        print(f'batch {batch_idx}: ' + ', '.join(
            f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in stats.items()))
        sizes = pre.valid_sizes(inputs, samples) or [tuple(inputs.shape[-2:])] * len(samples)
        for i, sample in enumerate(samples):
            if written >= args.num:
                break
            h, w = sizes[i]
            k = args.scale or max(1, -(-128 // h))
            panels = [annotate(upscale(to_uint8_image(t[i, :, :h, :w]), k), sample, k, h, w, classes, palette)
                      for t in (clean, result.reconstruction, adversarial)]
            image = triplet(panels)
            name = Path(str(sample.metainfo.get('img_path', f'{i}'))).stem
            path = out / f'{written:04d}_{name}.png'
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            index.append(dict(file=path.name, batch=batch_idx, img_shape=[h, w], scale=k,
                              panel_width=w * k, gap=GAP, header=HEADER,
                              width=int(image.shape[1]), height=int(image.shape[0]), stats=stats))
            written += 1
        if written >= args.num:
            break
    (out / 'index.json').write_text(json.dumps(index, indent=1))
    print(f'Wrote {written} DAT triplets (clean | reconstruction | adversarial) to {out.resolve()}')


if __name__ == '__main__':
    main()
