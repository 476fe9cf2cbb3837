# Classification pretraining of the detection demo's backbone (the "ImageNet" stage before COCO):
# the ResNet-18 of configs/demo/faster-rcnn-r18-pretrained_dat_shapes.py (mmdet's ResNet class, same
# depth and widths, so its state dict loads into the detector key for key) learns to classify the
# built-in shapes (mmdat.datasets.make_shapes_classification, 4 classes) at 48 x 48 pixels: shapes of
# 10-22 pixels radius, the size range of the objects in the detection images (6-24 pixels).
# `make demo TASK=det` (mmdat.apis.run_demo) trains it once per seed, keeps its backbone in
# <work_dir>/pretrain/backbone.pth and reuses it while config, data and seed are unchanged.
# Measured (seed 0, held-out top-1): 500 images per class, 4 epochs, mmdet's zero-initialised
# residuals: 45% (the loss left chance level only in the last epoch); 1000 per class, residuals
# initialised normally (as in the cls demo): 98%.
# The recipe is the cls demo's (AdamW 1e-3, 4 epochs, cosine) without DAT, with a 50-iteration warm-up.
# Data: tools/train.py does not write the dataset; first run
#     python tools/demo.py --task det --data-only   # writes data/shapes_cls48/ (and the detection data)
_base_ = ['./resnet-tiny_dat_shapes.py']

data_root = 'data/shapes_cls48'
base_channels = 16

model = dict(
    backbone=dict(_delete_=True, type='mmdet.ResNet', depth=18, base_channels=base_channels, out_indices=(3, ),
                  frozen_stages=-1, norm_eval=False, style='pytorch', zero_init_residual=False, init_cfg=None),
    head=dict(in_channels=8 * base_channels))

# the detector's normalisation (mmdet's Faster R-CNN: ImageNet mean/std, RGB), no DAT
data_preprocessor = dict(_delete_=True, type='ClsDataPreprocessor', num_classes=4,
                         mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
custom_hooks = []

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max={{_base_.max_epochs}}, by_epoch=True, begin=0, end={{_base_.max_epochs}},
         eta_min=1e-5)]
train_cfg = dict(val_interval={{_base_.max_epochs}})
