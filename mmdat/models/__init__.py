"""Models: the frozen VQGAN, its trainer and the DAT data preprocessors."""
import logging
import warnings
from typing import Optional

from mmengine.logging import print_log

from mmdat.registry import MODELS, deferred_attributes
from .data_preprocessors import TASK_PREPROCESSORS, DATPreprocessorMixin
from .vqgan import VQGAN, VQGAN_PRESETS
from .vqgan_checkpoint import VQGANCheckpointError, load_vqgan_state_dict
from .vqgan_autoencoder import VQGANAutoencoder, VQGANOptimWrapperConstructor
from .vqgan_data_preprocessor import VQGANDataPreprocessor


@MODELS.register_module('VQGAN', force=True)  # replaces the deferred entry of mmdat.registry
def build_vqgan(preset: Optional[str] = None, **kwargs) -> VQGAN:
    """The config form of :class:`VQGAN`, with or without a published configuration:

    ``dict(type='VQGAN', preset='openimages-f8-16384', checkpoint='default' | PATH | URL, ...)``
    (:meth:`VQGAN.from_preset`; other keys override the preset) or
    ``dict(type='VQGAN', ch=..., ch_mult=..., ..., checkpoint=PATH)`` (the explicit ``ddconfig``).
    """
    if preset is None:
        if kwargs.get('checkpoint') == 'default':
            raise ValueError("checkpoint='default' needs a preset: dict(type='VQGAN', preset=..., ...)")
        return VQGAN(**kwargs)
    return VQGAN.from_preset(preset, **{'checkpoint': None, **kwargs})


@MODELS.register_module('VQGANPreset', force=True)
def build_vqgan_preset(preset: str, checkpoint='default', **overrides) -> VQGAN:
    """Deprecated: ``dict(type='VQGANPreset', preset=...)`` is ``dict(type='VQGAN', preset=...)``."""
    warnings.warn("dict(type='VQGANPreset', ...) is deprecated: use dict(type='VQGAN', preset=..., "
                  'checkpoint=...)', DeprecationWarning, stacklevel=2)
    print_log("VQGANPreset is deprecated: write dict(type='VQGAN', preset=..., checkpoint=...)",
              logger='current', level=logging.WARNING)
    return build_vqgan(preset=preset, checkpoint=checkpoint, **overrides)


# ``from mmdat.models import DATDetDataPreprocessor`` imports mmdet only then
__getattr__ = deferred_attributes(__name__, TASK_PREPROCESSORS)

__all__ = ['VQGAN', 'VQGAN_PRESETS', 'VQGANCheckpointError', 'load_vqgan_state_dict',
           'build_vqgan', 'build_vqgan_preset', 'VQGANAutoencoder', 'VQGANOptimWrapperConstructor',
           'VQGANDataPreprocessor', 'DATPreprocessorMixin', *TASK_PREPROCESSORS]
