# SegFormer MiT-B0, 512x512, 160k iterations on ADE20K with Discrete Adversarial Training: a light
# transformer for users with one GPU (upstream: 8 GPUs x 2 images; scale the lr if you change that).
# Upstream baseline: mmseg segformer_mit-b0_8xb2-160k_ade20k-512x512, 37.41 mIoU.
_base_ = ['mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
          '../_base_/dat/dat_runtime.py']

model = dict(data_preprocessor=dict(type='DATSegDataPreProcessor', dat={{_base_.dat}}))
custom_hooks = [{{_base_.dat_hook}}]
