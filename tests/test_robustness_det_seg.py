"""COCO-C (box + mask AP) and ADE20K-C (mIoU) style benchmarks of tiny models through tools/test.py:
two corruptions x two severities, ground truth untouched, tables with P/mPC/rPC, --ood refused."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, write_config

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmcv.ops')
pytest.importorskip('imagecorruptions')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DATASETS, init_default_scope  # noqa: E402
from mmengine.runner.loops import TestLoop as _TestLoop  # noqa: E402

from mmdat.apis import build_runner  # noqa: E402
from mmdat.datasets import make_shapes_ade20k, make_shapes_coco  # noqa: E402
from mmdat.robustness import insert_corruption  # noqa: E402

CELLS = ['gaussian_noise', 'fog']


def _load_test_tool():
    spec = importlib.util.spec_from_file_location('test_tool', REPO / 'tools/test.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TEST_TOOL = _load_test_tool()


def train(config: str, work: Path) -> str:
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work)
    build_runner(cfg).train()
    return str(sorted(work.glob('*.pth'))[-1])


@pytest.fixture(scope='module')
def mask_rcnn(tmp_path_factory, tiny_vqgan_cfg):
    tmp = tmp_path_factory.mktemp('rob_det')
    root = tmp / 'coco'
    make_shapes_coco(root, num_images=dict(train=4, val=3))
    config = write_config(tmp, 'tiny_mask.py', f"""
        _base_ = ['{REPO}/configs/demo/mask-rcnn-tiny_dat_shapes.py']
        data_root = '{root}/'
        train_dataloader = dict(dataset=dict(data_root=data_root))
        val_dataloader = dict(dataset=dict(data_root=data_root))
        test_dataloader = val_dataloader
        val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
        test_evaluator = val_evaluator
        train_cfg = dict(max_epochs=1, val_interval=10)
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r})]
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
        """)
    return dict(tmp=tmp, config=config, ckpt=train(config, tmp / 'train'))


@pytest.fixture(scope='module')
def fcn(tmp_path_factory, tiny_vqgan_cfg):
    tmp = tmp_path_factory.mktemp('rob_seg')
    root = tmp / 'ade'
    make_shapes_ade20k(root, num_images=dict(train=4, val=3))
    config = write_config(tmp, 'tiny_fcn.py', f"""
        _base_ = ['{REPO}/configs/demo/fcn-tiny_dat_shapes.py']
        data_root = '{root}'
        train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
        val_dataloader = dict(dataset=dict(data_root=data_root))
        test_dataloader = val_dataloader
        train_cfg = dict(max_iters=2, val_interval=10)
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r})]
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
        """)
    return dict(tmp=tmp, config=config, ckpt=train(config, tmp / 'train'))


def check_record(work: Path, metrics: list[str], task: str) -> dict:
    record = json.loads((work / 'robustness.json').read_text())
    assert record['settings']['task'] == task
    assert set(record['results']) == {'clean', *CELLS}
    for c in CELLS:
        assert sorted(record['results'][c]) == ['1', '2']
    for key in metrics:
        summary = record['summary'][key]
        assert summary['pc']['cells'] == 4 and summary['pc']['complete'] is False
        values = [record['results'][c][s][key] for c in CELLS for s in ('1', '2')]
        scale = 100.0 if 'mAP' in key else 1.0
        assert summary['pc']['mPC'] == pytest.approx(scale * sum(values) / 4)
    table = (work / 'robustness.md').read_text()
    for key in metrics:
        assert f'**{key}** (%)' in table
    assert '| fog |' in table and 'rPC' in table
    assert (work / 'robustness.png').read_bytes()[:4] == b'\x89PNG'
    return record


def test_detector_box_and_mask(mask_rcnn, capsys):
    work = mask_rcnn['tmp'] / 'work'
    TEST_TOOL.main([mask_rcnn['config'], mask_rcnn['ckpt'], '--corruptions', *CELLS, '--severities', '1', '2',
                    '--work-dir', str(work)])
    check_record(work, ['coco/bbox_mAP', 'coco/segm_mAP'], 'detection')
    # --report re-renders the same table from the JSON alone
    (work / 'robustness.md').unlink()
    capsys.readouterr()
    TEST_TOOL.main(['--report', str(work / 'robustness.json')])
    assert capsys.readouterr().out.strip() == (work / 'robustness.md').read_text().strip()


def test_detector_ground_truth_untouched(mask_rcnn):
    cfg = Config.fromfile(mask_rcnn['config'])
    init_default_scope('mmdet')
    clean = DATASETS.build(cfg.test_dataloader.dataset)
    bad = DATASETS.build(insert_corruption(cfg.test_dataloader.dataset, 'frost', 5))
    again = DATASETS.build(insert_corruption(cfg.test_dataloader.dataset, 'frost', 5))
    for i in range(len(clean)):
        a, b = clean[i]['data_samples'], bad[i]['data_samples']
        assert np.array_equal(a.gt_instances.bboxes.numpy(), b.gt_instances.bboxes.numpy())
        assert np.array_equal(a.gt_instances.masks.to_ndarray(), b.gt_instances.masks.to_ndarray())
        assert a.img_shape == b.img_shape and a.scale_factor == b.scale_factor
        assert not np.array_equal(clean[i]['inputs'].numpy(), bad[i]['inputs'].numpy())
        assert np.array_equal(again[i]['inputs'].numpy(), bad[i]['inputs'].numpy())


def test_ood_refused_on_a_detector(mask_rcnn, monkeypatch):
    monkeypatch.setattr(_TestLoop, 'run', lambda self: pytest.fail('evaluation started'))
    with pytest.raises(ValueError, match='--ood does not apply to detectors or segmentors'):
        TEST_TOOL.main([mask_rcnn['config'], mask_rcnn['ckpt'], '--ood', 'imagenet-r',
                        '--work-dir', str(mask_rcnn['tmp'] / 'work_ood')])


def test_segmentor_miou(fcn):
    work = fcn['tmp'] / 'work'
    TEST_TOOL.main([fcn['config'], fcn['ckpt'], '--corruptions', *CELLS, '--severities', '1', '2',
                    '--work-dir', str(work)])
    check_record(work, ['mIoU'], 'segmentation')
    cfg = Config.fromfile(fcn['config'])
    init_default_scope('mmseg')
    clean = DATASETS.build(cfg.test_dataloader.dataset)
    bad = DATASETS.build(insert_corruption(cfg.test_dataloader.dataset, 'gaussian_noise', 2))
    for i in range(len(clean)):
        a, b = clean[i]['data_samples'].gt_sem_seg.data, bad[i]['data_samples'].gt_sem_seg.data
        assert np.array_equal(a.numpy(), b.numpy())  # labels are never corrupted
        assert not np.array_equal(clean[i]['inputs'].numpy(), bad[i]['inputs'].numpy())


def _make_corrupted():
    spec = importlib.util.spec_from_file_location('make_corrupted_tool',
                                                  REPO / 'tools/dataset_converters/make_corrupted.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('family', ['mask_rcnn', 'fcn'])
def test_pre_generated_copies(family, request):
    """make_corrupted.py copies (COCO json / ADE20K label maps kept) evaluated through --corruption-root."""
    setup = request.getfixturevalue(family)
    copies = setup['tmp'] / 'copies'
    _make_corrupted().main([setup['config'], str(copies), '--corruptions', 'fog', '--severities', '2',
                            '--workers', '2'])
    cfg = Config.fromfile(setup['config'])
    root = Path(cfg.test_dataloader.dataset.data_root)
    folder = copies / 'fog' / '2'
    originals = [p for p in root.rglob('*') if p.is_file() and 'train' not in str(p.relative_to(root))
                 and not p.name.startswith('.')]
    copied = {str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file() and not p.name.startswith('.')}
    assert copied == {str(p.relative_to(root)) for p in originals}  # same layout, test split only
    for p in originals:
        same = (folder / p.relative_to(root)).read_bytes() == p.read_bytes()
        annotation = p.relative_to(root).parts[0] == 'annotations'  # COCO json, ADE20K label maps
        assert same == annotation, p  # annotations kept, images corrupted
    work = setup['tmp'] / 'work_copies'
    TEST_TOOL.main([setup['config'], setup['ckpt'], '--corruptions', 'fog', '--severities', '2',
                    '--corruption-root', str(copies), '--work-dir', str(work)])
    record = json.loads((work / 'robustness.json').read_text())
    assert record['settings']['source'] == 'copy' and set(record['results']) == {'clean', 'fog'}
    with pytest.raises(FileNotFoundError, match='missing folder'):
        TEST_TOOL.main([setup['config'], setup['ckpt'], '--corruptions', 'fog', '--severities', '3',
                        '--corruption-root', str(copies), '--work-dir', str(work)])
