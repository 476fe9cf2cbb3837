# ImageNet-Sketch (Wang et al., NeurIPS 2019): 50,889 black-and-white sketches, ~50 per ImageNet class.
# Layout (ImageNet-Sketch.zip unpacks to sketch/: point data_root at that folder, or add
# data_prefix='sketch'):
#   data/imagenet-sketch/<wnid>/*.JPEG  exactly the 1000 ImageNet-1k wnids
# Labels: ImageNet-1k class index of the wnid (0..999). Metric: plain 1000-way top-1 / top-5.
# Preprocessing: PIL decoding without EXIF rotation (as the references' ImageFolder loader), then
# short side 256 (bicubic, Pillow) + centre crop 224: the transform of easyrobust's
# benchmarks/benchmark.py (crop_pct 0.875, --interpolation 3) with which DAT's published numbers were
# measured; hendrycks' reference evaluation uses Resize(256) + CenterCrop(224) as well.
# Use: evaluate a checkpoint without any config edit with
#   python tools/test.py CONFIG CKPT --ood imagenet-sketch
# or make this file a _base_ of a test config of an ImageNet-1k classifier. It defines only
# test_dataloader, test_evaluator, ood_test_pipeline and imagenet_sketch_root: compose it with bases that define
# neither of the two, and set data_preprocessor as the model was trained:
#   _base_ = ['mmpretrain::_base_/models/resnet50.py', 'mmpretrain::_base_/default_runtime.py',
#             'path/to/mmdat/configs/_base_/datasets/imagenet_sketch.py']
#   custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)
#   data_preprocessor = dict(num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
#                            to_rgb=True)
#   test_cfg = dict()
_base_ = ['./imagenet_ood_test.py']

imagenet_sketch_root = 'data/imagenet-sketch'
test_dataloader = dict(dataset=dict(type='ImageNetSketch', data_root=imagenet_sketch_root))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
