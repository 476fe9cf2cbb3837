"""Where mmdat registers its pieces.

mmdat registers into mmengine's *root* registries. The registries of mmdet, mmseg and mmpretrain
are children of those roots and fall back to their parent when a type is not found in their own
scope, so a config whose ``default_scope`` is ``mmdet``, ``mmseg`` or ``mmpretrain`` finds
``DATHook``, ``DATClsDataPreprocessor`` etc. once it has::

    custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)

No ``mmdat.`` prefix and no extra scope are needed.
"""
from mmengine.registry import DATASETS, HOOKS, LOOPS, METRICS, MODELS, TRANSFORMS, VISUALIZERS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['MODELS', 'HOOKS', 'LOOPS', 'VISUALIZERS', 'TRANSFORMS', 'DATASETS', 'METRICS', 'OPTIM_WRAPPER_CONSTRUCTORS']
