"""Mixed precision keeps the attack: under fp16 / bf16 autocast, as mmengine's ``AmpOptimWrapper``
runs ``train_step`` (and so the DAT preprocessor), the attack moves every image as far and in the
same direction as in fp32, down to per-image losses of 1e-8; images whose input gradient is still
exactly zero are counted and logged, not silently trained on their reconstruction.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import sgd

pytest.importorskip('mmpretrain')
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmpretrain.registry import MODELS as CLS_MODELS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

from mmdat.dat import DATAttack, DATIterationSettings  # noqa: E402
from mmdat.testing import CPUAutocastOptimWrapper, IdentityQuantizer, logged_messages  # noqa: E402

NUM_CLASSES = 4
BATCH = 8
AUTOCAST_DTYPES = [torch.float16, torch.bfloat16]


def build_classifier(confidence: float = 0.0):
    """A small ResNet (BatchNorm, as DAT's models) with DAT on, no random start and Q = identity.
    ``confidence`` is added to the logit of class 0: with every label 0, each image's loss is about
    ``3 exp(-confidence)`` (a model sure of easy training images, late in training)."""
    pre = dict(type='DATClsDataPreprocessor', num_classes=NUM_CLASSES, mean=[123.675, 116.28, 103.53],
               std=[58.395, 57.12, 57.375], to_rgb=True, dat=dict(random_start_prob=0.0))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # whatever scope an earlier test left
        model = CLS_MODELS.build(dict(
            type='ImageClassifier', data_preprocessor=pre,
            backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64)))
    with torch.no_grad():
        model.head.fc.bias[0] += confidence
    model.data_preprocessor.attach_dat(model, IdentityQuantizer())
    return model


def image_batch(labels=None) -> dict:
    g = torch.Generator().manual_seed(3)
    inputs = [torch.randint(0, 256, (3, 16, 16), generator=g, dtype=torch.uint8) for _ in range(BATCH)]
    labels = [i % NUM_CLASSES for i in range(BATCH)] if labels is None else labels
    return dict(inputs=inputs, data_samples=[DataSample().set_gt_label(int(y)) for y in labels])


def per_image_losses(model, batch) -> torch.Tensor:
    """Each image's cross-entropy as the attack's forward sees it (train mode), in float64: float32
    rounds losses below ~6e-8 to 0."""
    data = model.data_preprocessor.preprocess(copy.deepcopy(batch), training=True)
    with torch.no_grad():
        logits = model(data['inputs'], mode='tensor')
    labels = torch.stack([s.gt_label for s in data['data_samples']]).flatten()
    return F.cross_entropy(logits.double(), labels, reduction='none')


def attack_step(model, batch, optim_wrapper):
    """One real ``train_step``; returns the attack's step x' - x_rec (RGB [0, 1]) and the report."""
    pre = model.data_preprocessor
    pre.begin_dat_iteration(DATIterationSettings(keep_examples=True))
    model.train_step(copy.deepcopy(batch), optim_wrapper)
    report = pre.end_dat_iteration()
    assert report.applied and not report.skipped
    return report.examples['adversarial'] - report.examples['reconstruction'], report


@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
def test_autocast_attack_moves_images_as_in_fp32(dtype):
    """Measured before the fix (attack inside the autocast): fp16 cosines 0.48-0.71 at losses ~5e-5
    and every gradient exactly zero from ~2e-6 on; bf16 cosines 0.81-0.96 at every loss."""
    batch = image_batch([0] * BATCH)
    losses_seen = []
    for confidence in (0.0, 12.0, 15.0, 21.0):  # per-image losses ~0.3-1, ~5e-5, ~2e-6, ~5e-9
        model = build_classifier(confidence)
        losses_seen.append(per_image_losses(model, batch))
        step_fp32, report_fp32 = attack_step(model, batch, sgd(model, lr=0.0))
        model = build_classifier(confidence)
        wrapper = CPUAutocastOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0), dtype)
        step_amp, report_amp = attack_step(model, batch, wrapper)
        a, b = step_fp32.flatten(1), step_amp.flatten(1)
        assert report_fp32.zero_gradient_images == report_amp.zero_gradient_images == 0
        assert torch.all(a.norm(dim=1) > 0.05)  # every image moved in fp32 (eps = step = 0.1)
        torch.testing.assert_close(b.norm(dim=1), a.norm(dim=1), rtol=1e-3, atol=1e-6)
        cosine = F.cosine_similarity(a, b, dim=1)
        assert torch.all(cosine >= 0.99), (confidence, cosine, losses_seen[-1])
    assert losses_seen[0].min() > 0.1 and losses_seen[-1].max() < 1e-8  # down to 1e-8 and below


@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
def test_the_attack_runs_in_fp32_with_autocast_off(dtype):
    seen = []

    def loss_fn(images):
        seen.append((torch.is_autocast_enabled('cpu'), images.dtype))
        return (images * torch.linspace(-1, 1, images[0].numel()).view_as(images[0])).sum()

    attack = DATAttack(IdentityQuantizer(), random_start_prob=0.0, steps=2)
    with torch.autocast('cpu', dtype=dtype):
        result = attack.run(torch.rand(2, 3, 4, 4), loss_fn)
    assert seen == [(False, torch.float32)] * 2 and not result.skipped


def test_zero_gradient_images_are_counted():
    x = torch.full((4, 3, 5, 5), 0.5)
    w = torch.randn(1, 3, 5, 5)
    attack = DATAttack(IdentityQuantizer(), random_start_prob=0.0)
    result = attack.run(x, lambda im: (im[:1] * w).sum())  # only image 0 has a gradient
    assert result.zero_gradient_images == 3
    assert torch.equal(result.perturbed[1:], x[1:])
    assert not torch.equal(result.perturbed[:1], x[:1])


@pytest.mark.parametrize('dtype', [None, torch.bfloat16], ids=str)
def test_zero_gradient_images_are_logged_through_the_preprocessor(dtype):
    model = build_classifier()
    plain_loss = model.loss

    def loss_blind_to_images_1_and_up(inputs, samples):
        if inputs.requires_grad:  # the attack's forward: images 1.. have an exactly zero gradient
            keep = torch.zeros(inputs.shape[0], 1, 1, 1)
            keep[0] = 1
            inputs = inputs * keep
        return plain_loss(inputs, samples)

    model.loss = loss_blind_to_images_1_and_up
    hub = MessageHub.get_current_instance()
    before = model.data_preprocessor.dat_counters.zero_gradient_images
    optim = sgd(model) if dtype is None else CPUAutocastOptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.01), dtype)
    with logged_messages() as messages:
        step, report = attack_step(model, image_batch(), optim)
        _, report2 = attack_step(model, image_batch(), optim)
    assert report.zero_gradient_images == BATCH - 1 and report.zero_gradient_total == before + BATCH - 1
    assert report2.zero_gradient_total == before + 2 * (BATCH - 1)
    assert hub.get_scalar('train/dat_zero_gradient_images').current() == report2.zero_gradient_total
    assert sum('input gradient is exactly zero' in m for m in messages) == 1  # warned once
    norms = step.flatten(1).norm(dim=1)
    assert norms[0] > 0.05 and torch.all(norms[1:] < 1e-6)  # (x' clamps x_rec's rounding to [0, 1])


def test_a_failed_step_still_runs_every_forward():
    """Every rank must run the same forwards (their collectives must match): after a non-finite loss
    the remaining steps still call the loss (without moving) and the batch is skipped."""
    calls = []

    def loss_fn(images):
        calls.append(images.detach().clone())
        value = (images ** 2).sum()
        return value * math.nan if len(calls) == 1 else value

    attack = DATAttack(IdentityQuantizer(), random_start_prob=0.0, steps=3)
    x = torch.rand(2, 3, 4, 4)
    result = attack.run(x, loss_fn)
    assert len(calls) == 3 and result.skipped and 'non-finite attack loss' in result.skipped_reason
    assert all(torch.equal(c, x) for c in calls)
