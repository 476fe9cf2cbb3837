# A tiny FCN trained with DAT on the built-in shapes segmentation data
# (mmdat.datasets.make_shapes_ade20k: ADE20K layout, images of 48-80 pixels, label 0 = background,
# ignored through reduce_zero_label), with the tiny VQGAN shipped in mmdat. CPU, well under a second
# per iteration. What follows is the diff to mmseg's FCN R50-D8 on ADE20K: a ResNetV1c-18 with 8
# base channels (no pre-trained weights), thin heads, 3 classes, 48 x 48 crops, plain BN (SyncBN
# needs GPUs: torch's SyncBatchNorm refuses CPU tensors in a distributed run).
_base_ = ['mmseg::fcn/fcn_r50-d8_4xb4-80k_ade20k-512x512.py', '../_base_/dat/dat_runtime.py']

data_root = 'data/shapes_ade20k'
classes = ('circle', 'square', 'triangle')
metainfo = dict(classes=classes, palette=[[220, 20, 60], [0, 128, 255], [0, 180, 0]])
crop_size = (48, 48)
img_scale = (192, 48)
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    pretrained=None,
    data_preprocessor=dict(type='DATSegDataPreProcessor', size=crop_size, dat={{_base_.dat}}),
    backbone=dict(depth=18, stem_channels=8, base_channels=8, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=64, channels=16, num_classes=len(classes), norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=32, channels=8, num_classes=len(classes), norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# ADE20KDataset maps any class list other than its own 150 names through a label map (and refuses
# names it does not know), so the shapes are read with the base dataset class, ADE20K's suffixes
# and reduce_zero_label: png value c (1..3) becomes class c - 1, the background 255 (ignored).
shapes_dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
               seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(shapes_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(shapes_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=300, val_interval=100)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=300, by_epoch=False)]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=100, max_keep_ckpts=1))

# The tiny VQGAN trained on the shapes data, shipped in mmdat/assets (preset 'tiny-shapes').
dat_vqgan = dict(type='VQGAN', preset='tiny-shapes', checkpoint='default')
custom_hooks = [dict(type='DATHook', vqgan=dat_vqgan, vis_interval=50, vis_max_images=2)]
randomness = dict(seed=0)
