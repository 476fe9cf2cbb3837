"""Write the Lightning VQGAN fixtures of tests/data/lightning/ with the real ``pytorch_lightning``.

The published VQGANs (taming-transformers, latent-diffusion ``vq-f8``) are checkpoints that
PyTorch Lightning wrote during training. This script trains a micro VQGAN-shaped LightningModule for
two steps with a real ``Trainer`` and saves it the way Lightning does, so the fixtures hold what those
files hold: the state dict (VQGAN + ``loss.*``), callback states (keyed by the ``ModelCheckpoint``
*class* in Lightning < 1.5, by a string in 2.x), optimizer and LR-scheduler states with numpy float
scalars (a LambdaLR whose factor is a numpy float, as latent-diffusion's schedulers return),
hyper-parameters, loops. The VQGAN weights are fp16 (small files) and frozen; their SHA-256 per
tensor goes to ``vqgan-micro.sha256.json`` (both runs must agree: same seed, same weights).

Lightning is not a dependency of mmdat: run this once per Lightning version in a throwaway venv that
reaches mmdat's environment through a .pth file, e.g.::

    python -m venv /tmp/pl1 && echo $PWD/.venv/lib/python3.11/site-packages > /tmp/pl1/lib/python3.11/site-packages/mmdat.pth
    /tmp/pl1/bin/pip install --no-deps pytorch_lightning==1.4.9 torchmetrics==0.5.1 pyDeprecate==0.3.1 \\
        future tensorboard protobuf absl-py
    PYTHONPATH=$PWD /tmp/pl1/bin/python tests/make_lightning_fixtures.py
    # Lightning 2.x: /tmp/pl2 with --no-deps pytorch_lightning==2.6.6 lightning-utilities torchmetrics

The tests (tests/test_lightning_checkpoints.py) load the committed files without Lightning.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parent / 'data' / 'lightning'
HASHES = FIXTURES / 'vqgan-micro.sha256.json'
#: the micro VQGAN of the fixtures (GroupNorm needs 32 channels; no attention, one level)
MICRO_VQGAN = dict(ch=32, ch_mult=(1, ), num_res_blocks=0, attn_resolutions=(), z_channels=4, embed_dim=4,
                   n_embed=8, resolution=8)
VQGAN_PARTS = ('encoder', 'decoder', 'quantize', 'quant_conv', 'post_quant_conv')


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and raw bytes (bit-identical check)."""
    digest = hashlib.sha256(f'{tensor.dtype}{list(tensor.shape)}'.encode())
    digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fixture_path(major: int) -> Path:
    return FIXTURES / f'vqgan-micro-lightning{major}.ckpt'


def main() -> int:
    import tqdm.auto  # noqa: F401  (torchmetrics 0.5 expects tqdm.auto to be imported already)
    if 'Inf' not in np.__dict__:  # Lightning 1.4 uses np.Inf, which numpy 2 removed
        np.Inf = np.inf
    import pytorch_lightning as pl
    from mmdat.models import VQGAN

    torch.manual_seed(0)
    vqgan = VQGAN(**MICRO_VQGAN).half()

    class MicroVQModel(pl.LightningModule):
        """taming's VQModel layout: the VQGAN's modules at the top, the training loss under ``loss``."""

        def __init__(self, ddconfig: dict, embed_dim: int, n_embed: int) -> None:
            super().__init__()
            self.save_hyperparameters()
            for name in VQGAN_PARTS:
                setattr(self, name, getattr(vqgan, name))
            self.loss = torch.nn.Module()
            self.loss.discriminator = torch.nn.Conv2d(3, 4, 3)
            self.loss.logvar = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch, batch_idx):
            return self.loss.discriminator(batch).square().mean() + self.loss.logvar.square()

        def configure_optimizers(self):
            optimizer = torch.optim.Adam(self.loss.parameters(), lr=1e-3)
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: np.float64(0.5) ** step)
            return [optimizer], [{'scheduler': schedule, 'interval': 'step'}]

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.rand(4, 3, 8, 8), batch_size=2)

    major = int(pl.__version__.split('.')[0])
    options = dict(max_steps=2, logger=False, num_sanity_val_steps=0)
    options.update(dict(progress_bar_refresh_rate=0, weights_summary=None) if major < 2 else
                   dict(enable_progress_bar=False, enable_model_summary=False, accelerator='cpu'))
    with tempfile.TemporaryDirectory() as work:
        trainer = pl.Trainer(default_root_dir=work, **options,
                             callbacks=[pl.callbacks.ModelCheckpoint(dirpath=work)])
        trainer.fit(MicroVQModel(dict(MICRO_VQGAN), MICRO_VQGAN['embed_dim'], MICRO_VQGAN['n_embed']))
        FIXTURES.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(fixture_path(major)))
    hashes = {f'{k}': tensor_sha256(v) for k, v in vqgan.state_dict().items()}
    if HASHES.is_file() and json.loads(HASHES.read_text()) != hashes:
        print(f'error: the weights differ from {HASHES} (written by another run)', file=sys.stderr)
        return 1
    HASHES.write_text(json.dumps(hashes, indent=1, sort_keys=True) + '\n')
    print(f'pytorch_lightning {pl.__version__}: wrote {fixture_path(major)} '
          f'({fixture_path(major).stat().st_size} bytes) and {HASHES.name}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
