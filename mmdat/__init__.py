"""mmdat: Discrete Adversarial Training (DAT) for OpenMMLab 2.x.

``custom_imports=dict(imports=['mmdat'])`` registers the VQGAN, the DAT data preprocessors and
``DATHook`` in mmengine's root registries, visible from the mmdet, mmseg and mmpretrain scopes.
Importing mmdat changes no global state of torch: checkpoint objects that mmengine needs are
allowed only around mmdat's own checkpoint loads (see :mod:`mmdat.utils.checkpoint_safety`).
"""
from .version import __version__

from . import engine, models  # noqa: E402,F401  (registers everything)
from . import datasets  # noqa: E402,F401  (registers the ImageCorruption transform)
from . import evaluation  # noqa: E402,F401  (registers SubsetAccuracy)
from . import robustness  # noqa: E402,F401  (registers the robustness test and validation loops)

__all__ = ['__version__']
