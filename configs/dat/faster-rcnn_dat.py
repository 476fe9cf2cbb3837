# Faster R-CNN R50-FPN 1x on COCO with Discrete Adversarial Training.
# Upstream baseline: mmdet faster-rcnn_r50_fpn_1x_coco, 37.4 box AP (model zoo); in mmdet's COCO-C
# benchmark 36.3 clean AP, 18.2 mPC, 50.2% rPC. DAT aims to raise mPC/rPC at equal or better AP.
# The attack objective is the detector's total training loss (RPN + RoI losses, as parse_losses sums
# them); eps/step size are the classification ones, in [0, 1] RGB pixel units (easyrobust issue #8).
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '../_base_/dat/dat_det_runtime.py']

model = dict(data_preprocessor=dict(type='DATDetDataPreprocessor', dat={{_base_.dat}}))
custom_hooks = [{{_base_.dat_hook}}]
