"""DATHook: wires the VQGAN and the task model into the DAT data preprocessor."""
from __future__ import annotations

import os
from typing import Optional

from mmengine.hooks import Hook, LoggerHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmdat.models.data_preprocessors import DATPreprocessorMixin
from mmdat.registry import HOOKS, MODELS
from mmdat.utils.visualization import dat_triplet_grid


@HOOKS.register_module()
class DATHook(Hook):
    """Discrete Adversarial Training around an OpenMMLab training loop.

    * ``before_train``: builds the frozen VQGAN on the model's device (a missing or wrong checkpoint
      fails here, before the first iteration) and hands it, with a weak reference to the unwrapped
      model, to the model's DAT data preprocessor. The VQGAN never joins the model's module tree,
      so it is not in checkpoints, the optimizer, EMA or weight initialisation.
    * ``before_train_iter``: the iteration (for rank-identical random decisions), the eps /
      step-size warm-up, and whether to collect statistics or keep examples this iteration.
    * ``after_train_iter``: every ``vis_interval`` iterations, clean / reconstruction / adversarial
      triplets go to the runner's visualizer (work dir, TensorBoard, ... as configured).

    Args:
        vqgan: config of the VQGAN, e.g. ``dict(type='VQGANPreset', preset='openimages-f8-16384',
            checkpoint='path/or/url')`` or ``dict(type='VQGAN', ch=..., checkpoint=...)``.
        warmup_iters: linearly ramp eps and step size from 0 to their values over this many
            iterations (0 = off, the paper's setting).
        stats_interval: collect DAT statistics (perturbation norms, visual words changed, PSNR,
            attack start loss) every this many iterations; None = the LoggerHook's interval.
        vis_interval: send example triplets to the visualizer every this many iterations (0 = off).
        vis_max_images: images per visualised batch.
    """

    priority = 'NORMAL'

    def __init__(self, vqgan: dict, warmup_iters: int = 0, stats_interval: Optional[int] = None,
                 vis_interval: int = 0, vis_max_images: int = 2) -> None:
        if not isinstance(vqgan, dict) or 'type' not in vqgan:
            raise TypeError(f"DATHook: vqgan must be a config dict with a 'type', got {vqgan!r}")
        checkpoint = vqgan.get('checkpoint')
        if isinstance(checkpoint, str) and checkpoint != 'default' and '://' not in checkpoint \
                and not os.path.isfile(checkpoint):
            raise FileNotFoundError(
                f'DATHook: VQGAN checkpoint {checkpoint!r} does not exist. Download the published '
                'checkpoint (see mmdat.models.VQGAN_PRESETS) or point vqgan.checkpoint at a local file.')
        self.vqgan_cfg = dict(vqgan)
        self.warmup_iters = int(warmup_iters)
        self.stats_interval = stats_interval
        self.vis_interval = int(vis_interval)
        self.vis_max_images = int(vis_max_images)
        self._target_eps: Optional[tuple[float, float]] = None
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
        attack = pre.dat_attack
        self._target_eps = (attack.eps, attack.step_size)
        if self.stats_interval is None:
            loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
            self.stats_interval = loggers[0].interval if loggers else 50
        n_params = sum(p.numel() for p in vqgan.parameters())
        print_log(f'DAT: VQGAN with {n_params / 1e6:.1f}M parameters on {device}; eps '
                  f'{attack.eps}, step size {attack.step_size}, steps {attack.steps}, norm '
                  f'{attack.norm}, random start p={attack.random_start_prob}, seed {seed}',
                  logger='current')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        pre = self._pre
        it = runner.iter
        pre.dat_step = it
        if self.warmup_iters > 0 and self._target_eps is not None:
            ramp = min(1.0, (it + 1) / self.warmup_iters)
            pre.dat_attack.eps = self._target_eps[0] * ramp
            pre.dat_attack.step_size = self._target_eps[1] * ramp
        pre.dat_collect_stats = bool(self.stats_interval) and (it + 1) % self.stats_interval == 0
        pre.dat_keep_examples = self.vis_interval > 0 and (it + 1) % self.vis_interval == 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        pre = self._pre
        examples, pre.dat_last_examples = pre.dat_last_examples, None
        pre.dat_keep_examples = False
        if examples is not None:
            grid = dat_triplet_grid(examples, self.vis_max_images)
            runner.visualizer.add_image('dat_examples', grid, step=runner.iter + 1)

    def after_train(self, runner) -> None:
        pre = self._pre
        if pre.dat_skipped:
            print_log(f'DAT: the adversarial half was skipped in {pre.dat_skipped} iterations '
                      '(non-finite attack loss or gradient)', logger='current', level=30)
