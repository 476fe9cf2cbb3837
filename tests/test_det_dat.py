"""DAT in mmdet: padded batches, labels and geometry, batch augments, caffe-style inputs, the tools.

The detectors are the tiny demo configs (configs/demo/*-tiny_dat_shapes.py) with the random tiny
VQGAN of conftest.py.
"""
from __future__ import annotations

import copy
import functools
import re
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, attach, dist_train_decisions, record_loss_calls, run_tool, sgd, tiny_det_config

pytest.importorskip('mmdet')
pytest.importorskip('mmcv.ops')
from mmdet.registry import MODELS as DET_MODELS  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

import mmdat.testing as mmdat_testing  # noqa: E402
from mmdat.models import VQGAN  # noqa: E402

register_all_modules(init_default_scope=False)

FASTER = REPO / 'configs/demo/faster-rcnn-tiny_dat_shapes.py'
MASK = REPO / 'configs/demo/mask-rcnn-tiny_dat_shapes.py'
SIZES = ((64, 96), (45, 70))  # the second image is padded to the first's 64 x 96
CAFFE = dict(mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False)


@functools.lru_cache(maxsize=None)
def _model_cfg(config) -> ConfigDict:
    return Config.fromfile(str(config)).model


def build_detector(config=FASTER, dat: dict | None = None, **pre_overrides):
    cfg = copy.deepcopy(_model_cfg(config))
    pre = cfg['data_preprocessor']
    pre.dat.update(dat or {})
    pre.update(pre_overrides)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DET_MODELS.build(cfg)


def build_plain_preprocessor(config=FASTER, **pre_overrides):
    """The upstream DetDataPreprocessor of the config (no DAT), to compare against."""
    cfg = copy.deepcopy(_model_cfg(config))
    cfg.data_preprocessor.update(pre_overrides)
    return mmdat_testing.build_plain_preprocessor(cfg, 'DetDataPreprocessor', 'mmdet')


def make_batch(sizes=SIZES, with_masks=False, seed=1, colour=None):
    """Images as the pipeline packs them (BGR uint8, unpadded) with boxes, labels and masks."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i, (h, w) in enumerate(sizes):
        if colour is None:
            img = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        else:
            img = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()
        boxes = torch.tensor([[4., 6., 30., 28.], [w - 31., h - 25., w - 3., h - 2.]])
        inst = InstanceData(bboxes=boxes, labels=torch.tensor([i % 3, (i + 1) % 3]))
        if with_masks:
            masks = np.zeros((2, h, w), np.uint8)
            for m, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
                m[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = 1
            inst.masks = BitmapMasks(masks, h, w)
        sample = DetDataSample(metainfo=dict(img_id=i, img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0), flip=False))
        sample.gt_instances = inst
        inputs.append(img)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def padding_mask(shape, sizes) -> torch.Tensor:
    """(B, 1, H, W) True outside each image's valid region."""
    mask = torch.ones(shape[0], 1, *shape[-2:], dtype=torch.bool)
    for i, (h, w) in enumerate(sizes):
        mask[i, :, :h, :w] = False
    return mask


def assert_same_targets(a: DetDataSample, b: DetDataSample) -> None:
    for key in ('img_shape', 'pad_shape', 'batch_input_shape'):
        assert tuple(a.metainfo[key]) == tuple(b.metainfo[key]), key
    ga, gb = a.gt_instances, b.gt_instances
    assert torch.equal(ga.bboxes, gb.bboxes) and torch.equal(ga.labels, gb.labels)
    assert ('masks' in ga) == ('masks' in gb)
    if 'masks' in ga:
        assert np.array_equal(ga.masks.to_ndarray(), gb.masks.to_ndarray())


# ----------------------------------------------------------------------------- in-process


def test_padding_labels_and_geometry_are_untouched():
    """Two images of different sizes: DAT changes the valid regions only, padding bit for bit;
    the attack, the adversarial and the clean forward all see the same targets and geometry."""
    model = build_detector(MASK, dat=dict(random_start_prob=0.0))
    attach(model)
    calls = record_loss_calls(model)
    data = make_batch(with_masks=True)
    ref = build_plain_preprocessor(MASK)(copy.deepcopy(data), training=True)
    out = model.data_preprocessor(copy.deepcopy(data), training=True)
    assert torch.equal(out['inputs'], ref['inputs'])  # the clean half is the upstream batch
    for ours, theirs in zip(out['data_samples'], ref['data_samples']):
        assert_same_targets(ours, theirs)
    assert out['data_samples'][1].pad_shape == (64, 96)
    assert out['data_samples'][1].gt_instances.masks.to_ndarray().shape[-2:] == (64, 96)

    assert [c['attack'] for c in calls] == [True, False]  # the attack, then the adversarial half
    x = out['inputs']
    pad = padding_mask(x.shape, SIZES).expand_as(x)
    assert pad.any()
    for call in calls:
        assert call['inputs'].shape == x.shape
        assert torch.equal(call['inputs'][pad], x[pad]), 'padding changed'
        for sample, clean in zip(call['samples'], out['data_samples']):
            assert_same_targets(sample, clean)
    x_adv = calls[1]['inputs']
    for i, (h, w) in enumerate(SIZES):
        assert (x_adv[i, :, :h, :w] - x[i, :, :h, :w]).abs().amax() > 0.05, 'DAT changed nothing'

    # a full training step: the clean forward sees the same targets, losses of both halves
    calls.clear()
    log_vars = model.train_step(make_batch(with_masks=True), sgd(model))
    assert [c['attack'] for c in calls] == [True, False, False]
    for call in calls[:2]:
        for sample, clean in zip(call['samples'], calls[2]['samples']):
            assert_same_targets(sample, clean)
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in log_vars and 'adv_' + key in log_vars, key
        assert torch.isfinite(log_vars['adv_' + key])
    total = sum(v for k, v in log_vars.items() if 'loss' in k and k != 'loss')
    assert float(log_vars['loss']) == pytest.approx(float(total), rel=1e-4)


def test_batch_sync_random_resize():
    """DAT runs after mmdet's batch augments: on the resized batch, with the rescaled img_shape."""
    MessageHub.get_current_instance().update_info('iter', 0)
    resize = dict(type='BatchSyncRandomResize', random_size_range=(64, 128), interval=1,
                  size_divisor=32)
    model = build_detector(FASTER, batch_augments=[resize])
    model.data_preprocessor.batch_augments[0]._input_size = (96, 128)  # force a resize now
    attach(model)
    calls = record_loss_calls(model)
    log_vars = model.train_step(make_batch(), sgd(model))
    assert [c['attack'] for c in calls] == [True, False, False]
    attack, adv, clean = calls
    assert clean['inputs'].shape[-2:] == adv['inputs'].shape[-2:] == (96, 128)
    sizes = [tuple(s.img_shape) for s in clean['samples']]
    assert sizes == [(96, 128), (int(45 * 1.5), int(70 * 128 / 96))]
    pad = padding_mask(clean['inputs'].shape, sizes).expand_as(clean['inputs'])
    assert torch.equal(adv['inputs'][pad], clean['inputs'][pad])
    assert torch.equal(attack['inputs'][pad], clean['inputs'][pad])
    for a, c in zip(adv['samples'], clean['samples']):
        assert_same_targets(a, c)
        assert tuple(c.batch_input_shape) == (96, 128)
    assert torch.equal(clean['samples'][0].gt_instances.bboxes,
                       make_batch()['data_samples'][0].gt_instances.bboxes * torch.tensor(
                           [128 / 96, 1.5, 128 / 96, 1.5]))
    assert torch.isfinite(log_vars['adv_loss_bbox']) and torch.isfinite(log_vars['loss'])


@pytest.mark.parametrize('caffe', [False, True])
def test_vqgan_sees_rgb_whatever_the_preprocessor(caffe):
    """BGR images from the loader: the VQGAN gets RGB in [0, 1], for pytorch- and caffe-style
    (``bgr_to_rgb=False``, BGR mean, std 1) preprocessors alike, and back again bit-exactly."""
    model = build_detector(FASTER, **(CAFFE if caffe else {}))
    pre = model.data_preprocessor
    assert pre.input_space.rgb is (not caffe)
    raw = torch.randint(0, 256, (2, 3, 5, 7)).float()  # as loaded: BGR
    normalised = ((raw if caffe else raw.flip(1)) - pre.mean) / pre.std
    torch.testing.assert_close(pre.to_unit_rgb(normalised), raw.flip(1) / 255)
    torch.testing.assert_close(pre.from_unit_rgb(pre.to_unit_rgb(normalised)), normalised,
                               rtol=1e-5, atol=1e-4)

    vqgan = attach(model)
    seen = []
    encode = vqgan.encode

    def recording_encode(images):
        seen.append(images.detach().clone())
        return encode(images)

    vqgan.encode = recording_encode
    blue = (255, 0, 0)  # BGR
    pre(make_batch(colour=blue), training=True)
    clean = seen[:2]  # Q(x) for each valid size group, before the attack
    assert sorted(tuple(t.shape[-2:]) for t in clean) == sorted(SIZES)
    for images in clean:
        expected = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand_as(images)
        torch.testing.assert_close(images, expected, rtol=0, atol=1e-5)


def _total_loss(model, inputs, samples, seeds=(0, 1)) -> float:
    """The total training loss, averaged over the detector's random RPN/RoI sampling."""
    values = []
    for seed in seeds:
        torch.manual_seed(seed)
        with torch.no_grad():
            losses = model.loss(inputs, copy.deepcopy(samples))
        values.append(float(type(model).parse_losses(model, losses)[0]))
    return sum(values) / len(values)


def test_attack_raises_the_detection_loss(shapes_coco):
    """On average over the batches of a small shapes dataset, DAT raises the total detection loss
    above the loss at the VQGAN reconstruction x_rec = Q(x): both at the continuous perturbed image
    x' (the point the gradient step promises to improve) and at the re-quantised x_adv = Q(x').

    Random start off, eps 2.0 (the random tiny detector's loss is noisy), the losses averaged over
    the detector's random RPN / RoI sampling. The VQGAN is the trained tiny one shipped with mmdat
    ('tiny-shapes', trained on these shapes): the random test VQGAN is far from idempotent
    (Q(Q(x)) differs from Q(x) by much more than eps), so with it L(Q(x')) against L(Q(x))
    measures that re-quantisation error rather than the attack (it is then below L(Q(x)) for
    several seeds); only the check on x' is meaningful with a random VQGAN.
    """
    from mmdat.models import VQGAN_PRESETS
    if 'tiny-shapes' not in VQGAN_PRESETS:
        pytest.skip("the trained 'tiny-shapes' VQGAN is not available")
    model = build_detector(FASTER, dat=dict(random_start_prob=0.0, eps=2.0, step_size=2.0))
    model.data_preprocessor.attach_dat(model, VQGAN.from_preset('tiny-shapes'))
    pre = model.data_preprocessor
    plain = build_plain_preprocessor(FASTER)
    loader_cfg = Config.fromfile(str(FASTER)).train_dataloader
    loader_cfg.dataset.data_root = f'{shapes_coco}/'
    with DefaultScope.overwrite_default_scope('mmdet'):
        loader = Runner.build_dataloader(loader_cfg, seed=0)
    rec, pert, adv = [], [], []
    for seed, batch in enumerate(loader):
        data = plain(batch, training=True)
        inputs, samples = data['inputs'], data['data_samples']
        sizes = [tuple(s.img_shape) for s in samples]
        pad = padding_mask(inputs.shape, sizes)

        def to_model(images):
            return torch.where(pad, inputs, pre.from_unit_rgb(images).to(inputs.dtype))

        torch.manual_seed(seed)  # the detector's RPN / RoI sampling during the attack
        result = pre.generate_dat_examples(inputs, samples)
        assert not result.skipped and result.random_start is False
        delta = result.perturbed - result.reconstruction
        assert torch.equal(delta[pad.expand_as(delta)], torch.zeros_like(delta[pad.expand_as(delta)]))
        assert torch.all(delta.flatten(1).norm(dim=1) <= 2.0 + 1e-4)
        rec.append(_total_loss(model, to_model(result.reconstruction), samples))
        pert.append(_total_loss(model, to_model(result.perturbed), samples))
        adv.append(_total_loss(model, to_model(result.adversarial), samples))
    assert len(rec) >= 5
    assert np.mean(pert) > np.mean(rec), (pert, rec)
    assert np.mean(adv) > np.mean(rec), (adv, rec)


# ----------------------------------------------------------------------------- tools


@pytest.fixture(scope='module')
def shapes_coco(tmp_path_factory):
    from mmdat.datasets import make_shapes_coco
    root = tmp_path_factory.mktemp('shapes_coco')
    make_shapes_coco(root, num_images=dict(train=12, val=2))
    return root


def test_train_tool_two_iterations(tmp_path, shapes_coco, tiny_vqgan_cfg):
    config = tiny_det_config(tmp_path, shapes_coco, tiny_vqgan_cfg, train_images=4)
    out = run_tool([sys.executable, 'tools/train.py', config, '--work-dir', str(tmp_path / 'work')],
                   cwd=REPO)
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\]', out), out[-3000:]
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'):
        assert re.search(rf'\s{key}: \d', out), (key, out[-3000:])
        assert re.search(rf'\sadv_{key}: \d', out), (key, out[-3000:])
    assert 'dat_codes_changed' in out
    assert 'coco/bbox_mAP' in out  # validation after the last epoch, with the DAT preprocessor


def test_dist_train_two_cpu_processes_decide_alike(tmp_path, shapes_coco, tiny_vqgan_cfg):
    config = tiny_det_config(tmp_path, shapes_coco, tiny_vqgan_cfg, train_images=12, extra=f"""
        custom_imports = dict(imports=['mmdat', 'dat_probe'], allow_failed_imports=False)
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r}),
                        dict(type='DATDecisionRecorder', out_dir='{tmp_path}')]
        model = dict(data_preprocessor=dict(dat=dict(random_start_prob=0.5, apply_prob=0.7)))
        val_cfg = None
        val_dataloader = None
        val_evaluator = None
        """)
    rank0 = dist_train_decisions(config, tmp_path)
    assert any(d['applied'] for d in rank0)
