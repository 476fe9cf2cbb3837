"""Models: the frozen VQGAN and the DAT data preprocessors."""
from mmdat.registry import MODELS
from .data_preprocessors import *  # noqa: F401,F403  (registers the DAT preprocessors)
from .data_preprocessors import __all__ as _preprocessors
from .vqgan import VQGAN, VQGAN_PRESETS
from .vqgan_checkpoint import VQGANCheckpointError, load_vqgan_state_dict

MODELS.register_module('VQGAN', module=VQGAN)


@MODELS.register_module('VQGANPreset')
def build_vqgan_preset(preset: str, checkpoint='default', **overrides) -> VQGAN:
    """Config form of :meth:`VQGAN.from_preset`:
    ``dict(type='VQGANPreset', preset='openimages-f8-16384', checkpoint=...)``."""
    return VQGAN.from_preset(preset, checkpoint=checkpoint, **overrides)


__all__ = ['VQGAN', 'VQGAN_PRESETS', 'VQGANCheckpointError', 'load_vqgan_state_dict',
           'build_vqgan_preset', *_preprocessors]
