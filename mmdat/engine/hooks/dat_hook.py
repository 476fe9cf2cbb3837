"""DATHook: owns the frozen VQGAN and hands DAT its per-iteration settings."""
from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Optional

from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmdat.dat import DATSchedule
from mmdat.models.data_preprocessors import DATPreprocessorMixin
from mmdat.models.vqgan_checkpoint import is_checkpoint_url
from mmdat.registry import HOOKS, MODELS
from mmdat.utils.visualization import dat_triplet_grid

#: the MessageHub runtime-info key under which the run's DAT totals are kept (and checkpointed)
COUNTERS_KEY = 'dat_counters'


@HOOKS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class DATHook(Hook):
    """Discrete Adversarial Training around an OpenMMLab training loop.

    * ``before_train``: builds the frozen VQGAN on the model's device (a missing or wrong checkpoint
      fails here, before the first iteration) and attaches it, with the unwrapped model, to the
      model's DAT data preprocessor (:meth:`DATPreprocessorMixin.attach_dat`). The VQGAN never joins
      the model's module tree: it is not in checkpoints, the optimizer, EMA or weight initialisation.
    * ``before_train_iter``: hands the iteration's :class:`~mmdat.dat.DATIterationSettings` (warm-up
      strength, statistics, examples) from :class:`~mmdat.dat.DATSchedule` to the preprocessor.
    * ``after_train_iter``: takes the iteration's report (which fails if the adversarial losses never
      reached the model's loss), sends example triplets to the runner's visualizer and keeps the run's
      DAT totals (:class:`DATCounters`: skipped iterations, images with a zero input gradient) in the
      runner's ``MessageHub`` runtime information, which checkpoints save; ``before_train`` restores
      them when a run resumes.

    Args:
        vqgan (dict): config of the VQGAN, e.g. ``dict(type='VQGAN', preset='openimages-f8-16384',
            checkpoint='path/or/url')`` or ``dict(type='VQGAN', ch=..., checkpoint=...)``.
        warmup_iters (int): ramp eps and step size linearly from 0 over this many iterations
            (0 = off, the paper's setting). Defaults to 0.
        stats_interval (int, optional): log DAT statistics (perturbation norms, visual words changed,
            PSNR, attack start loss) every this many iterations; None = the LoggerHook's interval.
        vis_interval (int): send example triplets to the visualizer every this many iterations
            and at the last iteration (0 = off). Defaults to 0.
        vis_max_images (int): images per visualised batch. Defaults to 2.
    """

    priority = 'NORMAL'

    def __init__(self, vqgan: dict, warmup_iters: int = 0, stats_interval: Optional[int] = None,
                 vis_interval: int = 0, vis_max_images: int = 2) -> None:
        if not isinstance(vqgan, dict) or 'type' not in vqgan:
            raise TypeError(f"DATHook: vqgan must be a config dict with a 'type', got {vqgan!r}")
        checkpoint = vqgan.get('checkpoint')
        if isinstance(checkpoint, str) and checkpoint != 'default' and not is_checkpoint_url(checkpoint) \
                and not os.path.isfile(os.path.expanduser(checkpoint)):
            raise FileNotFoundError(
                f'DATHook: VQGAN checkpoint {checkpoint!r} does not exist. Download the published '
                'checkpoint (see mmdat.models.VQGAN_PRESETS) or point vqgan.checkpoint at a local file.')
        self.vqgan_cfg = dict(vqgan)
        self.warmup_iters = int(warmup_iters)
        self.stats_interval = stats_interval
        self.vis_interval = int(vis_interval)
        self.vis_max_images = int(vis_max_images)
        self.schedule: Optional[DATSchedule] = None
        self._pre: Optional[DATPreprocessorMixin] = None

    @staticmethod
    def dat_preprocessor(runner) -> DATPreprocessorMixin:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        pre = getattr(model, 'data_preprocessor', None)
        if not isinstance(pre, DATPreprocessorMixin):
            raise TypeError(
                f'DATHook needs a DAT data preprocessor (DATClsDataPreprocessor, '
                f'DATDetDataPreprocessor or DATSegDataPreProcessor); the model uses '
                f'{type(pre).__name__}. Inherit configs/_base_/dat/ or set model.data_preprocessor.type.')
        return pre

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        pre = self._pre = self.dat_preprocessor(runner)
        device = next(model.parameters()).device
        vqgan = MODELS.build(self.vqgan_cfg).to(device)
        vqgan.requires_grad_(False).eval()
        seed = runner.seed if isinstance(getattr(runner, 'seed', None), int) else 0
        pre.attach_dat(model, vqgan, seed=seed)
        saved = runner.message_hub.get_info(COUNTERS_KEY)
        if saved:
            pre.restore_dat_counters(saved)
            print_log(f'DAT: continuing the totals of the resumed run: {saved}', logger='current')
        stats_interval = self.stats_interval
        if stats_interval is None:
            loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
            stats_interval = loggers[0].interval if loggers else 50
        self.schedule = DATSchedule(self.warmup_iters, stats_interval or 0, self.vis_interval,
                                    max_iters=int(runner.max_iters or 0))
        attack = pre.dat_attack
        n_params = sum(p.numel() for p in vqgan.parameters())
        print_log(f'DAT: VQGAN with {n_params / 1e6:.1f}M parameters on {device}; eps '
                  f'{attack.eps}, step size {attack.step_size}, steps {attack.steps}, norm '
                  f'{attack.norm}, random start p={attack.random_start_prob}, seed {seed}',
                  logger='current')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._pre.begin_dat_iteration(self.schedule.settings(runner.iter))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        report = self._pre.end_dat_iteration()
        runner.message_hub.update_info(COUNTERS_KEY, asdict(self._pre.dat_counters))
        if report.examples is not None:
            grid = dat_triplet_grid(report.examples, self.vis_max_images)
            runner.visualizer.add_image('dat_examples', grid, step=runner.iter + 1)

    def after_train(self, runner) -> None:
        counters = self._pre.dat_counters
        if counters.skipped:
            print_log(f'DAT: the adversarial half was skipped in {counters.skipped} iterations '
                      '(non-finite attack loss, gradient or adversarial loss on some rank)',
                      logger='current', level=logging.WARNING)
        if counters.zero_gradient_images:
            print_log(f"DAT: {counters.zero_gradient_images} images (this rank's) got no adversarial "
                      'step: their input gradient was exactly zero', logger='current',
                      level=logging.WARNING)
