# DAT defaults shared by every task (Mao et al., NeurIPS 2022; reference: alibaba/easyrobust).
# Inherit next to an upstream config, then put `dat` into the model's data preprocessor:
#   _base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', '../_base_/dat/dat_runtime.py']
#   model = dict(data_preprocessor=dict(type='DATDetDataPreprocessor', dat={{_base_.dat}}))
#   custom_hooks = [{{_base_.dat_hook}}]
# (mmengine forbids the same top-level key in two bases, so this file defines neither `model` nor
# `custom_hooks`: the config that inherits it states both, next to any hooks of its own.)
custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)

# Attack settings, in [0, 1] RGB pixel units whatever the model's normalisation: one L2 step of
# size 0.1 inside an L2 ball of radius 0.1, random start with probability 0.8, L(x) + L(x_adv).
dat = dict(
    eps=0.1,
    step_size=0.1,
    steps=1,
    norm='l2',
    random_start_prob=0.8,
    apply_prob=1.0,
    clean_loss_weight=1.0,
    adv_loss_weight=1.0)

# The VQGAN DAT uses: OpenImages f8, 16384 codes (latent-diffusion `vq-f8`, re-hosted by easyrobust).
# checkpoint='default' downloads the published file once into ~/.cache/mmdat/checkpoints; set a local
# path on machines without internet. The published Lightning checkpoints (.ckpt, or latent-diffusion's
# vq-f8.zip) load directly: only their state dict's tensors are kept, nothing else is imported or run.
dat_vqgan = dict(type='VQGAN', preset='openimages-f8-16384', checkpoint='default')

dat_hook = dict(type='DATHook', vqgan=dat_vqgan, warmup_iters=0, vis_interval=0)
