"""DAT in mmseg: padded batches (images restored bit for bit, labels never touched) and the tools.

The segmentor is the tiny demo config (configs/demo/fcn-tiny_dat_shapes.py) with the random tiny
VQGAN of conftest.py.
"""
from __future__ import annotations

import copy
import functools
import re
import sys

import pytest
import torch

from conftest import REPO, attach, dist_train_decisions, record_loss_calls, run_tool, sgd, tiny_seg_config

pytest.importorskip('mmseg')
pytest.importorskip('mmcv.ops')
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS as SEG_MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import mmdat.testing as mmdat_testing  # noqa: E402


register_all_modules(init_default_scope=False)

FCN = REPO / 'configs/demo/fcn-tiny_dat_shapes.py'
SIZES = ((48, 48), (37, 42))  # the crop size, and an image smaller than it (padded)


@functools.lru_cache(maxsize=None)
def _model_cfg() -> ConfigDict:
    return Config.fromfile(str(FCN)).model


def build_segmentor(dat: dict | None = None):
    cfg = copy.deepcopy(_model_cfg())
    cfg.data_preprocessor.dat.update(dat or {})
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return SEG_MODELS.build(cfg)


def build_plain_preprocessor():
    return mmdat_testing.build_plain_preprocessor(_model_cfg(), 'SegDataPreProcessor', 'mmseg')


def make_batch(sizes=SIZES, seed=1):
    """Images as PackSegInputs packs them (BGR uint8, unpadded), labels 0..2 and 255 (ignored)."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in sizes:
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        labels = torch.randint(0, 3, (1, h, w), generator=g, dtype=torch.uint8).long()
        labels[:, : h // 4] = 255
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_padding_restored_and_labels_untouched():
    model = build_segmentor(dat=dict(random_start_prob=0.0))
    attach(model)
    calls = record_loss_calls(model)
    data = make_batch()
    originals = [s.gt_sem_seg.data.clone() for s in data['data_samples']]
    ref = build_plain_preprocessor()(copy.deepcopy(data), training=True)
    out = model.data_preprocessor(copy.deepcopy(data), training=True)
    x = out['inputs']
    assert x.shape == (2, 3, 48, 48)
    assert torch.equal(x, ref['inputs'])
    # labels: padded with seg_pad_val 255, identical to the upstream ones, never touched by DAT
    for sample, theirs, original, (h, w) in zip(out['data_samples'], ref['data_samples'],
                                                 originals, SIZES):
        seg = sample.gt_sem_seg.data
        assert seg.shape == (1, 48, 48)
        assert torch.equal(seg, theirs.gt_sem_seg.data)
        assert torch.equal(seg[:, :h, :w], original)
        assert (seg[:, h:, :] == 255).all() and (seg[:, :, w:] == 255).all()
        assert tuple(sample.img_shape) == (h, w)

    assert [c['attack'] for c in calls] == [True, False]
    pad = torch.zeros_like(x, dtype=torch.bool)
    pad[1, :, SIZES[1][0]:, :] = True
    pad[1, :, :, SIZES[1][1]:] = True
    for call in calls:
        assert torch.equal(call['inputs'][pad], x[pad]), 'padding changed'
        for sample, clean in zip(call['samples'], out['data_samples']):
            assert torch.equal(sample.gt_sem_seg.data, clean.gt_sem_seg.data)
    x_adv = calls[1]['inputs']
    for i, (h, w) in enumerate(SIZES):
        assert (x_adv[i, :, :h, :w] - x[i, :, :h, :w]).abs().amax() > 0.05, 'DAT changed nothing'

    calls.clear()
    log_vars = model.train_step(make_batch(), sgd(model))
    assert [c['attack'] for c in calls] == [True, False, False]
    for call in calls[:2]:
        for sample, clean in zip(call['samples'], calls[2]['samples']):
            assert torch.equal(sample.gt_sem_seg.data, clean.gt_sem_seg.data)
    for key in ('decode.loss_ce', 'aux.loss_ce'):
        assert key in log_vars and torch.isfinite(log_vars['adv_' + key]), key
    assert float(log_vars['loss']) == pytest.approx(
        float(sum(v for k, v in log_vars.items() if 'loss' in k and k != 'loss')), rel=1e-4)


# ----------------------------------------------------------------------------- tools


@pytest.fixture(scope='module')
def shapes_ade(tmp_path_factory):
    from mmdat.datasets import make_shapes_ade20k
    root = tmp_path_factory.mktemp('shapes_ade20k')
    make_shapes_ade20k(root, num_images=dict(train=8, val=2))
    return root


def test_train_tool_two_iterations(tmp_path, shapes_ade, tiny_vqgan_cfg):
    config = tiny_seg_config(tmp_path, shapes_ade, tiny_vqgan_cfg)
    out = run_tool([sys.executable, 'tools/train.py', config, '--work-dir', str(tmp_path / 'work')],
                   cwd=REPO)
    assert re.search(r'Iter\(train\)\s+\[2/2\]', out), out[-3000:]
    for key in ('decode.loss_ce', 'aux.loss_ce'):
        assert re.search(rf'\s{re.escape(key)}: \d', out), (key, out[-3000:])
        assert re.search(rf'\sadv_{re.escape(key)}: \d', out), (key, out[-3000:])
    assert 'dat_codes_changed' in out
    assert 'mIoU' in out  # validation after the last iteration runs with the DAT preprocessor


def test_dist_train_two_cpu_processes_decide_alike(tmp_path, shapes_ade, tiny_vqgan_cfg):
    # BN, not SyncBN: torch's SyncBatchNorm refuses CPU tensors in a distributed run (gloo).
    config = tiny_seg_config(tmp_path, shapes_ade, tiny_vqgan_cfg, extra=f"""
        custom_imports = dict(imports=['mmdat', 'dat_probe'], allow_failed_imports=False)
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r}),
                        dict(type='DATDecisionRecorder', out_dir='{tmp_path}')]
        model = dict(data_preprocessor=dict(dat=dict(random_start_prob=0.5, apply_prob=0.7)))
        train_cfg = dict(max_iters=4, val_interval=10)
        val_cfg = None
        val_dataloader = None
        val_evaluator = None
        """)
    rank0 = dist_train_decisions(config, tmp_path)
    assert [d['step'] for d in rank0] == [0, 1, 2, 3]
    assert any(d['applied'] for d in rank0)
