"""Step time of DAT against plain training, side by side in one run.

Measures, interleaved round-robin so that machine noise hits every mode alike:
  plain      the classifier's normal train_step (DAT switched off, same preprocessing)
  dat        mmdat's DAT train_step
  ref-style  the reference implementation's costs emulated on the same pieces: the attack's
             backward also fills parameter gradients (``loss.backward()`` instead of an input-only
             ``torch.autograd.grad``) and one extra, unused forward follows the attack
and the VQGAN alone (one reconstruction of the batch, fp32 and bf16 trunk).

    python tools/benchmark_dat.py [--model tiny|resnet50|vit-b] [--size 32] [--batch 16]
                                  [--vqgan tiny|openimages-f8-16384] [--iters 5] [--device cuda]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from _common import ROOT  # noqa: F401  (puts the repo on sys.path, registers mmdat)
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmdat.models import VQGAN

MODELS_CFG = {
    'tiny': dict(backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=10, in_channels=128)),
    'resnet50': dict(backbone=dict(type='ResNet', depth=50), neck=dict(type='GlobalAveragePooling'),
                     head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048)),
    'vit-b': dict(backbone=dict(type='VisionTransformer', arch='base', img_size=224, patch_size=16),
                  neck=None,
                  head=dict(type='VisionTransformerClsHead', num_classes=1000, in_channels=768)),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='DAT vs plain training step time')
    parser.add_argument('--model', choices=sorted(MODELS_CFG), default='tiny')
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--vqgan', default='tiny', help="'tiny' (shipped) or a VQGAN preset name")
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    return parser.parse_args()


def build_vqgan(name: str) -> VQGAN:
    if name == 'tiny':
        return VQGAN.from_preset('tiny-shapes', checkpoint='default')
    return VQGAN.from_preset(name, checkpoint=None)  # random weights: same cost as the real one


def build_classifier(name: str, enabled: bool, device: str):
    num_classes = MODELS_CFG[name]['head']['num_classes']
    pre = dict(type='DATClsDataPreprocessor', num_classes=num_classes, to_rgb=True,
               mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
               dat=dict(enabled=enabled))
    torch.manual_seed(0)
    return MODELS.build(dict(type='ImageClassifier', data_preprocessor=pre,
                             **copy.deepcopy(MODELS_CFG[name]))).to(device)


def ref_style_step(model, data: dict, optim: OptimWrapper) -> None:
    """The reference's costs: parameter gradients in the attack, and an unused extra forward."""
    pre = model.data_preprocessor
    data = pre(data, training=False)  # upstream preprocessing only
    inputs, samples = data['inputs'], data['data_samples']
    attack = pre.dat_attack
    x_rec = attack.quantize(pre.to_unit_rgb(inputs))
    leaf = x_rec.clone().requires_grad_(True)
    loss, _ = type(model).parse_losses(model, model.loss(pre.from_unit_rgb(leaf), samples))
    loss.backward()  # fills parameter gradients too
    grad = leaf.grad
    x = x_rec + attack.step_size * grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10)
    x = (x_rec + attack._project(x - x_rec)).clamp(0, 1)
    model.loss(pre.from_unit_rgb(x), samples)  # the unused extra forward
    x_adv = attack.quantize(x)
    optim.zero_grad()
    clean = type(model).parse_losses(model, model.loss(inputs, samples))[0]
    adv = type(model).parse_losses(model, model.loss(pre.from_unit_rgb(x_adv), samples))[0]
    optim.update_params(clean + adv)


def make_batch(args) -> dict:
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, args.size, args.size), generator=g, dtype=torch.uint8)
              for _ in range(args.batch)]
    num_classes = MODELS_CFG[args.model]['head']['num_classes']
    return dict(inputs=inputs, data_samples=[DataSample().set_gt_label(i % num_classes)
                                             for i in range(args.batch)])


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vqgan = build_vqgan(args.vqgan).to(args.device)
    models = {'plain': build_classifier(args.model, False, args.device),
              'dat': build_classifier(args.model, True, args.device),
              'ref-style': build_classifier(args.model, True, args.device)}
    optims = {}
    for name, model in models.items():
        model.data_preprocessor.attach_dat(model, vqgan)
        model.data_preprocessor.dat_attack.random_start_prob = 0.0  # same work every step
        optims[name] = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    batch = make_batch(args)

    def step(name: str) -> None:
        data = copy.deepcopy(batch)
        if name == 'ref-style':
            ref_style_step(models[name], data, optims[name])
        elif name.startswith('vqgan'):
            x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
            vqgan.trunk_dtype = None if name == 'vqgan fp32' else torch.bfloat16
            vqgan.reconstruct(x)
            vqgan.trunk_dtype = None  # the training modes measure the default fp32 VQGAN
        else:
            models[name].train_step(data, optims[name])

    names = ['plain', 'dat', 'ref-style', 'vqgan fp32', 'vqgan bf16']
    times = {n: [] for n in names}
    for n in names:  # warm-up
        step(n)
    for _ in range(args.iters):
        for n in names:
            sync(args.device)
            t0 = time.perf_counter()
            step(n)
            sync(args.device)
            times[n].append(time.perf_counter() - t0)
    base = statistics.median(times['plain'])
    print(f'model {args.model}, {args.batch}x3x{args.size}x{args.size}, VQGAN {args.vqgan}, '
          f'device {args.device}, threads {torch.get_num_threads()}, median of {args.iters}')
    print(f"{'mode':<12}{'ms/step':>10}{'x plain':>10}")
    for n in names:
        med = statistics.median(times[n])
        print(f'{n:<12}{med * 1e3:>10.1f}{med / base:>10.2f}')
    dat, ref = statistics.median(times['dat']), statistics.median(times['ref-style'])
    print(f'DAT/plain {dat / base:.2f}; ref-style/plain {ref / base:.2f}; '
          f'mmdat saves {100 * (1 - dat / ref):.0f}% of the reference-style step')


if __name__ == '__main__':
    main()
