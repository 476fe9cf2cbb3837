"""mmdat: Discrete Adversarial Training (DAT) for OpenMMLab 2.x.

``custom_imports=dict(imports=['mmdat'])`` registers the VQGAN, the DAT data preprocessors and
``DATHook`` in mmengine's root registries, visible from the mmdet, mmseg and mmpretrain scopes.
Importing mmdat also allow-lists what mmengine stores in its checkpoints for torch's weights-only
loading, so ``--resume`` works on torch >= 2.6.
"""
from .version import __version__
from .utils import allow_mmengine_checkpoints

allow_mmengine_checkpoints()

from . import engine, models  # noqa: E402,F401  (registers everything)

__all__ = ['__version__']
