"""mmdat: Discrete Adversarial Training (DAT) for OpenMMLab 2.x.

``custom_imports=dict(imports=['mmdat'])`` registers the VQGAN, the DAT data preprocessors,
``DATHook``, mmdat's datasets, transforms, metrics and runner in mmengine's root registries, visible
from the mmdet, mmseg and mmpretrain scopes. Importing mmdat registers the names only
(:data:`mmdat.registry.REGISTERED`): each module, and the task package it needs (mmpretrain, mmdet,
mmseg, mmcv), is imported when one of its pieces is first built. Importing mmdat changes no global
state of torch: checkpoint objects that mmengine needs are allowed only around mmdat's own checkpoint
loads (see :mod:`mmdat.utils.checkpoint_safety`).
"""
from .version import __version__
from .registry import _register_table

# Every name mmdat registers, deferred. A module that registers something (a hook, a dataset, the
# robustness loops of mmdat.robustness.loops in LOOPS, ...) gets a row in mmdat.registry.REGISTERED
# and registers with force=True; nothing is imported here (tests/test_import_cost.py checks both).
_register_table()

__all__ = ['__version__']
