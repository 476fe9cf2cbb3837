"""The straightforward taming-transformers VQGAN forward, on the weights of a :class:`VQGAN`.

The baseline that :class:`~mmdat.models.VQGAN`'s optimised path is measured against (see
``tools/analysis_tools/benchmark_dat.py``): the block structure of taming-transformers'
``Encoder``/``Decoder``/``VectorQuantizer`` as published, i.e. unfused ``GroupNorm`` then
``x * sigmoid(x)``, attention as an explicit ``bmm`` + ``softmax`` over the full
(HW x HW) matrix, out-of-place residuals, contiguous (NCHW) tensors, and the nearest code from
the full distance matrix ``||z||^2 + ||e||^2 - 2 z.e`` of a whole pass. It shares the VQGAN's
parameters (no copy) and its input handling (``[0, 1]`` RGB in and out, replicate padding to a
multiple of the downsampling factor, ``chunk_size`` images per pass), so the two differ only in
how the network is evaluated.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .vqgan import VQGAN, AttnBlock, ResnetBlock, model_input

__all__ = ['ReferenceVQGAN']


def _swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def _resnet_block(block: ResnetBlock, x: Tensor) -> Tensor:
    h = block.conv1(_swish(block.norm1(x)))
    h = block.conv2(block.dropout(_swish(block.norm2(h))))
    shortcut = x if isinstance(block.nin_shortcut, nn.Identity) else block.nin_shortcut(x)
    return shortcut + h


def _attn_block(block: AttnBlock, x: Tensor) -> Tensor:
    b, c, h, w = x.shape
    y = block.norm(x)
    q = block.q(y).reshape(b, c, h * w).permute(0, 2, 1)   # (B, HW, C)
    k = block.k(y).reshape(b, c, h * w)                    # (B, C, HW)
    weights = torch.softmax(torch.bmm(q, k) * int(c) ** -0.5, dim=2)  # (B, HW queries, HW keys)
    v = block.v(y).reshape(b, c, h * w)
    y = torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, h, w)
    return x + block.proj_out(y)


def _level(level: nn.Module, x: Tensor) -> Tensor:
    for i, block in enumerate(level.block):
        x = _resnet_block(block, x)
        if len(level.attn):
            x = _attn_block(level.attn[i], x)
    return x


def _mid(mid: nn.Module, x: Tensor) -> Tensor:
    return _resnet_block(mid.block_2, _attn_block(mid.attn_1, _resnet_block(mid.block_1, x)))


class ReferenceVQGAN(nn.Module):
    """Taming's straightforward VQGAN forward over the parameters of ``vqgan`` (shared, frozen).

    Args:
        vqgan (VQGAN): the model whose weights are evaluated. Its ``chunk_size`` bounds the images
            per pass here too; its ``trunk_dtype`` is ignored (this baseline runs in float32).
    """

    def __init__(self, vqgan: VQGAN) -> None:
        super().__init__()
        if not isinstance(vqgan, VQGAN):
            raise TypeError(f'ReferenceVQGAN needs an mmdat VQGAN, got {type(vqgan).__name__}')
        self.vqgan = vqgan

    def train(self, mode: bool = True) -> 'ReferenceVQGAN':
        """Frozen like the VQGAN: stays in eval mode."""
        return super().train(False)

    @property
    def downsample_factor(self) -> int:
        return self.vqgan.downsample_factor

    def _encoder(self, x: Tensor) -> Tensor:
        enc = self.vqgan.encoder
        h = enc.conv_in(x)
        for level in enc.down:
            h = _level(level, h)
            if hasattr(level, 'downsample'):
                h = level.downsample(h)
        h = _mid(enc.mid, h)
        return enc.conv_out(_swish(enc.norm_out(h)))

    def _decoder(self, z: Tensor) -> Tensor:
        dec = self.vqgan.decoder
        h = _mid(dec.mid, dec.conv_in(z))
        for level in reversed(dec.up):
            h = _level(level, h)
            if hasattr(level, 'upsample'):
                h = level.upsample(h)
        return dec.conv_out(_swish(dec.norm_out(h)))

    def _quantize(self, z: Tensor) -> Tensor:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        codebook = self.vqgan.quantize.embedding.weight
        dist = (flat.square().sum(1, keepdim=True) + codebook.square().sum(1)
                - 2 * torch.matmul(flat, codebook.t()))
        return dist.argmin(1).view(b, h, w)

    def _encode(self, images: Tensor) -> Tensor:
        x = model_input(images, self.downsample_factor)
        with torch.autocast(x.device.type, enabled=False):
            return self._quantize(self.vqgan.quant_conv(self._encoder(x)))

    def _decode(self, indices: Tensor, size: Optional[Sequence[int]]) -> Tensor:
        with torch.autocast(indices.device.type, enabled=False):
            z = self.vqgan.quantize.embedding(indices).permute(0, 3, 1, 2).contiguous()
            y = self._decoder(self.vqgan.post_quant_conv(z))
        y = (y.clamp(-1, 1) + 1) / 2
        if size is not None:
            y = y[..., :int(size[0]), :int(size[1])].contiguous()
        return y

    def _in_chunks(self, fn, batch: Tensor) -> Tensor:
        chunk = self.vqgan.chunk_size
        if chunk is None or batch.shape[0] <= chunk:
            return fn(batch)
        return torch.cat([fn(part) for part in batch.split(chunk)])

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Code indices (B, ceil(H/f), ceil(W/f)) for RGB images in [0, 1], as :meth:`VQGAN.encode`."""
        return self._in_chunks(self._encode, images)

    @torch.no_grad()
    def decode(self, indices: Tensor, size: Optional[Sequence[int]] = None) -> Tensor:
        """Images in [0, 1] for code indices, as :meth:`VQGAN.decode`."""
        return self._in_chunks(lambda chunk: self._decode(chunk, size), indices)

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """``decode(encode(images), size=(H, W))``, as :meth:`VQGAN.reconstruct`."""
        size = images.shape[-2:]
        return self._in_chunks(lambda chunk: self._decode(self._encode(chunk), size), images)

    def forward(self, images: Tensor) -> Tensor:
        return self.reconstruct(images)
