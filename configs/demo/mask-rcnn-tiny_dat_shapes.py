# A tiny Mask R-CNN trained with DAT on the built-in shapes data (polygon masks): the tiny
# Faster R-CNN of this folder plus mmdet's Mask R-CNN mask branch, thinned out.
# Padding of the images is restored bit for bit by DAT; gt masks are padded by mmdet as usual and
# shared by the clean and the adversarial halves.
# Data: tools/train.py does not write the dataset; first run
#     python tools/demo.py --task det --data-only   # writes data/shapes_coco/ (under a minute)
# then: python tools/train.py configs/demo/mask-rcnn-tiny_dat_shapes.py
_base_ = ['./faster-rcnn-tiny_dat_shapes.py']

model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=16,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=2,
            in_channels=16,
            conv_out_channels=16,
            num_classes={{_base_.model.roi_head.bbox_head.num_classes}},
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
