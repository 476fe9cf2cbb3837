"""``VQGANDataPreprocessor``: images to the VQGAN's [-1, 1] RGB range, with cheap crops early in training."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from mmengine.logging import MessageHub
from mmengine.model import ImgDataPreprocessor

from mmdat.registry import MODELS

__all__ = ['VQGANDataPreprocessor']


@MODELS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class VQGANDataPreprocessor(ImgDataPreprocessor):
    """Stack uint8 images and map them to RGB in [-1, 1] (``x / 127.5 - 1``); optionally crop in training.

    A VQGAN is convolutional up to its attention layers, so most of its training can run on small
    random crops (cheap); the last iterations on full images then fit the attention to the
    latent grid of real inputs. The crop is one random window for the whole batch, taken with
    torch's global generator (seeded by the runner's ``randomness``), in training only, while
    the iteration (mmengine's message hub ``iter``) is below ``crop_until``.

    Args:
        bgr_to_rgb (bool): swap channels (images loaded by OpenCV are BGR). Defaults to False.
        crop_size (int | Sequence[int], optional): (h, w) of the training crops; None: no crops.
            Defaults to None.
        crop_until (int, optional): iteration from which training uses full images; None:
            crops throughout. Defaults to None.
        pad_size_divisor (int): pad the batch to a multiple of this. Defaults to 1.
    """

    def __init__(self, bgr_to_rgb: bool = False, crop_size: Union[None, int, Sequence[int]] = None,
                 crop_until: Optional[int] = None, pad_size_divisor: int = 1) -> None:
        super().__init__(mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=bgr_to_rgb, pad_size_divisor=pad_size_divisor)
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if crop_size is not None and (len(crop_size) != 2 or min(crop_size) < 1):
            raise ValueError(f'crop_size must be a positive int or (h, w), got {crop_size!r}')
        self.crop_size = tuple(int(v) for v in crop_size) if crop_size is not None else None
        self.crop_until = crop_until

    def cropping(self) -> bool:
        """Whether training crops at the current iteration."""
        if self.crop_size is None:
            return False
        return self.crop_until is None or MessageHub.get_current_instance().get_info('iter', 0) < self.crop_until

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if training and self.cropping():
            inputs = data['inputs']
            (h, w), (ch, cw) = inputs.shape[-2:], self.crop_size
            if ch > h or cw > w:
                raise ValueError(f'crop_size {self.crop_size} exceeds the training images ({h}, {w})')
            top = int(torch.randint(h - ch + 1, ()))
            left = int(torch.randint(w - cw + 1, ()))
            data['inputs'] = inputs[..., top:top + ch, left:left + cw].contiguous()
        return data
