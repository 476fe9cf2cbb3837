"""Hooks for VQGAN training (:class:`~mmdat.models.VQGANAutoencoder`): pictures and export."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmdat.registry import HOOKS
from mmdat.utils.visualization import side_by_side, to_uint8_image

__all__ = ['VQGANVisualizationHook', 'VQGANExportHook', 'reconstruction_grid', 'save_vqgan_checkpoint']


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def reconstruction_grid(samples: Sequence, max_images: int = 4, min_size: int = 96, gap: int = 4) -> np.ndarray:
    """Rows of ``input | reconstruction`` (RGB uint8) for samples with ``input_img`` and ``rec_img``.

    Small images are enlarged (nearest neighbour, integer factor) to at least ``min_size`` pixels.
    """
    rows = []
    for sample in samples[:max_images]:
        panels = [to_uint8_image(sample.input_img), to_uint8_image(sample.rec_img)]
        scale = max(1, -(-min_size // min(panels[0].shape[:2])))
        rows.append(side_by_side([p.repeat(scale, 0).repeat(scale, 1) for p in panels], gap))
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        out += [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255)]
    return np.concatenate(out)[:-gap]


@HOOKS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class VQGANVisualizationHook(Hook):
    """Input | reconstruction pictures to the runner's visualizer (work dir, TensorBoard, ...).

    Args:
        interval (int): every this many training iterations, pictures of the current batch
            (0: never during training). Defaults to 100.
        max_images (int): images per picture. Defaults to 4.
        val (bool): also the first batch of every validation / test run. Defaults to True.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 100, max_images: int = 4, val: bool = True) -> None:
        if interval < 0 or max_images < 1:
            raise ValueError(f'interval must be >= 0 and max_images >= 1, got {interval}, {max_images}')
        self.interval, self.max_images, self.val = interval, max_images, val

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.interval or not self.every_n_train_iters(runner, self.interval) or data_batch is None:
            return
        model = _unwrap(runner.model)
        with torch.no_grad():
            data = model.data_preprocessor(data_batch, False)
            samples = model.predict(data['inputs'][:self.max_images])
        runner.visualizer.add_image('vqgan_train_reconstruction', reconstruction_grid(samples, self.max_images),
                                    step=runner.iter + 1)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.val and batch_idx == 0 and outputs:
            runner.visualizer.add_image('vqgan_val_reconstruction', reconstruction_grid(outputs, self.max_images),
                                        step=runner.iter)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.val and batch_idx == 0 and outputs:
            runner.visualizer.add_image('vqgan_test_reconstruction', reconstruction_grid(outputs, self.max_images),
                                        step=runner.iter)


def save_vqgan_checkpoint(state_dict: dict, path, half: bool = True, meta: Optional[dict] = None) -> Path:
    """Save a VQGAN state dict as ``{'state_dict', 'meta'}`` (mmdat's shipped format).

    With ``half``, tensors of more than 4096 elements are stored in float16 (the VQGAN runs in
    float32 after loading); the rest in float32.
    """
    state = {k: (v.half() if half and v.is_floating_point() and v.numel() > 4096 else
                 v.float() if v.is_floating_point() else v).detach().cpu().clone() for k, v in state_dict.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=state, meta=dict(meta or {})), path)
    return path


@HOOKS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class VQGANExportHook(Hook):
    """After training, save the VQGAN alone (no ``loss.*``) in mmdat's shipped format, with meta
    data: the architecture, iterations, training time and the last validation metrics.

    The file is loaded back through ``VQGAN(**config, checkpoint=...)`` as a check. It is never
    written inside the installed mmdat package (checked before training starts): replacing the
    shipped tiny VQGAN is the explicit step ``tools/model_converters/install_tiny_vqgan.py``.

    Args:
        out_file (str): output path; relative paths are inside the work dir. Defaults to 'vqgan.pth'.
        half (bool): store large tensors in float16. Defaults to True.
        meta (dict, optional): extra meta data (e.g. what it was trained on). Defaults to None.
    """

    priority = 'VERY_LOW'

    def __init__(self, out_file: str = 'vqgan.pth', half: bool = True, meta: Optional[dict] = None) -> None:
        self.out_file, self.half, self.meta = out_file, half, dict(meta or {})
        self.metrics: dict = {}
        self.start = time.time()

    def output_path(self, work_dir) -> Path:
        """Where the VQGAN goes; ValueError if that is inside the mmdat package."""
        path = Path(self.out_file).expanduser()
        if not path.is_absolute():
            path = Path(work_dir) / path
        path = path.resolve()
        package = Path(__file__).resolve().parents[2]
        if path.is_relative_to(package):
            raise ValueError(
                f'VQGANExportHook: out_file {path} is inside the mmdat package ({package}); training '
                'never writes there. Export into the work dir (a relative out_file) and install it with '
                '`python tools/model_converters/install_tiny_vqgan.py FILE`, which refuses a worse model.')
        return path

    def before_train(self, runner) -> None:
        self.output_path(runner.work_dir)  # a forbidden destination fails before training, not after
        self.start = time.time()

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self.metrics = {k.split('/')[-1]: v for k, v in (metrics or {}).items()}

    def after_train(self, runner) -> None:
        from mmdat.models import VQGAN
        model = _unwrap(runner.model)
        if model.vqgan_config is None:
            raise ValueError('VQGANExportHook needs a VQGANAutoencoder built from a config dict (architecture known)')
        if not is_main_process():
            return
        path = self.output_path(runner.work_dir)
        meta = dict(config=model.vqgan_config, iterations=runner.iter,
                    train_seconds=round(time.time() - self.start, 1), **self.meta)
        for key in ('psnr', 'codebook_usage_ratio', 'perplexity'):
            if key in self.metrics:
                meta[key] = round(float(self.metrics[key]), 4)
        if 'codebook_usage' in self.metrics:
            meta['codebook_usage'] = int(self.metrics['codebook_usage'])
        save_vqgan_checkpoint(model.vqgan_state_dict(), path, half=self.half, meta=meta)
        VQGAN(**model.vqgan_config, checkpoint=path)  # loads back, or raises
        print_log(f'VQGAN exported to {path} ({path.stat().st_size / 1024:.0f} KiB): '
                  + ', '.join(f'{k}={meta[k]}' for k in ('psnr', 'codebook_usage') if k in meta), logger='current')
