"""A fixed DAT training run whose losses and final parameters are compared across refactors and CPUs.

``run_reference()`` trains a tiny classifier for a few DAT iterations from fixed seeds (a random
start in step 0 only, clean/adversarial weights != 1) and returns every step's logged losses and the
final parameters; tests/data/dat_reference_cls.pt holds them (``python tests/dat_reference.py OUT``
records them; the file says on which CPU).

The quantiser is fine enough for the attack to matter: with the earlier 4x4-patch, 16-level one and
random start probability 0.5, no random start was drawn in the 3 steps and the quantiser absorbed
every perturbation (eps = 0 gave the same bits), so the recording checked the loss plumbing but not
the attack. With these settings, eps = 0, no random start and a random start in every step each
change every step's adversarial loss by 2-30 %.

The comparison (:func:`assert_matches_reference`) uses tolerances, not bits: CPUs group float
reductions differently (an Intel Xeon with AVX-512/AMX and an AMD EPYC agree on step 1 and differ
in the last bits, about 2.5e-7 relative, from step 2 on; PyTorch's native convolutions instead of
oneDNN's drift further: up to 2.5e-6 relative in the losses and 3.3e-6 absolute in the parameters).
The tolerances are wider than that drift and still ~100x narrower than any real change:
tests/test_cls_dat.py shows that the same check fails when the adversarial weight changes by 1 %,
when the adversarial half leaves the objective, when the random start is skipped and without the
attack.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

#: recorded losses: relative tolerance (drift after 3 steps: AMD vs Intel ~2.5e-7, other kernels ~2.5e-6;
#: a 1 % change of the adversarial weight moves the first loss by ~2e-3)
LOSS_RTOL = 2e-5
#: recorded parameters: ``torch.testing.assert_close`` tolerances (other kernels: <= 3.3e-6 absolute)
PARAM_RTOL, PARAM_ATOL = 1e-4, 2e-5
#: the reference run's DAT settings (random start drawn with p=0.5, unequal loss weights)
REFERENCE_DAT = dict(random_start_prob=0.6, clean_loss_weight=1.5, adv_loss_weight=0.5)


class PatchQuantizer:
    """A deterministic stand-in for the VQGAN: 2x2 patch means snapped to 256 grey levels per channel.

    It keeps this reference independent of the VQGAN's numerics (which performance work may change
    within its own tolerance) while exercising the same encode / decode interface and padding logic.
    """

    factor = 2
    levels = 255

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool2d(images, self.factor, ceil_mode=True)
        return (pooled * self.levels).round().long()

    def decode(self, codes: torch.Tensor, size=None) -> torch.Tensor:
        images = torch.nn.functional.interpolate(codes.float() / self.levels, scale_factor=self.factor,
                                                 mode='nearest')
        return images if size is None else images[..., :size[0], :size[1]]


def run_reference(steps: int = 3, dat: Optional[dict] = None) -> dict:
    """Train the reference classifier for ``steps`` DAT iterations, single-threaded.

    Args:
        steps: number of training iterations.
        dat: overrides of :data:`REFERENCE_DAT` (the mutation tests change one setting).

    Returns:
        ``dict(steps=[{log name: float}, ...], parameters={name: tensor})``.
    """
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
                                   to_rgb=True, dat={**REFERENCE_DAT, **(dat or {})})))
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
            records.append({k: float(v.detach() if hasattr(v, 'detach') else v) for k, v in sorted(log_vars.items())})
        parameters = {name: p.detach().clone() for name, p in sorted(model.state_dict().items())}
        return dict(steps=records, parameters=parameters)
    finally:
        torch.set_num_threads(threads)


def assert_matches_reference(result: dict, expected: dict) -> None:
    """Raise ``AssertionError`` naming the first step / parameter that differs beyond the tolerances."""
    assert len(result['steps']) == len(expected['steps']), 'different number of steps'
    for step, (got, want) in enumerate(zip(result['steps'], expected['steps'])):
        assert sorted(got) == sorted(want), f'step {step}: logged {sorted(got)}, recorded {sorted(want)}'
        for name in want:
            assert math.isclose(got[name], want[name], rel_tol=LOSS_RTOL), \
                f'step {step}: {name} {got[name]!r} != recorded {want[name]!r} (rel. tol. {LOSS_RTOL})'
    assert sorted(result['parameters']) == sorted(expected['parameters']), 'different parameter names'
    for name, want in expected['parameters'].items():
        torch.testing.assert_close(result['parameters'][name], want, rtol=PARAM_RTOL, atol=PARAM_ATOL,
                                   msg=lambda m, name=name: f'parameter {name}: {m}')


def set_step(preprocessor, step: int) -> None:
    """The iteration the DAT decisions are drawn for: mmengine's runtime info, as in a runner."""
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('iter', step)


def record(path: str) -> None:
    """Write the reference (run on purpose only: ``python tests/dat_reference.py OUT``)."""
    import platform
    import subprocess
    cpu = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
    model_name = next((line.split(':', 1)[1].strip() for line in cpu.splitlines()
                       if line.startswith('Model name')), platform.processor())
    result = run_reference()
    torch.save(dict(result, recorded_from=f'mmdat (forward-hook loss joining), torch {torch.__version__}, '
                                          f'CPU {model_name}, 1 thread'), path)


if __name__ == '__main__':
    import sys

    import mmdat  # noqa: F401  (registers DATClsDataPreprocessor)
    record(sys.argv[1])
