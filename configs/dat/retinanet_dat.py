# RetinaNet R50-FPN 1x on COCO with Discrete Adversarial Training.
# Upstream baseline: mmdet retinanet_r50_fpn_1x_coco, 36.5 box AP (model zoo); in mmdet's COCO-C
# benchmark 35.6 clean AP, 17.8 mPC, 50.1% rPC.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/dat/dat_det_runtime.py']

model = dict(data_preprocessor=dict(type='DATDetDataPreprocessor', dat={{_base_.dat}}))
custom_hooks = [{{_base_.dat_hook}}]
