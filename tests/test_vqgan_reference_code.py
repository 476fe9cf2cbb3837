"""Timing the published VQGAN code (``--reference-code``): import, stand-ins, weights, codes, the tool.

The reference files here are written by the tests, in the two layouts the loader supports: a taming
package (``taming/models/vqgan.py`` importing Lightning, taming's ``main`` and its own
``taming.modules``; a Lightning ``VQModel`` that needs a loss, so the parts are composed) and a
self-contained easyrobust-style file (a ``VQModel(ddconfig, n_embed, embed_dim)`` whose quantiser
returns only the quantised latents). Their encoder and decoder subclass mmdat's blocks with taming's
constructor keywords; the quantisers are written out (full distance matrix, as the published code).
"""
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_tool
from mmdat.models.vqgan import VQGAN
from mmdat.models.vqgan_reference_code import ReferenceCodeError, ReferenceCodeVQGAN, STAND_INS

CONFIG = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16,
              z_channels=4, embed_dim=4, n_embed=64)

PARTS = '''
import torch
import torch.nn as nn
from mmdat.models.vqgan import Encoder as _Encoder, Decoder as _Decoder


class Encoder(_Encoder):
    def __init__(self, *, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, dropout=0.0,
                 resamp_with_conv=True, in_channels, resolution, z_channels, double_z=True, **ignore):
        super().__init__(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                         z_channels=z_channels, resolution=resolution, in_channels=in_channels, dropout=dropout,
                         double_z=double_z)


class Decoder(_Decoder):
    def __init__(self, *, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, dropout=0.0,
                 resamp_with_conv=True, in_channels, resolution, z_channels, **ignore):
        print('Working with z of shape', z_channels)  # taming prints here: must not reach the tool's stdout
        super().__init__(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                         z_channels=z_channels, resolution=resolution, out_ch=out_ch, dropout=dropout)


class VectorQuantizer2(nn.Module):
    def __init__(self, n_e, e_dim, beta, remap=None, sane_index_shape=False):
        super().__init__()
        self.e_dim = e_dim
        self.embedding = nn.Embedding(n_e, e_dim)

    def forward(self, z):
        z = z.permute(0, 2, 3, 1).contiguous()
        flat = z.view(-1, self.e_dim)
        d = (flat ** 2).sum(1, keepdim=True) + (self.embedding.weight ** 2).sum(1) \\
            - 2 * flat @ self.embedding.weight.t()
        indices = d.argmin(1)
        z_q = self.embedding(indices).view(z.shape)
        z_q = z + (z_q - z).detach()  # straight-through: not bit-equal to the codebook rows
        return z_q.permute(0, 3, 1, 2).contiguous(), torch.zeros(()), (None, None, indices)
'''

TAMING_VQGAN = '''
import torch
import pytorch_lightning as pl

from main import instantiate_from_config
from taming.modules.parts import Encoder, Decoder
from taming.modules.parts import VectorQuantizer2 as VectorQuantizer


class VQModel(pl.LightningModule):
    def __init__(self, ddconfig, lossconfig, n_embed, embed_dim):
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.loss = instantiate_from_config(lossconfig)
'''

EASYROBUST_STYLE = PARTS.replace('class VectorQuantizer2', 'class VectorQuantizer').replace(
    '''        z_q = z + (z_q - z).detach()  # straight-through: not bit-equal to the codebook rows
        return z_q.permute(0, 3, 1, 2).contiguous(), torch.zeros(()), (None, None, indices)''',
    '''        return z_q.permute(0, 3, 1, 2).contiguous()''') + '''

class VQModel(nn.Module):
    def __init__(self, ddconfig, n_embed, embed_dim, ckpt_path=None):
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = torch.nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = torch.nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode(self, x):
        return self.quantize(self.quant_conv(self.encoder(x)))

    def forward(self, x):
        return self.decoder(self.post_quant_conv(self.encode(x)))
'''


def write_taming(root: Path) -> Path:
    (root / 'taming' / 'modules').mkdir(parents=True)
    (root / 'taming' / 'models').mkdir()
    (root / 'taming' / 'modules' / 'parts.py').write_text(textwrap.dedent(PARTS))
    (root / 'taming' / 'models' / 'vqgan.py').write_text(textwrap.dedent(TAMING_VQGAN))
    (root / 'main.py').write_text('import omegaconf_is_not_installed_here\n')  # the training script: never imported
    return root / 'taming' / 'models' / 'vqgan.py'


def write_easyrobust(root: Path) -> Path:
    path = root / 'third_party' / 'vqgan.py'
    path.parent.mkdir(parents=True)
    path.write_text(EASYROBUST_STYLE)
    return path


def tiny_vqgan() -> VQGAN:
    torch.manual_seed(0)
    vq = VQGAN(**CONFIG)
    with torch.no_grad():
        vq.quantize.embedding.weight.normal_()
    return vq


@pytest.mark.parametrize('layout', ['taming', 'easyrobust'])
def test_reference_code_runs_on_our_weights(tmp_path, layout, capsys):
    path = write_taming(tmp_path) if layout == 'taming' else write_easyrobust(tmp_path)
    vq = tiny_vqgan()
    reference = ReferenceCodeVQGAN([path], vq, CONFIG)
    if layout == 'taming':
        assert reference.stand_ins[0] == 'main' and 'composed' in reference.description
    else:
        assert reference.stand_ins == [] and 'VQModel.forward' in reference.description
    assert str(path) in reference.description
    assert not any(name in sys.modules for name in STAND_INS if name in reference.stand_ins)  # removed again
    assert 'Working with z' not in capsys.readouterr().out  # the reference's prints go to stderr
    x = torch.rand(2, 3, 21, 18, generator=torch.Generator().manual_seed(1))  # padded to a multiple of 2
    codes = vq.encode(x)
    assert len(codes.unique()) > 4
    assert torch.equal(reference.encode(x), codes)
    y = reference.reconstruct(x)
    assert y.shape == x.shape and not y.requires_grad
    torch.testing.assert_close(y, vq.reconstruct(x), rtol=0, atol=1e-5)
    assert not reference.train().training


def test_missing_dependency_and_wrong_weights_are_clear_errors(tmp_path):
    bad = tmp_path / 'needs_more.py'
    bad.write_text('import mmdat_test_module_that_does_not_exist\n')
    with pytest.raises(ReferenceCodeError, match="needs_more.py imports 'mmdat_test_module_that_does_not_exist'"):
        ReferenceCodeVQGAN([bad], tiny_vqgan(), CONFIG)
    with pytest.raises(ReferenceCodeError, match='not a Python file'):
        ReferenceCodeVQGAN([tmp_path / 'absent.py'], tiny_vqgan(), CONFIG)
    path = write_easyrobust(tmp_path)
    with pytest.raises(ReferenceCodeError, match='do not fit'):
        ReferenceCodeVQGAN([path], tiny_vqgan(), {**CONFIG, 'n_embed': 32})
    empty = tmp_path / 'empty.py'
    empty.write_text('X = 1\n')
    with pytest.raises(ReferenceCodeError, match='Encoder, Decoder, quantiser'):
        ReferenceCodeVQGAN([empty], tiny_vqgan(), CONFIG)


def test_benchmark_tool_uses_the_reference_code_for_every_ratio(tmp_path):
    path = write_taming(tmp_path / 'code')
    out = run_tool([sys.executable, 'tools/analysis_tools/benchmark_dat.py', '--quick', '--threads', '1',
                    '--sections', 'vqgan', '--variants', 'baseline', 'default', '--reference-code', str(path),
                    '--json', str(tmp_path / 'b.json')], cwd=REPO, timeout=300)
    rows = json.loads((tmp_path / 'b.json').read_text())['vqgan']
    assert [r['variant'] for r in rows[:3]] == ['reference-code', 'baseline', 'default']
    for r in rows:
        assert r['reference'] == 'reference-code' and r['code_agreement'] == 1.0 and r['max_abs_diff'] < 1e-4
    assert [r['speedup'] for r in rows if r['variant'] == 'reference-code'] == [1.0, 1.0]  # both sizes
    assert str(path) in rows[0]['description']
    assert '| x reference-code |' in out and str(path) in out and 'ReferenceVQGAN' in out
