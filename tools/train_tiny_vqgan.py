"""Train mmdat's tiny VQGAN (the embedded default) on synthetic shape images, on a CPU in a few minutes.

Objective: a plain VQ-VAE -- mean squared reconstruction error + codebook loss + 0.25 x
commitment loss, with the straight-through estimator -- optimised with Adam (no GAN, no
perceptual loss). Codes unused during the last ``--revive-every`` steps are re-initialised
from random encoder outputs. Training sees random ``--crop`` x ``--crop`` crops first (cheap),
then full 32 x 32 images for the last ``--full-steps`` steps. Each batch mixes images of the
``make_shapes_classification`` train split with images drawn on the fly.

The result is saved as ``{'state_dict': ..., 'meta': {...}}`` (large tensors in float16) and
then evaluated by loading it back through ``VQGAN(**config, checkpoint=...)`` on the held-out
val split: mean per-image PSNR and codebook usage are printed and stored in ``meta``.

Example (writes mmdat/assets/tiny_vqgan_shapes.pth; about 3 minutes on one free CPU core):
    python tools/train_tiny_vqgan.py
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from mmdat.assets import TINY_VQGAN_CHECKPOINT, TINY_VQGAN_CONFIG  # noqa: E402
from mmdat.datasets import make_shapes_classification, sample_shape_images  # noqa: E402
from mmdat.models.vqgan import VQGAN, nearest_code_indices  # noqa: E402

IMAGE_SIZE = 32
COMMITMENT = 0.25


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=str(TINY_VQGAN_CHECKPOINT), help='output checkpoint')
    parser.add_argument('--data-root', help='where to write the shape dataset (default: a temporary directory)')
    parser.add_argument('--num-per-class', type=int, default=128, help='train images per class on disk')
    parser.add_argument('--val-per-class', type=int, default=32, help='held-out images per class')
    parser.add_argument('--steps', type=int, default=800, help='total optimisation steps')
    parser.add_argument('--full-steps', type=int, default=100, help='last steps on full 32x32 images')
    parser.add_argument('--crop', type=int, default=16, help='crop size of the first steps')
    parser.add_argument('--batch-size', type=int, default=32, help='batch of the crop steps (full steps: half)')
    parser.add_argument('--fresh-fraction', type=float, default=0.5, help='share of each batch drawn on the fly')
    parser.add_argument('--lr', type=float, default=6e-3)
    parser.add_argument('--revive-every', type=int, default=50, help='dead-code revival period (steps)')
    parser.add_argument('--max-seconds', type=float, default=0, help='stop training after this time (0: no limit)')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)


def load_split(info: dict, split: str) -> torch.Tensor:
    from PIL import Image
    root, meta = Path(info['root']), info['splits'][split]
    lines = (root / meta['ann_file']).read_text().split('\n')
    files = [root / meta['data_prefix'] / ln.rsplit(' ', 1)[0] for ln in lines if ln.strip()]
    return to_tensor(np.stack([np.asarray(Image.open(f).convert('RGB')) for f in files]))


class Trainer:
    """The VQ-VAE training forward, written on the frozen VQGAN's own submodules."""

    def __init__(self, model: VQGAN, n_embed: int) -> None:
        self.model = model
        model.requires_grad_(True)
        nn.Module.train(model, True)  # bypass VQGAN.train(), which always keeps eval mode
        self.codebook = model.quantize.embedding.weight
        self.usage = torch.zeros(n_embed, dtype=torch.long)
        self.initialised = False

    def latents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        """Encoder outputs as rows (B*h*w, D), and the latent shape (B, D, h, w)."""
        z = self.model.quant_conv(self.model.encoder(x * 2 - 1))
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), z.shape

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        flat, (b, d, h, w) = self.latents(x)
        if not self.initialised:  # data-dependent codebook initialisation
            self.reinit_codes(torch.arange(self.codebook.shape[0]), flat.detach())
            self.initialised = True
        idx = nearest_code_indices(flat.detach(), self.codebook.detach())
        self.usage += torch.bincount(idx, minlength=self.codebook.shape[0])
        q = F.embedding(idx, self.codebook)
        codebook_loss = F.mse_loss(q, flat.detach())
        commitment_loss = F.mse_loss(flat, q.detach())
        q = flat + (q - flat).detach()  # straight-through estimator
        q = q.view(b, h, w, d).permute(0, 3, 1, 2)
        y = self.model.decoder(self.model.post_quant_conv(q))
        rec = F.mse_loss(y, x * 2 - 1)
        total = rec + codebook_loss + COMMITMENT * commitment_loss
        mse01 = F.mse_loss(((y.detach().clamp(-1, 1) + 1) / 2), x).item()
        return total, dict(rec=rec.item(), cb=codebook_loss.item(), psnr=10 * math.log10(1 / max(mse01, 1e-10)))

    @torch.no_grad()
    def reinit_codes(self, codes: torch.Tensor, flat: torch.Tensor) -> None:
        pick = torch.randint(flat.shape[0], (len(codes),))
        self.codebook[codes] = flat[pick] + 1e-3 * torch.randn(len(codes), flat.shape[1])

    @torch.no_grad()
    def revive(self, x: torch.Tensor) -> int:
        dead = (self.usage == 0).nonzero().flatten()
        if len(dead):
            flat, _ = self.latents(x)
            self.reinit_codes(dead, flat)
        self.usage.zero_()
        return len(dead)


def random_batch(pool: torch.Tensor, n_pool: int, n_fresh: int, crop: int, gen: torch.Generator,
                 fresh_seed: int, step: int) -> torch.Tensor:
    parts = [pool[torch.randint(len(pool), (n_pool,), generator=gen)]]
    if n_fresh:
        images, _ = sample_shape_images(n_fresh, IMAGE_SIZE, seed=fresh_seed, split='vqgan-stream',
                                        start=step * n_fresh)
        parts.append(to_tensor(images))
    x = torch.cat(parts)
    flip = torch.rand(len(x), generator=gen) < 0.5
    x[flip] = x[flip].flip(-1)
    if crop < IMAGE_SIZE:
        top, left = (int(v) for v in torch.randint(IMAGE_SIZE - crop + 1, (2,), generator=gen))
        x = x[..., top:top + crop, left:left + crop]
    return x.contiguous()


@torch.no_grad()
def evaluate(model: VQGAN, images: torch.Tensor) -> tuple[float, int]:
    """Mean per-image PSNR (dB) of ``model.reconstruct`` and the number of distinct codes used."""
    rec = model.reconstruct(images)
    mse = (rec - images).square().flatten(1).mean(1).clamp_min(1e-10)
    codes = model.encode(images)
    return float((10 * torch.log10(1 / mse)).mean()), int(codes.unique().numel())


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    config = dict(TINY_VQGAN_CONFIG)

    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root or str(Path(tmp) / 'shapes')
        info = make_shapes_classification(data_root, num_per_class=dict(train=args.num_per_class,
                                                                        val=args.val_per_class),
                                          size=IMAGE_SIZE, seed=args.seed)
        train, val = load_split(info, 'train'), load_split(info, 'val')
    print(f'data: {len(train)} train images on disk (+ fresh ones every step), {len(val)} held-out val images')

    model = VQGAN(**config)
    trainer = Trainer(model, config['n_embed'])
    optim = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / 20) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / args.steps))))
    start = time.time()
    step = 0
    for step in range(args.steps):
        full = step >= args.steps - args.full_steps
        batch = args.batch_size // 2 if full else args.batch_size
        n_fresh = int(round(batch * args.fresh_fraction))
        x = random_batch(train, batch - n_fresh, n_fresh, IMAGE_SIZE if full else args.crop, gen, args.seed, step)
        loss, logs = trainer.loss(x)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        revived = None
        if (step + 1) % args.revive_every == 0 and step + 1 < args.steps - args.full_steps // 2:
            revived = trainer.revive(x)
        if step % 50 == 0 or step == args.steps - 1 or revived:
            print(f'step {step:4d} {time.time() - start:6.1f}s rec {logs["rec"]:.4f} cb {logs["cb"]:.4f} '
                  f'train psnr {logs["psnr"]:.2f}' + (f' revived {revived}' if revived else ''), flush=True)
        if args.max_seconds and time.time() - start > args.max_seconds:
            print(f'time limit reached after {step + 1} steps')
            break
    train_seconds = time.time() - start

    state = {k: (v.half() if v.numel() > 4096 else v.float()).clone() for k, v in model.state_dict().items()}
    meta = dict(config={k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
                trained_on=f'mmdat synthetic shapes (make_shapes_classification size={IMAGE_SIZE} seed={args.seed} '
                           f'train split, {args.num_per_class}/class, + sample_shape_images stream)',
                objective='VQ-VAE: MSE + codebook + 0.25 commitment (straight-through), Adam',
                steps=step + 1, train_seconds=round(train_seconds, 1), seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=state, meta=meta), out)

    loaded = VQGAN(**config, checkpoint=out)  # evaluate what was saved, through the public loader
    psnr, used = evaluate(loaded, val)
    meta.update(psnr=round(psnr, 2), codebook_usage=used,
                eval=f'mean per-image PSNR of VQGAN.reconstruct on {len(val)} held-out val images '
                     f'(make_shapes_classification val split, seed={args.seed}); codebook_usage = distinct codes')
    torch.save(dict(state_dict=state, meta=meta), out)
    print(f'trained {step + 1} steps in {train_seconds:.0f}s; held-out PSNR {psnr:.2f} dB; '
          f'codebook usage {used}/{config["n_embed"]}; saved {out} ({out.stat().st_size / 1024:.0f} KiB)')


if __name__ == '__main__':
    main()
