"""Model inputs <-> the VQGAN's colour space (RGB in [0, 1])."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor


@dataclass
class ModelInputSpace:
    """How a preprocessor's output relates to RGB [0, 1] images.

    Args:
        mean, std: per-channel normalisation ``(x - mean) / std`` applied to 0-255 pixels in the
            model's channel order, shaped (C, 1, 1); None when the preprocessor does not normalise.
        rgb: whether the model's channel order is RGB (else BGR, OpenMMLab's loading order).
    """

    mean: Optional[Tensor]
    std: Optional[Tensor]
    rgb: bool

    def to_unit_rgb(self, inputs: Tensor) -> Tensor:
        """Model inputs (normalised, model channel order) -> RGB in [0, 1], float32."""
        x = inputs.float()
        if self.mean is not None:
            x = x * self.std + self.mean
        x = x / 255.0
        return x if self.rgb else x.flip(1)

    def from_unit_rgb(self, images: Tensor) -> Tensor:
        """RGB in [0, 1] -> model inputs (normalised, model channel order)."""
        x = images if self.rgb else images.flip(1)
        x = x * 255.0
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x
