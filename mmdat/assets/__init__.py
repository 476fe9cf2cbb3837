"""Files shipped inside the mmdat package.

``tiny_vqgan_shapes.pth``: a tiny VQGAN (downsample factor 2, 256 codes of dimension 8)
trained on mmdat's synthetic shape images (:mod:`mmdat.datasets.shapes`) by
``python tools/train.py configs/vqgan/tiny-shapes.py`` (which exports into its work dir), then
installed here by the explicit step ``python tools/model_converters/install_tiny_vqgan.py FILE``
(:mod:`mmdat.assets.install`; it refuses a model with a lower held-out PSNR unless forced). It is the embedded default that lets the DAT pipeline run on
a CPU without downloading the published VQGANs; it knows nothing about natural images. Build it with::

    from mmdat.assets import TINY_VQGAN_CHECKPOINT, TINY_VQGAN_CONFIG
    from mmdat.models import VQGAN
    vqgan = VQGAN(**TINY_VQGAN_CONFIG, checkpoint=TINY_VQGAN_CHECKPOINT)

The checkpoint is ``{'state_dict': tensors, 'meta': {config, psnr, codebook_usage, trained_on, ...}}``.
"""
from pathlib import Path

__all__ = ['ASSETS_DIR', 'TINY_VQGAN_CHECKPOINT', 'TINY_VQGAN_CONFIG']

ASSETS_DIR = Path(__file__).resolve().parent
TINY_VQGAN_CHECKPOINT = ASSETS_DIR / 'tiny_vqgan_shapes.pth'
# The exact VQGAN(**kwargs) of TINY_VQGAN_CHECKPOINT (attention at the 16x16 level of 32x32 inputs).
TINY_VQGAN_CONFIG = dict(ch=32, ch_mult=(1, 1), num_res_blocks=1, attn_resolutions=(16,), resolution=32,
                         z_channels=8, embed_dim=8, n_embed=256)
