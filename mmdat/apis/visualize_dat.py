"""Look at what DAT feeds a model: clean | VQGAN reconstruction | adversarial example, per image.

Training batches go through the config's data pipeline and the upstream part of its DAT data
preprocessor (normalisation, padding, batch augments), then through the DAT attack exactly as in
training (the model in train mode, the attack objective being the model's total training loss).
One PNG per image, three panels side by side, each cropped to the image's valid (unpadded) region,
with the annotations drawn on all three: ground-truth boxes (and instance masks) for detection, the
ground-truth label map blended in for segmentation, the class name for classification.
``index.json`` holds ``images`` (one entry per file, with that image's own statistics: perturbation
and adversarial norms, reconstruction PSNR, on its valid region) and ``batches`` (one entry per
batch: the attack's batch-level numbers, i.e. random start, start loss, skip reason, visual words
changed, once). The command line: ``tools/analysis_tools/visualize_dat.py``.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner, set_random_seed

from mmdat.models.data_preprocessors import DATPreprocessorMixin
from mmdat.engine import load_model_checkpoint
from mmdat.utils import side_by_side, to_uint8_image

TITLES = ('clean', 'VQGAN reconstruction', 'adversarial')
GAP = 4          # white columns between the panels
HEADER = 14      # white strip above the panels, for their titles


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
        load_model_checkpoint(model, checkpoint, map_location='cpu')
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


def image_statistics(images: torch.Tensor, result, sizes, norm: str) -> list[dict]:
    """Each image's DAT numbers on its valid region: ``reconstruction_psnr`` (x_rec against x, dB),
    ``perturbation_norm`` (x' - x_rec in the attack's norm) and ``adversarial_norm`` (L2 of
    x_adv - x_rec); the last two are absent when the batch was skipped."""
    stats = []
    for i, (h, w) in enumerate(sizes):
        clean, rec = images[i, :, :h, :w].float(), result.reconstruction[i, :, :h, :w].float()
        mse = float((rec - clean).square().mean())
        entry = dict(reconstruction_psnr=10 * math.log10(1.0 / max(mse, 1e-12)))
        if not result.skipped:
            delta = (result.perturbed[i, :, :h, :w] - rec).flatten()
            entry['perturbation_norm'] = float(delta.abs().max() if norm == 'linf' else delta.norm())
            entry['adversarial_norm'] = float((result.adversarial[i, :, :h, :w] - rec).flatten().norm())
        stats.append(entry)
    return stats


def visualize_dat(cfg, num: int, out_dir: str, checkpoint: str | None = None,
                  vqgan_checkpoint: str | None = None, seed: int = 0, scale: int = 0,
                  device: str = 'cpu') -> list[dict]:
    """Write ``num`` clean | reconstruction | adversarial triplets of ``cfg``'s training batches to
    ``out_dir`` (PNG files and ``index.json``); returns the index, ``dict(images=[...], batches=[...])``.
    See the module docstring."""
    if num < 1:
        raise ValueError('num must be >= 1')
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    set_random_seed(seed)

    model = build_model(cfg, device, checkpoint)
    pre = model.data_preprocessor
    if not isinstance(pre, DATPreprocessorMixin):
        raise TypeError(f'the model uses {type(pre).__name__}, not a DAT data preprocessor '
                        '(DATClsDataPreprocessor, DATDetDataPreprocessor or DATSegDataPreProcessor)')
    vqgan_cfg = dat_hook_vqgan_cfg(cfg)
    if vqgan_checkpoint:
        vqgan_cfg['checkpoint'] = vqgan_checkpoint
    vqgan = MODELS.build(vqgan_cfg).to(device).requires_grad_(False).eval()
    pre.attach_dat(model, vqgan, seed=seed)
    model.train()  # as in training: the attack's objective is the training loss

    dataloader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=seed)
    metainfo = dict(getattr(dataloader.dataset, 'metainfo', None) or {})
    classes = metainfo.get('classes')
    palette = palette_for(metainfo, len(classes) if classes else 256)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images_index, batches_index, written = [], [], 0
    for batch_idx, data in enumerate(dataloader):
        # the upstream preprocessing of a training batch (no DAT), then the DAT examples
        data = pre.preprocess(data, True)
        inputs, samples = data['inputs'], data['data_samples']
        result = pre.generate_dat_examples(inputs, samples, collect_stats=True, step=batch_idx)
        clean = pre.to_unit_rgb(inputs.detach())
        adversarial = result.reconstruction if result.skipped else result.adversarial
        stats = dict(result.stats, random_start=result.random_start, start_loss=result.start_loss,
                     skipped=result.skipped_reason)
        print_log(f'batch {batch_idx}: ' + ', '.join(
            f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in stats.items()),
            logger='current')
        batches_index.append(dict(batch=batch_idx, size=len(samples), stats=stats))
        sizes = pre.valid_sizes(inputs, samples) or [tuple(inputs.shape[-2:])] * len(samples)
        per_image = image_statistics(clean, result, sizes, pre.dat_attack.norm)
        for i, sample in enumerate(samples):
            if written >= num:
                break
            h, w = sizes[i]
            k = scale or max(1, -(-128 // h))
            panels = [annotate(upscale(to_uint8_image(t[i, :, :h, :w]), k), sample, k, h, w, classes, palette)
                      for t in (clean, result.reconstruction, adversarial)]
            image = triplet(panels)
            name = Path(str(sample.metainfo.get('img_path', f'{i}'))).stem
            path = out / f'{written:04d}_{name}.png'
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            images_index.append(dict(file=path.name, batch=batch_idx, img_shape=[h, w], scale=k,
                                     panel_width=w * k, gap=GAP, header=HEADER,
                                     width=int(image.shape[1]), height=int(image.shape[0]), stats=per_image[i]))
            written += 1
        if written >= num:
            break
    index = dict(images=images_index, batches=batches_index)
    (out / 'index.json').write_text(json.dumps(index, indent=1))
    return index
