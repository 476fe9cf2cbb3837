"""Tests of the built-in synthetic shape datasets and of the shipped tiny VQGAN (CPU, a few seconds)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmdat.assets import TINY_VQGAN_CHECKPOINT, TINY_VQGAN_CONFIG
from mmdat.datasets import (CLASSIFICATION_CLASSES, DETECTION_CLASSES, make_shapes_ade20k,
                            make_shapes_classification, make_shapes_coco, sample_shape_images, shape_polygon)
from mmdat.datasets.shapes import MARKER_FILE
from mmdat.models import VQGAN

# Held-out PSNR of the shipped checkpoint measured by tools/train_tiny_vqgan.py minus a margin.
TINY_VQGAN_MIN_PSNR = 22.0
TINY_VQGAN_MIN_CODES = 64


def tree(root: Path) -> dict:
    """Relative path -> bytes of every file under root (the marker included)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def cls_data(tmp_path_factory):
    return make_shapes_classification(tmp_path_factory.mktemp('cls'), num_per_class=5, size=32)


@pytest.fixture(scope='module')
def coco_data(tmp_path_factory):
    return make_shapes_coco(tmp_path_factory.mktemp('coco'), num_images=16)


@pytest.fixture(scope='module')
def ade_data(tmp_path_factory):
    return make_shapes_ade20k(tmp_path_factory.mktemp('ade'), num_images=16)


# ----------------------------------------------------------------------------- classification
def test_classification_layout(cls_data):
    root = Path(cls_data['root'])
    assert cls_data['classes'] == list(CLASSIFICATION_CLASSES)
    for split in ('train', 'val'):
        meta = cls_data['splits'][split]
        assert meta['data_prefix'] == split and meta['ann_file'] == f'meta/{split}.txt'
        assert meta['num_images'] == 20 and meta['counts'] == {c: 5 for c in CLASSIFICATION_CLASSES}
        lines = (root / meta['ann_file']).read_text().splitlines()
        assert len(lines) == 20
        for line in lines:
            rel, label = line.rsplit(' ', 1)
            name = rel.split('/')[0]
            assert int(label) == CLASSIFICATION_CLASSES.index(name)
            with Image.open(root / split / rel) as im:
                assert im.mode == 'RGB' and im.size == (32, 32)
        assert len(list((root / split).rglob('*.png'))) == 20


def test_classification_matches_in_memory_samples(cls_data):
    root = Path(cls_data['root'])
    images, labels = sample_shape_images(8, 32, split='val', seed=0)
    for i in range(8):  # image i is <class i % 4>/<i // 4>.png
        assert labels[i] == i % 4
        on_disk = np.asarray(Image.open(root / 'val' / CLASSIFICATION_CLASSES[i % 4] / f'{i // 4}.png'))
        np.testing.assert_array_equal(on_disk, images[i])
    late, late_labels = sample_shape_images(2, 32, split='val', seed=0, start=6)
    np.testing.assert_array_equal(late, images[6:])
    assert late_labels.tolist() == [2, 3]


def test_classification_images_vary_and_show_shapes():
    images, labels = sample_shape_images(16, 32)
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [i % 4 for i in range(16)]
    assert len({im.tobytes() for im in images}) == 16
    assert all(im.reshape(-1, 3).std(0).max() > 10 for im in images)  # not blank


def test_determinism_idempotence_and_regeneration(tmp_path):
    a = make_shapes_classification(tmp_path / 'a', num_per_class=3, seed=1)
    b = make_shapes_classification(tmp_path / 'b', num_per_class=3, seed=1)
    assert tree(tmp_path / 'a') == tree(tmp_path / 'b')
    assert {**a, 'root': None} == {**b, 'root': None}
    make_shapes_classification(tmp_path / 'c', num_per_class=3, seed=2)
    assert tree(tmp_path / 'a')['train/circle/0.png'] != tree(tmp_path / 'c')['train/circle/0.png']

    # Same parameters: nothing is rewritten.
    png = tmp_path / 'a' / 'train' / 'circle' / '0.png'
    png.write_bytes(b'sentinel')
    assert make_shapes_classification(tmp_path / 'a', num_per_class=3, seed=1) == a
    assert png.read_bytes() == b'sentinel'
    # Other parameters: the old files go, the new set is complete and alone.
    info = make_shapes_classification(tmp_path / 'a', num_per_class=2, seed=1, splits=('train',))
    assert info['splits'].keys() == {'train'}
    assert sorted(p.name for p in (tmp_path / 'a' / 'train' / 'circle').iterdir()) == ['0.png', '1.png']
    assert not (tmp_path / 'a' / 'val').exists() and not (tmp_path / 'a' / 'meta' / 'val.txt').exists()
    assert png.read_bytes() != b'sentinel'
    assert json.loads((tmp_path / 'a' / MARKER_FILE).read_text())['params']['num_per_class'] == 2


def test_coco_and_ade_are_deterministic(tmp_path):
    for make in (make_shapes_coco, make_shapes_ade20k):
        make(tmp_path / f'{make.__name__}1', num_images=4, seed=3)
        make(tmp_path / f'{make.__name__}2', num_images=4, seed=3)
        assert tree(tmp_path / f'{make.__name__}1') == tree(tmp_path / f'{make.__name__}2')


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='classes'):
        make_shapes_classification(tmp_path, classes=('circle', 'hexagon'))
    with pytest.raises(ValueError, match='split'):
        make_shapes_ade20k(tmp_path, splits=('test',))
    with pytest.raises(ValueError, match='height_range'):
        make_shapes_coco(tmp_path, height_range=(80, 48))


@pytest.mark.parametrize('shape', ['circle', 'square', 'triangle', 'cross', 'star'])
def test_shape_polygon_within_radius(shape):
    poly = shape_polygon(shape, 10.0, 20.0, 5.0, angle=0.7)
    assert poly.ndim == 2 and poly.shape[1] == 2 and len(poly) >= 3
    dist = np.hypot(poly[:, 0] - 10, poly[:, 1] - 20)
    assert dist.max() <= 5.0 + 1e-9 and dist.max() >= 4.9


# ----------------------------------------------------------------------------- COCO
def test_coco_annotations_valid(coco_data):
    root = Path(coco_data['root'])
    assert coco_data['classes'] == list(DETECTION_CLASSES)
    sizes = set()
    for split in ('train', 'val'):
        meta = coco_data['splits'][split]
        assert meta['data_prefix'] == {'img': f'{split}/'}
        coco = json.loads((root / meta['ann_file']).read_text())
        assert [c['name'] for c in coco['categories']] == list(DETECTION_CLASSES)
        assert [c['id'] for c in coco['categories']] == [1, 2, 3]
        images = {im['id']: im for im in coco['images']}
        assert len(images) == meta['num_images'] == 16
        assert len(coco['annotations']) == meta['num_instances'] == sum(meta['counts'].values())
        assert len({a['id'] for a in coco['annotations']}) == len(coco['annotations'])
        per_image = {i: 0 for i in images}
        for ann in coco['annotations']:
            im = images[ann['image_id']]
            per_image[ann['image_id']] += 1
            assert ann['category_id'] in (1, 2, 3) and ann['iscrowd'] == 0
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1
            assert x + w <= im['width'] and y + h <= im['height']
            (poly,) = ann['segmentation']
            assert len(poly) >= 6 and len(poly) % 2 == 0
            xs, ys = np.array(poly[0::2]), np.array(poly[1::2])
            assert xs.min() == pytest.approx(x, abs=0.02) and xs.max() == pytest.approx(x + w, abs=0.02)
            assert ys.min() == pytest.approx(y, abs=0.02) and ys.max() == pytest.approx(y + h, abs=0.02)
            assert 0 < ann['area'] <= w * h
        assert all(1 <= n <= 3 for n in per_image.values())
        for im in images.values():
            with Image.open(root / split / im['file_name']) as pil:
                assert pil.mode == 'RGB' and pil.size == (im['width'], im['height'])
            assert 48 <= im['height'] <= 80 and 64 <= im['width'] <= 96
            sizes.add((im['height'], im['width']))
    assert len(sizes) > 5  # varying sizes, so batching pads


def test_coco_boxes_enclose_the_drawn_shapes(coco_data):
    """The shape's colour differs from the background: pixels inside the box differ from those outside."""
    root = Path(coco_data['root'])
    coco = json.loads((root / 'annotations' / 'instances_val.json').read_text())
    images = {im['id']: im for im in coco['images']}
    ann = coco['annotations'][0]
    img = np.asarray(Image.open(root / 'val' / images[ann['image_id']]['file_name']), np.float64)
    x, y, w, h = (int(round(v)) for v in ann['bbox'])
    cx, cy = x + w // 2, y + h // 2  # the centre of every shape is covered by it
    inside = img[cy, cx]
    corner = img[max(y - 1, 0), max(x - 1, 0)] if x and y else img[min(y + h, img.shape[0] - 1), min(x + w, img.shape[1] - 1)]
    assert np.abs(inside - corner).sum() > 30


# ----------------------------------------------------------------------------- ADE20K
def test_ade20k_layout_and_labels(ade_data):
    root = Path(ade_data['root'])
    assert ade_data['label_values'] == {'circle': 1, 'square': 2, 'triangle': 3}
    sizes = set()
    for split, sub in (('train', 'training'), ('val', 'validation')):
        meta = ade_data['splits'][split]
        assert meta['data_prefix'] == {'img_path': f'images/{sub}', 'seg_map_path': f'annotations/{sub}'}
        jpgs = sorted((root / 'images' / sub).glob('*.jpg'))
        assert len(jpgs) == meta['num_images'] == 16
        counts = np.zeros(4, np.int64)
        for jpg in jpgs:
            seg_path = root / 'annotations' / sub / (jpg.stem + '.png')
            with Image.open(jpg) as im, Image.open(seg_path) as seg:
                assert im.mode == 'RGB' and seg.mode == 'L' and im.size == seg.size
                sizes.add(im.size)
                labels = np.asarray(seg)
            assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3}
            assert (labels > 0).any() and (labels == 0).any()
            counts += np.bincount(labels.reshape(-1), minlength=4)
        assert dict(zip(['background', 'circle', 'square', 'triangle'], counts.tolist())) == meta['pixel_counts']
    assert len(sizes) > 5


# ----------------------------------------------------------------------------- tiny VQGAN
@pytest.fixture(scope='module')
def tiny_vqgan():
    return VQGAN(**TINY_VQGAN_CONFIG, checkpoint=TINY_VQGAN_CHECKPOINT)


def test_tiny_vqgan_checkpoint_file():
    assert TINY_VQGAN_CHECKPOINT.is_file()
    assert TINY_VQGAN_CHECKPOINT.stat().st_size < 1024 * 1024
    ckpt = torch.load(TINY_VQGAN_CHECKPOINT, map_location='cpu', weights_only=True)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_VQGAN_CONFIG.items()}
    assert ckpt['meta']['config'] == config
    assert ckpt['meta']['psnr'] > TINY_VQGAN_MIN_PSNR
    assert set(ckpt['state_dict']) == set(VQGAN(**TINY_VQGAN_CONFIG).state_dict())


def test_tiny_vqgan_reconstructs_held_out_shapes(tiny_vqgan):
    assert not tiny_vqgan.training
    assert not any(p.requires_grad for p in tiny_vqgan.parameters())
    images, _ = sample_shape_images(64, 32, split='val', seed=0)  # the val split: never trained on
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    rec = tiny_vqgan.reconstruct(x)
    assert rec.shape == x.shape
    mse = (rec - x).square().flatten(1).mean(1)
    psnr = (10 * torch.log10(1 / mse)).mean().item()
    assert psnr > TINY_VQGAN_MIN_PSNR, psnr
    codes = tiny_vqgan.encode(x)
    assert codes.shape == (64, 16, 16) and codes.dtype == torch.long
    assert codes.unique().numel() >= TINY_VQGAN_MIN_CODES


def test_tiny_vqgan_on_larger_odd_sized_images(tiny_vqgan, coco_data):
    """Detection-sized inputs (odd sizes, so padded inside the VQGAN) round-trip with a sane error.

    Measured ~21 dB on these larger scenes (the model was trained on 32 x 32 images).
    """
    root = Path(coco_data['root'])
    psnrs = []
    for path in sorted((root / 'val').glob('*.png'))[:6]:
        img = np.asarray(Image.open(path))[:47, :61]
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
        rec = tiny_vqgan.reconstruct(x)
        assert rec.shape == x.shape
        psnrs.append(10 * math.log10(1 / (rec - x).square().mean().item()))
    assert np.mean(psnrs) > TINY_VQGAN_MIN_PSNR - 5, psnrs


# ----------------------------------------------------------------------------- OpenMMLab datasets
def test_mmpretrain_custom_dataset_loads(cls_data):
    pytest.importorskip('mmpretrain')
    from mmcv.transforms import LoadImageFromFile
    from mmpretrain.datasets import CustomDataset
    meta = cls_data['splits']['train']
    ds = CustomDataset(data_root=cls_data['root'], data_prefix=meta['data_prefix'], ann_file=meta['ann_file'],
                       classes=cls_data['classes'], pipeline=[LoadImageFromFile()])
    assert len(ds) == 20 and ds.metainfo['classes'] == tuple(CLASSIFICATION_CLASSES)
    sample = ds[7]  # square/2.png
    assert sample['img'].shape == (32, 32, 3) and sample['gt_label'] == 1
    assert sample['img_path'].endswith('square/2.png')


def test_mmdet_coco_dataset_loads(coco_data):
    pytest.importorskip('mmdet')
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations
    meta = coco_data['splits']['val']
    ds = CocoDataset(data_root=coco_data['root'], ann_file=meta['ann_file'], data_prefix=meta['data_prefix'],
                     metainfo=dict(classes=tuple(coco_data['classes'])), test_mode=False,
                     filter_cfg=dict(filter_empty_gt=True, min_size=0),
                     pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)])
    assert len(ds) == 16
    coco = json.loads((Path(coco_data['root']) / meta['ann_file']).read_text())
    sample = ds[0]
    image = next(im for im in coco['images'] if im['id'] == sample['img_id'])
    anns = [a for a in coco['annotations'] if a['image_id'] == sample['img_id']]
    assert sample['img'].shape == (image['height'], image['width'], 3)
    assert len(sample['gt_bboxes']) == len(anns)
    assert sample['gt_bboxes_labels'].tolist() == [a['category_id'] - 1 for a in anns]
    x, y, w, h = anns[0]['bbox']
    np.testing.assert_allclose(sample['gt_bboxes'].tensor[0].numpy(), [x, y, x + w, y + h], atol=1e-3)
    masks = sample['gt_masks'].to_ndarray()
    assert masks.shape == (len(anns), image['height'], image['width'])
    assert all(abs(int(m.sum()) - a['area']) <= 0.25 * a['area'] + 4 for m, a in zip(masks, anns))


def test_mmseg_ade20k_dataset_loads(ade_data):
    pytest.importorskip('mmseg')
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations
    meta = ade_data['splits']['val']
    ds = ADE20KDataset(data_root=ade_data['root'], data_prefix=meta['data_prefix'],
                       pipeline=[LoadImageFromFile(), LoadAnnotations()])
    assert len(ds) == 16
    sample = ds[0]
    raw = np.asarray(Image.open(sample['seg_map_path']))
    assert sample['img'].shape[:2] == raw.shape
    gt = sample['gt_seg_map']
    assert set(np.unique(gt).tolist()) <= {0, 1, 2, 255}
    np.testing.assert_array_equal(gt == 255, raw == 0)  # reduce_zero_label: background ignored
    np.testing.assert_array_equal(gt[raw > 0], raw[raw > 0] - 1)
