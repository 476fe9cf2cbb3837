from .dat_hook import DATHook
from .keep_logits_hook import KeepLogitsHook
from .vqgan_hooks import VQGANExportHook, VQGANVisualizationHook

__all__ = ['DATHook', 'KeepLogitsHook', 'VQGANExportHook', 'VQGANVisualizationHook']
