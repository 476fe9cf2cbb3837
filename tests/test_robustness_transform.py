"""ImageCorruption: reproducible per (dataset index, corruption, severity, seed) for all 19
corruptions whatever the number of dataloader workers; RGB by default; pipeline insertion by type."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader, Dataset

from mmdat.datasets.transforms import CORRUPTIONS, ImageCorruption, corrupt_image, resolve_corruptions
from mmdat.robustness import insert_corruption, resolve_severities

pytest.importorskip('imagecorruptions')

# the 19 corruptions on two tiny images (glass_blur is slow on big ones); severities vary per name
SHAPES = ((32, 40), (36, 32))


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SHAPES]


class CorruptedImages(Dataset):
    """Every corruption of every image, as a pipeline corrupts it (BGR in, BGR out)."""

    def __init__(self) -> None:
        self.images = _images()
        self.items = [(c, i) for c in CORRUPTIONS for i in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        corruption, i = self.items[k]
        severity = 1 + CORRUPTIONS.index(corruption) % 5
        results = ImageCorruption(corruption, severity, seed=3)(dict(img=self.images[i].copy(), sample_idx=i))
        return torch.from_numpy(results['img'])


def _run(num_workers: int) -> list[torch.Tensor]:
    loader = DataLoader(CorruptedImages(), batch_size=None, num_workers=num_workers, shuffle=False)
    return list(loader)


@pytest.fixture
def sequential_opencv():
    """As mmengine's runners do (opencv_num_threads=0): OpenCV's thread pool does not survive fork."""
    import cv2
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    yield
    cv2.setNumThreads(threads)


def test_identical_pixels_for_every_corruption_across_worker_counts(sequential_opencv):
    np.random.seed(123)  # the global state must neither matter nor change
    before = np.random.get_state()[1].copy()
    serial = _run(0)
    assert np.array_equal(np.random.get_state()[1], before)
    parallel = _run(2)
    assert len(serial) == len(parallel) == 2 * len(CORRUPTIONS)
    for k, (a, b) in enumerate(zip(serial, parallel)):
        assert torch.equal(a, b), CorruptedImages().items[k]
    images = _images()
    for k, (corruption, i) in enumerate(CorruptedImages().items):
        assert serial[k].shape == images[i].shape, corruption
        assert not torch.equal(serial[k], torch.from_numpy(images[i])), f'{corruption} changed nothing'


@pytest.mark.parametrize('corruption', ['gaussian_noise', 'impulse_noise', 'glass_blur', 'frost'])
def test_stream_depends_on_index_seed_and_severity(corruption):
    img = _images()[0]
    base = corrupt_image(img, corruption, 3, index=5, seed=0)
    assert np.array_equal(base, corrupt_image(img, corruption, 3, index=5, seed=0))
    assert not np.array_equal(base, corrupt_image(img, corruption, 3, index=6, seed=0))
    assert not np.array_equal(base, corrupt_image(img, corruption, 3, index=5, seed=1))


def test_rgb_by_default_and_legacy_bgr():
    bgr = _images()[0]
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    # default: the BGR array is corrupted as the RGB image it is, and returned as BGR
    out = ImageCorruption('frost', 2)(dict(img=bgr.copy(), sample_idx=0))['img']
    assert np.array_equal(out, corrupt_image(rgb, 'frost', 2, index=0)[..., ::-1])
    # legacy: the BGR array itself goes through imagecorruptions (mmdet); frost's tint differs
    legacy = ImageCorruption('frost', 2, legacy_bgr=True)(dict(img=bgr.copy(), sample_idx=0))['img']
    assert np.array_equal(legacy, corrupt_image(bgr, 'frost', 2, index=0))
    assert not np.array_equal(legacy, out)


def test_float_and_grey_images():
    img = _images()[0]
    out = ImageCorruption('contrast', 3)(dict(img=img.astype(np.float32), sample_idx=1))['img']
    assert out.dtype == np.float32
    assert np.array_equal(out.astype(np.uint8), ImageCorruption('contrast', 3)(dict(img=img, sample_idx=1))['img'])
    grey = corrupt_image(img[..., 0].copy(), 'gaussian_noise', 1, index=0)
    assert grey.shape == img.shape[:2] and grey.dtype == np.uint8


def test_bad_input():
    with pytest.raises(ValueError, match='unknown corruption'):
        ImageCorruption('rain', 1)
    for severity in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match='severity'):
            ImageCorruption('fog', severity)
    with pytest.raises(KeyError, match='sample_idx'):
        ImageCorruption('fog', 1)(dict(img=_images()[0]))
    with pytest.raises(ValueError, match='at least 32x32'):
        ImageCorruption('fog', 1)(dict(img=np.zeros((20, 40, 3), np.uint8), sample_idx=0))
    with pytest.raises(ValueError, match='unknown corruption'):
        resolve_corruptions(['noise', 'rain'])
    for bad in ([6], [-1], ['x']):
        with pytest.raises(ValueError, match='severit'):
            resolve_severities(bad)


def test_groups():
    assert len(resolve_corruptions(['benchmark'])) == 15 and len(resolve_corruptions(['all'])) == 19
    assert resolve_corruptions(['fog', 'noise', 'fog']) == ['gaussian_noise', 'shot_noise', 'impulse_noise', 'fog']
    assert resolve_corruptions(['holdout']) == ['speckle_noise', 'gaussian_blur', 'spatter', 'saturate']
    assert resolve_severities([3, 1]) == [0, 1, 3]


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_builds_under_each_scope(scope):
    registry = importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        t = registry.TRANSFORMS.build(dict(type='ImageCorruption', corruption='fog', severity=2))
    assert isinstance(t, ImageCorruption) and t.severity == 2


def test_inserted_right_after_the_loader_found_by_type():
    dataset = dict(type='ConcatDataset', datasets=[
        dict(type='A', pipeline=[dict(type='Noop'), dict(type='mmdet.LoadImageFromFile'), dict(type='Resize')]),
        dict(type='B', pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])])
    out = insert_corruption(dataset, 'snow', 4, seed=7)
    first, second = (d['pipeline'] for d in out['datasets'])
    assert [t['type'] for t in first] == ['Noop', 'mmdet.LoadImageFromFile', 'ImageCorruption', 'Resize']
    assert second[1] == dict(type='ImageCorruption', corruption='snow', severity=4, seed=7, legacy_bgr=False)
    assert len(dataset['datasets'][0]['pipeline']) == 3  # the input config is not modified
    with pytest.raises(ValueError, match='no image-loading transform'):
        insert_corruption(dict(type='A', pipeline=[dict(type='Resize')]), 'snow', 1)
