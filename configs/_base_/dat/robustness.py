# Robustness benchmarks as loops (mmdat/robustness/loops.py), to reference from a config that inherits
# this file next to its upstream base (mmengine forbids one top-level key in two bases, so this file
# defines only these variables):
#   _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py', '../_base_/dat/dat_runtime.py', '../_base_/dat/robustness.py']
#   val_cfg = {{_base_.robustness_val_loop}}     # clean + 5 corruptions at severity 3 at every validation
#   default_hooks = dict(checkpoint=dict(save_best='robustness/mPC', rule='greater'))   # best checkpoint by mPC
#   test_cfg = {{_base_.corruption_test_loop}}   # runner.test() / tools/test.py: the 15 x 5 benchmark
# The loop types are registered by `import mmdat`: dat_runtime.py's custom_imports (or the config's own).

# Validation on the clean set and on corrupted copies made on the fly (seeded per image): the logger and
# the visualizer backends get the clean metric, robustness/mPC, robustness/rPC and one scalar per cell.
robustness_val_loop = dict(
    type='RobustnessValLoop',
    corruptions=['gaussian_noise', 'defocus_blur', 'snow', 'contrast', 'jpeg_compression'],
    severities=[3])

# The corruption benchmark (ImageNet-C / COCO-C / ADE20K-C): clean + 15 corruptions x 5 severities on the
# fly at original resolution; robustness.json/.md/.png go to the work dir and a rerun resumes. For
# ImageNet-C numbers comparable with published ones add imagenet_c_protocol=True, or source='data/imagenet-c'
# for the released folders (see docs/robustness.md).
corruption_test_loop = dict(type='CorruptionTestLoop', corruptions='benchmark', severities=[1, 2, 3, 4, 5])
