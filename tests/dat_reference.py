"""A fixed DAT training run whose losses and parameters are compared bit for bit across refactors.

``run_reference()`` trains a tiny classifier for a few DAT iterations from fixed seeds (random start
on and off, clean/adversarial weights != 1) and returns every step's losses and a digest of the
final parameters as exact float hex strings. tests/data/dat_reference_cls.json holds the values the
code produced when the loss path was re-wired (forward hook instead of a patched parse_losses).
"""
from __future__ import annotations

import hashlib

import torch
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample



class PatchQuantizer:
    """A deterministic stand-in for the VQGAN: 4x4 patch means snapped to 16 grey levels per channel.

    It keeps this reference independent of the VQGAN's numerics (which performance work may change
    within its own tolerance) while exercising the same encode / decode interface and padding logic.
    """

    factor = 4

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool2d(images, self.factor, ceil_mode=True)
        return (pooled * 15).round().long()

    def decode(self, codes: torch.Tensor, size=None) -> torch.Tensor:
        images = torch.nn.functional.interpolate(codes.float() / 15, scale_factor=self.factor, mode='nearest')
        return images if size is None else images[..., :size[0], :size[1]]


def run_reference(steps: int = 3) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=64),
            data_preprocessor=dict(type='DATClsDataPreprocessor', num_classes=3,
                                   mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                   to_rgb=True, dat=dict(random_start_prob=0.5, clean_loss_weight=1.5,
                                                         adv_loss_weight=0.5))))
        model.data_preprocessor.attach_dat(model, PatchQuantizer(), seed=0)
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
        g = torch.Generator().manual_seed(1)
        records = []
        for step in range(steps):
            set_step(model.data_preprocessor, step)
            batch = dict(inputs=[torch.randint(0, 256, (3, 16, 16), generator=g, dtype=torch.uint8)
                                 for _ in range(4)],
                         data_samples=[DataSample().set_gt_label(i % 3) for i in range(4)])
            log_vars = model.train_step(batch, optim)
            records.append({k: float(v.detach() if hasattr(v, "detach") else v).hex() for k, v in sorted(log_vars.items())})
        digest = hashlib.sha256()
        for name, p in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(p.detach().contiguous().numpy().tobytes())
        return dict(steps=records, parameters_sha256=digest.hexdigest())
    finally:
        torch.set_num_threads(threads)


def set_step(preprocessor, step: int) -> None:
    """The iteration the DAT decisions are drawn for: mmengine's runtime info, as in a runner."""
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('iter', step)
