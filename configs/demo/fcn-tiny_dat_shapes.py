# A tiny FCN trained with DAT on the built-in shapes segmentation data
# (mmdat.datasets.make_shapes_ade20k: ADE20K layout, images of 48-80 pixels, label 0 = background,
# ignored through reduce_zero_label), with the tiny VQGAN shipped in mmdat. CPU, well under a second
# per iteration. What follows is the diff to mmseg's FCN R50-D8 on ADE20K: a ResNetV1c-18 with 16
# base channels (no pre-trained weights), thin heads, 3 classes, 48 x 48 crops, plain BN (SyncBN
# needs GPUs: torch's SyncBatchNorm refuses CPU tensors in a distributed run), AdamW.
# Measured on the plain model (held-out mIoU over the 3 shapes, same seed): the former recipe
# (8 channels, batch 4, SGD lr 0.01, 300 iterations) predicts one class everywhere (14.3; ~16
# after 2000 iterations). Per-pixel shape classes are learnt only after a long plateau (the loss
# stays at chance, then drops), which depends on the number of crops seen: with 16 channels,
# AdamW lr 1e-3 and the loss averaged over the labelled pixels (mmseg's default averages over the
# whole crop, most of it ignored background): batch 4, 2000 iterations: 27; batch 8: 28 after
# 1000, 71 after 2000, 82 after 4000 (poly over 4000). The lr must stay high through the jump:
# poly to 1e-5 over 2000 gave 41, poly to 5e-4 gave 74 (65.6 in the demo run). Background as a
# 4th class instead of ignored: 62 after 4000 (shape IoUs only 63/51/41). DAT costs ~0.18 s per
# iteration here (plain ~0.03), so 2000 iterations keep `make demo TASK=seg` under 10 min.
# Data: tools/train.py does not write the dataset; first run
#     python tools/demo.py --task seg --data-only   # writes data/shapes_ade20k/ (under a minute)
# then: python tools/train.py configs/demo/fcn-tiny_dat_shapes.py
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
    # zero_init_residual=False: as in the cls demo, the loss leaves chance level sooner.
    backbone=dict(depth=18, stem_channels=16, base_channels=16, norm_cfg=norm_cfg, zero_init_residual=False),
    # avg_non_ignore: average the loss over the labelled (shape) pixels, not over the whole crop.
    decode_head=dict(in_channels=128, channels=32, num_classes=len(classes), norm_cfg=norm_cfg,
                     loss_decode=dict(avg_non_ignore=True)),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes=len(classes), norm_cfg=norm_cfg,
                        loss_decode=dict(avg_non_ignore=True)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
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
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(shapes_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(shapes_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.01))
train_cfg = dict(max_iters=2000, val_interval=1000)
param_scheduler = [dict(type='PolyLR', eta_min=5e-4, power=0.9, begin=0, end=2000, by_epoch=False)]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1000, max_keep_ckpts=1))

# The tiny VQGAN trained on the shapes data, shipped in mmdat/assets (preset 'tiny-shapes').
dat_vqgan = dict(type='VQGAN', preset='tiny-shapes', checkpoint='default')
custom_hooks = [dict(type='DATHook', vqgan=dat_vqgan, vis_interval=250, vis_max_images=2)]
randomness = dict(seed=0)
