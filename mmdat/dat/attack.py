"""Discrete Adversarial Training: the task-agnostic attack (pure PyTorch, no OpenMMLab).

One DAT example for images ``x`` (RGB, [0, 1]) and a frozen VQGAN ``Q``::

    x_rec = Q(x)                                   # discrete visual words, no gradient
    x0    = clamp(x_rec + noise)  with prob. p     # random start, one draw per batch
    x'    = x0 + step * g / ||g||   (g = dLoss/dx0, Q treated as the identity)
    x'    = clamp(x_rec + renorm_eps(x' - x_rec))  # project on the eps-ball, stay in [0, 1]
    x_adv = Q(x')                                  # discrete again

Only the input gradient is taken (``torch.autograd.grad`` on a detached leaf), so the attack leaves
no gradient on model parameters and fires no DDP hooks. The attack's loss and gradient are computed
in float32 with autocast disabled, as in the reference, also when the training step runs under mixed
precision: in fp16 the input gradient of a small loss underflows to zero.
"""
from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

ImageSizes = Optional[Sequence[tuple[int, int]]]


@dataclass
class DATResult:
    """Everything one DAT call produced; ``adversarial`` is None when the batch was skipped."""

    reconstruction: Tensor            # x_rec = Q(x)
    perturbed: Optional[Tensor]       # x' (continuous, before re-quantisation)
    adversarial: Optional[Tensor]     # x_adv = Q(x')
    random_start: bool
    eps: float = math.nan             # the radius used (after the warm-up's strength)
    start_loss: float = math.nan      # loss at the attack's first point (x_rec or x_rec + noise)
    skipped_reason: Optional[str] = None
    zero_gradient_images: int = 0     # images no step moved: their input gradient was exactly zero
    stats: dict = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.adversarial is None


def valid_region_mask(images: Tensor, image_sizes: ImageSizes) -> Optional[Tensor]:
    """(B, 1, H, W) bool mask of each image's valid (unpadded) top-left region, or None if all full."""
    if image_sizes is None:
        return None
    b, _, h, w = images.shape
    if all(tuple(s) == (h, w) for s in image_sizes):
        return None
    mask = torch.zeros(b, 1, h, w, dtype=torch.bool, device=images.device)
    for i, (vh, vw) in enumerate(image_sizes):
        mask[i, :, :vh, :vw] = True
    return mask


class Perturbation(NamedTuple):
    """What :meth:`DATAttack.perturb` returns; ``perturbed`` is None when ``error`` says why."""

    perturbed: Optional[Tensor]       # x'
    start_loss: float                 # the loss at the first point
    error: Optional[str]              # non-finite loss or gradient, else None
    zero_gradient_images: int = 0     # images whose input gradient was exactly zero at every step


def _per_image_norm(t: Tensor, norm: str) -> Tensor:
    flat = t.flatten(1)
    n = flat.norm(p=2, dim=1) if norm == 'l2' else flat.abs().amax(dim=1)
    return n.view(-1, *([1] * (t.dim() - 1)))


class DATAttack:
    """One- (or multi-) step L2/Linf attack on VQGAN reconstructions, re-quantised by the VQGAN.

    Args:
        vqgan: a frozen VQGAN with ``encode(images) -> codes`` (RGB [0, 1] in) and
            ``decode(codes, size=(H, W)) -> images`` (RGB [0, 1] out), e.g. :class:`mmdat.models.VQGAN`.
        eps (float): radius of the perturbation ball around ``x_rec``, in [0, 1] pixel units.
            Defaults to 0.1.
        step_size (float): size of each normalised gradient step, same units. Defaults to 0.1.
        steps (int): number of ascent steps (the paper uses 1). Defaults to 1.
        norm (str): ``'l2'`` (paper) or ``'linf'``. Defaults to ``'l2'``.
        random_start_prob (float): probability of a random start, drawn once per batch.
            Defaults to 0.8.
        seed (int): seed of the decision stream; equal on all ranks so every rank decides alike.
            Defaults to 0.
        vqgan_max_size (int, optional): if set, images whose longer side exceeds it are resized down
            for the VQGAN and back afterwards (a documented deviation from the paper, for detection
            sizes). Defaults to None.
    """

    def __init__(self, vqgan, eps: float = 0.1, step_size: float = 0.1, steps: int = 1,
                 norm: str = 'l2', random_start_prob: float = 0.8, seed: int = 0,
                 vqgan_max_size: Optional[int] = None) -> None:
        self.check_settings(eps, step_size, steps, norm, random_start_prob, vqgan_max_size)
        if not (callable(getattr(vqgan, 'encode', None)) and callable(getattr(vqgan, 'decode', None))):
            raise TypeError(f'DATAttack needs a VQGAN with encode/decode, got {type(vqgan).__name__}')
        self.vqgan = vqgan
        self.eps = float(eps)
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.norm = norm
        self.random_start_prob = float(random_start_prob)
        self.seed = int(seed)
        self.vqgan_max_size = vqgan_max_size
        self._calls = 0

    @staticmethod
    def check_settings(eps: float = 0.1, step_size: float = 0.1, steps: int = 1, norm: str = 'l2',
                       random_start_prob: float = 0.8, vqgan_max_size: Optional[int] = None) -> None:
        """Raise ValueError for settings the attack cannot run with (called when a config is built)."""
        if norm not in ('l2', 'linf'):
            raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
        if steps < 1:
            raise ValueError(f'steps must be >= 1, got {steps}')
        if eps < 0 or step_size < 0:
            raise ValueError(f'eps and step_size must be >= 0, got {eps}, {step_size}')
        if not 0.0 <= random_start_prob <= 1.0:
            raise ValueError(f'random_start_prob must be in [0, 1], got {random_start_prob}')
        if vqgan_max_size is not None and vqgan_max_size < 1:
            raise ValueError(f'vqgan_max_size must be a positive int or None, got {vqgan_max_size}')

    # ------------------------------------------------------------------ decisions
    def draw(self, step: Optional[int], salt: str) -> float:
        """A uniform [0, 1) number that depends only on (seed, step, salt): identical on all ranks."""
        step = self._calls if step is None else step
        return random.Random(f'{self.seed}/{step}/{salt}').random()

    # ------------------------------------------------------------------ quantiser
    @torch.no_grad()
    def quantize(self, images: Tensor, image_sizes: ImageSizes = None,
                 return_codes: bool = False):
        """Q(x) on each image's valid region; pixels outside it are returned unchanged.

        Images of equal valid size are reconstructed together. With ``return_codes`` the code maps
        of every group are returned too, in a deterministic order.
        """
        b, _, h, w = images.shape
        sizes = [(h, w)] * b if image_sizes is None else [tuple(int(v) for v in s) for s in image_sizes]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, s in enumerate(sizes):
            groups[s].append(i)
        out = images.clone() if len(groups) > 1 or sizes[0] != (h, w) else None
        codes = []
        for (vh, vw) in sorted(groups):
            idx = groups[(vh, vw)]
            crop = images[idx, :, :vh, :vw]
            rec, code = self._reconstruct(crop)
            codes.append(code)
            if out is None:
                out = rec
            else:
                out[idx, :, :vh, :vw] = rec.to(out.dtype)
        return (out, codes) if return_codes else out

    def _reconstruct(self, images: Tensor) -> tuple[Tensor, Tensor]:
        h, w = images.shape[-2:]
        scale = 1.0
        if self.vqgan_max_size and max(h, w) > self.vqgan_max_size:
            scale = self.vqgan_max_size / max(h, w)
            small = (max(1, round(h * scale)), max(1, round(w * scale)))
            images = F.interpolate(images, size=small, mode='bilinear', align_corners=False,
                                   antialias=True)
        codes = self.vqgan.encode(images)
        rec = self.vqgan.decode(codes, size=tuple(images.shape[-2:]))
        if scale != 1.0:
            rec = F.interpolate(rec, size=(h, w), mode='bilinear', align_corners=False).clamp_(0, 1)
        return rec, codes

    # ------------------------------------------------------------------ attack
    def perturb(self, x_rec: Tensor, loss_fn: Callable[[Tensor], Tensor],
                mask: Optional[Tensor] = None, random_start: bool = False,
                strength: float = 1.0) -> Perturbation:
        """Gradient ascent from ``x_rec`` inside the eps-ball.

        ``strength`` scales eps and the step size (warm-up). ``loss_fn`` and its input gradient run in
        float32 with autocast disabled (the reference's precision, whatever the caller's autocast).
        After a non-finite loss or gradient the remaining steps still run ``loss_fn`` (without
        moving), so that every rank of a distributed run runs the same forwards and backwards (their
        collectives, e.g. SyncBN, must match); the caller decides the skip.
        """
        eps, step_size = self.eps * strength, self.step_size * strength
        x_rec = x_rec.detach()
        x = x_rec.clone()
        if random_start and eps > 0:
            x = (x + self._random_noise(x_rec, mask, eps)).clamp_(0, 1)
        start_loss, error = math.nan, None
        moved = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for i in range(self.steps):
            leaf = x.detach().requires_grad_(True)
            with torch.enable_grad(), torch.autocast(leaf.device.type, enabled=False):
                loss = loss_fn(leaf)
                if loss.dim() != 0:
                    raise ValueError(f'loss_fn must return a scalar, got shape {tuple(loss.shape)}')
                grad, = torch.autograd.grad(loss, leaf)
            loss_value = float(loss.detach())
            if i == 0:
                start_loss = loss_value
            if error is None and not math.isfinite(loss_value):
                error = f'non-finite attack loss ({loss_value})'
            elif error is None and not torch.isfinite(grad).all():
                error = 'non-finite attack gradient'
            if error is not None:
                continue
            if mask is not None:
                grad = grad * mask
            moved |= grad.flatten(1).ne(0).any(dim=1)
            x = x.detach() + step_size * self._ascent_direction(grad)
            x = (x_rec + self.project(x - x_rec, eps)).clamp_(0, 1)
            if mask is not None:  # padding stays exactly as it was
                x = torch.where(mask, x, x_rec)
        if error is not None:
            return Perturbation(None, start_loss, error)
        return Perturbation(x.detach(), start_loss, None, int((~moved).sum()))

    def _ascent_direction(self, grad: Tensor) -> Tensor:
        if self.norm == 'linf':
            return grad.sign()
        return grad / (_per_image_norm(grad, 'l2') + 1e-10)

    def project(self, delta: Tensor, eps: Optional[float] = None) -> Tensor:
        """``delta`` projected on the eps-ball of the attack's norm (per image)."""
        eps = self.eps if eps is None else eps
        if self.norm == 'linf':
            return delta.clamp(-eps, eps)
        norms = _per_image_norm(delta, 'l2')
        factor = torch.where(norms > eps, eps / (norms + 1e-12), torch.ones_like(norms))
        return delta * factor

    def _random_noise(self, like: Tensor, mask: Optional[Tensor], eps: float) -> Tensor:
        if self.norm == 'linf':
            noise = torch.empty_like(like).uniform_(-eps, eps)
            return noise if mask is None else noise * mask
        noise = torch.randn_like(like)
        if mask is not None:
            noise = noise * mask
        return noise * (eps / (_per_image_norm(noise, 'l2') + 1e-12))

    def run(self, images: Tensor, loss_fn: Callable[[Tensor], Tensor],
            image_sizes: ImageSizes = None, step: Optional[int] = None,
            collect_stats: bool = False, strength: float = 1.0) -> DATResult:
        """The full DAT example generation; see the module docstring.

        Exactly two VQGAN passes (encode + decode of ``x`` and of ``x'``), statistics included.
        ``strength`` scales eps and the step size (the warm-up schedule's factor).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'DAT expects RGB images of shape (B, 3, H, W), got {tuple(images.shape)}')
        images = images.detach().float()
        random_start = self.draw(step, 'random_start') < self.random_start_prob
        self._calls += 1
        mask = valid_region_mask(images, image_sizes)
        x_rec, rec_codes = self.quantize(images, image_sizes, return_codes=True)
        x_pert, start_loss, error, zero_gradient = self.perturb(x_rec, loss_fn, mask, random_start, strength)
        eps = self.eps * strength
        if error is not None:
            return DATResult(x_rec, None, None, random_start, eps, start_loss, skipped_reason=error)
        x_adv, adv_codes = self.quantize(x_pert, image_sizes, return_codes=True)
        result = DATResult(x_rec, x_pert, x_adv, random_start, eps, start_loss,
                           zero_gradient_images=zero_gradient)
        if collect_stats:
            result.stats = self._stats(images, x_rec, x_pert, x_adv, rec_codes, adv_codes, mask)
        return result

    def __call__(self, images: Tensor, loss_fn: Callable[[Tensor], Tensor],
                 image_sizes: ImageSizes = None, step: Optional[int] = None) -> Tensor:
        """Return x_adv (RGB [0, 1]); if the attack gradient is not finite, return Q(x)."""
        result = self.run(images, loss_fn, image_sizes, step)
        return result.reconstruction if result.skipped else result.adversarial

    @torch.no_grad()
    def _stats(self, images, x_rec, x_pert, x_adv, rec_codes, adv_codes, mask) -> dict:
        """Diagnostics: perturbation norms, visual words changed by the attack, reconstruction PSNR.

        ``codes_changed`` compares the visual words of x_adv (codes of x') with those of x_rec (codes
        of x): both are known from the two VQGAN passes, so statistics cost no VQGAN work.
        """
        changed = sum(int((a != r).sum()) for a, r in zip(adv_codes, rec_codes))
        total = sum(r.numel() for r in rec_codes)
        n_valid = (mask.sum() * images.shape[1]).clamp_min(1) if mask is not None else images[0].numel() * images.shape[0]

        def psnr(a: Tensor, b: Tensor) -> float:
            err = (a - b) ** 2
            if mask is not None:
                err = err * mask
            mse = float(err.sum() / n_valid)
            return 10 * math.log10(1.0 / max(mse, 1e-12))

        return {
            'perturbation_norm': float(_per_image_norm(x_pert - x_rec, self.norm).mean()),
            'adversarial_norm': float(_per_image_norm(x_adv - x_rec, 'l2').mean()),
            'codes_changed': changed / max(total, 1),
            'reconstruction_psnr': psnr(x_rec, images),
        }
