"""tools/analysis_tools/visualize_dat.py: clean | reconstruction | adversarial PNGs per image."""
from __future__ import annotations

import json
import sys

import cv2
import pytest

from conftest import REPO, run_tool, tiny_cls_config, write_config

TOOL = 'tools/analysis_tools/visualize_dat.py'
GAP, HEADER = 4, 14  # as in the tool


def check_triplets(out_dir, num: int, size: tuple[int, int] | None = None) -> list[dict]:
    """``num`` PNGs, each three panels of the image's valid size (times the scale) side by side."""
    full = json.loads((out_dir / 'index.json').read_text())
    index, batches = full['images'], {b['batch']: b for b in full['batches']}
    assert len(index) == num
    assert sorted(p.name for p in out_dir.glob('*.png')) == sorted(e['file'] for e in index)
    for entry in index:
        image = cv2.imread(str(out_dir / entry['file']))
        assert image is not None and image.ndim == 3
        h, w = entry['img_shape']
        if size is not None:
            assert (h, w) == size
        k = entry['scale']
        assert k >= 1 and h * k >= 128
        assert image.shape[:2] == (HEADER + h * k, 3 * w * k + 2 * GAP), (image.shape, entry)
        # the white gaps between the panels
        assert (image[HEADER:, w * k:w * k + GAP] == 255).all()
        assert (image[HEADER:, 2 * w * k + GAP:2 * w * k + 2 * GAP] == 255).all()
        # the attack's batch-level numbers once per batch, each image's own numbers on its entry
        assert 'codes_changed' in batches[entry['batch']]['stats'] and 'codes_changed' not in entry['stats']
        assert 'random_start' in batches[entry['batch']]['stats']
        assert 0 <= entry['stats']['reconstruction_psnr'] < 100  # images in [0, 1]: mse <= 1
        if batches[entry['batch']]['stats']['skipped'] is None:
            assert 0 <= entry['stats']['perturbation_norm'] <= 0.1 + 1e-4  # inside the L2 ball (eps 0.1)
            assert entry['stats']['adversarial_norm'] >= 0
    assert sorted(batches) == sorted({e['batch'] for e in index})
    for batch in batches:  # per image: images of one batch differ (they were one repeated value before)
        psnrs = [e['stats']['reconstruction_psnr'] for e in index if e['batch'] == batch]
        assert len(psnrs) < 2 or len(set(psnrs)) > 1, psnrs
    return index


def test_classification(tmp_path, tiny_vqgan_cfg):
    from mmdat.datasets import make_shapes_classification
    pytest.importorskip('mmpretrain')
    root = tmp_path / 'shapes_cls'
    make_shapes_classification(root, num_per_class=2, size=16, classes=('circle', 'square', 'triangle'),
                               splits=('train',))
    config = tiny_cls_config(tmp_path, root, tiny_vqgan_cfg)
    out_dir = tmp_path / 'vis'
    out = run_tool([sys.executable, TOOL, config, '--num', '5', '--out', str(out_dir)], cwd=REPO)
    assert str(out_dir.resolve()) in out
    check_triplets(out_dir, 5, size=(16, 16))


def test_detection(tmp_path, tiny_vqgan_cfg):
    pytest.importorskip('mmdet')
    pytest.importorskip('mmcv.ops')
    from mmdat.datasets import make_shapes_coco
    root = tmp_path / 'shapes_coco'
    make_shapes_coco(root, num_images=dict(train=4), splits=('train',))
    config = write_config(tmp_path, 'tiny_det_dat.py', f"""
        _base_ = ['{REPO}/configs/demo/faster-rcnn-tiny_dat_shapes.py']
        train_dataloader = dict(dataset=dict(data_root='{root}/'))
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r})]
        """)
    out_dir = tmp_path / 'vis'
    out = run_tool([sys.executable, TOOL, config, '--num', '3', '--out', str(out_dir),
                    '--vqgan-checkpoint', tiny_vqgan_cfg['checkpoint'], '--seed', '1'], cwd=REPO)
    assert str(out_dir.resolve()) in out
    index = check_triplets(out_dir, 3)
    assert all(max(e['img_shape']) <= 96 for e in index)
