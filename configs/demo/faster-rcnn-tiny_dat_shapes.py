# A tiny Faster R-CNN trained with DAT on the built-in shapes detection data
# (mmdat.datasets.make_shapes_coco: COCO format, images of 48-80 x 64-96 pixels), with the tiny
# VQGAN shipped in mmdat. CPU, well under a second per iteration. What follows is the diff to mmdet's
# Faster R-CNN R50-FPN 1x: a ResNet-18 with 8 base channels (no pre-trained weights), thin FPN and
# heads, 3 classes, small anchors and sample counts, images of at most 96 x 64 pixels.
# Data: tools/train.py does not write the dataset; first run
#     python tools/demo.py --task det --data-only   # writes data/shapes_coco/ (under a minute)
# then: python tools/train.py configs/demo/faster-rcnn-tiny_dat_shapes.py
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '../_base_/dat/dat_det_runtime.py']

data_root = 'data/shapes_coco/'
classes = ('circle', 'square', 'triangle')
metainfo = dict(classes=classes, palette=[(220, 20, 60), (0, 128, 255), (0, 180, 0)])
img_scale = (96, 64)

model = dict(
    data_preprocessor=dict(type='DATDetDataPreprocessor', dat={{_base_.dat}}),
    backbone=dict(depth=18, base_channels=8, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=len(classes))),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# 12 epochs: on 200 training images (`make demo TASK=det`) the plain model reached 6.1 box AP after
# 6 epochs and 16.5 after 12 (held-out, CPU: ~2 s per plain epoch, ~16 s with DAT).
train_cfg = dict(max_epochs=12, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[10], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.01))

# The tiny VQGAN trained on the shapes data, shipped in mmdat/assets (preset 'tiny-shapes').
dat_vqgan = dict(type='VQGAN', preset='tiny-shapes', checkpoint='default')
custom_hooks = [dict(type='DATHook', vqgan=dat_vqgan, vis_interval=100, vis_max_images=2)]

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=4, max_keep_ckpts=1))
randomness = dict(seed=0)
