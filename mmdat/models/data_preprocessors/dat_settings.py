"""The ``dat=dict(...)`` settings of a DAT data preprocessor: defaults and validation."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from mmdat.dat import DATAttack

#: the defaults of every DAT setting (the paper's recipe)
DAT_DEFAULTS = dict(eps=0.1, step_size=0.1, steps=1, norm='l2', random_start_prob=0.8, apply_prob=1.0,
                    clean_loss_weight=1.0, adv_loss_weight=1.0, vqgan_max_size=None,
                    channel_order='auto', enabled=True)
_ATTACK_KEYS = ('eps', 'step_size', 'steps', 'norm', 'random_start_prob', 'vqgan_max_size')


def parse_dat_settings(dat: Optional[dict], normalization: Optional[tuple[Tensor, Tensor]]) -> dict:
    """The complete settings, checked when the config is built.

    Args:
        dat (dict, optional): what the config states; missing keys take :data:`DAT_DEFAULTS`:
            eps (float, 0.1), step_size (float, 0.1): L2 (or Linf) radius and step, in [0, 1] RGB pixel
            units whatever the normalisation; steps (int, 1); norm (str, ``'l2'`` or ``'linf'``);
            random_start_prob (float, 0.8): one draw per batch; apply_prob (float, 1.0): probability
            that an iteration uses DAT (same draw on all ranks); clean_loss_weight, adv_loss_weight
            (float, 1.0 each): the objective ``w_c L(x) + w_a L(x_adv)``; vqgan_max_size (int, None):
            run the VQGAN at most at this longer side (a deviation from the paper, for detection
            sizes); channel_order (str, ``'auto'``): model input order, ``'auto'`` (as upstream
            produces it), ``'rgb'`` or ``'bgr'``; enabled (bool, True): False = plain training with
            the same preprocessing.
        normalization: the upstream (mean, std), to check that inputs have 3 channels when DAT is
            on (with DAT off the preprocessor is exactly the upstream one, grayscale included).
    """
    unknown = set(dat or {}) - set(DAT_DEFAULTS)
    if unknown:
        raise KeyError(f'unknown DAT settings {sorted(unknown)}; valid: {sorted(DAT_DEFAULTS)}')
    cfg = {**DAT_DEFAULTS, **(dat or {})}
    if cfg['channel_order'] not in ('auto', 'rgb', 'bgr'):
        raise ValueError(f"dat.channel_order must be 'auto', 'rgb' or 'bgr', got {cfg['channel_order']!r}")
    if not 0.0 <= cfg['apply_prob'] <= 1.0:
        raise ValueError(f"dat.apply_prob must be in [0, 1], got {cfg['apply_prob']}")
    if cfg['enabled'] and normalization is not None and normalization[0].numel() != 3:
        raise ValueError(
            f'DAT needs 3-channel RGB/BGR inputs, but the preprocessor normalises '
            f'{normalization[0].numel()} channels. Convert grayscale images to 3 channels in the '
            "pipeline (e.g. LoadImageFromFile(color_type='color')) or drop the alpha channel.")
    DATAttack.check_settings(**attack_settings(cfg))
    return cfg


def attack_settings(cfg: dict) -> dict:
    """The part of the settings that :class:`~mmdat.dat.DATAttack` takes."""
    return {k: cfg[k] for k in _ATTACK_KEYS}
