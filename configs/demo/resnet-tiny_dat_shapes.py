# The embedded default: a tiny ResNet trained with DAT on the built-in shapes dataset
# (mmdat.datasets.make_shapes_classification, 32x32) with the tiny VQGAN shipped in mmdat/assets.
# CPU, a few minutes: `make demo` (tools/demo.py writes 1000 train / 50 held-out images per class,
# then trains this config without and with DAT and tests both under corruptions).
# Measured on the plain model (held-out top-1, same seed): the former recipe (64 images per class)
# memorises them (100% train, ~26% held-out); 500 per class, 8 epochs, AdamW lr 3e-3: 45% (near
# chance for 5 epochs); lr 1e-3: 94%; 1000 per class, 4 epochs (the same 500 iterations), lr 1e-3: 97.5%.
# Data: tools/train.py does not write the dataset; first run
#     python tools/demo.py --task cls --data-only   # writes data/shapes_cls/ (under a minute)
# then: python tools/train.py configs/demo/resnet-tiny_dat_shapes.py
_base_ = ['mmpretrain::_base_/default_runtime.py', '../_base_/dat/dat_runtime.py', '../_base_/dat/robustness.py']

data_root = 'data/shapes_cls'
classes = ('circle', 'square', 'triangle', 'cross')

model = dict(
    type='ImageClassifier',
    # zero_init_residual=False: with mmpretrain's default (True) the loss stayed at chance longer.
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16, zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=len(classes), in_channels=128,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, )))

data_preprocessor = dict(
    type='DATClsDataPreprocessor',
    num_classes=len(classes),
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    dat={{_base_.dat}})

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 ann_file='meta/train.txt', classes=classes, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 ann_file='meta/val.txt', classes=classes, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 4
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
# Robustness while training: every epoch, the held-out images clean and under 5 corruptions at severity 3
# (robustness/mPC next to accuracy/top1 in the log and curves; the best checkpoint by mPC is kept).
val_cfg = {{_base_.robustness_val_loop}}
test_cfg = dict()

# The tiny VQGAN trained on the shapes data, shipped in mmdat/assets (preset 'tiny-shapes').
dat_vqgan = dict(type='VQGAN', preset='tiny-shapes', checkpoint='default')
custom_hooks = [dict(type='DATHook', vqgan=dat_vqgan, vis_interval=250, vis_max_images=4)]

default_hooks = dict(logger=dict(type='LoggerHook', interval=50),
                     checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=1,
                                     save_best='robustness/mPC', rule='greater'))
randomness = dict(seed=0)
