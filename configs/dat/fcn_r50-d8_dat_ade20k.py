# FCN R50-D8, 512x512, 80k iterations on ADE20K with Discrete Adversarial Training.
# Upstream baseline: mmseg fcn_r50-d8_4xb4-80k_ade20k-512x512, 35.94 mIoU.
# The attack objective is the decode-head + auxiliary-head loss, ignoring label 255 as the model does.
# SyncBN: every rank makes the same DAT decisions (apply / random start), so collectives line up.
_base_ = ['mmseg::fcn/fcn_r50-d8_4xb4-80k_ade20k-512x512.py', '../_base_/dat/dat_runtime.py']

model = dict(data_preprocessor=dict(type='DATSegDataPreProcessor', dat={{_base_.dat}}))
custom_hooks = [{{_base_.dat_hook}}]
