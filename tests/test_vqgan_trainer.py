"""VQGAN training (VQGANAutoencoder): losses, codebook maintenance, GAN step, tools, checkpoints."""
from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_VQGAN, run_tool, write_config
from mmengine.config import Config
from mmengine.optim import OptimWrapper, OptimWrapperDict

from mmdat.assets import TINY_VQGAN_CHECKPOINT, TINY_VQGAN_CONFIG
from mmdat.assets.install import install_tiny_vqgan
from mmdat.datasets import ShapeImageDataset, make_shapes_classification, sample_shape_images
from mmdat.engine.hooks.vqgan_hooks import VQGANExportHook, save_vqgan_checkpoint
from mmdat.evaluation.metrics.reconstruction import VQGANReconstructionMetric
from mmdat.models import VQGAN, VQGAN_PRESETS, VQGANAutoencoder
from mmdat.models.vqgan_losses import (LPIPSPerceptualLoss, PatchDiscriminator, _NetLinLayer, _ScalingLayer,
                                       _VGG16Slices, adaptive_disc_weight, hinge_d_loss)

VQGAN_CFG = dict(type='VQGAN', **TINY_VQGAN)


def make_model(**kwargs) -> VQGANAutoencoder:
    torch.manual_seed(0)
    return VQGANAutoencoder(vqgan=dict(VQGAN_CFG), **kwargs).train()


def batch(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Shape images in [-1, 1], as the default data preprocessor makes them."""
    images, _ = sample_shape_images(n, size, seed=seed)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def nearest_gap(points: torch.Tensor, rows: torch.Tensor) -> float:
    """Largest distance (max-abs) from a point to its closest row."""
    return (points[:, None] - rows[None]).abs().amax(-1).min(1).values.max().item()


def sgd_wrapper(params, lr: float = 0.1) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD([p for p in params if p.requires_grad], lr=lr))


# ----------------------------------------------------------------------------- layout
def test_state_dict_minus_loss_is_the_vqgans():
    model = make_model(ema_decay=0.9, discriminator=dict(ndf=8, n_layers=2))
    vqgan_state = VQGAN(**TINY_VQGAN).state_dict()
    own = model.state_dict()
    assert {k: v.shape for k, v in own.items() if not k.startswith('loss.')} == \
        {k: v.shape for k, v in vqgan_state.items()}
    assert set(model.vqgan_state_dict()) == set(vqgan_state)
    assert {'loss.discriminator.main.0.weight', 'loss.code_usage', 'loss.num_updates',
            'loss.ema_cluster_size', 'loss.ema_embed_sum'} <= set(own)
    # the inference VQGAN shares the trained weights and stays out of the module tree
    assert model.vqgan.encoder is model.encoder and 'vqgan' not in dict(model.named_children())
    assert not model.codebook.requires_grad  # EMA codebook: not an optimiser parameter
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_tiny_shapes_config_builds_the_shipped_architecture():
    cfg = Config.fromfile(str(REPO / 'configs/vqgan/tiny-shapes.py'))
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.vqgan.items() if k != 'type'}
    assert arch == TINY_VQGAN_CONFIG
    export = [h for h in cfg.custom_hooks if h.type == 'VQGANExportHook'][0]
    assert export.out_file == 'tiny_vqgan_shapes.pth'  # into the work dir, never the package


def test_custom_images_config_builds():
    from mmdat.registry import MODELS
    cfg = Config.fromfile(str(REPO / 'configs/vqgan/vqgan-f8-16384_gan_custom-images.py'))
    model = MODELS.build(cfg.model)  # every type of the model is in mmdat's (root) registry
    assert isinstance(model, VQGANAutoencoder) and model.loss.discriminator is not None
    assert model.codebook.shape == (16384, 4) and model.vqgan.downsample_factor == 8
    # the architecture recorded for export is the preset's (what VQGAN(**config) rebuilds)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in model.vqgan_config.items()} == \
        VQGAN_PRESETS['openimages-f8-16384']['config']
    assert cfg.optim_wrapper.constructor == 'VQGANOptimWrapperConstructor'


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='ema_decay'):
        make_model(ema_decay=1.5)
    with pytest.raises(ValueError, match='no reconstruction loss'):
        make_model(l2_weight=0.0)
    with pytest.raises(ValueError, match='disc_loss'):
        make_model(disc_loss='wasserstein')
    with pytest.raises(TypeError, match='VQGAN'):
        VQGANAutoencoder(vqgan='tiny')


# ----------------------------------------------------------------------------- losses
def test_straight_through_and_codebook_terms():
    model = make_model(l1_weight=0.5, l2_weight=1.0, beta=0.25, init_codebook_from_data=False)
    x = batch()
    out = model.autoencode(x)
    rows, codes, quantized = out['latents'], out['codes'], out['quantized']
    # nearest codes (up to rounding), and the decoder saw the code vectors (straight-through forward value)
    dist = (rows.detach()[:, None] - model.codebook.detach()[None]).square().sum(-1)
    assert (dist.gather(1, codes[:, None]).squeeze(1) - dist.min(1).values).max() < 1e-6
    assert torch.allclose(quantized, model.codebook[codes])
    z_q = quantized.view(4, 8, 8, -1).permute(0, 3, 1, 2)
    assert torch.allclose(out['rec'], model.decoder(model.post_quant_conv(z_q)), atol=1e-5)

    losses = model(x, mode='loss')
    manual_sq = (model.codebook[codes] - rows).detach().square().mean()
    assert losses['loss_codebook'].item() == pytest.approx(manual_sq.item(), rel=1e-5)
    assert losses['loss_commitment'].item() == pytest.approx(0.25 * manual_sq.item(), rel=1e-5)
    assert {'loss_l1', 'loss_l2', 'psnr', 'codebook_usage', 'perplexity'} <= set(losses)

    enc, cb = model.encoder.conv_in.weight, model.codebook
    # reconstruction: reaches the encoder through the straight-through estimator, not the codebook
    g_enc, g_cb = torch.autograd.grad(losses['loss_l2'], [enc, cb], retain_graph=True, allow_unused=True)
    assert g_enc is not None and g_enc.abs().sum() > 0
    assert g_cb is None or g_cb.abs().sum() == 0
    # codebook term moves the codebook only; commitment term moves the encoder only
    g_enc, g_cb = torch.autograd.grad(losses['loss_codebook'], [enc, cb], retain_graph=True, allow_unused=True)
    assert (g_enc is None or g_enc.abs().sum() == 0) and g_cb.abs().sum() > 0
    g_enc, g_cb = torch.autograd.grad(losses['loss_commitment'], [enc, cb], retain_graph=True, allow_unused=True)
    assert g_enc.abs().sum() > 0 and (g_cb is None or g_cb.abs().sum() == 0)


def test_training_reduces_reconstruction_error():
    model = make_model(restart_interval=5)
    wrapper = OptimWrapper(torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3))
    data = dict(inputs=[((batch(8) + 1) * 127.5).round().byte()[i] for i in range(8)])
    first = model.train_step(data, wrapper)
    for _ in range(30):
        last = model.train_step(data, wrapper)
    assert last['loss_l2'] < 0.5 * first['loss_l2']
    assert last['psnr'] > first['psnr'] + 3
    assert int(model.loss.num_updates) == 31


def test_ema_update_moves_used_codes_to_their_assigned_mean():
    decay = 0.1
    model = make_model(ema_decay=decay, init_codebook_from_data=False, ema_eps=1e-5)
    before = model.codebook.detach().clone()
    x = batch()
    with torch.no_grad():
        rows, _ = model._latent_rows(x)
        codes = torch.cdist(rows, before).argmin(1)
    losses = model(x, mode='loss')
    assert 'loss_codebook' not in losses  # EMA replaces the codebook loss
    after = model.codebook.detach()
    counts = torch.bincount(codes, minlength=model.num_codes).float()
    sums = torch.zeros_like(before).index_add_(0, codes, rows)
    size = decay * 1.0 + (1 - decay) * counts  # EMA statistics started from the codebook (size 1)
    total = size.sum()
    smoothed = (size + 1e-5) / (total + model.num_codes * 1e-5) * total
    expected = (decay * before + (1 - decay) * sums) / smoothed[:, None]
    assert torch.allclose(after, expected, atol=1e-5)
    used = counts > 0
    assert used.any() and (~used).any()
    assert not torch.allclose(after[used], before[used])
    means = sums[used] / counts[used, None]  # used codes move most of the way to their cluster mean
    assert ((after[used] - means).norm(dim=1) < (before[used] - means).norm(dim=1)).all()
    assert torch.allclose(after[~used], before[~used], rtol=1e-3, atol=1e-6)


def test_dead_code_restart_reseeds_unused_codes_from_encoder_outputs():
    model = make_model(init_codebook_from_data=False, restart_interval=2, restart_threshold=1, restart_noise=0.0)
    with torch.no_grad():
        model.codebook[1:] = 1e3  # only code 0 can be chosen: every other code is dead
        model.codebook[0] = 0.0
    x = batch()
    first = model(x, mode='loss')
    assert first['codes_restarted'] == 0 and model.codebook[1:].eq(1e3).all()
    with torch.no_grad():
        rows, _ = model._latent_rows(x)
    second = model(x, mode='loss')
    assert second['codes_restarted'] == model.num_codes - 1
    new = model.codebook.detach()[1:]
    assert nearest_gap(new, rows) < 1e-6  # each restarted code is an encoder output
    assert torch.equal(model.codebook.detach()[0], torch.zeros_like(new[0]))
    assert model.loss.code_usage.sum() == 0  # counting restarts


def test_data_init_seeds_every_code_once():
    model = make_model(restart_noise=0.0)
    x = batch()
    with torch.no_grad():
        rows, _ = model._latent_rows(x)
    model(x, mode='loss')
    assert bool(model.loss.codebook_initialised)
    assert nearest_gap(model.codebook.detach(), rows) < 1e-6
    seeded = model.codebook.detach().clone()
    model(batch(seed=1), mode='loss')
    assert torch.equal(model.codebook.detach(), seeded)  # seeded once; no optimiser step here


def _maintenance_worker(rank: int, port: str, out_dir: str) -> None:
    """One of 2 gloo processes: data init, EMA and restarts on rank-specific batches."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        torch.manual_seed(100 + rank)  # different random picks on each rank
        model = VQGANAutoencoder(vqgan=dict(VQGAN_CFG), ema_decay=0.5, restart_interval=1).train()
        torch.manual_seed(0)
        model.load_state_dict(VQGANAutoencoder(vqgan=dict(VQGAN_CFG), ema_decay=0.5).state_dict())
        for step in range(3):
            model(batch(seed=10 * step + rank), mode='loss')  # each rank sees other images
        torch.save(dict(codebook=model.codebook.detach(), usage=model.loss.code_usage,
                        ema=model.loss.ema_embed_sum), f'{out_dir}/rank{rank}.pth')
    finally:
        dist.destroy_process_group()


def test_codebook_maintenance_is_identical_on_every_rank(tmp_path):
    """Seeding, EMA statistics and restarts use all-reduced counts and rank 0's picks (DDP-safe)."""
    import torch.multiprocessing as mp
    from conftest import free_port
    mp.start_processes(_maintenance_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')  # fork: the children inherit the imports (fast)
    rank0, rank1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in (0, 1))
    for key in ('codebook', 'usage', 'ema'):
        assert torch.equal(rank0[key], rank1[key]), key
    assert rank0['usage'].sum() == 0  # restarted after every step


def test_adaptive_weight_formula_on_a_toy_case():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a, b = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0])
    rec = (w * a).sum() + 0 * w.sum()
    g = (w * b).sum()
    assert adaptive_disc_weight(rec, g, w).item() == pytest.approx(5.0 / (1.0 + 1e-4))
    assert adaptive_disc_weight(rec, 1e-9 * g, w).item() == pytest.approx(1e4)  # clamped
    assert not adaptive_disc_weight(rec, g, w).requires_grad


def test_gan_train_step_updates_both_networks_after_disc_start():
    model = make_model(discriminator=dict(ndf=8, n_layers=1), disc_start=1, disc_weight=0.5)
    wrappers = OptimWrapperDict(
        generator=sgd_wrapper([p for n, p in model.named_parameters() if not n.startswith('loss.')]),
        discriminator=sgd_wrapper(model.loss.discriminator.parameters()))
    data = dict(inputs=[((batch() + 1) * 127.5).round().byte()[i] for i in range(4)])
    disc0 = copy.deepcopy(model.loss.discriminator.state_dict())
    log = model.train_step(data, wrappers)  # iteration 0 < disc_start: no GAN terms
    assert 'loss_g' not in log and 'loss_disc' not in log
    assert all(torch.equal(v, model.loss.discriminator.state_dict()[k]) for k, v in disc0.items())
    dec0 = model.decoder.conv_out.weight.detach().clone()
    d_grads_at_generator_step = []
    generator_step = wrappers['generator'].optimizer.step

    def record_step(*args, **kwargs):
        d_grads_at_generator_step.extend(p.grad for p in model.loss.discriminator.parameters())
        return generator_step(*args, **kwargs)

    wrappers['generator'].optimizer.step = record_step
    log = model.train_step(data, wrappers)
    # the generator's backward (through D(x')) leaves no gradient in D, which D's update would add up
    assert d_grads_at_generator_step and all(g is None or not g.any() for g in d_grads_at_generator_step)
    assert {'loss_g', 'loss_disc', 'disc_weight'} <= set(log) and log['disc_weight'] > 0
    assert not torch.equal(model.decoder.conv_out.weight, dec0)
    assert not torch.equal(model.loss.discriminator.main[0].weight, disc0['main.0.weight'])
    assert all(p.requires_grad for p in model.loss.discriminator.parameters())  # restored after the step
    with pytest.raises(ValueError, match='VQGANOptimWrapperConstructor'):
        model.train_step(data, wrappers['generator'])
    with pytest.raises(RuntimeError, match='train_step'):
        model(batch(), mode='loss')  # a GAN model trained by a bare forward would skip D


def test_patch_discriminator_and_hinge_loss():
    disc = PatchDiscriminator(in_channels=3, ndf=8, n_layers=2)
    assert disc(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 6, 6)
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0.0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == 1.0


def _lpips_file(path: Path) -> Path:
    torch.manual_seed(0)
    parts = dict(net=_VGG16Slices(), scaling_layer=_ScalingLayer(),
                 **{f'lin{i}': _NetLinLayer(c) for i, c in enumerate((64, 128, 256, 512, 512))})
    state = {f'loss.perceptual_loss.{name}.{k}': v for name, m in parts.items() for k, v in m.state_dict().items()}
    for k in state:  # positive linear weights, as trained LPIPS has
        if '.lin' in k:
            state[k] = state[k].abs()
    torch.save({'state_dict': state}, path)
    return path


def test_perceptual_loss_needs_local_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match='never downloads'):
        make_model(perceptual=dict(checkpoint=str(tmp_path / 'missing.pth')))
    torch.save({'net.slice1.0.weight': torch.zeros(64, 3, 3, 3)}, tmp_path / 'partial.pth')
    with pytest.raises(ValueError, match='lack'):
        LPIPSPerceptualLoss(tmp_path / 'partial.pth')
    weights = _lpips_file(tmp_path / 'lpips.pth')  # taming-style keys (loss.perceptual_loss.*)
    lpips = LPIPSPerceptualLoss(weights)
    x, y = batch(2), batch(2, seed=3)
    assert lpips(x, x).abs().max() < 1e-6 and (lpips(x, y) > 0).all()
    model = make_model(perceptual=dict(checkpoint=str(weights)), perceptual_weight=0.5)
    losses = model(x, mode='loss')
    assert losses['loss_perceptual'] > 0
    assert not any(p.requires_grad for p in model.loss.perceptual_loss.parameters())
    assert not any(k.startswith('loss.') for k in model.vqgan_state_dict())


# ----------------------------------------------------------------------------- data, metric, export
def test_data_preprocessor_range_and_crop_schedule():
    from mmengine.logging import MessageHub
    from mmdat.models import VQGANDataPreprocessor
    pre = VQGANDataPreprocessor(crop_size=8, crop_until=10)
    images = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8) for _ in range(2)]
    out = pre(dict(inputs=images), training=False)['inputs']
    assert out.shape == (2, 3, 16, 16)
    assert torch.allclose(out, torch.stack(images).float() / 127.5 - 1, atol=1e-6)
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 9)
    cropped = pre(dict(inputs=images), training=True)['inputs']
    assert cropped.shape == (2, 3, 8, 8)
    # one window for the whole batch, somewhere inside the image
    found = [(t, l) for t in range(9) for l in range(9) if torch.equal(cropped, out[..., t:t + 8, l:l + 8])]
    assert found
    hub.update_info('iter', 10)
    assert pre(dict(inputs=images), training=True)['inputs'].shape == (2, 3, 16, 16)
    hub.update_info('iter', 0)
    with pytest.raises(ValueError, match='exceeds'):
        VQGANDataPreprocessor(crop_size=32)(dict(inputs=images), training=True)


def test_shape_image_dataset_matches_the_classification_files(tmp_path):
    from PIL import Image
    info = make_shapes_classification(tmp_path / 'cls', num_per_class=dict(train=1, val=2), size=16, seed=3)
    dataset = ShapeImageDataset(num_images=8, size=16, split='val', seed=3)
    assert len(dataset) == 8
    classes = info['classes']
    for i in range(8):
        item = dataset.get_data_info(i)
        path = tmp_path / 'cls' / 'val' / classes[i % len(classes)] / f'{i // len(classes)}.png'
        assert np.array_equal(item['img'], np.asarray(Image.open(path).convert('RGB')))
        assert item['img_shape'] == (16, 16)
    with pytest.raises(ValueError, match='num_images'):
        ShapeImageDataset(num_images=0)


def test_reconstruction_metric():
    metric = VQGANReconstructionMetric()
    samples = [dict(mse=torch.tensor(0.01), codes=torch.tensor([[0, 1], [0, 1]]), num_codes=8),
               dict(mse=torch.tensor(0.0001), codes=torch.tensor([[2, 3], [2, 3]]), num_codes=8)]
    metric.process({}, samples)
    result = metric.evaluate(2)
    assert result['vqgan/psnr'] == pytest.approx(30.0)
    assert result['vqgan/psnr_of_mean_mse'] == pytest.approx(-10 * math.log10(0.00505))
    assert result['vqgan/codebook_usage'] == 4 and result['vqgan/codebook_usage_ratio'] == 0.5
    assert result['vqgan/perplexity'] == pytest.approx(4.0)
    with pytest.raises(KeyError, match='mse'):
        metric.process({}, [dict(codes=torch.zeros(1, 1, dtype=torch.long), num_codes=8)])


def test_predict_matches_vqgan_inference_and_export_round_trip(tmp_path):
    model = make_model()
    model(batch(), mode='loss')  # data init: a codebook worth exporting
    model.eval()
    x = batch(3, size=15)  # not a multiple of the downsampling factor
    samples = model(x, mode='predict')
    images = (x + 1) / 2
    rec = model.vqgan.reconstruct(images)
    for i, s in enumerate(samples):
        assert torch.equal(s.rec_img, rec[i])
        mse = (rec[i] - images[i]).square().mean()
        assert s.psnr.item() == pytest.approx(-10 * math.log10(mse.item()), rel=1e-5)
        assert s.codes.shape == (8, 8) and s.num_codes == TINY_VQGAN['n_embed']
    path = save_vqgan_checkpoint(model.vqgan_state_dict(), tmp_path / 'v.pth', half=False, meta=dict(a=1))
    loaded = VQGAN(**TINY_VQGAN, checkpoint=path)
    assert torch.equal(loaded.reconstruct(images), rec)
    assert torch.load(path, weights_only=True)['meta'] == dict(a=1)


# ----------------------------------------------------------------------------- tools
def tiny_train_config(directory: Path, max_iters: int = 4) -> str:
    """A tiny GAN + EMA VQGAN run on 16x16 shapes (2 optimisers, schedulers, hooks, validation)."""
    return write_config(directory, 'tiny_vqgan_train.py', f"""
        _base_ = ['{REPO}/configs/vqgan/_base_/default_runtime.py']
        model = dict(type='VQGANAutoencoder', vqgan={VQGAN_CFG!r}, l1_weight=0.5, ema_decay=0.9,
                     restart_interval=2, discriminator=dict(ndf=8, n_layers=1), disc_start=2)
        pipeline = [dict(type='RandomFlip', prob=0.5, direction='horizontal'), dict(type='PackInputs')]
        train_dataloader = dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
                                dataset=dict(type='ShapeImageDataset', num_images=16, size=16, pipeline=pipeline))
        val_dataloader = dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                              dataset=dict(type='ShapeImageDataset', num_images=8, size=16, split='val',
                                           test_mode=True, pipeline=[dict(type='PackInputs')]))
        test_dataloader = val_dataloader
        optim_wrapper = dict(constructor='VQGANOptimWrapperConstructor',
                             generator=dict(optimizer=dict(type='Adam', lr=1e-3, betas=(0.5, 0.9))),
                             discriminator=dict(optimizer=dict(type='Adam', lr=1e-3, betas=(0.5, 0.9))))
        param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)]
        train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters}, val_interval=2)
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=3))
        custom_hooks = [dict(type='VQGANVisualizationHook', interval=2, max_images=2),
                        dict(type='VQGANExportHook', out_file='exported.pth', meta=dict(note='test'))]
        """)


def test_train_resume_load_and_test_through_the_tools(tmp_path):
    config = tiny_train_config(tmp_path)
    work = tmp_path / 'work'
    out = run_tool([sys.executable, 'tools/train.py', config, '--work-dir', str(work)],
                   cwd=REPO)
    assert (work / 'iter_4.pth').is_file() and (work / 'exported.pth').is_file()
    for key in ('loss_l2', 'loss_commitment', 'loss_g', 'loss_disc', 'psnr', 'codebook_usage', 'vqgan/psnr',
                'vqgan/codebook_usage'):
        assert key in out, key
    pictures = list(work.rglob('vis_image/vqgan_*reconstruction*.png'))
    assert any('train' in p.name for p in pictures) and any('val' in p.name for p in pictures)
    exported = torch.load(work / 'exported.pth', weights_only=True)
    assert exported['meta']['iterations'] == 4 and exported['meta']['note'] == 'test'
    assert 'psnr' in exported['meta'] and not any(k.startswith('loss.') for k in exported['state_dict'])

    out = run_tool([sys.executable, 'tools/train.py', config, '--work-dir', str(work),
                    '--resume', '--cfg-options', 'train_cfg.max_iters=6'], cwd=REPO)
    assert re.search(r'resumed', out, re.IGNORECASE) and (work / 'iter_6.pth').is_file()
    ckpt = torch.load(work / 'iter_6.pth', map_location='cpu', weights_only=False)
    state = ckpt['state_dict']
    assert int(state['loss.num_updates']) == 6  # continued from iteration 4, not restarted
    assert set(ckpt['optimizer']) == {'generator', 'discriminator'}

    # the mmengine checkpoint loads into the frozen VQGAN, with the trained model's reconstructions
    trained = VQGANAutoencoder(vqgan=dict(VQGAN_CFG), l1_weight=0.5, ema_decay=0.9,
                               discriminator=dict(ndf=8, n_layers=1))
    trained.load_state_dict(state)
    vqgan = VQGAN(**TINY_VQGAN, checkpoint=str(work / 'iter_6.pth'))
    images = (batch(4, size=16, seed=5) + 1) / 2
    assert torch.equal(vqgan.reconstruct(images), trained.eval().vqgan.reconstruct(images))
    assert torch.equal(vqgan.encode(images), trained.vqgan.encode(images))

    out = run_tool([sys.executable, 'tools/test.py', config, str(work / 'iter_6.pth'),
                    '--work-dir', str(tmp_path / 'test')], cwd=REPO)
    psnr = float(re.search(r"vqgan/psnr'?:\s*([0-9.]+)", out).group(1))
    usage = int(float(re.search(r"vqgan/codebook_usage'?:\s*([0-9.]+)", out).group(1)))
    assert 5 < psnr < 60 and 1 <= usage <= TINY_VQGAN['n_embed']


# ----------------------------------------------------------------------------- the shipped asset (issue 19)
def test_short_tiny_shapes_run_leaves_the_shipped_asset_byte_identical(tmp_path):
    """configs/vqgan/tiny-shapes.py exports into its work dir; the asset is replaced only by the
    explicit install step. (A regression would overwrite the asset: it is restored, then the test fails.)"""
    shipped = TINY_VQGAN_CHECKPOINT.read_bytes()
    work = tmp_path / 'work'
    try:
        run_tool([sys.executable, 'tools/train.py', 'configs/vqgan/tiny-shapes.py', '--work-dir', str(work),
                  '--cfg-options', 'train_cfg.max_iters=2'], cwd=REPO)
    finally:
        changed = TINY_VQGAN_CHECKPOINT.read_bytes() != shipped
        if changed:
            TINY_VQGAN_CHECKPOINT.write_bytes(shipped)
    assert not changed, 'a 2-iteration run replaced mmdat/assets/tiny_vqgan_shapes.pth'
    exported = torch.load(work / 'tiny_vqgan_shapes.pth', weights_only=True)
    assert exported['meta']['iterations'] == 2 and 'psnr' in exported['meta']


def test_export_hook_refuses_a_destination_inside_the_package(tmp_path):
    from types import SimpleNamespace
    for out_file, work_dir in ((str(TINY_VQGAN_CHECKPOINT), tmp_path),
                               ('../../mmdat/assets/tiny_vqgan_shapes.pth', REPO / 'work_dirs' / 'x')):
        with pytest.raises(ValueError, match='inside the mmdat package'):
            VQGANExportHook(out_file=out_file).before_train(SimpleNamespace(work_dir=str(work_dir)))
    assert VQGANExportHook().output_path(tmp_path) == (tmp_path / 'vqgan.pth').resolve()


def test_install_step_refuses_a_worse_vqgan_unless_forced(tmp_path):
    shipped = TINY_VQGAN_CHECKPOINT.read_bytes()
    dest = tmp_path / 'asset.pth'  # a copy stands in for the shipped file
    dest.write_bytes(shipped)
    torch.manual_seed(0)
    worse = save_vqgan_checkpoint(VQGAN(**TINY_VQGAN_CONFIG).state_dict(), tmp_path / 'untrained.pth')

    proc = subprocess.run([sys.executable, 'tools/model_converters/install_tiny_vqgan.py', str(worse),
                           '--dest', str(dest), '--num-images', '32'], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 1 and 'refused' in proc.stdout, proc.stdout + proc.stderr
    assert dest.read_bytes() == shipped

    forced = install_tiny_vqgan(worse, force=True, destination=dest, num_images=32)  # 32 of 128: faster
    assert forced.installed and 'forced' in forced.message and dest.read_bytes() == worse.read_bytes()
    shipped_psnr, worse_psnr = forced.current_psnr, forced.candidate_psnr
    assert shipped_psnr > 24 and worse_psnr < shipped_psnr - 5  # the shipped asset: 25.7 dB
    assert f'{worse_psnr:.2f} dB' in proc.stdout and f'{shipped_psnr:.2f} dB' in proc.stdout
    better = install_tiny_vqgan(TINY_VQGAN_CHECKPOINT, destination=dest, num_images=32)  # not worse: installed
    assert better.installed and better.current_psnr == pytest.approx(worse_psnr)
    assert dest.read_bytes() == shipped and TINY_VQGAN_CHECKPOINT.read_bytes() == shipped
    with pytest.raises(FileNotFoundError, match='tiny-shapes.py'):
        install_tiny_vqgan(tmp_path / 'missing.pth', destination=dest)
