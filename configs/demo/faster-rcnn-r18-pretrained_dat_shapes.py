# The detection demo (`make demo TASK=det`): Faster R-CNN fine-tuned from a classification-pretrained
# backbone, the protocol of real detectors (ImageNet pretraining, then COCO) and of adversarial
# training for detection (Det-AdvProp, DAT: the attack is applied at the fine-tuning stage).
# mmdat.apis.run_demo first trains configs/demo/resnet18-det-backbone_shapes-pretrain.py (the same
# ResNet-18 classifying 48 x 48 shape images) and sets `model.backbone.init_cfg` to
# dict(type='Pretrained', checkpoint=<its backbone>, prefix='backbone.'); without that init the
# backbone starts from scratch (as the former demo did, which reached 15 box AP).
# Fine-tuning as in mmdet's configs: stem and first stage frozen, BatchNorm statistics frozen
# (norm_eval), the rest trained. Data: mmdat.datasets.make_shapes_coco, images of 48-80 x 64-96.
# Measured on the plain model (200 training / 50 held-out images, seed 0, held-out box AP after 12
# epochs): backbone pretrained to 45% top-1 (500 images per class, 4 epochs, zero-init residuals)
# barely moved the loss; pretrained to 98% (1000 per class): SGD lr 0.02 diverged (NaN loss) without
# gradient clipping, 35.8 with it; lr 0.01 with clipping at norm 10: 55.7.
# Data: tools/train.py does not write the datasets; first run
#     python tools/demo.py --task det --data-only   # data/shapes_coco/ and the pretraining data data/shapes_cls48/
# To train it yourself with the pretrained backbone, run the demo once (it writes
# work_dirs/demo/det/pretrain/backbone.pth) and inherit this config with
# model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='work_dirs/demo/det/pretrain/backbone.pth',
#                                          prefix='backbone.')))
_base_ = ['./faster-rcnn-tiny_dat_shapes.py']

base_channels = 16
neck_channels = 32

model = dict(
    backbone=dict(depth=18, base_channels=base_channels, frozen_stages=1, norm_eval=True, init_cfg=None),
    neck=dict(in_channels=[base_channels * 2 ** i for i in range(4)], out_channels=neck_channels),
    rpn_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(in_channels=neck_channels, fc_out_channels=64)))

train_cfg = dict(max_epochs=12, val_interval=12)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=10, norm_type=2))
default_hooks = dict(checkpoint=dict(interval=12, max_keep_ckpts=1))
