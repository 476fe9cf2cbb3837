"""Tests of the frozen taming-compatible VQGAN and its safe checkpoint loading (CPU, tiny configs)."""
import argparse
import importlib.util
import math
import pathlib
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmdat.models import vqgan_checkpoint
from mmdat.models.vqgan import VQGAN, VQGAN_PRESETS, AttnBlock, ResnetBlock, Upsample, Downsample, nearest_code_indices
from mmdat.models.vqgan_checkpoint import VQGANCheckpointError, load_vqgan_state_dict

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / 'tests' / 'data'
TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16,
            z_channels=4, embed_dim=4, n_embed=16)


def tiny_vqgan(seed: int = 0, **kwargs) -> VQGAN:
    torch.manual_seed(seed)
    model = VQGAN(**TINY, **kwargs)
    with torch.no_grad():  # spread the codebook so that several codes get used
        model.quantize.embedding.weight.normal_()
    return model


@pytest.fixture(scope='module')
def model() -> VQGAN:
    return tiny_vqgan()


@pytest.fixture(scope='module')
def images() -> torch.Tensor:
    return torch.rand(2, 3, 17, 9, generator=torch.Generator().manual_seed(1))


def read_keys_tsv(path: Path) -> dict:
    rows = [ln.split('\t') for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith('#')]
    return {key: [int(d) for d in shape.strip('[]').split(',') if d.strip()] for key, shape in rows}


# ----------------------------------------------------------------------------- layout
PUBLISHED = ('openimages-f8-16384', 'imagenet-f16-1024', 'imagenet-f16-16384')


@pytest.mark.parametrize('name', PUBLISHED)
def test_preset_state_dict_matches_published_layout(name):
    expected = read_keys_tsv(DATA / f'vqgan-{name}.keys.tsv')
    with torch.device('meta'):
        vq = VQGAN.from_preset(name, checkpoint=None)
    got = {k: list(v.shape) for k, v in vq.state_dict().items()}
    assert got == expected
    assert list(got) == list(expected)  # same order as taming registers them
    assert vq.downsample_factor == (8 if 'f8' in name else 16)


def test_presets_api():
    with pytest.raises(ValueError, match='openimages-f8-16384'):
        VQGAN.from_preset('nope', checkpoint=None)
    with pytest.raises(ValueError, match='checkpoint=<local path>'):
        VQGAN.from_preset('imagenet-f16-1024')  # no automatic download for taming models
    assert VQGAN_PRESETS['openimages-f8-16384']['checkpoint_url'].endswith('vqgan_openimages_f8_16384.ckpt')
    with torch.device('meta'):
        vq = VQGAN.from_preset('openimages-f8-16384', checkpoint=None, trunk_dtype='bf16', chunk_size=4)
    assert vq.trunk_dtype is torch.bfloat16 and vq.chunk_size == 4
    with pytest.raises(ValueError):
        VQGAN(**TINY, trunk_dtype='int8')


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize('size', [(17, 9), (32, 32), (13, 21), (1, 1)])
def test_shapes_ranges_and_dtypes(model, size):
    x = torch.rand(2, 3, *size)
    f = model.downsample_factor
    codes = model.encode(x)
    assert codes.dtype == torch.int64
    assert codes.shape == (2, math.ceil(size[0] / f), math.ceil(size[1] / f))
    assert 0 <= codes.min() and codes.max() < TINY['n_embed']
    full = model.decode(codes)
    assert full.shape == (2, 3, codes.shape[1] * f, codes.shape[2] * f)
    y = model.reconstruct(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert 0 <= y.min() and y.max() <= 1
    assert torch.equal(y, model.decode(codes, size=size))
    assert torch.equal(y, full[..., :size[0], :size[1]])


def test_two_image_batch_at_64x96(model):
    y = model.reconstruct(torch.rand(2, 3, 64, 96))
    assert y.shape == (2, 3, 64, 96)


def test_frozen_and_no_grad(model, images):
    assert not any(p.requires_grad for p in model.parameters())
    assert model.train() is model and not model.training
    wrapper = nn.Sequential(model).train()
    assert wrapper.training and not any(m.training for m in model.modules())
    x = images.clone().requires_grad_(True)
    for out in (model.reconstruct(x), model.encode(x), model(x)):
        assert out.grad_fn is None and not out.requires_grad


def test_chunk_size_matches_whole_batch(model):
    x = torch.rand(3, 3, 16, 12, generator=torch.Generator().manual_seed(2))
    chunked = tiny_vqgan(chunk_size=1)
    assert torch.equal(chunked.encode(x), model.encode(x))
    torch.testing.assert_close(chunked.reconstruct(x), model.reconstruct(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(chunked.decode(model.encode(x)), model.decode(model.encode(x)), rtol=0, atol=1e-5)


def _record_autocast(vq: VQGAN) -> dict:
    seen = {}
    vq.encoder.register_forward_pre_hook(lambda m, a: seen.__setitem__('encoder', torch.is_autocast_enabled('cpu')))
    vq.quantize.register_forward_pre_hook(
        lambda m, a: seen.__setitem__('quantize', (a[0].dtype, torch.is_autocast_enabled('cpu'))))
    return seen


def test_autocast_fp32_trunk_ignores_caller_autocast(images):
    vq = tiny_vqgan()
    reference = vq.reconstruct(images)
    seen = _record_autocast(vq)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        inside = vq.reconstruct(images)
    assert torch.equal(inside, reference)
    assert seen == {'encoder': False, 'quantize': (torch.float32, False)}


def test_autocast_bf16_trunk(model, images):
    vq = VQGAN(**TINY, trunk_dtype='bf16')
    vq.load_state_dict(model.state_dict())
    seen = _record_autocast(vq)
    codes = vq.encode(images)
    assert seen == {'encoder': True, 'quantize': (torch.float32, False)}  # quantiser stays float32
    assert codes.dtype == torch.int64 and 0 <= codes.min() and codes.max() < TINY['n_embed']
    y = vq.reconstruct(images)
    assert y.dtype == torch.float32 and y.shape == images.shape and 0 <= y.min() and y.max() <= 1
    assert (y - model.reconstruct(images)).abs().mean() < 0.1


# ----------------------------------------------------------------------------- nearest code
def test_chunked_nearest_code_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    z, codebook = torch.randn(300, 8, generator=g), torch.randn(50, 8, generator=g)
    brute = (z.double()[:, None] - codebook.double()[None]).square().sum(-1).argmin(1)
    assert torch.equal(nearest_code_indices(z, codebook, max_elements=7 * 50), brute)  # 43 chunks of 7 rows
    assert torch.equal(nearest_code_indices(z, codebook), brute)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.equal(nearest_code_indices(z, codebook, max_elements=1), brute)


def test_nearest_code_ties_pick_lowest_index():
    codebook = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 3.0]])
    z = torch.tensor([[1.0, 0.0], [0.0, 0.0], [5.0, 5.0]])  # exact ties in integer arithmetic
    assert nearest_code_indices(z, codebook, max_elements=4).tolist() == [0, 1, 3]


# ----------------------------------------------------------------------------- block semantics
def _randomise(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module.eval()


def test_attention_block_matches_naive_reference():
    block = _randomise(AttnBlock(32), 4)
    x = torch.randn(2, 32, 5, 7)
    b, c, h, w = x.shape
    n = block.norm(x)
    q = block.q(n).reshape(b, c, h * w).permute(0, 2, 1)  # (B, HW, C)
    k = block.k(n).reshape(b, c, h * w)  # (B, C, HW)
    v = block.v(n).reshape(b, c, h * w)
    weights = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)  # (B, HW queries, HW keys)
    attended = torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, h, w)
    expected = x + block.proj_out(attended)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_resnet_and_resampling_blocks_match_reference():
    block = _randomise(ResnetBlock(32, 64), 5)
    x = torch.randn(1, 32, 6, 5)
    swish = lambda t: t * torch.sigmoid(t)  # noqa: E731
    h = block.conv1(swish(block.norm1(x)))
    h = block.conv2(swish(block.norm2(h)))
    expected = block.nin_shortcut(x) + h
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)

        up = _randomise(Upsample(4), 6)
        y = torch.randn(1, 4, 3, 5)
        nearest = y.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        torch.testing.assert_close(up(y), F.conv2d(nearest, up.conv.weight, up.conv.bias, padding=1))

        down = _randomise(Downsample(4), 7)
        y = torch.randn(1, 4, 6, 8)
        padded = torch.zeros(1, 4, 7, 9)
        padded[:, :, :6, :8] = y
        out = down(y)
        assert out.shape == (1, 4, 3, 4)
        torch.testing.assert_close(out, F.conv2d(padded, down.conv.weight, down.conv.bias, stride=2))


# ----------------------------------------------------------------------------- checkpoints
def _state(model: VQGAN) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_weights(a: VQGAN, b: VQGAN) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize('style', ['lightning', 'plain', 'prefixed'])
def test_checkpoint_loading_reproduces_source(model, images, tmp_path, style):
    state = _state(model)
    if style == 'lightning':
        obj = {'state_dict': {**state, 'loss.discriminator.main.0.weight': torch.ones(2)}, 'global_step': 3}
    elif style == 'plain':
        obj = state
    else:
        obj = {f'module.{k}': v for k, v in state.items()}
    path = tmp_path / f'{style}.ckpt'
    torch.save(obj, path)
    loaded = VQGAN(**TINY, checkpoint=path)
    assert torch.equal(loaded.reconstruct(images), model.reconstruct(images))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_checkpoint_into_meta_model(model, tmp_path):
    path = tmp_path / 'vq.pth'
    torch.save({'state_dict': _state(model)}, path)
    with torch.device('meta'):
        vq = VQGAN(**TINY)
    vq.load_checkpoint(path)
    assert not any(p.is_meta or p.requires_grad for p in vq.parameters())
    assert _same_weights(vq, model)


@pytest.mark.parametrize('change, offending', [
    (lambda s: s.pop('decoder.conv_out.bias'), 'decoder.conv_out.bias'),
    (lambda s: s.__setitem__('encoder.extra.weight', torch.ones(1)), 'encoder.extra.weight'),
    (lambda s: s.__setitem__('quantize.embedding.weight', torch.ones(32, 4)), 'quantize.embedding.weight'),
])
def test_checkpoint_mismatch_is_reported(model, tmp_path, change, offending):
    state = _state(model)
    change(state)
    path = tmp_path / 'mismatch.ckpt'
    torch.save({'state_dict': state}, path)
    with pytest.raises(VQGANCheckpointError) as info:
        VQGAN(**TINY, checkpoint=path)
    assert 'mismatch.ckpt' in str(info.value) and offending in str(info.value)
    if 'quantize' in offending:
        assert 'preset' in str(info.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(VQGANCheckpointError, match='not found'):
        load_vqgan_state_dict(tmp_path / 'absent.ckpt')
    garbage = tmp_path / 'garbage.ckpt'
    garbage.write_bytes(b'this is not a checkpoint' * 8)
    with pytest.raises(VQGANCheckpointError, match='garbage.ckpt.*not a PyTorch checkpoint'):
        load_vqgan_state_dict(garbage)
    broken = tmp_path / 'broken.ckpt'
    broken.write_bytes(b'PK\x03\x04' + b'\x00' * 64)
    with pytest.raises(VQGANCheckpointError, match='broken.ckpt'):
        load_vqgan_state_dict(broken)
    notdict = tmp_path / 'list.ckpt'
    torch.save([torch.ones(1)], notdict)
    with pytest.raises(VQGANCheckpointError, match='list.ckpt'):
        load_vqgan_state_dict(notdict)


class _TouchOnLoad:
    """Pickle payload that creates a file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_malicious_pickle_is_not_executed(model, tmp_path):
    """A pickled callable beside the weights becomes an inert stand-in: the weights load, nothing runs."""
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.ckpt'
    torch.save({'state_dict': _state(model), 'payload': _TouchOnLoad(marker)}, path)
    assert _same_weights(VQGAN(**TINY, checkpoint=path), model)
    assert not marker.exists()
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # plain torch refuses the file
    torch.load(path, weights_only=False)  # the payload is real: unrestricted unpickling runs it
    assert marker.exists()


def test_url_download_is_cached_and_zip_extracted(model, tmp_path, monkeypatch):
    src = tmp_path / 'src' / 'vq.ckpt'
    src.parent.mkdir()
    torch.save({'state_dict': _state(model)}, src)
    with zipfile.ZipFile(tmp_path / 'vq-f8.zip', 'w') as zf:
        zf.write(src, 'model.ckpt')
    downloads = []
    fetch = vqgan_checkpoint._fetch_verified

    def counting_fetch(url, target, sha256):
        downloads.append(url)
        return fetch(url, target, sha256)

    monkeypatch.setattr(vqgan_checkpoint, 'CACHE_DIR', tmp_path / 'cache')
    monkeypatch.setattr(vqgan_checkpoint, '_fetch_verified', counting_fetch)
    urls = [src.as_uri(), (tmp_path / 'vq-f8.zip').as_uri()]
    for url in urls:
        for _ in range(2):
            assert _same_weights(VQGAN(**TINY, checkpoint=url), model)
    assert downloads == urls
    names = sorted(p.name for p in (tmp_path / 'cache').iterdir())
    assert len(names) == 3, names  # two downloads (one entry per URL) and one extraction
    assert [sum(n.endswith(end) for n in names) for end in ('-vq.ckpt', '-vq-f8.zip', '-vq-f8-model.ckpt')] \
        == [1, 1, 1], names


def test_converter_strips_a_lightning_checkpoint_safely(model, tmp_path, monkeypatch, capsys):
    src, dst = tmp_path / 'last.ckpt', tmp_path / 'out' / 'vq.pth'
    lightning = {'state_dict': {**_state(model), 'loss.logvar': torch.zeros(())},
                 'hyper_parameters': argparse.Namespace(lr=1e-4), 'global_step': 7}
    torch.save(lightning, src)
    assert _same_weights(VQGAN(**TINY, checkpoint=src), model)  # loads directly

    spec = importlib.util.spec_from_file_location(
        'vqgan_to_state_dict', REPO / 'tools' / 'model_converters' / 'vqgan_to_state_dict.py')
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    monkeypatch.setattr(sys, 'argv', ['vqgan_to_state_dict.py', str(src), str(dst)])
    assert converter.main() == 0
    assert set(torch.load(dst, weights_only=True)) == {'state_dict'}
    assert _same_weights(VQGAN(**TINY, checkpoint=dst), model)

    monkeypatch.setattr(sys, 'argv', ['x', str(src), str(tmp_path / 'bad.pth'), '--preset', 'openimages-f8-16384'])
    assert converter.main() == 1  # tiny weights do not fit the preset
    assert not (tmp_path / 'bad.pth').exists()


# ----------------------------------------------------------------------------- fast path vs taming baseline
SMALL = dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,), resolution=32,
             z_channels=4, embed_dim=4, n_embed=256)


@pytest.mark.parametrize('config, size', [(TINY, (32, 48)), (SMALL, (40, 36))])
def test_fast_path_picks_the_baseline_codes(config, size):
    """Channels-last, in-place, SDPA and chunked code search change no code index on random images."""
    from mmdat.models.vqgan_reference import ReferenceVQGAN
    torch.manual_seed(5)
    vq = VQGAN(**config)
    with torch.no_grad():
        vq.quantize.embedding.weight.normal_()
    baseline = ReferenceVQGAN(vq)
    x = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(6))
    codes = baseline.encode(x)
    assert len(codes.unique()) > 4  # a spread of codes, not one
    for channels_last in (True, False):
        vq.channels_last = channels_last
        assert torch.equal(vq.encode(x), codes)
        torch.testing.assert_close(vq.reconstruct(x), baseline.reconstruct(x), rtol=0, atol=1e-4)
        torch.testing.assert_close(vq.decode(codes), baseline.decode(codes), rtol=0, atol=1e-4)
    assert baseline.reconstruct(x).shape == x.shape and baseline.decode(codes, size=size).shape == x.shape


def test_reference_vqgan_shares_weights_and_rejects_other_models(model):
    from mmdat.models.vqgan_reference import ReferenceVQGAN
    baseline = ReferenceVQGAN(model)
    assert baseline.vqgan.encoder.conv_in.weight is model.encoder.conv_in.weight
    assert not baseline.train().training
    with pytest.raises(TypeError, match='mmdat VQGAN'):
        ReferenceVQGAN(nn.Conv2d(3, 3, 1))


def test_channels_last_outputs_are_nchw_and_state_dict_unchanged(images):
    vq = tiny_vqgan()
    assert vq.channels_last and not vq.compile_trunk  # the defaults
    plain = tiny_vqgan(channels_last=False)
    assert list(vq.state_dict()) == list(plain.state_dict())
    seen = []
    vq.decoder.conv_in.register_forward_pre_hook(
        lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    y = vq.reconstruct(images)
    assert seen == [True]  # the trunk runs channels-last ...
    assert y.is_contiguous() and vq.decode(vq.encode(images)).is_contiguous()  # ... outputs stay NCHW
    assert torch.equal(vq.encode(images), plain.encode(images))


def test_inference_shortcuts_keep_autograd_intact():
    """In-place SiLU/residuals only without autograd: a trainer's backward through the blocks still works."""
    vq = tiny_vqgan()
    x = torch.rand(2, 32, 8, 8)
    for block in (vq.encoder.down[0].block[0], vq.encoder.mid.attn_1, vq.decoder.up[1].block[0]):
        block.requires_grad_(True)
        width = block.norm1.num_channels if hasattr(block, 'norm1') else block.norm.num_channels
        inp = torch.randn(2, width, 8, 8, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
        out = block(inp)
        out.square().sum().backward()
        assert inp.grad is not None and torch.isfinite(inp.grad).all()
        assert all(p.grad is not None for p in block.parameters())
        with torch.no_grad():
            # the in-place path (and oneDNN's 1x1 convolutions) gives the same values up to float rounding
            torch.testing.assert_close(block(inp), out.detach(), rtol=1e-5, atol=1e-5)
        block.requires_grad_(False)
    assert x.shape == (2, 32, 8, 8)


def test_compile_trunk_wraps_encoder_and_decoder_once(images, monkeypatch):
    compiled = []

    def fake_compile(module, **kwargs):
        compiled.append((module, kwargs))
        return module  # same computation: the wiring is what is tested here

    monkeypatch.setattr(torch, 'compile', fake_compile)
    vq = tiny_vqgan(compile_trunk=True)
    expected = tiny_vqgan().reconstruct(images)
    for _ in range(2):
        assert torch.equal(vq.reconstruct(images), expected)
    assert [m for m, _ in compiled] == [vq.encoder, vq.decoder] and compiled[0][1] == dict(dynamic=False)
    assert 'encoder' in dict(vq.named_children()) and list(vq.state_dict()) == list(tiny_vqgan().state_dict())


# ----------------------------------------------------------------------------- inference levers
@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('size', [(3, 5), (4, 4), (1, 7)])
def test_subpixel_upsample_equals_nearest_then_conv(channels_last, size):
    """One stride-2 transposed conv with the folded 4x4 kernel = nearest x2 then the 3x3 conv."""
    from mmdat.models.vqgan import subpixel_upsample_kernel
    up = _randomise(Upsample(6), 8)
    x = torch.randn(2, 6, *size, generator=torch.Generator().manual_seed(9))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    nearest = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    expected = F.conv2d(nearest, up.conv.weight, up.conv.bias, padding=1)
    assert subpixel_upsample_kernel(up.conv.weight).shape == (6, 6, 4, 4)
    with torch.no_grad():
        fused = up(x)
        torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
        assert fused.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        up.subpixel = False
        assert torch.equal(up(x), up.conv(F.interpolate(x, scale_factor=2.0, mode='nearest')))
        up.subpixel = True
    assert torch.equal(up(x), up.conv(F.interpolate(x, scale_factor=2.0, mode='nearest')))  # autograd: taming form


def test_subpixel_upsample_option_and_decoder_equivalence():
    torch.manual_seed(5)
    vq = VQGAN(**SMALL)
    plain = VQGAN(**SMALL, subpixel_upsample=False)
    plain.load_state_dict(vq.state_dict())
    assert all(m.subpixel for m in vq.modules() if isinstance(m, Upsample))
    assert not any(m.subpixel for m in plain.modules() if isinstance(m, Upsample))
    codes = torch.randint(0, SMALL['n_embed'], (2, 5, 6), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(vq.decode(codes), plain.decode(codes), rtol=0, atol=1e-5)


@pytest.mark.parametrize('channels_last', [True, False])
def test_trunk_keeps_its_memory_format_through_every_layer(channels_last):
    """Attention, 1x1 shortcuts and upsampling must not fall back to NCHW (that made the decoder ~2x slower)."""
    vq = VQGAN(**SMALL, channels_last=channels_last)
    layouts = []
    for module in list(vq.encoder.modules()) + list(vq.decoder.modules()):
        if isinstance(module, (nn.Conv2d, nn.GroupNorm)):
            module.register_forward_pre_hook(lambda m, a: layouts.append(
                (type(m).__name__, a[0].is_contiguous(memory_format=torch.channels_last),
                 a[0].is_contiguous())))
    vq.reconstruct(torch.rand(2, 3, 24, 20))
    assert len(layouts) > 40
    if channels_last:
        assert all(cl for _, cl, _ in layouts), [entry for entry in layouts if not entry[1]][:3]
    else:
        assert all(nchw for _, _, nchw in layouts)


def test_native_bf16_and_auto_trunk_dtype(monkeypatch, images):
    from mmdat.models import vqgan as vqgan_module
    monkeypatch.setattr(vqgan_module, '_cpu_flags', lambda: {'avx512f', 'avx512_bf16'})
    assert vqgan_module.native_bf16('cpu') == (True, 'CPU flags avx512_bf16')
    vq = tiny_vqgan(trunk_dtype='auto')
    assert vq.trunk_dtype_auto and vq.resolved_trunk_dtype('cpu') is torch.bfloat16
    seen = _record_autocast(vq)
    vq.encode(images)
    assert seen['encoder'] is True and seen['quantize'] == (torch.float32, False)

    monkeypatch.setattr(vqgan_module, '_cpu_flags', lambda: {'avx512f', 'avx2'})
    native, reason = vqgan_module.native_bf16('cpu')
    assert not native and 'amx_bf16' in reason
    vq = tiny_vqgan(trunk_dtype='auto')
    assert vq.resolved_trunk_dtype('cpu') is None
    assert torch.equal(vq.reconstruct(images), tiny_vqgan().reconstruct(images))  # fp32 where bf16 is not native
    assert tiny_vqgan(trunk_dtype='bf16').resolved_trunk_dtype('cpu') is torch.bfloat16  # explicit: as asked
    with pytest.raises(ValueError, match="'auto'"):
        VQGAN(**TINY, trunk_dtype='int8')
