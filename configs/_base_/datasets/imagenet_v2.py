# ImageNetV2 matched-frequency (Recht et al., ICML 2019): 10,000 new images, 10 per ImageNet class.
# Layout (imagenetv2-matched-frequency.tar.gz unpacks to imagenetv2-matched-frequency-format-val/:
# point data_root at that folder):
#   data/imagenetv2-matched-frequency/0/*.jpeg ... 999/*.jpeg    folder name = ImageNet-1k class index
# Labels: int(folder). A string sort of the folder names (ImageFolder / CustomDataset) would put folder 10
# at position 2 and mislabel 990 classes (modestyachts/ImageNetV2 issues 4 and 10); ImageNetV2 never does.
# Metric: plain 1000-way top-1 / top-5.
# Preprocessing: PIL decoding without EXIF rotation (as the references' ImageFolder loader), then
# short side 256 (bicubic, Pillow) + centre crop 224: the transform of easyrobust's
# benchmarks/benchmark.py (crop_pct 0.875, --interpolation 3) with which DAT's published numbers were
# measured; hendrycks' reference evaluation uses Resize(256) + CenterCrop(224) as well.
# Use: evaluate a checkpoint without any config edit with
#   python tools/test.py CONFIG CKPT --ood imagenet-v2
# or make this file a _base_ of a test config of an ImageNet-1k classifier. It defines only
# test_dataloader, test_evaluator, ood_test_pipeline and imagenet_v2_root: compose it with bases that define
# neither of the two, and set data_preprocessor as the model was trained:
#   _base_ = ['mmpretrain::_base_/models/resnet50.py', 'mmpretrain::_base_/default_runtime.py',
#             'path/to/mmdat/configs/_base_/datasets/imagenet_v2.py']
#   custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)
#   data_preprocessor = dict(num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
#                            to_rgb=True)
#   test_cfg = dict()
_base_ = ['./imagenet_ood_test.py']

imagenet_v2_root = 'data/imagenetv2-matched-frequency'
test_dataloader = dict(dataset=dict(type='ImageNetV2', data_root=imagenet_v2_root))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
