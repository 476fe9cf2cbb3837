# Fine-tuning an MAE-pretrained ViT-B/16 on ImageNet-1k with DAT.
# Paper target (DAT README) for the MAE recipe, reported for MAE-ViT-H: 87.02 top-1, 31.40 mCE on
# ImageNet-C (lower is better); also V2 78.82, R 65.61, A 68.92, Sketch 50.03, Stylized 32.77.
# (For ViT-H, inherit mmpretrain::mae/benchmarks/vit-huge-p14_8xb128-coslr-50e_in1k.py instead.)
# Upstream baseline: mmpretrain MAE ViT-B/16 fine-tuning, 100 epochs (83.1 top-1 from the
# 1600-epoch MAE checkpoint). Set the pre-trained MAE backbone with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
          '../_base_/dat/dat_runtime.py']

data_preprocessor = dict(type='DATClsDataPreprocessor', dat={{_base_.dat}})
custom_hooks = [{{_base_.dat_hook}}]
