"""Pictures of what DAT feeds the model: clean | VQGAN reconstruction | adversarial example."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from torch import Tensor


def to_uint8_image(image: Tensor) -> np.ndarray:
    """(3, H, W) RGB float in [0, 1] -> contiguous (H, W, 3) uint8 (drawable with cv2)."""
    return np.ascontiguousarray(
        (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Equal-height (H, W, 3) uint8 panels in one row, separated by white columns ``gap`` wide."""
    spacer = np.full((panels[0].shape[0], gap, 3), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [spacer, panel]
    return np.concatenate(row, axis=1)


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
        rows.append(side_by_side([to_uint8_image(examples[k][i, :, :h, :w])
                                  for k in ('clean', 'reconstruction', 'adversarial')], gap))
    width = max(r.shape[1] for r in rows)
    padded = []
    for r in rows:
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        padded += [np.concatenate([r, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(padded[:-1], axis=0)

