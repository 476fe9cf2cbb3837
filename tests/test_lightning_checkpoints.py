"""Published-format Lightning VQGAN checkpoints load directly, without Lightning (issue 15).

The fixtures in tests/data/lightning/ were written by the real pytorch_lightning 1.4.9 (callback
states keyed by the ModelCheckpoint class) and 2.6.6 (tests/make_lightning_fixtures.py); the
latent-diffusion ``vq-f8.zip`` layout (``model.ckpt`` + ``config.yaml``) is built from the 1.x file.
"""
from __future__ import annotations

import importlib.util
import io
import json
import pickletools
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_tool
from hostile_checkpoints import payloads, write_checkpoint
from make_lightning_fixtures import HASHES, MICRO_VQGAN, fixture_path, tensor_sha256

from mmdat.models import VQGANCheckpointError, vqgan_checkpoint
from mmdat.models.vqgan_checkpoint import load_vqgan_state_dict
from mmdat.utils import StandIn, load_checkpoint_file

LIGHTNING1, LIGHTNING2 = fixture_path(1), fixture_path(2)
LDM_CONFIG = """model:
  base_learning_rate: 4.5e-06
  target: ldm.models.autoencoder.VQModel
  params:
    embed_dim: 4
    n_embed: 8
    ddconfig: {ch: 32, ch_mult: [1], num_res_blocks: 0, attn_resolutions: [], z_channels: 4, resolution: 8}
"""


def latent_diffusion_zip(path: Path, checkpoint: Path) -> Path:
    """The layout of latent-diffusion's first-stage downloads (``vq-f8.zip``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.writestr('config.yaml', LDM_CONFIG)
        archive.write(checkpoint, 'model.ckpt')
    return path


def pickle_globals(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    return {arg.replace(' ', '.') for op, arg, _ in pickletools.genops(io.BytesIO(data)) if op.name == 'GLOBAL'}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / 'cache'
    monkeypatch.setattr(vqgan_checkpoint, 'CACHE_DIR', directory)
    return directory


def test_lightning_is_not_installed_here():
    """What the other tests show holds without Lightning (it is only in the fixture script's venv)."""
    assert importlib.util.find_spec('pytorch_lightning') is None


def test_fixtures_hold_what_published_checkpoints_hold():
    """Lightning 1.x keys callback states by the ModelCheckpoint class; both versions pickle numpy
    scalars (the LR schedule), optimizer states and hyper-parameters beside the state dict."""
    model_checkpoint = 'pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint'
    assert model_checkpoint in pickle_globals(LIGHTNING1)
    first, second = load_checkpoint_file(LIGHTNING1), load_checkpoint_file(LIGHTNING2)
    assert first['pytorch-lightning_version'] == '1.4.9' and second['pytorch-lightning_version'].startswith('2.')
    (key, state), = first['callbacks'].items()
    assert isinstance(key, type) and issubclass(key, StandIn) and key.global_name == model_checkpoint
    assert 'best_model_path' in state
    (key, _), = second['callbacks'].items()
    assert isinstance(key, str) and key.startswith('ModelCheckpoint{')
    for checkpoint in (first, second):
        assert 'numpy._core.multiarray.scalar' in pickle_globals(LIGHTNING1)
        assert type(checkpoint['lr_schedulers'][0]['_last_lr'][0]) is np.float64
        assert checkpoint['optimizer_states'][0]['state'][0]['exp_avg'].dtype == torch.float32
        assert checkpoint['hyper_parameters']['ddconfig']['ch'] == MICRO_VQGAN['ch']
        assert any(k.startswith('loss.') for k in checkpoint['state_dict'])


def test_every_form_loads_bit_identical_without_importing_lightning(tmp_path):
    """Bare 1.x and 2.x files, the zip (path and file:// URL), ``VQGAN(checkpoint=...)`` and
    ``preset=..., checkpoint='default'``, in a fresh process where Lightning is never imported."""
    archive = latent_diffusion_zip(tmp_path / 'vq-f8.zip', LIGHTNING1)
    code = f'''
import importlib.util, json, sys
import torch
from mmdat.models import VQGAN, VQGAN_PRESETS
from mmdat.models.vqgan_checkpoint import load_vqgan_state_dict
from mmdat.registry import MODELS
from make_lightning_fixtures import HASHES, MICRO_VQGAN, tensor_sha256
expected = json.loads(HASHES.read_text())
sources = {[str(LIGHTNING1), str(LIGHTNING2), str(archive), archive.as_uri()]!r}
VQGAN_PRESETS['micro-lightning'] = dict(config=dict(MICRO_VQGAN), checkpoint_url=sources[-1])
for source in sources:
    state = load_vqgan_state_dict(source)
    assert {{k: tensor_sha256(v) for k, v in state.items()}} == expected, source
    for model in (VQGAN(**MICRO_VQGAN, checkpoint=source),
                  VQGAN.from_preset('micro-lightning'),
                  MODELS.build(dict(type='VQGAN', preset='micro-lightning', checkpoint='default'))):
        own = model.state_dict()
        assert sorted(own) == sorted(expected) and all(torch.equal(own[k], state[k].float()) for k in own), source
print('LIGHTNING', importlib.util.find_spec('pytorch_lightning'), 'pytorch_lightning' in sys.modules,
      sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'lightning_fabric')))
'''
    out = run_tool([sys.executable, '-c', code], cwd=REPO,
                   env={'PYTHONPATH': f'{REPO}:{REPO / "tests"}', 'MMDAT_CACHE_DIR': str(tmp_path / 'cache')})
    assert 'LIGHTNING None False []' in out, out[-2000:]


def test_converter_command_line_on_the_zip(tmp_path):
    archive = latent_diffusion_zip(tmp_path / 'vq-f8.zip', LIGHTNING1)
    out = tmp_path / 'vqgan.pth'
    run_tool([sys.executable, 'tools/model_converters/vqgan_to_state_dict.py', str(archive), str(out)], cwd=REPO,
             env={'MMDAT_CACHE_DIR': str(tmp_path / 'cache')})
    state = torch.load(out, weights_only=True)['state_dict']
    assert {k: tensor_sha256(v) for k, v in state.items()} == json.loads(HASHES.read_text())


def test_same_named_archives_in_different_folders_never_share_an_extraction(tmp_path, cache):
    first = latent_diffusion_zip(tmp_path / 'a' / 'vq-f8.zip', LIGHTNING1)
    other_weights = {k: v + 1 for k, v in load_vqgan_state_dict(LIGHTNING2).items()}
    torch.save({'state_dict': other_weights}, tmp_path / 'other.ckpt')
    second = latent_diffusion_zip(tmp_path / 'b' / 'vq-f8.zip', tmp_path / 'other.ckpt')
    expected = json.loads(HASHES.read_text())
    for _ in range(2):
        assert {k: tensor_sha256(v) for k, v in load_vqgan_state_dict(first).items()} == expected
        state = load_vqgan_state_dict(second)
        assert all(torch.equal(state[k], other_weights[k]) for k in other_weights)
    assert len(list(cache.iterdir())) == 2


def test_extraction_size_limit(tmp_path, cache, monkeypatch):
    archive = latent_diffusion_zip(tmp_path / 'vq-f8.zip', LIGHTNING1)
    monkeypatch.setenv('MMDAT_MAX_EXTRACT_BYTES', str(LIGHTNING1.stat().st_size - 1))
    with pytest.raises(VQGANCheckpointError, match=f'{archive}.*MMDAT_MAX_EXTRACT_BYTES'):
        load_vqgan_state_dict(archive)
    assert not cache.exists() or list(cache.iterdir()) == []
    monkeypatch.setenv('MMDAT_MAX_EXTRACT_BYTES', str(LIGHTNING1.stat().st_size))
    assert len(load_vqgan_state_dict(archive)) == len(json.loads(HASHES.read_text()))


@pytest.mark.parametrize('gadget', ['getattr_walk_eval', 'reduce_os_system'])
def test_a_refused_load_leaves_nothing_in_the_cache(gadget, tmp_path, cache, monkeypatch):
    """A downloaded archive whose model.ckpt is refused: neither the download nor the extraction stays."""
    monkeypatch.setenv('LOCAL_RANK', '0')
    hostile = write_checkpoint(tmp_path / 'model.ckpt', payloads(tmp_path / 'MARKER')[gadget])
    archive = latent_diffusion_zip(tmp_path / 'src' / 'vq-f8.zip', hostile)
    for source in (archive.as_uri(), hostile.as_uri()):
        with pytest.raises(VQGANCheckpointError, match='model.ckpt'):
            load_vqgan_state_dict(source)
        assert list(cache.iterdir()) == []
    assert not (tmp_path / 'MARKER').exists()
