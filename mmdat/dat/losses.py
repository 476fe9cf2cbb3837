"""How the adversarial half joins the optimised loss: loss-dict helpers (framework-free)."""
from __future__ import annotations

from typing import Union

from torch import Tensor

LossValue = Union[Tensor, list, tuple]

#: prefix of the adversarial losses in the loss dict and the logs
ADV_PREFIX = 'adv_'


def rename_loss_dict(prefix: str, losses: dict) -> dict:
    """``losses`` with every key prefixed (``loss_cls`` -> ``adv_loss_cls``)."""
    return {prefix + name: value for name, value in losses.items()}


def reweight_loss_dict(losses: dict, weight: float) -> dict:
    """``losses`` with every loss term (keys containing ``'loss'``) multiplied by ``weight``.

    Other entries (accuracies, counts) are kept as they are, as OpenMMLab's ``parse_losses`` only
    sums the ``loss`` terms. A weight of exactly 1 returns the same tensors (bit for bit).
    """
    return {name: _scale(value, weight) if 'loss' in name else value for name, value in losses.items()}


def merge_dat_losses(clean: dict, adversarial: dict, clean_weight: float = 1.0,
                     adv_weight: float = 1.0) -> dict:
    """The DAT objective as one loss dict: ``clean_weight * L(x) + adv_weight * L(x_adv)``.

    ``adversarial`` holds the model's loss dict on ``x_adv`` (unprefixed); its terms are renamed
    with :data:`ADV_PREFIX`. The model's ``parse_losses`` then sums both halves in one backward.
    """
    renamed = rename_loss_dict(ADV_PREFIX, reweight_loss_dict(adversarial, adv_weight))
    clash = sorted(set(renamed) & set(clean))
    if clash:
        raise KeyError(f'DAT: the model already reports losses named {clash}; the adversarial '
                       f"losses use the prefix '{ADV_PREFIX}'")
    return {**reweight_loss_dict(clean, clean_weight), **renamed}


def _scale(value: LossValue, weight: float) -> LossValue:
    if weight == 1.0:
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(v * weight for v in value)
    return value * weight
