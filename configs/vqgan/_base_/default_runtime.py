# Runtime shared by the VQGAN training configs (mmdat.models.VQGANAutoencoder): iteration-based
# loop, reconstruction PSNR / codebook usage as the validation and test metric, pictures of
# input | reconstruction in the work dir (vis_data/), the VQGAN alone exported after training.
default_scope = 'mmpretrain'  # its transforms (RandomCrop, RandomFlip, PackInputs, ...) and CustomDataset
custom_imports = dict(imports=['mmdat', 'mmdat.evaluation'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'))

# Each config adds its custom_hooks: VQGANVisualizationHook (input | reconstruction pictures every
# `interval` iterations and for the first validation batch) and VQGANExportHook (after training,
# the VQGAN alone in mmdat's shipped format, loadable by VQGAN(checkpoint=...) / DATHook, with the
# last validation metrics in its meta).

val_evaluator = dict(type='VQGANReconstructionMetric')
test_evaluator = val_evaluator
val_cfg = dict()
test_cfg = dict()

env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False, window_size=50)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
