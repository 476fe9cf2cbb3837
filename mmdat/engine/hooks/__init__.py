from .dat_hook import DATHook
from .keep_logits_hook import KeepLogitsHook
from .sync_buffers_hook import RankAverageBuffersHook
from .vqgan_hooks import VQGANExportHook, VQGANVisualizationHook

__all__ = ['DATHook', 'KeepLogitsHook', 'RankAverageBuffersHook', 'VQGANExportHook', 'VQGANVisualizationHook']
