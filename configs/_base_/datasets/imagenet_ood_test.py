# What the out-of-distribution benchmark configs beside this file share (imagenet_r.py, imagenet_a.py,
# imagenet_sketch.py, imagenet_v2.py, stylized_imagenet.py): the test loader and the preprocessing:
# decoding with PIL without EXIF rotation (the references' Image.open(...).convert('RGB')),
# short side 256 (bicubic, Pillow) + centre crop 224, the transform of easyrobust's
# benchmarks/benchmark.py (crop_pct 0.875, --interpolation 3) with which DAT's published numbers were
# measured (mmdat.robustness.ood.OOD_TEST_PIPELINE). Each benchmark file adds its dataset type, root
# and metric; inherit those files, not this one.
ood_test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow', color_type='color_ignore_orientation'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=32,
    num_workers=5,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(pipeline=ood_test_pipeline, test_mode=True))
