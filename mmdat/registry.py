"""Where mmdat registers its pieces, and the table of what it registers.

mmdat registers into mmengine's *root* registries. The registries of mmdet, mmseg and mmpretrain
are children of those roots and fall back to their parent when a type is not found in their own
scope, so a config whose ``default_scope`` is ``mmdet``, ``mmseg`` or ``mmpretrain`` finds
``DATHook``, ``DATClsDataPreprocessor`` etc. once it has::

    custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)

No ``mmdat.`` prefix and no extra scope are needed.

``import mmdat`` registers every name of :data:`REGISTERED` *deferred*: the registry holds a
:class:`DeferredModule` that imports the defining module when the piece is first built (or an
attribute of it is read), and the module's own ``register_module(..., force=True)`` then replaces
the stand-in by the class itself. So importing mmdat imports neither mmdet, mmseg, mmpretrain, mmcv
nor mmdat's own modules; a machine with only one task package uses that family, and building a
piece of a missing family raises an ``ImportError`` that names the extra to install
(``pip install 'mmdat[cls]'``). ``tests/test_import_cost.py`` checks that the table and the
modules' registrations agree.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

from mmengine.registry import (DATASETS, HOOKS, LOOPS, METRICS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, RUNNERS,
                               TRANSFORMS, VISUALIZERS, Registry)

__all__ = ['MODELS', 'HOOKS', 'VISUALIZERS', 'TRANSFORMS', 'DATASETS', 'METRICS', 'OPTIM_WRAPPER_CONSTRUCTORS',
           'LOOPS', 'RUNNERS', 'EXTRAS', 'REGISTERED', 'DeferredModule', 'import_for', 'register_deferred',
           'deferred_attributes', 'registered_by']

#: the mmdat extra that installs each optional package (``pip install 'mmdat[cls]'``)
EXTRAS = {'mmpretrain': 'cls', 'mmdet': 'det', 'mmseg': 'seg', 'mmcv': 'robustness',
          'imagecorruptions': 'robustness'}

_PRE = 'mmdat.models.data_preprocessors'
#: everything mmdat registers: (registry, names, the module that registers them, the package it needs)
REGISTERED: tuple[tuple[Registry, tuple[str, ...], str, Optional[str]], ...] = (
    (MODELS, ('VQGAN',), 'mmdat.models', None),  # the builder functions of mmdat/models/__init__.py
    (MODELS, ('VQGANPreset',), 'mmdat.models', None),
    (MODELS, ('VQGANAutoencoder',), 'mmdat.models.vqgan_autoencoder', None),
    (MODELS, ('VQGANDataPreprocessor',), 'mmdat.models.vqgan_data_preprocessor', None),
    (MODELS, ('DATClsDataPreprocessor', 'DATClsDataPreProcessor'), f'{_PRE}.cls_preprocessor', 'mmpretrain'),
    (MODELS, ('DATDetDataPreprocessor', 'DATDetDataPreProcessor'), f'{_PRE}.det_preprocessor', 'mmdet'),
    (MODELS, ('DATSegDataPreProcessor', 'DATSegDataPreprocessor'), f'{_PRE}.seg_preprocessor', 'mmseg'),
    (OPTIM_WRAPPER_CONSTRUCTORS, ('VQGANOptimWrapperConstructor',), 'mmdat.models.vqgan_autoencoder', None),
    (HOOKS, ('DATHook',), 'mmdat.engine.hooks.dat_hook', None),
    (HOOKS, ('KeepLogitsHook',), 'mmdat.engine.hooks.keep_logits_hook', None),
    (HOOKS, ('RankAverageBuffersHook',), 'mmdat.engine.hooks.sync_buffers_hook', None),
    (HOOKS, ('VQGANExportHook',), 'mmdat.engine.hooks.vqgan_hooks', None),
    (HOOKS, ('VQGANVisualizationHook',), 'mmdat.engine.hooks.vqgan_hooks', None),
    (RUNNERS, ('CheckpointSafeRunner',), 'mmdat.engine.runner', None),
    (DATASETS, ('ShapeImageDataset',), 'mmdat.datasets.shape_images', None),
    *((DATASETS, (name,), 'mmdat.datasets.imagenet_variants', 'mmpretrain')
      for name in ('ImageNetR', 'ImageNetA', 'ImageNetSketch', 'ImageNetV2', 'StylizedImageNet')),
    (TRANSFORMS, ('ImageCorruption',), 'mmdat.datasets.transforms.corruption_transforms', 'mmcv'),
    (TRANSFORMS, ('ImageNetCCorruption',), 'mmdat.datasets.transforms.corruption_transforms', 'mmcv'),
    (METRICS, ('SubsetAccuracy',), 'mmdat.evaluation.metrics.subset_accuracy', 'mmpretrain'),
    (METRICS, ('VQGANReconstructionMetric',), 'mmdat.evaluation.metrics.reconstruction', None),
    *((LOOPS, (name,), 'mmdat.robustness.loops', None)
      for name in ('RobustnessTestLoop', 'CorruptionTestLoop', 'OODTestLoop', 'RobustnessValLoop')),
)


def import_for(module: str, requires: Optional[str], what: str) -> Any:
    """Import ``module``; if the package it ``requires`` is missing, an ``ImportError`` that says
    which mmdat extra installs it (any other import error propagates)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if requires is None or (err.name or '').partition('.')[0] != requires:
            raise
        raise ImportError(f"{what} needs {requires}, which is not installed: pip install "
                          f"'mmdat[{EXTRAS.get(requires, requires)}]'") from err


class DeferredModule:
    """The registry entry of a class (or builder function) whose module is not imported yet.

    Calling it, or reading one of the class's attributes (``Runner.from_cfg``, ``Hook.priority``),
    imports ``module`` -- whose ``register_module(force=True)`` then puts the class itself in the
    registry in place of this entry -- and forwards to the class; :meth:`resolve` returns it.
    """

    def __init__(self, registry: Registry, name: str, module: str, requires: Optional[str] = None) -> None:
        self.__name__ = self.__qualname__ = name
        self.__module__ = module
        self.registry = registry
        self.requires = requires

    def resolve(self) -> Any:
        """What ``module`` registers under this name (imports the module, and so its task package)."""
        import_for(self.__module__, self.requires, self.__name__)
        registered = self.registry.module_dict.get(self.__name__)
        if registered is None or isinstance(registered, DeferredModule):
            raise RuntimeError(f'{self.__module__} did not register {self.__name__!r} in the {self.registry.name} '
                               'registry (with force=True, replacing the deferred entry of mmdat.registry)')
        return registered

    def __call__(self, *args, **kwargs) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith('__'):  # copy, pickle and introspection probes never import the module
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        needs = f' (needs {self.requires})' if self.requires else ''
        return f'<deferred {self.__module__}.{self.__name__}{needs}>'


def register_deferred(registry: Registry, names: Sequence[str], module: str,
                      requires: Optional[str] = None) -> DeferredModule:
    """Register ``names[0]`` of ``module`` under ``names`` without importing ``module``; the module
    must register it under the same names with ``force=True``."""
    deferred = DeferredModule(registry, names[0], module, requires)
    registry.register_module(name=list(names), module=deferred)
    return deferred


def registered_by(*modules: str) -> dict[str, tuple[str, Optional[str]]]:
    """``{class name: (module, package it needs)}`` of the :data:`REGISTERED` rows of ``modules``, in table
    order: what a package's :func:`deferred_attributes` serves, read from the one table."""
    return {names[0]: (module, requires) for _, names, module, requires in REGISTERED if module in modules}


def deferred_attributes(package: str, attributes: Mapping[str, tuple[str, Optional[str]]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for ``package``: ``from package import Name`` imports
    ``Name``'s module (``attributes[Name] = (module, package it needs)``) only then."""

    def __getattr__(name: str) -> Any:
        if name not in attributes:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        module, requires = attributes[name]
        value = getattr(import_for(module, requires, name), name)
        # cached on the package, and it wins over a submodule of the same name (mmdat.apis.visualize_dat)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def _register_table() -> None:
    for registry, names, module, requires in REGISTERED:
        register_deferred(registry, names, module, requires)
