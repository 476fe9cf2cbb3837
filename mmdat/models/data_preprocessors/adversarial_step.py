"""One DAT step on a preprocessed batch: the attack, then the adversarial forward of the model."""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from mmdat.dat import DATAttack, DATIterationSettings, DATResult
from .color_space import ModelInputSpace
from .rank_agreement import describe_ranks, ranks_flagging

ImageSizes = Optional[list[tuple[int, int]]]


@dataclass
class StepOutcome:
    """What one DAT step produced: the attack's result, the adversarial losses (None if skipped)."""

    result: DATResult
    losses: Optional[dict]
    skipped_reason: Optional[str]
    sizes: ImageSizes


class AdversarialStep:
    """Generates ``x_adv`` for a batch and computes the model's losses on it.

    Args:
        model: the unwrapped task model (``loss(inputs, data_samples)``, ``parse_losses(losses)``);
            kept as a weak reference, so the model's module tree never holds itself or the VQGAN.
        attack: the DAT attack with its VQGAN.
        input_space: returns how model inputs map to RGB [0, 1] (read at each call: the
            preprocessor's mean/std buffers follow the model's device).
    """

    def __init__(self, model: torch.nn.Module, attack: DATAttack,
                 input_space: Callable[[], ModelInputSpace]) -> None:
        self._model_ref = weakref.ref(model)
        self.attack = attack
        self.input_space = input_space

    @property
    def model(self) -> torch.nn.Module:
        model = self._model_ref()
        if model is None:
            raise RuntimeError('DAT: the task model this preprocessor was attached to no longer exists')
        return model

    def total_loss(self, inputs: Tensor, data_samples: Any) -> Tensor:
        """The model's optimised loss (``parse_losses`` of ``loss``) on ``inputs``."""
        loss, _ = self.model.parse_losses(self.model.loss(inputs, data_samples))
        return loss

    def examples(self, inputs: Tensor, data_samples: Any, sizes: ImageSizes, step: Optional[int],
                 collect_stats: bool = False, strength: float = 1.0) -> DATResult:
        """x_rec and x_adv (RGB [0, 1]) for a preprocessed batch. The attack's forward runs in the
        model's current mode (train: BatchNorm statistics are updated, as in the reference)."""
        attack_samples = copy.deepcopy(data_samples)
        clean_inputs = inputs.detach()
        space = self.input_space()

        def loss_fn(images: Tensor) -> Tensor:
            return self.total_loss(to_model_inputs(space, images, clean_inputs, sizes), attack_samples)

        return self.attack.run(space.to_unit_rgb(clean_inputs), loss_fn, sizes, step=step,
                               collect_stats=collect_stats, strength=strength)

    def run(self, inputs: Tensor, data_samples: Any, step: Optional[int],
            settings: DATIterationSettings) -> StepOutcome:
        """The attack, then the model's losses on ``x_adv``; skipped on non-finite values.

        A skip is agreed by every rank (:func:`ranks_flagging`): a non-finite attack loss or gradient
        on any rank skips the adversarial forward on all of them, before it runs (its collectives,
        e.g. SyncBN or a loss's ``reduce_mean``, would otherwise mismatch); a non-finite adversarial
        loss on any rank drops the adversarial losses on all of them (every rank ran the same
        forwards).
        """
        sizes = valid_sizes(inputs, data_samples)
        result = self.examples(inputs, data_samples, sizes, step, settings.collect_stats, settings.strength)
        failed = ranks_flagging(result.skipped)
        if failed:
            reason = (result.skipped_reason or 'non-finite attack loss or gradient') + describe_ranks(failed)
            return StepOutcome(result, None, reason, sizes)
        losses, reason = self.adversarial_losses(inputs, data_samples, result, sizes)
        failed = ranks_flagging(reason is not None)
        if failed:
            reason = (reason or 'non-finite adversarial loss') + describe_ranks(failed)
            return StepOutcome(result, None, reason, sizes)
        return StepOutcome(result, losses, None, sizes)

    def adversarial_losses(self, inputs: Tensor, data_samples: Any, result: DATResult,
                           sizes: ImageSizes) -> tuple[dict, Optional[str]]:
        """The model's loss dict on ``x_adv`` (graph kept) and why it is unusable (None if finite)."""
        adv_inputs = to_model_inputs(self.input_space(), result.adversarial, inputs.detach(), sizes)
        model = self.model
        losses = model.loss(adv_inputs, copy.deepcopy(data_samples))
        total, _ = model.parse_losses(losses)
        if not torch.isfinite(total.detach()):
            return losses, f'non-finite adversarial loss ({float(total.detach())})'
        return losses, None


def to_model_inputs(space: ModelInputSpace, images: Tensor, clean_inputs: Tensor,
                    sizes: ImageSizes) -> Tensor:
    """RGB [0, 1] -> model inputs, with the padding of ``clean_inputs`` restored bit for bit."""
    x = space.from_unit_rgb(images).to(clean_inputs.dtype)
    if sizes is None:
        return x
    keep = torch.ones_like(clean_inputs[:, :1], dtype=torch.bool)
    for i, (vh, vw) in enumerate(sizes):
        keep[i, :, :vh, :vw] = False
    return torch.where(keep, clean_inputs, x)


def valid_sizes(inputs: Tensor, data_samples: Any) -> ImageSizes:
    """Each image's unpadded size (``img_shape``), or None when every image fills the batch."""
    h, w = inputs.shape[-2:]
    if not data_samples or not all('img_shape' in s.metainfo for s in data_samples):
        return None
    sizes = [(min(int(s.img_shape[0]), h), min(int(s.img_shape[1]), w)) for s in data_samples]
    return None if all(s == (h, w) for s in sizes) else sizes
