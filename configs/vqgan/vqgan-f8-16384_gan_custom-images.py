# A DAT-sized VQGAN (the OpenImages f8, 16384-code architecture DAT uses) trained from scratch on
# your own images (medical, aerial, documents, ...), taming-style: L1 + (optional) LPIPS + codebook /
# commitment terms, then a PatchGAN with the adaptive weight from `disc_start`. GPU job:
#     tools/dist_train.sh configs/vqgan/vqgan-f8-16384_gan_custom-images.py 8 \
#         --cfg-options data_root=data/my_images/
# Put the images (any layout, any of mmpretrain's image extensions) under data_root/train and
# data_root/val. Use the result for DAT with
#     dict(type='VQGAN', preset='openimages-f8-16384', checkpoint='work_dirs/<run>/vqgan.pth')
# Perceptual loss: only from local weights (nothing is downloaded); set
#     model.perceptual=dict(checkpoint='path/to/lpips_vgg.pth')   (see LPIPSPerceptualLoss)
# GAN training runs through VQGANAutoencoder.train_step (two optimisers): it is single-process; for
# multi-GPU training leave the discriminator out (model.discriminator=None, plain optim_wrapper).
_base_ = ['./_base_/default_runtime.py']

data_root = 'data/my_images/'
image_size = 256
batch_size = 12  # per GPU
max_iters = 200000

model = dict(
    type='VQGANAutoencoder',
    vqgan=dict(type='VQGAN', preset='openimages-f8-16384', checkpoint=None),  # None: from scratch
    data_preprocessor=dict(type='VQGANDataPreprocessor', bgr_to_rgb=True),  # LoadImageFromFile gives BGR
    l1_weight=1.0,
    l2_weight=0.0,
    codebook_weight=1.0,
    beta=0.25,
    init_codebook_from_data=True,
    restart_interval=1000,
    restart_end=max_iters // 2,
    discriminator=dict(in_channels=3, ndf=64, n_layers=3),
    disc_start=50000,
    disc_weight=0.75,
    disc_loss='hinge',
    perceptual=None,
    perceptual_weight=1.0)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=image_size, edge='short'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train', with_label=False,
                 pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val', with_label=False,
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader

# taming: Adam, betas (0.5, 0.9), lr 4.5e-6 x total batch size
optim_wrapper = dict(
    constructor='VQGANOptimWrapperConstructor',
    generator=dict(optimizer=dict(type='Adam', lr=5.4e-5, betas=(0.5, 0.9))),
    discriminator=dict(optimizer=dict(type='Adam', lr=5.4e-5, betas=(0.5, 0.9))))
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=max_iters)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000, max_keep_ckpts=3))
custom_hooks = [dict(type='VQGANVisualizationHook', interval=2000, max_images=4),
                dict(type='VQGANExportHook', out_file='vqgan.pth')]
