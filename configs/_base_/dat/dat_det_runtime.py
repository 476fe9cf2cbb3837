# DAT defaults for detection: the shared ones, with a VQGAN sized for 800x1344 inputs.
_base_ = ['./dat_runtime.py']

# At 800x1344 one VQGAN pass is ~7.6 TMACs: reconstruct at most 2 images per pass (bounded
# memory; attention uses PyTorch's memory-efficient SDPA). Faithful default: full resolution, fp32.
# Cheaper, documented deviations: trunk_dtype='bf16' here, or dat.vqgan_max_size=512 in the model.
dat_vqgan = dict(
    type='VQGAN', preset='openimages-f8-16384', checkpoint='default', chunk_size=2)
dat_hook = dict(type='DATHook', vqgan=dat_vqgan, warmup_iters=0, vis_interval=0)
