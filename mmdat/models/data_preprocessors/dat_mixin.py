"""The piece every DAT data preprocessor shares: run DAT on the normalised training batch.

How the batch is composed (identical to the reference code's two forward passes):

* The preprocessor returns the *clean* batch ``x``; the model's normal forward (through DDP when
  distributed) computes ``L(x)``.
* Inside the preprocessor (which OpenMMLab runs in ``train_step`` with gradients on, under the
  optimizer's autocast context), DAT builds ``x_adv`` and runs a second forward of the unwrapped model
  on it, keeping the graph. Its losses are added, prefixed ``adv_``, to the clean losses when the
  model parses them, so the optimised objective is ``w_clean * L(x) + w_adv * L(x_adv)`` (1:1 by
  default, exactly the reference's scale) and one backward covers both halves.
* BatchNorm therefore sees clean and adversarial examples in *separate* batches, as in the
  reference; its running statistics are updated by the attack forward, the adversarial forward and
  the clean forward (the reference also keeps the model in train mode during the attack).

The input-gradient of the attack is taken with ``torch.autograd.grad`` on a detached input, so no
gradient reaches the parameters before the real backward and DDP's hooks do not fire.
"""
from __future__ import annotations

import copy
import math
import types
import weakref
from typing import Any, Optional

import torch
from mmengine.logging import MessageHub, print_log
from torch import Tensor

from mmdat.dat import DATAttack, DATResult

ADV_PREFIX = 'adv_'


class DATPreprocessorMixin:
    """Adds DAT to an OpenMMLab data preprocessor. Mix in *before* the upstream class.

    Args (keyword ``dat`` of the preprocessor):
        eps, step_size, steps, norm, random_start_prob: attack settings (see :class:`DATAttack`),
            in [0, 1] RGB pixel units whatever the model's input normalisation.
        apply_prob: probability that an iteration uses DAT at all (drawn identically on all ranks).
        clean_loss_weight, adv_loss_weight: weights of ``L(x)`` and ``L(x_adv)``.
        vqgan_max_size: run the VQGAN at most at this longer side (resize down and back).
            Deviation from the paper, for detection resolutions; None (default) = training size.
        channel_order: ``'auto'`` (RGB if the preprocessor converts BGR->RGB, else BGR, the order
            OpenMMLab's loaders produce), ``'rgb'`` or ``'bgr'``: the channel order of the model input.
        enabled: switch DAT off without changing the model (plain training, same preprocessing).
    """

    #: name of the upstream attribute telling whether the channels were flipped to RGB
    _channel_flag: str = '_channel_conversion'

    def __init__(self, *args, dat: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = dict(eps=0.1, step_size=0.1, steps=1, norm='l2', random_start_prob=0.8,
                   apply_prob=1.0, clean_loss_weight=1.0, adv_loss_weight=1.0,
                   vqgan_max_size=None, channel_order='auto', enabled=True)
        unknown = set(dat or {}) - set(cfg)
        if unknown:
            raise KeyError(f'unknown DAT settings {sorted(unknown)}; valid: {sorted(cfg)}')
        cfg.update(dat or {})
        if cfg['channel_order'] not in ('auto', 'rgb', 'bgr'):
            raise ValueError(f"dat.channel_order must be 'auto', 'rgb' or 'bgr', got {cfg['channel_order']!r}")
        if getattr(self, '_enable_normalize', False) and self.mean.numel() != 3:
            raise ValueError(
                f'DAT needs 3-channel RGB/BGR inputs, but the preprocessor normalises '
                f'{self.mean.numel()} channels. Convert grayscale images to 3 channels in the '
                f"pipeline (e.g. LoadImageFromFile(color_type='color')) or drop the alpha channel.")
        self.dat_cfg = cfg
        # Plain attributes (not submodules): the VQGAN and the model stay out of this module tree.
        self._dat_attack: Optional[DATAttack] = DATAttack(
            None, eps=cfg['eps'], step_size=cfg['step_size'], steps=cfg['steps'], norm=cfg['norm'],
            random_start_prob=cfg['random_start_prob'], vqgan_max_size=cfg['vqgan_max_size'])
        self._dat_model_ref: Optional[weakref.ref] = None
        self._dat_pending: Optional[dict] = None
        self.dat_step: Optional[int] = None          # set by DATHook: the runner's iteration
        self.dat_collect_stats: bool = False         # set by DATHook on logging iterations
        self.dat_keep_examples: bool = False         # set by DATHook on visualisation iterations
        self.dat_last_examples: Optional[dict] = None
        self.dat_last_decision: dict = {}            # step, applied, random_start, skipped
        self.dat_skipped = 0

    # ------------------------------------------------------------------ wiring
    @property
    def dat_attack(self) -> DATAttack:
        return self._dat_attack

    def attach_dat(self, model: torch.nn.Module, vqgan: torch.nn.Module, seed: int = 0) -> None:
        """Give the preprocessor the (unwrapped) task model and the VQGAN; called by DATHook.

        The model is kept as a weak reference and its ``parse_losses`` learns to add the pending
        adversarial losses, so the adversarial half joins the clean loss in the same backward.
        """
        if getattr(model, 'data_preprocessor', None) is not self:
            raise ValueError('attach_dat: the model does not use this data preprocessor')
        self._dat_model_ref = weakref.ref(model)
        self._dat_attack.vqgan = vqgan
        self._dat_attack.seed = int(seed)
        if not getattr(model, '_dat_parse_losses_patched', False):
            preprocessor_ref = weakref.ref(self)
            plain_parse_losses = model.parse_losses

            def parse_losses(_model, losses: dict):
                pre = preprocessor_ref()
                if pre is not None:
                    losses = pre.merge_adversarial_losses(losses)
                return plain_parse_losses(losses)

            model.parse_losses = types.MethodType(parse_losses, model)
            model._dat_parse_losses_patched = True

    @property
    def dat_model(self) -> torch.nn.Module:
        model = self._dat_model_ref() if self._dat_model_ref is not None else None
        if model is None or self._dat_attack.vqgan is None:
            raise RuntimeError(
                'DAT data preprocessor used for training without a model/VQGAN: add '
                "dict(type='DATHook', vqgan=...) to custom_hooks (see configs/_base_/dat/).")
        return model

    def merge_adversarial_losses(self, losses: dict) -> dict:
        """Clean losses (weighted) plus the pending adversarial ones; consumes the pending ones."""
        pending, self._dat_pending = self._dat_pending, None
        if pending is None:
            return losses
        w = self.dat_cfg['clean_loss_weight']
        merged = {k: _scale_loss(v, w) if 'loss' in k else v for k, v in losses.items()}
        merged.update(pending)
        return merged

    # ------------------------------------------------------------------ colour space
    def _model_is_rgb(self) -> bool:
        order = self.dat_cfg['channel_order']
        return bool(getattr(self, self._channel_flag)) if order == 'auto' else order == 'rgb'

    def to_unit_rgb(self, inputs: Tensor) -> Tensor:
        """Model inputs (normalised, model channel order) -> RGB in [0, 1]."""
        x = inputs.float()
        if getattr(self, '_enable_normalize', False):
            x = x * self.std + self.mean
        x = x / 255.0
        return x if self._model_is_rgb() else x.flip(1)

    def from_unit_rgb(self, images: Tensor) -> Tensor:
        """RGB in [0, 1] -> model inputs (normalised, model channel order)."""
        x = images if self._model_is_rgb() else images.flip(1)
        x = x * 255.0
        if getattr(self, '_enable_normalize', False):
            x = (x - self.mean) / self.std
        return x

    # ------------------------------------------------------------------ DAT
    def preprocess(self, data: dict, training: bool = False) -> dict:
        """The upstream preprocessing alone (normalise, pad, batch augments), without DAT."""
        return super().forward(data, training)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.preprocess(data, training)
        if training and self.dat_cfg['enabled']:
            self._dat_pending = None
            self._run_dat(data['inputs'], data['data_samples'])
        return data

    def valid_sizes(self, inputs: Tensor, data_samples: Any) -> Optional[list[tuple[int, int]]]:
        """Each image's unpadded size (``img_shape``), or None when every image fills the batch."""
        h, w = inputs.shape[-2:]
        if not data_samples or not all('img_shape' in s.metainfo for s in data_samples):
            return None
        sizes = [(min(int(s.img_shape[0]), h), min(int(s.img_shape[1]), w)) for s in data_samples]
        return None if all(s == (h, w) for s in sizes) else sizes

    def _total_loss(self, model: torch.nn.Module, losses: dict) -> Tensor:
        # the class' parse_losses: the instance one is patched to add adversarial losses
        loss, _ = type(model).parse_losses(model, losses)
        return loss

    def generate_dat_examples(self, inputs: Tensor, data_samples: Any,
                              collect_stats: bool = False) -> DATResult:
        """Build x_rec and x_adv for a preprocessed batch (RGB [0, 1]); no training side effects
        beyond the attack's forward (BatchNorm statistics in train mode)."""
        _check_rgb_batch(inputs)
        model = self.dat_model
        sizes = self.valid_sizes(inputs, data_samples)
        attack_samples = copy.deepcopy(data_samples)
        clean_inputs = inputs.detach()

        def loss_fn(images: Tensor) -> Tensor:
            return self._total_loss(model, model.loss(self.to_model_inputs(images, clean_inputs, sizes),
                                                      attack_samples))

        return self._dat_attack.run(self.to_unit_rgb(clean_inputs), loss_fn, sizes,
                                    step=self.dat_step, collect_stats=collect_stats)

    def to_model_inputs(self, images: Tensor, clean_inputs: Tensor, sizes) -> Tensor:
        """RGB [0, 1] -> model inputs, with the padding of ``clean_inputs`` restored bit for bit."""
        x = self.from_unit_rgb(images).to(clean_inputs.dtype)
        if sizes is None:
            return x
        keep = torch.ones_like(clean_inputs[:, :1], dtype=torch.bool)
        for i, (vh, vw) in enumerate(sizes):
            keep[i, :, :vh, :vw] = False
        return torch.where(keep, clean_inputs, x)

    def _skip(self, reason: str) -> None:
        self.dat_skipped += 1
        self.dat_last_decision['skipped'] = True
        print_log(f'DAT: {reason}; skipping the adversarial half of this batch '
                  f'({self.dat_skipped} skipped so far)', logger='current', level=30)
        self._log_scalars({'dat_skipped': self.dat_skipped})

    def _run_dat(self, inputs: Tensor, data_samples: Any) -> None:
        attack = self._dat_attack
        applied = attack.draw(self.dat_step, 'apply') < self.dat_cfg['apply_prob']
        self.dat_last_decision = dict(step=self.dat_step, applied=applied)
        if not applied:
            return
        result = self.generate_dat_examples(inputs, data_samples, self.dat_collect_stats)
        self.dat_last_decision.update(random_start=result.random_start, skipped=result.skipped)
        if result.skipped:
            return self._skip(result.skipped_reason)
        sizes = self.valid_sizes(inputs, data_samples)
        adv_inputs = self.to_model_inputs(result.adversarial, inputs.detach(), sizes)
        adv_losses = self.dat_model.loss(adv_inputs, copy.deepcopy(data_samples))
        adv_total = self._total_loss(self.dat_model, adv_losses)
        if not torch.isfinite(adv_total.detach()):
            return self._skip(f'non-finite adversarial loss ({float(adv_total.detach())})')
        w = self.dat_cfg['adv_loss_weight']
        self._dat_pending = {ADV_PREFIX + k: _scale_loss(v, w) if 'loss' in k else v
                             for k, v in adv_losses.items()}
        if self.dat_collect_stats:
            self._log_scalars({'dat_' + k: v for k, v in result.stats.items()} |
                              {'dat_attack_start_loss': result.start_loss,
                               'dat_random_start': float(result.random_start),
                               'dat_eps': attack.eps, 'dat_skipped': self.dat_skipped})
        if self.dat_keep_examples:
            self.dat_last_examples = dict(
                clean=self.to_unit_rgb(inputs.detach()), reconstruction=result.reconstruction,
                adversarial=result.adversarial, sizes=sizes)

    @staticmethod
    def _log_scalars(values: dict) -> None:
        hub = MessageHub.get_current_instance()
        for k, v in values.items():
            if v is not None and math.isfinite(float(v)):
                hub.update_scalar(f'train/{k}', float(v))


def _check_rgb_batch(inputs: Tensor) -> None:
    if inputs.dim() != 4 or inputs.shape[1] != 3:
        raise ValueError(
            f'DAT needs 3-channel images (B, 3, H, W), got {tuple(inputs.shape)}. Convert '
            'grayscale or RGBA images to 3 channels in the data pipeline.')


def _scale_loss(value, weight: float):
    if weight == 1.0:
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(v * weight for v in value)
    return value * weight
