# ResNet-50 on ImageNet-1k with Discrete Adversarial Training.
# Paper target (DAT README): 76.52 top-1 on ImageNet val, 74.16 mCE on ImageNet-C (lower is better);
# also V2 65.02, R 41.90, A 4.38, Sketch 27.27, Stylized 10.8.
# Upstream baseline: mmpretrain resnet50_8xb32_in1k (76.55 top-1), 100 epochs, SGD, batch 256.
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py', '../_base_/dat/dat_runtime.py']

# mmpretrain keeps the data preprocessor at the top level; the runner hands it to the model.
data_preprocessor = dict(type='DATClsDataPreprocessor', dat={{_base_.dat}})
custom_hooks = [{{_base_.dat_hook}}]
