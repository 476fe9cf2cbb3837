from .dat_hook import DATHook
from .vqgan_hooks import VQGANExportHook, VQGANVisualizationHook

__all__ = ['DATHook', 'VQGANExportHook', 'VQGANVisualizationHook']
