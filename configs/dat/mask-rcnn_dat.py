# Mask R-CNN R50-FPN 1x on COCO with Discrete Adversarial Training.
# Upstream baseline: mmdet mask-rcnn_r50_fpn_1x_coco, 38.2 box AP / 34.7 mask AP (model zoo); in
# mmdet's COCO-C benchmark 37.3 clean box AP, 18.7 mPC, 50.1% rPC.
# Padding of images is restored bit for bit; gt masks are padded by mmdet as usual and shared by the
# clean and adversarial halves.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '../_base_/dat/dat_det_runtime.py']

model = dict(data_preprocessor=dict(type='DATDetDataPreprocessor', dat={{_base_.dat}}))
custom_hooks = [{{_base_.dat_hook}}]
