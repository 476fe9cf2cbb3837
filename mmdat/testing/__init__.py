"""Helpers for mmdat's tests (and for users testing their own DAT configs): tiny models, configs
written on the fly on top of the demo configs (found installed or in a checkout, see
:func:`mmdat.utils.configs.config_file`). Running the repository's command-line tools is the tests'
business (``tests/conftest.py``), not the package's.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import textwrap
from pathlib import Path
import torch
from mmengine.optim import OptimWrapper

from mmdat.utils.configs import config_file

#: a VQGAN small enough for CPU tests (GroupNorm(32) needs ch to be a multiple of 32)
TINY_VQGAN = dict(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=4,
                  n_embed=32, embed_dim=4, resolution=16)
#: the demo config each tiny_*_config starts from (a name for :func:`~mmdat.utils.configs.config_file`)
DEMO_CONFIGS = {'cls': 'demo/resnet-tiny_dat_shapes.py',
                'det': 'demo/faster-rcnn-tiny_dat_shapes.py',
                'seg': 'demo/fcn-tiny_dat_shapes.py'}


def sgd(model: torch.nn.Module, lr: float = 0.01) -> OptimWrapper:
    """A plain SGD optim wrapper for ``model.train_step``."""
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=lr))


class IdentityQuantizer:
    """Q = identity with the VQGAN's ``encode``/``decode`` interface: x_adv = x', so a test (or a
    timing) sees the attack's step itself."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()

    def decode(self, codes: torch.Tensor, size=None) -> torch.Tensor:
        return codes.clone()


class CPUAutocastOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` whose ``optim_context`` enters ``torch.autocast('cpu', dtype)``, as
    mmengine's ``AmpOptimWrapper`` does on a GPU (which it requires): ``train_step`` then runs the
    data preprocessor, and so DAT, under mixed precision on a CPU."""

    def __init__(self, optimizer: torch.optim.Optimizer, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__(optimizer)
        self.cast_dtype = dtype

    @contextlib.contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


def attach_tiny_vqgan(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Wire a random tiny VQGAN into ``model``'s DAT preprocessor, as DATHook does; returns it."""
    from mmdat.models import VQGAN
    torch.manual_seed(0)
    vqgan = VQGAN(**TINY_VQGAN)
    model.data_preprocessor.attach_dat(model, vqgan, seed=seed)
    return vqgan


def record_loss_calls(model: torch.nn.Module) -> list[dict]:
    """Wrap ``model.loss``: record the inputs and (a copy of) the samples of every call."""
    calls = []
    plain = model.loss

    def loss(inputs, data_samples):
        calls.append(dict(inputs=inputs.detach().clone(), attack=inputs.requires_grad,
                          samples=copy.deepcopy(data_samples)))
        return plain(inputs, data_samples)

    model.loss = loss
    return calls


@contextlib.contextmanager
def logged_messages(level: int = logging.WARNING):
    """The messages of ``level`` and above that ``print_log(..., logger='current')`` emits inside the
    block (mmengine's logger does not propagate to the root logger, so pytest's caplog misses them)."""
    from mmengine.logging import MMLogger
    messages: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def write_config(directory: os.PathLike, name: str, body: str) -> str:
    """Write a config file (``body`` is dedented); returns its path."""
    path = Path(directory) / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def free_port() -> str:
    """A free TCP port on the loopback interface, for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def tiny_cls_config(directory: os.PathLike, data_root, vqgan_cfg: dict, extra: str = '') -> str:
    """The demo classification config shrunk to 3 classes of 16x16 shapes and 1 epoch."""
    return write_config(directory, 'tiny_cls_dat.py', f"""
        _base_ = ['{config_file(DEMO_CONFIGS['cls'])}']
        classes = ('circle', 'square', 'triangle')
        model = dict(backbone=dict(stem_channels=8, base_channels=8),
                     head=dict(num_classes=3, in_channels=64))
        data_preprocessor = dict(num_classes=3)
        train_dataloader = dict(batch_size=4, dataset=dict(data_root='{data_root}', classes=classes))
        val_dataloader = dict(dataset=dict(data_root='{data_root}', classes=classes))
        test_dataloader = val_dataloader
        train_cfg = dict(max_epochs=1, val_interval=1)
        custom_hooks = [dict(type='DATHook', vqgan={vqgan_cfg!r}, vis_interval=2)]
        # 16x16 images are under the corruptions' 32x32 minimum: the plain validation, no best-by-mPC
        val_cfg = dict(_delete_=True)
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(save_best=None))
        {extra}
        """)


def tiny_det_config(directory: os.PathLike, data_root, vqgan_cfg: dict, train_images: int,
                    extra: str = '') -> str:
    """The tiny Faster R-CNN demo config on ``train_images`` images, 1 epoch."""
    return write_config(directory, 'tiny_det_dat.py', f"""
        _base_ = ['{config_file(DEMO_CONFIGS['det'])}']
        data_root = '{data_root}/'
        train_dataloader = dict(dataset=dict(data_root=data_root, indices={train_images}))
        val_dataloader = dict(dataset=dict(data_root=data_root))
        test_dataloader = val_dataloader
        val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
        test_evaluator = val_evaluator
        train_cfg = dict(max_epochs=1, val_interval=2)
        custom_hooks = [dict(type='DATHook', vqgan={vqgan_cfg!r})]
        default_hooks = dict(logger=dict(interval=1))
        {extra}
        """)


def tiny_seg_config(directory: os.PathLike, data_root, vqgan_cfg: dict, extra: str = '') -> str:
    """The tiny FCN demo config, batch 2, 2 iterations."""
    return write_config(directory, 'tiny_seg_dat.py', f"""
        _base_ = ['{config_file(DEMO_CONFIGS['seg'])}']
        data_root = '{data_root}'
        train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
        val_dataloader = dict(dataset=dict(data_root=data_root))
        test_dataloader = val_dataloader
        train_cfg = dict(max_iters=2, val_interval=2)
        custom_hooks = [dict(type='DATHook', vqgan={vqgan_cfg!r})]
        default_hooks = dict(logger=dict(interval=1))
        {extra}
        """)


def build_plain_preprocessor(model_cfg: dict, upstream_type: str, scope: str):
    """The upstream preprocessor of a DAT model config (``dat`` dropped), to compare against."""
    from mmengine.registry import MODELS, DefaultScope
    pre = copy.deepcopy(model_cfg['data_preprocessor'])
    pre.pop('dat', None)
    pre['type'] = upstream_type
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(pre)
