"""What every DAT data preprocessor shares: run DAT on the normalised training batch.

The preprocessor returns the *clean* batch ``x`` (the model's normal forward computes ``L(x)``);
inside it (OpenMMLab runs it in ``train_step`` with gradients on, under the optimizer's autocast)
:class:`AdversarialStep` builds ``x_adv`` and runs the model's loss on it, and
:class:`AdversarialLossJoiner` adds those losses to the model's ``forward(..., mode='loss')``. The
data flow of one iteration, step by step: ``docs/architecture.md``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from mmengine.logging import MessageHub
from torch import Tensor

from mmdat.dat import DATAttack, DATIterationSettings, DATResult
from .adversarial_step import AdversarialStep, to_model_inputs, valid_sizes
from .color_space import ModelInputSpace
from .dat_settings import attack_settings, parse_dat_settings
from .dat_statistics import DATCounters, DATIterationReport, record_dat_step
from .loss_joining import AdversarialLossJoiner

class DATPreprocessorMixin:
    """Adds DAT to an OpenMMLab data preprocessor. Mix in *before* the upstream class.

    Args:
        dat (dict, optional): the DAT settings, see :func:`parse_dat_settings` (eps, step_size,
            steps, norm, random_start_prob, apply_prob, clean/adv_loss_weight, vqgan_max_size,
            channel_order, enabled). Every other argument goes to the upstream preprocessor.

    Subclasses state the upstream specifics: :meth:`upstream_rgb`, :meth:`upstream_normalization`.
    """

    def __init__(self, *args, dat: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dat_cfg = parse_dat_settings(dat, self.upstream_normalization())
        # plain attributes, not submodules: the VQGAN and the model stay out of this module tree
        self._dat: Optional[tuple[AdversarialStep, AdversarialLossJoiner]] = None
        self._dat_settings = DATIterationSettings()
        self._dat_report = DATIterationReport()
        self._dat_counters = DATCounters()

    # ------------------------------------------------------------------ upstream specifics
    def upstream_rgb(self) -> bool:
        """Whether the upstream preprocessor outputs RGB (it converted BGR -> RGB)."""
        raise NotImplementedError

    def upstream_normalization(self) -> Optional[tuple[Tensor, Tensor]]:
        """(mean, std) that the upstream preprocessor applies, or None."""
        raise NotImplementedError

    @property
    def input_space(self) -> ModelInputSpace:
        order = self.dat_cfg['channel_order']
        rgb = self.upstream_rgb() if order == 'auto' else order == 'rgb'
        return ModelInputSpace(*(self.upstream_normalization() or (None, None)), rgb=rgb)

    def to_unit_rgb(self, inputs: Tensor) -> Tensor:
        return self.input_space.to_unit_rgb(inputs)

    def from_unit_rgb(self, images: Tensor) -> Tensor:
        return self.input_space.from_unit_rgb(images)

    # ------------------------------------------------------------------ wiring (DATHook)
    def attach_dat(self, model: torch.nn.Module, vqgan: torch.nn.Module, seed: int = 0) -> None:
        """Build the attack around ``vqgan`` and join the adversarial losses into ``model``'s loss."""
        if getattr(model, 'data_preprocessor', None) is not self:
            raise ValueError('attach_dat: the model does not use this data preprocessor')
        if self._dat is not None:
            self._dat[1].remove()
        attack = DATAttack(vqgan, seed=seed, **attack_settings(self.dat_cfg))
        self._dat = (AdversarialStep(model, attack, lambda: self.input_space),
                     AdversarialLossJoiner(model, self.dat_cfg['clean_loss_weight'],
                                           self.dat_cfg['adv_loss_weight']))

    @property
    def _wired(self) -> tuple[AdversarialStep, AdversarialLossJoiner]:
        if self._dat is None:
            raise RuntimeError('DAT data preprocessor used for training without a model/VQGAN: add '
                               "dict(type='DATHook', vqgan=...) to custom_hooks (see configs/_base_/dat/).")
        return self._dat

    @property
    def dat_attack(self) -> DATAttack:
        return self._wired[0].attack

    def begin_dat_iteration(self, settings: DATIterationSettings) -> None:
        """Settings of the next training iteration (warm-up strength, statistics, examples)."""
        self._dat_settings = settings

    def end_dat_iteration(self) -> DATIterationReport:
        """The report of the iteration that ran; raises if its adversarial losses went unused."""
        if self._dat is not None:
            self._dat[1].check_consumed()
        self._dat_settings = DATIterationSettings()
        return self._dat_report

    # ------------------------------------------------------------------ DAT
    def preprocess(self, data: dict, training: bool = False) -> dict:
        """The upstream preprocessing alone (normalise, pad, batch augments), without DAT."""
        return super().forward(data, training)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.preprocess(data, training)
        if training and self.dat_cfg['enabled']:
            self._run_dat(data['inputs'], data['data_samples'])
        return data

    valid_sizes = staticmethod(valid_sizes)

    def to_model_inputs(self, images: Tensor, clean_inputs: Tensor, sizes) -> Tensor:
        """RGB [0, 1] -> model inputs, with the padding of ``clean_inputs`` restored bit for bit."""
        return to_model_inputs(self.input_space, images, clean_inputs, sizes)

    def generate_dat_examples(self, inputs: Tensor, data_samples: Any, collect_stats: bool = False,
                              step: Optional[int] = None) -> DATResult:
        """x_rec and x_adv (RGB [0, 1]) for a preprocessed batch, without the adversarial forward."""
        _check_rgb_batch(inputs)
        return self._wired[0].examples(inputs, data_samples, valid_sizes(inputs, data_samples), step,
                                       collect_stats)

    def _run_dat(self, inputs: Tensor, data_samples: Any) -> None:
        _check_rgb_batch(inputs)
        step, joiner = self._wired
        iteration = MessageHub.get_current_instance().get_info('iter')
        counters = self._dat_counters
        if step.attack.draw(iteration, 'apply') >= self.dat_cfg['apply_prob']:
            self._dat_report = DATIterationReport(iteration, False, skipped_total=counters.skipped,
                                                  zero_gradient_total=counters.zero_gradient_images)
            return
        out = step.run(inputs, data_samples, iteration, self._dat_settings)
        if out.losses is not None:
            joiner.put(out.losses)
        self._dat_report = record_dat_step(out, iteration, self._dat_settings, counters,
                                           clean=lambda: self.to_unit_rgb(inputs.detach()))

    @property
    def last_dat_report(self) -> DATIterationReport:
        return self._dat_report

    @property
    def dat_counters(self) -> DATCounters:
        """The run's totals (skipped iterations, images with a zero input gradient)."""
        return self._dat_counters

    def restore_dat_counters(self, counters: dict) -> None:
        """Continue the totals of a resumed run (``DATHook`` reads them from the checkpoint)."""
        self._dat_counters = DATCounters(**counters)


def _check_rgb_batch(inputs: Tensor) -> None:
    if inputs.dim() != 4 or inputs.shape[1] != 3:
        raise ValueError(f'DAT needs 3-channel images (B, 3, H, W), got {tuple(inputs.shape)}. Convert '
                         'grayscale or RGBA images to 3 channels in the data pipeline.')
