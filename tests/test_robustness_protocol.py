"""The exact ImageNet-C protocol (order of the steps, JPEG round trip), frost's 5 textures, refused and
handled inputs (dtype, channels, size, multi-channel loaders), and make_corrupted.py decoding as the
config's own loader, on small generated images."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip('imagecorruptions')
from mmengine.registry import DefaultScope  # noqa: E402

import mmdat.datasets.transforms.corruption as corruption_module  # noqa: E402
from mmdat.datasets.transforms import ImageCorruption, ImageNetCCorruption, corrupt_image  # noqa: E402
from mmdat.datasets.transforms.corruption import FROST_TEXTURES, imagenet_c_protocol  # noqa: E402
from mmdat.robustness import insert_corruption, make_corrupted_copy  # noqa: E402
from mmdat.robustness.corruption import find_unfit_images  # noqa: E402


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture (JPEG and resizing act on it as on a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(x / 9.0), 128 + 100 * np.cos(y / 7.0), (x + y) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- exact protocol
def _reference_protocol(rgb: np.ndarray, corruption: str, severity: int, index: int) -> np.ndarray:
    """Hendrycks' steps written out with torchvision's own transforms and PIL's JPEG codec."""
    import torchvision.transforms as T
    crop = T.CenterCrop(224)(T.Resize(256)(Image.fromarray(rgb)))  # PIL bilinear, as in 2019
    corrupted = corrupt_image(np.asarray(crop), corruption, severity, index=index)
    buffer = io.BytesIO()
    Image.fromarray(corrupted).save(buffer, format='JPEG', quality=85, optimize=True)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert('RGB'))


@pytest.mark.parametrize('shape', [(300, 257), (240, 400), (256, 256)])
def test_exact_protocol_equals_resize_crop_corrupt_jpeg(shape):
    rgb = _rgb(*shape)
    out = ImageNetCCorruption('contrast', 3)(dict(img=rgb[..., ::-1].copy(), sample_idx=4))
    assert out['img'].shape == (224, 224, 3) and out['img_shape'] == (224, 224)
    expected = _reference_protocol(rgb, 'contrast', 3, index=4)
    assert np.array_equal(out['img'][..., ::-1], expected)  # BGR in, BGR out
    assert np.array_equal(imagenet_c_protocol(rgb, 'contrast', 3, index=4), expected)


def test_exact_protocol_order_and_jpeg_round_trip_matter():
    rgb = _rgb(300, 260, seed=1)
    exact = imagenet_c_protocol(rgb, 'gaussian_noise', 2, index=0)
    import torchvision.transforms as T
    crop = np.asarray(T.CenterCrop(224)(T.Resize(256)(Image.fromarray(rgb))))
    no_jpeg = corrupt_image(crop, 'gaussian_noise', 2, index=0)
    # the JPEG round trip changes pixels, and re-encoding the result at quality 85 changes little more
    assert not np.array_equal(exact, no_jpeg)
    assert np.abs(exact.astype(int) - no_jpeg.astype(int)).mean() > 1
    # corrupting first (original resolution), then resizing, is another, milder image
    late = Image.fromarray(corrupt_image(rgb, 'gaussian_noise', 2, index=0))
    resized_late = np.asarray(T.CenterCrop(224)(T.Resize(256)(late)))
    assert np.abs(resized_late.astype(int) - crop.astype(int)).mean() < np.abs(exact.astype(int) -
                                                                              crop.astype(int)).mean()


def test_protocol_pipeline_loads_with_pil_corrupts_once_and_drops_the_resizing():
    dataset = dict(type='CustomDataset', pipeline=[
        dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=256, edge='short'),
        dict(type='CenterCrop', crop_size=224), dict(type='PackInputs')])
    out = insert_corruption(dataset, 'fog', 2, seed=3, imagenet_c_protocol=True)['pipeline']
    assert out == [dict(type='LoadImageFromFile', imdecode_backend='pillow', color_type='color_ignore_orientation'),
                   dict(type='ImageNetCCorruption', corruption='fog', severity=2, seed=3),
                   dict(type='PackInputs')]
    with pytest.raises(ValueError, match='legacy_bgr'):
        insert_corruption(dataset, 'fog', 2, legacy_bgr=True, imagenet_c_protocol=True)


# ----------------------------------------------------------------------------- frost
def test_frost_draws_one_of_hendrycks_five_textures(monkeypatch):
    import importlib.resources
    shipped = {p.name for p in (importlib.resources.files('imagecorruptions') / 'frost').iterdir()}
    assert set(FROST_TEXTURES) <= shipped and 'frost6.jpg' in shipped and 'frost6.jpg' not in FROST_TEXTURES
    # textures of constant grey k * 50: the frost layer tells which one was drawn
    monkeypatch.setattr(corruption_module, '_frost_texture', lambda k: np.full((300, 300, 3), 50 * k, np.uint8))
    black = np.zeros((40, 40, 3), np.uint8)
    drawn = set()
    for index in range(120):
        out = corrupt_image(black, 'frost', 1, index=index)  # severity 1: 1.0 * image + 0.4 * frost
        values = np.unique(out)
        assert len(values) == 1
        drawn.add(int(round(values[0] / (0.4 * 50))))
    assert drawn == {0, 1, 2, 3, 4}


def test_frost_crops_a_real_texture_unscaled_and_is_reproducible():
    black = np.zeros((224, 224, 3), np.uint8)
    a = corrupt_image(black, 'frost', 5, index=7)
    assert np.array_equal(a, corrupt_image(black, 'frost', 5, index=7))
    assert a.max() > 0 and a.shape == black.shape
    # on a black image the output is 0.75 x a 224x224 window of one of the 5 textures (RGB)
    textures = [corruption_module._frost_texture(k) for k in range(5)]
    assert all(min(t.shape[:2]) > 224 for t in textures)  # ImageNet-C crops need no rescaling
    big = corrupt_image(np.zeros((900, 1300, 3), np.uint8), 'frost', 2, index=0)  # larger than every texture
    assert big.shape == (900, 1300, 3) and big.max() > 0


SYSTEMATIC_ORDER = ('snow', 'frost', 'jpeg_compression', 'spatter')  # docs/robustness.md, --legacy-bgr
NOISE = ('gaussian_noise', 'shot_noise', 'impulse_noise', 'speckle_noise')  # another draw per channel only
FEW_PIXELS = ('brightness', 'saturate')


def test_which_corruptions_depend_on_the_channel_order():
    from mmdat.datasets.transforms import CORRUPTIONS
    rgb = _rgb(48, 56, seed=3)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    for corruption in CORRUPTIONS:
        a = corrupt_image(rgb, corruption, 2, index=1)[..., ::-1]
        b = corrupt_image(bgr, corruption, 2, index=1)
        changed = float((a != b).any(-1).mean())
        if corruption in SYSTEMATIC_ORDER + NOISE:
            assert changed > 0.02, corruption
        elif corruption in FEW_PIXELS:
            assert changed < 0.05, corruption
        else:
            assert changed == 0, corruption
    # the noise differs only in its draw: the same strength either way
    unclipped = (rgb > 80) & (rgb < 175)
    strengths = [np.std((corrupt_image(img, 'gaussian_noise', 2, index=1).astype(int) - img)[unclipped[..., ::k]])
                 for img, k in ((rgb, 1), (bgr, -1))]
    assert strengths[0] == pytest.approx(strengths[1], rel=0.1)


# ----------------------------------------------------------------------------- inputs
def test_float_images_are_converted_only_when_exact():
    img = _rgb(40, 48)
    out = ImageCorruption('contrast', 2)(dict(img=img.astype(np.float32), sample_idx=0))['img']
    assert out.dtype == np.float32
    assert np.array_equal(out, ImageCorruption('contrast', 2)(dict(img=img, sample_idx=0))['img'])
    with pytest.raises(ValueError, match=r'not 0\.\.255 integers \(values 0\.5'):
        ImageCorruption('contrast', 2)(dict(img=img.astype(np.float32) + 0.5, sample_idx=0))
    with pytest.raises(ValueError, match='cannot be converted exactly'):
        ImageCorruption('contrast', 2)(dict(img=img.astype(np.float32) * 2, sample_idx=0))


def test_16_bit_images_are_refused_not_clipped():
    img16 = (_rgb(40, 48).astype(np.uint16) * 257)
    for transform in (ImageCorruption('fog', 1), ImageNetCCorruption('fog', 1)):
        with pytest.raises(ValueError, match=r"8-bit images, got uint16 .*color_type='unchanged'"):
            transform(dict(img=img16, sample_idx=0))


def test_single_channel_and_alpha_images():
    img = _rgb(40, 48)
    grey = img[..., 1].copy()
    expected = ImageCorruption('gaussian_noise', 3)(dict(img=grey, sample_idx=2))['img']
    out = ImageCorruption('gaussian_noise', 3)(dict(img=grey[..., None].copy(), sample_idx=2))['img']
    assert out.shape == (40, 48, 1) and np.array_equal(out[..., 0], expected)
    alpha = np.arange(40 * 48, dtype=np.uint8).reshape(40, 48)
    bgra = np.concatenate([img, alpha[..., None]], axis=2)
    out = ImageCorruption('snow', 2)(dict(img=bgra, sample_idx=5))['img']
    assert out.shape == (40, 48, 4) and np.array_equal(out[..., 3], alpha)  # alpha kept
    assert np.array_equal(out[..., :3], ImageCorruption('snow', 2)(dict(img=img.copy(), sample_idx=5))['img'])
    with pytest.raises(ValueError, match=r'got shape \(40, 48, 5\)'):
        ImageCorruption('snow', 2)(dict(img=np.zeros((40, 48, 5), np.uint8), sample_idx=0))


def test_multi_channel_loaders_are_refused_when_inserting():
    for loader in ('LoadMultiChannelImageFromFiles', 'mmseg.LoadMultipleRSImageFromFile',
                   'LoadSingleRSImageFromFile'):
        with pytest.raises(ValueError, match=f'{loader.split(".")[-1]} loads several images or bands'):
            insert_corruption(dict(type='X', pipeline=[dict(type=loader), dict(type='PackInputs')]), 'fog', 1)


class _Images:
    """The part of a dataset the image check reads."""

    def __init__(self, infos):
        self.infos = infos

    def __len__(self):
        return len(self.infos)

    def get_data_info(self, index):
        return self.infos[index]


def test_image_check_finds_small_and_16_bit_images_before_evaluation(tmp_path):
    Image.fromarray(_rgb(40, 40)).save(tmp_path / 'ok.png')
    Image.fromarray(_rgb(20, 64)).save(tmp_path / 'small.png')
    Image.fromarray((np.arange(40 * 40, dtype=np.uint16) * 40).reshape(40, 40)).save(tmp_path / 'deep.png')
    infos = [dict(img_path=str(tmp_path / n)) for n in ('ok.png', 'small.png', 'deep.png')]
    infos.append(dict(img_path='s3://bucket/remote.jpg'))  # not a local file: counted as unchecked
    infos.append(dict(img_path='s3://bucket/coco.jpg', height=480, width=20))  # annotation sizes suffice
    problems, unchecked = find_unfit_images(_Images(infos), dict(type='LoadImageFromFile'))
    assert unchecked == 1 and len(problems) == 2
    assert 'small.png (64x20 px, under 32x32)' in problems[0] and 'coco.jpg (20x480 px' in problems[1]
    problems, _ = find_unfit_images(_Images(infos[:3]), dict(type='LoadImageFromFile', color_type='unchanged'))
    assert any('deep.png (PIL mode I;16' in p for p in problems)


# ----------------------------------------------------------------------------- copies
def test_copies_decode_as_the_configs_loader(tmp_path):
    """A grey-loading, Pillow-decoding config: copies hold what on-the-fly corruption feeds the model."""
    from mmengine.config import Config
    from mmpretrain.registry import DATASETS
    root = tmp_path / 'data'
    for k in range(3):
        (root / 'a').mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(36 + k, 40, seed=k)).save(root / 'a' / f'{k}.png')
    pipeline = [dict(type='LoadImageFromFile', imdecode_backend='pillow', color_type='grayscale'),
                dict(type='PackInputs')]
    cfg = Config(dict(default_scope='mmpretrain', test_dataloader=dict(dataset=dict(
        type='CustomDataset', data_root=str(root), with_label=False, pipeline=pipeline))))
    make_corrupted_copy(cfg, tmp_path / 'copies', ['contrast'], [4])
    marker = json.loads((tmp_path / 'copies' / 'contrast' / '4' / '.mmdat_corrupted.json').read_text())
    assert marker['loader']['color_type'] == 'grayscale'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        fly = DATASETS.build(insert_corruption(dict(cfg.test_dataloader.dataset), 'contrast', 4))
        copy = DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=str(tmp_path / 'copies/contrast/4')))
        assert len(fly) == len(copy) == 3
        for k in range(3):
            a, b = fly[k]['inputs'], copy[k]['inputs']
            assert a.shape[0] == 1 and np.array_equal(a.numpy(), b.numpy()), k
    # the copy is grey, as the loader reads it: not a colour corruption converted afterwards
    written = np.asarray(Image.open(Path(tmp_path / 'copies/contrast/4/a/0.png')))
    assert written.ndim == 2
