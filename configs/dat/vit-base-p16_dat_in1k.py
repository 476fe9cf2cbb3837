# ViT-B/16 on ImageNet-1k from scratch with DAT: the reference recipe of the DAT paper.
# Paper target (DAT README): 81.46 top-1 on ImageNet val, 44.65 mCE on ImageNet-C (lower is
# better); also V2 70.83, R 47.34, A 30.15, Sketch 34.77, Stylized 23.13.
# Recipe: 300 epochs, 8 GPUs x 128 (global batch 1024), AdamW lr 1e-3, wd 0.05, cosine, 5 warm-up
# epochs, drop-path 0.25, RandAugment m9 mstd0.5, label smoothing 0.1, random erasing 0.25,
# Mixup 0.8, CutMix 1.0, EMA 0.99992, AMP (run with --amp), inputs with mean 0 / std 1 (in [0, 1]).
# The DeiT-B config already carries the optimizer, schedule, augmentations, Mixup/CutMix, label
# smoothing and EMA; what follows is the diff to the DAT recipe.
_base_ = ['mmpretrain::deit/deit-base_16xb64_in1k.py', '../_base_/dat/dat_runtime.py']

model = dict(backbone=dict(arch='base', drop_path_rate=0.25))

data_preprocessor = dict(
    type='DATClsDataPreprocessor',
    mean=[0.0, 0.0, 0.0],
    std=[255.0, 255.0, 255.0],
    dat={{_base_.dat}})

train_dataloader = dict(batch_size=128)  # x 8 GPUs = 1024
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)
]
train_cfg = dict(max_epochs=300)

# EMA decay 0.99992 = mmengine momentum 8e-5; DAT's hook next to it.
custom_hooks = [
    {{_base_.dat_hook}},
    dict(type='EMAHook', momentum=8e-5, priority='ABOVE_NORMAL'),
]
