# The embedded tiny VQGAN (preset 'tiny-shapes': mmdat/assets/tiny_vqgan_shapes.pth), trained on the
# built-in shape images on a CPU in a few minutes by ONE command from the repository root:
#     python tools/train.py configs/vqgan/tiny-shapes.py
# Logs, checkpoints and input | reconstruction pictures go to work_dirs/tiny-shapes/; at the end the
# held-out PSNR and codebook usage are printed and the VQGAN alone is written to
# work_dirs/tiny-shapes/tiny_vqgan_shapes.pth (with those numbers in its meta). Training never
# writes into the package: to make that file the shipped asset, run the explicit step
#     python tools/model_converters/install_tiny_vqgan.py work_dirs/tiny-shapes/tiny_vqgan_shapes.pth
# which measures both files on the held-out images and refuses a worse model unless --force.
# Recipe: VQ-VAE objective (MSE + codebook + 0.25 x commitment, straight-through), Adam 6e-3 with
# warm-up and cosine decay, codebook seeded from encoder outputs, dead codes re-seeded every 50
# iterations until iteration 750; 800 iterations of 32 fresh images (each image is seen once),
# random 16x16 crops (one window per batch) for the first 700 iterations, full 32x32 images after.
_base_ = ['./_base_/default_runtime.py']

image_size = 32
batch_size = 32
max_iters = 800
full_size_iters = 100  # the last iterations see whole images (attention at the test-time grid)

# must equal mmdat.assets.TINY_VQGAN_CONFIG (checked by tests/test_vqgan_trainer.py)
tiny_vqgan = dict(type='VQGAN', ch=32, ch_mult=[1, 1], num_res_blocks=1, attn_resolutions=[16], resolution=32,
                  z_channels=8, embed_dim=8, n_embed=256)
model = dict(
    type='VQGANAutoencoder',
    vqgan=tiny_vqgan,
    data_preprocessor=dict(type='VQGANDataPreprocessor', crop_size=16, crop_until=max_iters - full_size_iters),
    l1_weight=0.0,
    l2_weight=1.0,
    codebook_weight=1.0,
    beta=0.25,
    init_codebook_from_data=True,
    restart_interval=50,
    restart_end=max_iters - 50)

train_pipeline = [dict(type='RandomFlip', prob=0.5, direction='horizontal'), dict(type='PackInputs')]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    dataset=dict(type='ShapeImageDataset', num_images=batch_size * max_iters, size=image_size, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
# held out: the val split of make_shapes_classification(num_per_class=32, size=32, seed=0)
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(type='ShapeImageDataset', num_images=128, size=image_size, split='val', test_mode=True,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(type='Adam', lr=6e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', T_max=max_iters - 20, eta_min=3e-4, by_epoch=False, begin=20, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)

default_hooks = dict(checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
custom_hooks = [
    dict(type='VQGANVisualizationHook', interval=200, max_images=4),
    dict(type='VQGANExportHook', out_file='tiny_vqgan_shapes.pth',  # in the work dir
         meta=dict(trained_on='mmdat synthetic shapes: ShapeImageDataset(split=train, size=32, seed=0), '
                              '25600 images, each seen once',
                   objective='VQ-VAE: MSE + codebook + 0.25 commitment (straight-through), Adam; '
                             'configs/vqgan/tiny-shapes.py',
                   eval='VQGANReconstructionMetric on the 128 held-out val images (split=val, seed=0): '
                        'mean per-image PSNR (dB), codebook_usage = distinct codes')),
]
