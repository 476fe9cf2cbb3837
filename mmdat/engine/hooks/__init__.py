from .dat_hook import DATHook
from .sync_buffers_hook import RankAverageBuffersHook
from .vqgan_hooks import VQGANExportHook, VQGANVisualizationHook

__all__ = ['DATHook', 'RankAverageBuffersHook', 'VQGANExportHook', 'VQGANVisualizationHook']
