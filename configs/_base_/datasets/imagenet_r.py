# ImageNet-R(endition) (Hendrycks et al., ICCV 2021): 30,000 renditions (art, cartoons, graffiti,
# embroidery, sketches, toys...) of 200 ImageNet classes.
# Layout (the released imagenet-r.tar unpacks to imagenet-r/):
#   data/imagenet-r/<wnid>/*.jpg        exactly the 200 ImageNet-R wnids (mmdat/datasets/imagenet_lists/)
# Labels: the position of the wnid among the 200 sorted wnids (0..199). Metric: SubsetAccuracy, i.e. the
# arg-max of the model's 1000-way logits restricted to those 200 classes (hendrycks / easyrobust);
# an unrestricted 1000-way arg-max would understate the accuracy.
# Preprocessing: PIL decoding without EXIF rotation (as the references' ImageFolder loader), then
# short side 256 (bicubic, Pillow) + centre crop 224: the transform of easyrobust's
# benchmarks/benchmark.py (crop_pct 0.875, --interpolation 3) with which DAT's published numbers were
# measured; hendrycks' reference evaluation uses Resize(256) + CenterCrop(224) as well.
# Use: evaluate a checkpoint without any config edit with
#   python tools/test.py CONFIG CKPT --ood imagenet-r
# or make this file a _base_ of a test config of an ImageNet-1k classifier. It defines only
# test_dataloader, test_evaluator, custom_hooks (KeepLogitsHook: SubsetAccuracy ranks the logits, since the
# softmax can underflow to 0; a config that sets its own custom_hooks must list it too), ood_test_pipeline and
# imagenet_r_root: compose it with bases that define none of the three, and set data_preprocessor as the model
# was trained:
#   _base_ = ['mmpretrain::_base_/models/resnet50.py', 'mmpretrain::_base_/default_runtime.py',
#             'path/to/mmdat/configs/_base_/datasets/imagenet_r.py']
#   custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)
#   data_preprocessor = dict(num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
#                            to_rgb=True)
#   test_cfg = dict()
_base_ = ['./imagenet_ood_test.py']

imagenet_r_root = 'data/imagenet-r'
test_dataloader = dict(dataset=dict(type='ImageNetR', data_root=imagenet_r_root))
test_evaluator = dict(type='SubsetAccuracy', subset='imagenet-r', num_classes=1000, topk=(1, 5))
custom_hooks = [dict(type='KeepLogitsHook')]
