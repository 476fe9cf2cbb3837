"""Pictures of what DAT feeds the model: clean | VQGAN reconstruction | adversarial example."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from torch import Tensor


def to_uint8_image(image: Tensor) -> np.ndarray:
    """(3, H, W) RGB float in [0, 1] -> (H, W, 3) uint8."""
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def dat_triplet_grid(examples: dict, max_images: int = 2, gap: int = 4,
                     sizes: Optional[Sequence[tuple[int, int]]] = None) -> np.ndarray:
    """One row per image: clean | reconstruction | adversarial, each cropped to its valid region.

    ``examples`` has (B, 3, H, W) RGB [0, 1] tensors under ``clean``, ``reconstruction`` and
    ``adversarial``, and optionally ``sizes`` (valid (h, w) per image). Returns an RGB uint8 array.
    """
    clean = examples['clean']
    sizes = sizes or examples.get('sizes') or [tuple(clean.shape[-2:])] * clean.shape[0]
    rows = []
    for i in range(min(max_images, clean.shape[0])):
        h, w = sizes[i]
        panels = [to_uint8_image(examples[k][i, :, :h, :w])
                  for k in ('clean', 'reconstruction', 'adversarial')]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        rows.append(np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1))
    width = max(r.shape[1] for r in rows)
    padded = []
    for r in rows:
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        padded += [np.concatenate([r, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(padded[:-1], axis=0)

