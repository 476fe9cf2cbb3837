"""Reconstruction quality of a VQGAN over a dataset: PSNR and codebook usage."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric

from mmdat.registry import METRICS

__all__ = ['VQGANReconstructionMetric']


@METRICS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class VQGANReconstructionMetric(BaseMetric):
    """PSNR of VQGAN reconstructions and how much of the codebook the dataset uses.

    Reads what :meth:`VQGANAutoencoder.predict <mmdat.models.VQGANAutoencoder.predict>` returns per
    image: ``mse`` (of [0, 1] images), ``codes`` (code indices) and ``num_codes`` (codebook size).

    Reports ``psnr`` (mean of per-image PSNR, dB), ``psnr_of_mean_mse`` (dB), ``mse``,
    ``codebook_usage`` (distinct codes used over the dataset), ``codebook_usage_ratio``
    (that / codebook size) and ``perplexity`` (exp of the entropy of the code frequencies).

    Args:
        collect_device (str): device for gathering results across ranks. Defaults to 'cpu'.
        prefix (str, optional): metric name prefix. Defaults to 'vqgan'.
    """

    default_prefix: Optional[str] = 'vqgan'

    def __init__(self, collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """One result per batch: summed PSNR / MSE, image count and the code histogram."""
        if not data_samples:
            return
        num_codes = int(data_samples[0]['num_codes'])
        hist = torch.zeros(num_codes, dtype=torch.long)
        psnr_sum = mse_sum = 0.0
        for sample in data_samples:
            for key in ('mse', 'codes', 'num_codes'):
                if key not in sample:
                    raise KeyError(f'VQGANReconstructionMetric needs {key!r} in every prediction (as '
                                   f'VQGANAutoencoder.predict returns), got keys {sorted(sample)}')
            if int(sample['num_codes']) != num_codes:
                raise ValueError('all predictions must come from one codebook size')
            mse = float(sample['mse'])
            mse_sum += mse
            psnr_sum += -10 * math.log10(max(mse, 1e-10))
            hist += torch.bincount(sample['codes'].flatten().cpu(), minlength=num_codes)
        self.results.append(dict(psnr_sum=psnr_sum, mse_sum=mse_sum, num=len(data_samples), hist=hist))

    def compute_metrics(self, results: list) -> dict[str, float]:
        num = sum(r['num'] for r in results)
        if num == 0:
            raise ValueError('VQGANReconstructionMetric got no images')
        hist = torch.stack([r['hist'] for r in results]).sum(0).double()
        probs = hist / hist.sum()
        entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
        mse = sum(r['mse_sum'] for r in results) / num
        return dict(psnr=sum(r['psnr_sum'] for r in results) / num,
                    psnr_of_mean_mse=-10 * math.log10(max(mse, 1e-10)),
                    mse=mse,
                    codebook_usage=int((hist > 0).sum()),
                    codebook_usage_ratio=float((hist > 0).double().mean()),
                    perplexity=float(entropy.exp()))
