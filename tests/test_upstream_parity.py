"""With ``dat=dict(enabled=False)`` the DAT detection / segmentation preprocessors are exactly
mmdet's ``DetDataPreprocessor`` and mmseg's ``SegDataPreProcessor``.

The behaviours that mmdet's and mmseg's own data-preprocessor tests check (construction, pad
shapes, channel conversion, padding and ``pad_size_divisor``, padded masks and semantic maps,
``BatchSyncRandomResize``, ``BatchFixedSizePad``, ``MultiBranchDataPreprocessor``, the ``size``
padding of segmentation), here asserted on the DAT subclasses, whose outputs are also compared bit
for bit with the upstream classes' on the same data. The only DAT-specific rule: a 1-channel
mean/std (grayscale) is refused when DAT is on, accepted when it is off.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import mmdat  # noqa: F401

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from mmdet.models.data_preprocessors import (BatchFixedSizePad, BatchSyncRandomResize,  # noqa: E402
                                             DetDataPreprocessor, MultiBranchDataPreprocessor)
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.bbox import BaseBoxes  # noqa: E402
from mmdet.structures.mask import BitmapMasks  # noqa: E402
from mmdet.testing import demo_mm_inputs  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import BaseDataElement, PixelData  # noqa: E402
from mmseg.models.data_preprocessor import SegDataPreProcessor  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from mmdat.models.data_preprocessors import DATDetDataPreprocessor, DATSegDataPreProcessor  # noqa: E402

OFF = dict(enabled=False)
PAIRS = {'det': (DATDetDataPreprocessor, DetDataPreprocessor),
         'seg': (DATSegDataPreProcessor, SegDataPreProcessor)}
SCOPES = {'det': 'mmdet', 'seg': 'mmseg'}


def ours_and_upstream(family: str, **kwargs):
    """The DAT subclass with DAT off and the upstream class, built from the same arguments (batch
    augments resolve in the family's registry scope, whatever scope an earlier test left)."""
    dat_cls, upstream_cls = PAIRS[family]
    with DefaultScope.overwrite_default_scope(SCOPES[family]):
        torch.manual_seed(0)
        ours = dat_cls(dat=OFF, **copy.deepcopy(kwargs))
        torch.manual_seed(0)
        return ours, upstream_cls(**copy.deepcopy(kwargs))


def assert_same_value(a, b, where: str) -> None:
    assert type(a) is type(b), f'{where}: {type(a).__name__} vs {type(b).__name__}'
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, BaseDataElement):
        assert sorted(a.metainfo_keys()) == sorted(b.metainfo_keys()), where
        assert sorted(a.keys()) == sorted(b.keys()), where
        for key in a.metainfo_keys():
            assert_same_value(a.metainfo[key], b.metainfo[key], f'{where}.{key}')
        for key in a.keys():
            assert_same_value(a.get(key), b.get(key), f'{where}.{key}')
    elif isinstance(a, BaseBoxes):
        assert_same_value(a.tensor, b.tensor, where)
    elif isinstance(a, BitmapMasks):
        assert np.array_equal(a.masks, b.masks) and (a.height, a.width) == (b.height, b.width), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            assert_same_value(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_value(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} vs {b!r}'


def run_both(ours, upstream, data: dict, training: bool, iteration: int | None = None) -> dict:
    """Both preprocessors on deep copies of ``data``; asserts equal outputs bit for bit."""
    outputs = []
    for pre in (ours, upstream):
        if iteration is not None:
            MessageHub.get_current_instance().update_info('iter', iteration)
        torch.manual_seed(1)  # batch augments may draw random numbers
        outputs.append(pre(copy.deepcopy(data), training=training))
    assert_same_value(outputs[0], outputs[1], 'output')
    return outputs[0]


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize('family', sorted(PAIRS))
def test_construction_as_upstream(family):
    dat_cls, _ = PAIRS[family]
    for dat in (OFF, None):  # the same with DAT on
        processor = dat_cls(dat=dat)
        assert not hasattr(processor, 'mean') and processor._enable_normalize is False
        processor = dat_cls(mean=[0, 0, 0], std=[1, 1, 1], dat=dat)
        assert hasattr(processor, 'mean') and hasattr(processor, 'std') and processor._enable_normalize
        with pytest.raises(AssertionError):  # mean without std
            dat_cls(mean=[0, 0, 0], dat=dat)
        with pytest.raises(AssertionError):  # both conversions at once
            dat_cls(bgr_to_rgb=True, rgb_to_bgr=True, dat=dat)


@pytest.mark.parametrize('family', sorted(PAIRS))
def test_grayscale_is_upstream_with_dat_off_and_refused_with_dat_on(family):
    dat_cls, _ = PAIRS[family]
    with pytest.raises(ValueError, match='DAT needs 3-channel RGB/BGR inputs'):
        dat_cls(mean=[127.5], std=[57.0])
    padding = dict(pad_size_divisor=8) if family == 'det' else dict(size_divisor=8)
    ours, upstream = ours_and_upstream(family, mean=[127.5], std=[57.0], **padding)
    assert ours.dat_cfg['enabled'] is False
    data = seg_batch(((10, 13), (12, 9)), channels=1) if family == 'seg' else dict(
        inputs=[torch.randint(0, 256, (1, 10, 13), dtype=torch.uint8),
                torch.randint(0, 256, (1, 12, 9), dtype=torch.uint8)],
        data_samples=[DetDataSample(), DetDataSample()])
    assert run_both(ours, upstream, data, training=True)['inputs'].shape == (2, 1, 16, 16)
    one = dict(inputs=data['inputs'][:1], data_samples=data['data_samples'][:1])  # mmseg tests one image
    out = run_both(ours, upstream, one, training=False)
    assert out['inputs'].shape == ((1, 1, 16, 16) if family == 'det' else (1, 1, 10, 13))


# ----------------------------------------------------------------------------- detection


def test_det_pad_shape():
    ours, upstream = ours_and_upstream('det')
    cases = [dict(inputs=torch.randint(0, 256, (2, 3, 10, 15))),
             dict(inputs=[torch.randint(0, 256, (3, 11, 10))]),
             dict(inputs=[torch.randint(0, 256, (3, 10, 16)), torch.randint(0, 256, (3, 15, 20))])]
    expected = [[(10, 15), (10, 15)], [(11, 10)], [(10, 16), (15, 20)]]
    for data, shapes in zip(cases, expected):
        assert ours._get_pad_shape(data) == upstream._get_pad_shape(data) == shapes
    ours, upstream = ours_and_upstream('det', pad_size_divisor=10)
    data = dict(inputs=torch.randint(0, 256, (2, 3, 52, 65)))
    assert ours._get_pad_shape(data) == upstream._get_pad_shape(data) == [(60, 70), (60, 70)]


@pytest.mark.parametrize('training', [True, False])
def test_det_forward_normalise_convert_pad(training):
    g = torch.Generator().manual_seed(0)

    def image(h, w):
        return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)

    one = dict(inputs=[image(11, 10)], data_samples=[DetDataSample()])
    for kwargs in (dict(mean=[0., 0., 0.], std=[1., 1., 1.]),
                   dict(mean=[0., 0., 0.], std=[1., 1., 1.], bgr_to_rgb=True),
                   dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)):
        out = run_both(*ours_and_upstream('det', **kwargs), one, training)
        assert out['inputs'].shape == (1, 3, 11, 10) and len(out['data_samples']) == 1
    # images of different sizes, no data samples: padded to the largest, samples stay None
    two = dict(inputs=[image(10, 11), image(9, 14)])
    out = run_both(*ours_and_upstream('det', mean=[0., 0., 0.], std=[1., 1., 1.], bgr_to_rgb=True),
                   two, training)
    assert out['inputs'].shape == (2, 3, 10, 14) and out['data_samples'] is None
    # pad_size_divisor: the batch shape and every sample's pad_shape
    divisible = dict(inputs=[image(10, 11), image(9, 24)], data_samples=[DetDataSample(), DetDataSample()])
    out = run_both(*ours_and_upstream('det', mean=[0., 0., 0.], std=[1., 1., 1.], pad_size_divisor=5),
                   divisible, training)
    assert out['inputs'].shape == (2, 3, 10, 25)
    assert [s.pad_shape for s in out['data_samples']] == [(10, 15), (10, 25)]
    assert all(s.batch_input_shape == (10, 25) for s in out['data_samples'])


def masks_and_semantics_batch(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    packed = demo_mm_inputs(2, [[3, 10, 11], [3, 9, 24]], with_mask=True, with_semantic=True,
                            use_box_type=True)
    packed['data_samples'][0].gt_sem_seg.sem_seg = torch.randint(0, 256, (1, 10, 11))
    packed['data_samples'][1].gt_sem_seg.sem_seg = torch.randint(0, 256, (1, 9, 24))
    return packed


def assert_padded_targets(samples, shape, packed) -> None:
    """Masks and semantic maps padded to ``shape`` with zeros: their sums are unchanged."""
    for sample, before in zip(samples, packed['data_samples']):
        assert tuple(sample.gt_instances.masks.masks.shape[-2:]) == shape
        assert tuple(sample.gt_sem_seg.sem_seg.shape[-2:]) == shape
        assert sample.gt_instances.masks.masks.sum() == before.gt_instances.masks.masks.sum()
        assert sample.gt_sem_seg.sem_seg.sum() == before.gt_sem_seg.sem_seg.sum()


def test_det_pads_masks_and_semantic_maps():
    packed = masks_and_semantics_batch()
    ours, upstream = ours_and_upstream('det', pad_mask=True, mask_pad_value=0, pad_seg=True, seg_pad_value=0)
    out = run_both(ours, upstream, packed, training=True)
    assert_padded_targets(out['data_samples'], (10, 24), packed)


def test_det_batch_sync_random_resize():
    augment = [dict(type='BatchSyncRandomResize', random_size_range=(320, 320), size_divisor=32, interval=1)]
    ours, upstream = ours_and_upstream('det', batch_augments=augment)
    assert isinstance(ours.batch_augments[0], BatchSyncRandomResize)
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 128, 128]], use_box_type=True)
    assert run_both(ours, upstream, packed, True, iteration=0)['inputs'].shape == (2, 3, 128, 128)
    # the size drawn at iteration 0 applies from iteration 1 on
    out = run_both(ours, upstream, packed, True, iteration=1)
    assert out['inputs'].shape == (2, 3, 320, 320)
    before = packed['data_samples'][0].gt_instances.bboxes.tensor
    torch.testing.assert_close(out['data_samples'][0].gt_instances.bboxes, before * 2.5)  # boxes follow
    assert run_both(ours, upstream, packed, False)['inputs'].shape == (2, 3, 128, 128)


@pytest.mark.parametrize('size, pad_targets_in_preprocessor, expected', [
    ((32, 32), False, (32, 32)), ((32, 32), True, (32, 32)), ((5, 5), True, (10, 24))])
def test_det_batch_fixed_size_pad(size, pad_targets_in_preprocessor, expected):
    pad_value = 1 if size == (5, 5) else 0  # no padding happens there, whatever the value
    augment = [dict(type='BatchFixedSizePad', size=size, img_pad_value=0, pad_mask=True,
                    mask_pad_value=pad_value, pad_seg=True, seg_pad_value=pad_value)]
    ours, upstream = ours_and_upstream('det', pad_mask=pad_targets_in_preprocessor,
                                       pad_seg=pad_targets_in_preprocessor, mask_pad_value=0,
                                       seg_pad_value=0, batch_augments=augment)
    assert isinstance(ours.batch_augments[0], BatchFixedSizePad)
    packed = masks_and_semantics_batch()
    out = run_both(ours, upstream, packed, training=True)
    assert tuple(out['inputs'].shape[-2:]) == expected
    assert_padded_targets(out['data_samples'], expected, packed)


def test_det_multi_branch_preprocessor():
    branches = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                    pad_size_divisor=32)
    with DefaultScope.overwrite_default_scope('mmdet'):
        ours = MultiBranchDataPreprocessor(dict(type='DATDetDataPreprocessor', dat=OFF, **branches))
        upstream = MultiBranchDataPreprocessor(dict(type='DetDataPreprocessor', **branches))
    assert isinstance(ours.data_preprocessor, DATDetDataPreprocessor)
    g = torch.Generator().manual_seed(0)

    def images(*sizes):
        return [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes]

    multi = dict(inputs=dict(sup=images((40, 40)), unsup_teacher=images((40, 60), (60, 40)),
                             unsup_student=images((70, 50), (50, 70))),
                 data_samples=dict(sup=[DetDataSample()], unsup_teacher=[DetDataSample(), DetDataSample()],
                                   unsup_student=[DetDataSample(), DetDataSample()]))
    out = run_both(ours, upstream, multi, training=True)
    assert out['inputs']['sup'].shape == (1, 3, 64, 64)
    assert out['inputs']['unsup_teacher'].shape == (2, 3, 64, 64)
    assert out['inputs']['unsup_student'].shape == (2, 3, 96, 96)
    single = dict(inputs=images((40, 40)), data_samples=[DetDataSample()])
    assert run_both(ours, upstream, single, training=False)['inputs'].shape == (1, 3, 64, 64)


# ----------------------------------------------------------------------------- segmentation


def seg_batch(sizes=((11, 10), (14, 9)), seed: int = 0, channels: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in sizes:
        inputs.append(torch.randint(0, 256, (channels, h, w), generator=g, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 10, (1, h, w), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('kwargs', [
    dict(mean=[0, 0, 0], std=[1, 1, 1], size=(20, 20)),
    dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=(20, 20),
         pad_val=3, seg_pad_val=255),
    dict(size_divisor=8, seg_pad_val=7),
    dict(mean=[0, 0, 0], std=[1, 1, 1], rgb_to_bgr=True, size=(16, 16),
         test_cfg=dict(size_divisor=4))])
def test_seg_forward_pads_images_and_labels(kwargs):
    ours, upstream = ours_and_upstream('seg', **kwargs)
    data = seg_batch()
    out = run_both(ours, upstream, data, training=True)
    shape = kwargs.get('size') or (16, 16)  # size_divisor 8 over 14 x 10
    assert out['inputs'].shape == (2, 3, *shape) and out['inputs'].dtype == torch.float32
    seg_pad = kwargs.get('seg_pad_val', 255)
    for sample, (h, w) in zip(out['data_samples'], ((11, 10), (14, 9))):
        labels = sample.gt_sem_seg.data
        assert labels.shape[-2:] == shape
        assert (labels[:, h:, :] == seg_pad).all() and (labels[:, :, w:] == seg_pad).all()
        assert tuple(sample.pad_shape) == shape
    for i in range(2):  # the valid region holds the normalised image (channel order as configured)
        h, w = data['inputs'][i].shape[-2:]
        raw = data['inputs'][i].float()
        if kwargs.get('bgr_to_rgb') or kwargs.get('rgb_to_bgr'):
            raw = raw.flip(0)
        if 'mean' in kwargs:
            raw = (raw - torch.tensor(kwargs['mean']).view(3, 1, 1)) / torch.tensor(kwargs['std']).view(3, 1, 1)
        torch.testing.assert_close(out['inputs'][i, :, :h, :w], raw, rtol=0, atol=0)
    # validation / test (mmseg takes one image at a time): padded only as test_cfg says
    test_out = run_both(ours, upstream, seg_batch(((14, 9),)), training=False)
    divisor = (kwargs.get('test_cfg') or {}).get('size_divisor')
    assert test_out['inputs'].shape == ((1, 3, 16, 12) if divisor == 4 else (1, 3, 14, 9))
