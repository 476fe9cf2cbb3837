# UPerNet R50, 512x512, 80k iterations on ADE20K with Discrete Adversarial Training.
# Upstream baseline: mmseg upernet_r50_4xb4-80k_ade20k-512x512, 40.70 mIoU.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', '../_base_/dat/dat_runtime.py']

model = dict(data_preprocessor=dict(type='DATSegDataPreProcessor', dat={{_base_.dat}}))
custom_hooks = [{{_base_.dat_hook}}]
