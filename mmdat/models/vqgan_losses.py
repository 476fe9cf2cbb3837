"""Training-only parts of a VQGAN (taming-transformers ``loss.*`` layout).

* :class:`PatchDiscriminator` -- taming's PatchGAN (``NLayerDiscriminator``, BatchNorm).
* :class:`LPIPSPerceptualLoss` -- LPIPS on VGG16 features; weights come from a local file only.
* :func:`adaptive_disc_weight` -- taming's balance of the GAN term: ratio of gradient norms at
  the decoder's last layer.
* :func:`hinge_d_loss`, :func:`vanilla_d_loss` -- discriminator objectives.

Module and parameter names follow taming (``loss.discriminator.main.*``,
``loss.perceptual_loss.net.slice*.*``, ``loss.perceptual_loss.lin*.model.1.weight``), so the
training-only tensors of a taming checkpoint fit these modules too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ['PatchDiscriminator', 'LPIPSPerceptualLoss', 'adaptive_disc_weight', 'hinge_d_loss',
           'vanilla_d_loss', 'D_LOSSES']


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: one real/fake logit per image patch (Isola et al.; taming's layout).

    Args:
        in_channels (int): image channels. Defaults to 3.
        ndf (int): channels of the first layer, doubled per layer up to 8x. Defaults to 64.
        n_layers (int): stride-2 layers; the receptive field grows with it. Defaults to 3.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f'n_layers must be >= 1, got {n_layers}')
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """taming's initialisation: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02) and biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images: Tensor) -> Tensor:
        """Patch logits (B, 1, h, w) for images (B, C, H, W) in [-1, 1]."""
        return self.main(images)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """0.5 * (mean relu(1 - real) + mean relu(1 + fake))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """0.5 * (mean softplus(-real) + mean softplus(fake)) (the non-saturating GAN loss)."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


D_LOSSES = {'hinge': hinge_d_loss, 'vanilla': vanilla_d_loss}


def adaptive_disc_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4,
                         eps: float = 1e-4) -> Tensor:
    """taming's adaptive GAN weight ``||dL_rec/dW|| / (||dL_G/dW|| + eps)``, clamped to [0, max_weight].

    ``W`` is the decoder's last layer weight. The graph is kept (``retain_graph``) for the
    backward of the total loss; the result is detached.
    """
    rec_grad, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    g_grad, = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    weight = rec_grad.float().norm() / (g_grad.float().norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


# --------------------------------------------------------------------------- LPIPS
_VGG16_CFG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512)
_LPIPS_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # torchvision vgg16.features index ranges
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_PREFIXES = ('loss.perceptual_loss.', 'perceptual_loss.', 'model.', 'module.')


def _vgg16_features() -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for v in _VGG16_CFG:
        if v == 'M':
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=False)]
            channels = v
    return layers


class _VGG16Slices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        features = _vgg16_features()
        for i, (start, end) in enumerate(_LPIPS_SLICES, 1):
            block = nn.Sequential()
            for j in range(start, end):
                block.add_module(str(j), features[j])  # torchvision's indices, as taming keeps them
            setattr(self, f'slice{i}', block)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for i in range(1, len(_LPIPS_SLICES) + 1):
            x = getattr(self, f'slice{i}')(x)
            feats.append(x)
        return feats


class _ScalingLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer('shift', torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer('scale', torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


class _NetLinLayer(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPSPerceptualLoss(nn.Module):
    """LPIPS (Zhang et al. 2018) with VGG16 features, frozen; per-image distances (B, 1, 1, 1).

    The weights are read from a local file only (nothing is downloaded): a state dict of this
    module (keys ``net.slice*.*``, ``lin*.model.1.weight``, ``scaling_layer.*``), possibly under a
    ``loss.perceptual_loss.`` prefix as in taming-transformers checkpoints, loaded weights-only.

    Args:
        checkpoint (str | PathLike): the local weights file.
    """

    def __init__(self, checkpoint: Union[str, os.PathLike]) -> None:
        super().__init__()
        self.scaling_layer = _ScalingLayer()
        self.net = _VGG16Slices()
        for i, channels in enumerate(_LPIPS_CHANNELS):
            setattr(self, f'lin{i}', _NetLinLayer(channels))
        self.load_weights(checkpoint)
        self.requires_grad_(False)
        super().train(False)

    def load_weights(self, checkpoint: Union[str, os.PathLike]) -> None:
        """Load the LPIPS weights from a local file; every key of this module must be present."""
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f'Perceptual (LPIPS) weights not found: {path}. mmdat never downloads them: put a local '
                'state dict of LPIPSPerceptualLoss (VGG16 features under net.slice1-5, linear layers '
                'lin0-4; a taming checkpoint\'s loss.perceptual_loss.* tensors fit) there, or train '
                'without the perceptual loss (perceptual=None).')
        obj = torch.load(path, map_location='cpu', weights_only=True)
        state = obj.get('state_dict', obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f'{path}: expected a state dict, got {type(obj).__name__}')
        own = self.state_dict()
        for prefix in _PREFIXES:
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        state = {k: v for k, v in state.items() if k in own}
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f'{path}: LPIPS weights lack {len(missing)} keys, e.g. {missing[:4]}')
        self.load_state_dict(state)

    def train(self, mode: bool = True) -> 'LPIPSPerceptualLoss':
        """Always in eval mode (frozen)."""
        return super().train(False)

    def forward(self, images: Tensor, targets: Tensor) -> Tensor:
        """LPIPS distance per image, (B, 1, 1, 1), for images in [-1, 1]."""
        feats_a = self.net(self.scaling_layer(images))
        feats_b = self.net(self.scaling_layer(targets))
        total = 0
        for i, (a, b) in enumerate(zip(feats_a, feats_b)):
            a = a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f'lin{i}').model((a - b).square()).mean((2, 3), keepdim=True)
        return total
