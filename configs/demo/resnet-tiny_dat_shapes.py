# The embedded default: a tiny ResNet trained with DAT on the built-in shapes dataset
# (mmdat.datasets.make_shapes_classification) with the tiny VQGAN shipped in mmdat/assets.
# CPU, a few minutes: `make demo` (tools/demo.py writes the data, then trains and tests).
_base_ = ['mmpretrain::_base_/default_runtime.py', '../_base_/dat/dat_runtime.py']

data_root = 'data/shapes_cls'
classes = ('circle', 'square', 'triangle', 'cross')

model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16),
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
    batch_size=16,
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

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.01))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=6, by_epoch=True, eta_min=1e-4)]
train_cfg = dict(by_epoch=True, max_epochs=6, val_interval=2)
val_cfg = dict()
test_cfg = dict()

# The tiny VQGAN trained on the shapes data (tools/train_tiny_vqgan.py).
dat_vqgan = dict(type='VQGANPreset', preset='tiny-shapes', checkpoint='default')
custom_hooks = [dict(type='DATHook', vqgan=dat_vqgan, vis_interval=50, vis_max_images=4)]

default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1))
randomness = dict(seed=0)
