"""Training a VQGAN as an mmengine model: :class:`VQGANAutoencoder`.

The model trains the submodules of an :class:`~mmdat.models.VQGAN` (``encoder``, ``quant_conv``,
``quantize``, ``post_quant_conv``, ``decoder``, attached at the top level so their names stay
taming-compatible) with its own differentiable forward; everything that only training needs
(discriminator, perceptual network, codebook statistics) lives under ``loss.``, as in
taming-transformers. So ``state_dict()`` minus ``loss.*`` is exactly the VQGAN's, and the
checkpoints of ``tools/train.py`` load with ``VQGAN(checkpoint=...)`` and ``DATHook``.

Objective (VQ-VAE + optional taming terms)::

    l1_weight * |x - x'| + l2_weight * (x - x')^2 + perceptual_weight * LPIPS(x, x')
    + codebook_weight * ||sg(z) - e||^2 + beta * ||z - sg(e)||^2          (straight-through)
    + adaptive_weight * disc_factor * (-D(x'))                             (after disc_start)

on images in [-1, 1] (the default data preprocessor maps uint8 RGB to [-1, 1]).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce, broadcast
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper, OptimWrapperDict
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmdat.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from .vqgan import VQGAN, VQGAN_PRESETS, nearest_code_indices
from .vqgan_data_preprocessor import VQGANDataPreprocessor  # noqa: F401  (registers the default)
from .vqgan_losses import D_LOSSES, LPIPSPerceptualLoss, PatchDiscriminator, adaptive_disc_weight

__all__ = ['VQGANAutoencoder', 'VQGANOptimWrapperConstructor', 'vqgan_architecture']

_NON_ARCHITECTURE = ('type', 'preset', 'checkpoint', 'checkpoint_sha256', 'trunk_dtype', 'chunk_size')
DEFAULT_PREPROCESSOR = dict(type='VQGANDataPreprocessor')


def vqgan_architecture(cfg: dict) -> dict:
    """``VQGAN(**kwargs)`` architecture of a VQGAN config: explicit (``dict(type='VQGAN', ch=...)``)
    or from a preset (``dict(type='VQGAN', preset=..., **overrides)``, also ``type='VQGANPreset'``)."""
    cfg = dict(cfg)
    if cfg.get('preset') is not None:
        preset = cfg.pop('preset')
        if preset not in VQGAN_PRESETS:
            raise ValueError(f'Unknown VQGAN preset {preset!r}; valid names: {", ".join(VQGAN_PRESETS)}')
        cfg = {**VQGAN_PRESETS[preset]['config'], **cfg}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k not in _NON_ARCHITECTURE}


class VQGANLossModules(nn.Module):
    """What only training needs, under the ``loss.`` prefix: GAN/perceptual nets and codebook statistics.

    Buffers: ``code_usage`` (selections of each code since the last dead-code restart),
    ``num_updates`` (training iterations seen), ``codebook_initialised``, and with EMA
    ``ema_cluster_size`` / ``ema_embed_sum``. Being buffers, they are saved and resumed.
    """

    def __init__(self, n_embed: int, embed_dim: int, ema: bool, discriminator: Optional[nn.Module],
                 perceptual_loss: Optional[nn.Module]) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.perceptual_loss = perceptual_loss
        self.register_buffer('code_usage', torch.zeros(n_embed))
        self.register_buffer('num_updates', torch.zeros((), dtype=torch.long))
        self.register_buffer('codebook_initialised', torch.zeros((), dtype=torch.bool))
        if ema:
            self.register_buffer('ema_cluster_size', torch.zeros(n_embed))
            self.register_buffer('ema_embed_sum', torch.zeros(n_embed, embed_dim))


@MODELS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class VQGANAutoencoder(BaseModel):
    """Trains a taming-compatible VQGAN (VQ-VAE losses, optional EMA codebook, PatchGAN, LPIPS).

    Args:
        vqgan (dict | VQGAN): the VQGAN to train, e.g. ``dict(type='VQGAN', ch=32, ...)`` or
            ``dict(type='VQGAN', preset=..., checkpoint=None)`` (a checkpoint: fine-tuning).
        l1_weight (float): weight of the mean absolute reconstruction error. Defaults to 0.
        l2_weight (float): weight of the mean squared reconstruction error. Defaults to 1.
        codebook_weight (float): weight of ``||sg(z) - e||^2`` (ignored with EMA). Defaults to 1.
        beta (float): commitment weight of ``||z - sg(e)||^2``. Defaults to 0.25.
        ema_decay (float, optional): update the codebook by exponential moving averages of the
            assigned encoder outputs (VQ-VAE-2) instead of the codebook loss. Defaults to None.
        ema_eps (float): Laplace smoothing of the EMA cluster sizes. Defaults to 1e-5.
        init_codebook_from_data (bool): seed every code from encoder outputs of the first
            training batch. Set False when starting from trained weights. Defaults to True.
        restart_interval (int): every this many iterations, codes selected fewer than
            ``restart_threshold`` times since the last check are re-seeded from encoder
            outputs of the current batch (0: off). Defaults to 0.
        restart_threshold (float): see ``restart_interval``. Defaults to 1.
        restart_noise (float): std of the noise added to re-seeded codes. Defaults to 1e-3.
        restart_end (int, optional): no restarts from this iteration on (so that the last
            iterations train every code). Defaults to None (restarts until the end).
        discriminator (dict, optional): ``PatchDiscriminator`` kwargs (``in_channels``, ``ndf``,
            ``n_layers``); needs the optimizer dict of :class:`VQGANOptimWrapperConstructor`
            and runs in :meth:`train_step`, so single-process (``MMDistributedDataParallel``
            bypasses ``train_step``: refused with an error). Defaults to None (no GAN).
        disc_weight (float): scale of the (adaptive) GAN weight. Defaults to 0.8.
        disc_factor (float): factor of both GAN terms once active. Defaults to 1.
        disc_start (int): iteration from which the GAN terms are used. Defaults to 0.
        disc_loss (str): 'hinge' or 'vanilla'. Defaults to 'hinge'.
        adaptive_weight (bool): taming's adaptive GAN weight (gradient-norm ratio at the
            decoder's last layer); False uses ``disc_weight`` as is. Defaults to True.
        perceptual (dict, optional): ``dict(checkpoint=<local LPIPS weights>)`` for an LPIPS
            term; a missing file is an error (nothing is downloaded). Defaults to None.
        perceptual_weight (float): weight of the LPIPS term. Defaults to 1.
        data_preprocessor (dict, optional): must map images to RGB in [-1, 1]. Defaults to
            :class:`~mmdat.models.VQGANDataPreprocessor` (RGB uint8 inputs; add ``bgr_to_rgb=True``
            for images loaded by OpenCV).
        init_cfg (dict, optional): mmengine weight initialisation. Defaults to None.
    """

    def __init__(self, vqgan: Union[dict, VQGAN], l1_weight: float = 0.0, l2_weight: float = 1.0,
                 codebook_weight: float = 1.0, beta: float = 0.25, ema_decay: Optional[float] = None,
                 ema_eps: float = 1e-5, init_codebook_from_data: bool = True, restart_interval: int = 0,
                 restart_threshold: float = 1.0, restart_noise: float = 1e-3,
                 restart_end: Optional[int] = None, discriminator: Optional[dict] = None,
                 disc_weight: float = 0.8, disc_factor: float = 1.0, disc_start: int = 0, disc_loss: str = 'hinge',
                 adaptive_weight: bool = True, perceptual: Optional[dict] = None, perceptual_weight: float = 1.0,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor or dict(DEFAULT_PREPROCESSOR), init_cfg=init_cfg)
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f'ema_decay must be in (0, 1) or None, got {ema_decay}')
        if restart_interval < 0:
            raise ValueError(f'restart_interval must be >= 0, got {restart_interval}')
        if disc_loss not in D_LOSSES:
            raise ValueError(f'disc_loss must be one of {sorted(D_LOSSES)}, got {disc_loss!r}')
        if min(l1_weight, l2_weight, perceptual_weight, codebook_weight, beta) < 0:
            raise ValueError('loss weights must be >= 0')
        if l1_weight == l2_weight == 0 and perceptual is None:
            raise ValueError('no reconstruction loss: set l1_weight and/or l2_weight > 0 (or a perceptual loss)')
        if isinstance(vqgan, VQGAN):
            self.vqgan_config = None
        elif isinstance(vqgan, dict):
            self.vqgan_config = vqgan_architecture(vqgan)
            vqgan = MODELS.build(vqgan)
            if not isinstance(vqgan, VQGAN):
                raise TypeError(f'vqgan must build an mmdat VQGAN, got {type(vqgan).__name__}')
        else:
            raise TypeError(f'vqgan must be a config dict or a VQGAN, got {type(vqgan).__name__}')
        # The VQGAN's own submodules at the top level (taming names); the VQGAN object itself stays
        # outside the module tree and serves inference (encode/decode) on the same weights.
        self.encoder, self.decoder, self.quantize = vqgan.encoder, vqgan.decoder, vqgan.quantize
        self.quant_conv, self.post_quant_conv = vqgan.quant_conv, vqgan.post_quant_conv
        self.__dict__['vqgan'] = vqgan
        self.requires_grad_(True)
        n_embed, embed_dim = self.codebook.shape
        self.ema_decay, self.ema_eps = ema_decay, ema_eps
        if ema_decay is not None:
            self.codebook.requires_grad_(False)  # updated by moving averages, not by the optimizer
        self.l1_weight, self.l2_weight = l1_weight, l2_weight
        self.codebook_weight, self.beta = codebook_weight, beta
        self.init_codebook_from_data = init_codebook_from_data
        self.restart_interval, self.restart_threshold, self.restart_noise = (restart_interval, restart_threshold,
                                                                             restart_noise)
        self.restart_end = restart_end
        self.disc_weight, self.disc_factor, self.disc_start = disc_weight, disc_factor, disc_start
        self.disc_loss_fn = D_LOSSES[disc_loss]
        self.adaptive_weight = adaptive_weight
        self.perceptual_weight = perceptual_weight
        self.loss = VQGANLossModules(
            n_embed, embed_dim, ema=ema_decay is not None,
            discriminator=PatchDiscriminator(**discriminator) if discriminator is not None else None,
            perceptual_loss=LPIPSPerceptualLoss(**perceptual) if perceptual is not None else None)
        self._in_train_step = False

    # ------------------------------------------------------------------ helpers
    @property
    def codebook(self) -> nn.Parameter:
        return self.quantize.embedding.weight

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    def vqgan_state_dict(self) -> dict[str, Tensor]:
        """The VQGAN's state dict (everything but ``loss.*``): what ``VQGAN.load_checkpoint`` expects."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(('loss.', 'data_preprocessor.'))}

    def _pad(self, x: Tensor) -> Tensor:
        f = self.vqgan.downsample_factor
        pad_h, pad_w = -x.shape[-2] % f, -x.shape[-1] % f
        return F.pad(x, (0, pad_w, 0, pad_h), mode='replicate') if pad_h or pad_w else x

    def _latent_rows(self, x: Tensor) -> tuple[Tensor, torch.Size]:
        """Encoder + quant_conv outputs as rows (B*h*w, D) and their map shape (B, D, h, w)."""
        z = self.quant_conv(self.encoder(self._pad(x)))
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), z.shape

    def autoencode(self, x: Tensor) -> dict[str, Tensor]:
        """Differentiable training forward for images in [-1, 1] (straight-through estimator).

        Returns ``rec`` (decoder output, unclamped, cropped to the input size), ``latents``
        (encoder rows), ``codes`` (their nearest code), ``quantized`` (the code vectors).
        """
        flat, (b, d, h, w) = self._latent_rows(x)
        codes = nearest_code_indices(flat.detach(), self.codebook.detach())
        quantized = F.embedding(codes, self.codebook)
        straight = flat + (quantized - flat).detach()
        z_q = straight.view(b, h, w, d).permute(0, 3, 1, 2)
        rec = self.decoder(self.post_quant_conv(z_q))[..., :x.shape[-2], :x.shape[-1]]
        return dict(rec=rec, latents=flat, codes=codes, quantized=quantized)

    # ------------------------------------------------------------------ codebook maintenance
    @torch.no_grad()
    def _seed_codes(self, codes: Tensor, rows: Tensor) -> None:
        """Set ``codes`` to random encoder output rows (+ noise); rank 0's choice on every rank."""
        pick = torch.randint(rows.shape[0], (codes.numel(),), device=rows.device)
        new = rows[pick].float() + self.restart_noise * torch.randn(codes.numel(), rows.shape[1], device=rows.device)
        weight = self.codebook.data
        weight[codes] = new.to(weight.dtype)
        broadcast(weight, 0)
        if self.ema_decay is not None:
            self.loss.ema_cluster_size[codes] = 1.0
            self.loss.ema_embed_sum[codes] = weight[codes].float()

    @torch.no_grad()
    def _init_codebook(self, x: Tensor) -> None:
        """First training step: seed the codes from encoder outputs (``init_codebook_from_data``),
        or else start the EMA statistics from the current codebook."""
        if self.init_codebook_from_data:
            rows, _ = self._latent_rows(x)
            self._seed_codes(torch.arange(self.num_codes, device=rows.device), rows.float())
        elif self.ema_decay is not None:
            self.loss.ema_cluster_size.fill_(1.0)
            self.loss.ema_embed_sum.copy_(self.codebook.data.float())
        self.loss.codebook_initialised.fill_(True)

    @torch.no_grad()
    def _update_codebook(self, rows: Tensor, codes: Tensor) -> Tensor:
        """After a training forward: usage counts, EMA update, dead-code restarts. Returns #restarted."""
        counts = torch.bincount(codes, minlength=self.num_codes).float()
        all_reduce(counts)
        self.loss.code_usage += counts
        if self.ema_decay is not None:
            decay, rows = self.ema_decay, rows.float()
            sums = torch.zeros_like(self.loss.ema_embed_sum).index_add_(0, codes, rows)
            all_reduce(sums)
            self.loss.ema_cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
            self.loss.ema_embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
            size = self.loss.ema_cluster_size
            total = size.sum()
            smoothed = (size + self.ema_eps) / (total + self.num_codes * self.ema_eps) * total
            self.codebook.data.copy_((self.loss.ema_embed_sum / smoothed[:, None]).to(self.codebook.dtype))
        self.loss.num_updates += 1
        restarted = torch.zeros((), device=rows.device)
        step = int(self.loss.num_updates)
        if (self.restart_interval and step % self.restart_interval == 0
                and (self.restart_end is None or step < self.restart_end)):
            dead = (self.loss.code_usage < self.restart_threshold).nonzero().flatten()
            if dead.numel():
                self._seed_codes(dead, rows.float())
            restarted.fill_(dead.numel())
            self.loss.code_usage.zero_()
        return restarted

    # ------------------------------------------------------------------ losses
    def gan_active(self) -> bool:
        """Whether the GAN terms are on at the current iteration."""
        return self.loss.discriminator is not None and int(self.loss.num_updates) >= self.disc_start

    def _losses(self, inputs: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Generator-side losses and statistics (updates the codebook statistics when training)."""
        training = self.training and torch.is_grad_enabled()
        gan = training and self.gan_active()
        if gan and not self._in_train_step:
            raise RuntimeError('GAN training needs VQGANAutoencoder.train_step (two optimisers); it was '
                               'bypassed, e.g. by MMDistributedDataParallel: train without the discriminator, '
                               'or in a single process')
        if training and not bool(self.loss.codebook_initialised):
            self._init_codebook(inputs)
        out = self.autoencode(inputs)
        rec, flat, quantized = out['rec'], out['latents'], out['quantized']
        target = inputs.to(rec.dtype)
        losses: dict[str, Tensor] = {}
        nll = rec.new_zeros(())
        if self.l1_weight:
            losses['loss_l1'] = self.l1_weight * (rec - target).abs().mean()
            nll = nll + losses['loss_l1']
        if self.l2_weight:
            losses['loss_l2'] = self.l2_weight * (rec - target).square().mean()
            nll = nll + losses['loss_l2']
        if self.loss.perceptual_loss is not None:
            losses['loss_perceptual'] = self.perceptual_weight * self.loss.perceptual_loss(target, rec).mean()
            nll = nll + losses['loss_perceptual']
        if self.ema_decay is None:
            losses['loss_codebook'] = self.codebook_weight * F.mse_loss(quantized.float(), flat.detach().float())
        losses['loss_commitment'] = self.beta * F.mse_loss(flat.float(), quantized.detach().float())
        if gan:
            g_loss = -self.loss.discriminator(rec).mean()
            weight = torch.tensor(self.disc_weight, device=rec.device)
            if self.adaptive_weight:
                weight = weight * adaptive_disc_weight(nll, g_loss, self.decoder.conv_out.weight)
            losses['loss_g'] = weight * self.disc_factor * g_loss
            losses['disc_weight'] = weight.detach()
        with torch.no_grad():
            mse = ((rec.detach().float().clamp(-1, 1) - inputs.float()) / 2).square().flatten(1).mean(1)
            losses['psnr'] = (-10 * torch.log10(mse.clamp_min(1e-10))).mean()
            counts = torch.bincount(out['codes'], minlength=self.num_codes).float()
            probs = counts / counts.sum()
            losses['codebook_usage'] = (counts > 0).float().mean()
            losses['perplexity'] = torch.exp(-(probs * probs.clamp_min(1e-10).log()).sum())
        if training:
            losses['codes_restarted'] = self._update_codebook(flat.detach(), out['codes'])
        return losses, rec

    def _discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return self.disc_factor * self.disc_loss_fn(self.loss.discriminator(real.detach()),
                                                    self.loss.discriminator(fake.detach()))

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: Union[OptimWrapper, OptimWrapperDict]) -> dict[str, Tensor]:
        """One iteration: autoencoder update, then (GAN active) a discriminator update."""
        disc = self.loss.discriminator
        if disc is None:
            if isinstance(optim_wrapper, OptimWrapperDict):
                raise ValueError('VQGANAutoencoder without a discriminator takes a single optim_wrapper')
            generator_wrapper, disc_wrapper = optim_wrapper, None
        else:
            if not isinstance(optim_wrapper, OptimWrapperDict) or set(optim_wrapper.keys()) != {
                    'generator', 'discriminator'}:
                raise ValueError("VQGANAutoencoder with a discriminator needs optim_wrapper=dict(constructor="
                                 "'VQGANOptimWrapperConstructor', generator=dict(...), discriminator=dict(...))")
            generator_wrapper, disc_wrapper = optim_wrapper['generator'], optim_wrapper['discriminator']
        gan = self.gan_active()
        self._in_train_step = True
        try:
            if disc is not None:
                disc.requires_grad_(False)  # the generator's backward must not reach D's gradients
            with generator_wrapper.optim_context(self):
                data = self.data_preprocessor(data, True)
                losses, rec = self._losses(data['inputs'])
            parsed, log_vars = self.parse_losses(losses)
            generator_wrapper.update_params(parsed)
            if gan:
                disc.requires_grad_(True)
                with disc_wrapper.optim_context(self):
                    d_loss = self._discriminator_loss(data['inputs'], rec)
                disc_wrapper.update_params(d_loss)
                log_vars['loss_disc'] = d_loss.detach()
        finally:
            self._in_train_step = False
            if disc is not None:
                disc.requires_grad_(True)
        return log_vars

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: Optional[list] = None) -> list[BaseDataElement]:
        """Reconstructions through the VQGAN's own inference path, with per-image PSNR and codes."""
        images = ((inputs.float() + 1) / 2).clamp(0, 1)
        codes = self.vqgan.encode(images)
        rec = self.vqgan.decode(codes, size=images.shape[-2:])
        results = []
        for i in range(images.shape[0]):
            meta = data_samples[i].metainfo if data_samples is not None else {}
            h, w = meta.get('img_shape', images.shape[-2:])[:2]
            mse = (rec[i, :, :h, :w] - images[i, :, :h, :w]).square().mean()
            sample = BaseDataElement(metainfo=dict(meta, num_codes=self.num_codes))
            sample.input_img = images[i, :, :h, :w]
            sample.rec_img = rec[i, :, :h, :w]
            sample.mse = mse
            sample.psnr = -10 * torch.log10(mse.clamp_min(1e-10))
            sample.codes = codes[i]
            results.append(sample)
        return results

    def forward(self, inputs: Tensor, data_samples: Optional[list] = None, mode: str = 'tensor'):
        """``mode``: 'loss' (dict of losses and statistics), 'predict' (data elements), 'tensor'
        (differentiable reconstruction in [-1, 1])."""
        if mode == 'loss':
            return self._losses(inputs)[0]
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.autoencode(inputs)['rec']
        raise ValueError(f"Invalid mode {mode!r}; expected 'loss', 'predict' or 'tensor'")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class VQGANOptimWrapperConstructor:
    """Two optimisers for GAN training of :class:`VQGANAutoencoder`: ``generator`` (every parameter
    outside ``loss.``) and ``discriminator`` (``loss.discriminator``), as an ``OptimWrapperDict``.

    Args:
        optim_wrapper_cfg (dict): ``dict(generator=dict(optimizer=...), discriminator=dict(optimizer=...))``,
            each an ordinary optim wrapper config.
        paramwise_cfg (dict, optional): applied to both. Defaults to None.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        if set(optim_wrapper_cfg) != {'generator', 'discriminator'}:
            raise ValueError(f'VQGANOptimWrapperConstructor needs exactly the keys generator and discriminator, '
                             f'got {sorted(optim_wrapper_cfg)}')
        self.constructors = {name: DefaultOptimWrapperConstructor(dict(cfg), paramwise_cfg)
                             for name, cfg in optim_wrapper_cfg.items()}

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        if is_model_wrapper(model):
            model = model.module
        if getattr(getattr(model, 'loss', None), 'discriminator', None) is None:
            raise ValueError('VQGANOptimWrapperConstructor needs a VQGANAutoencoder with a discriminator')
        generator = nn.ModuleDict({name: child for name, child in model.named_children()
                                   if name not in ('loss', 'data_preprocessor')})
        return OptimWrapperDict(generator=self.constructors['generator'](generator),
                                discriminator=self.constructors['discriminator'](model.loss.discriminator))

