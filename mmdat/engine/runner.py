"""``CheckpointSafeRunner``: mmengine's Runner whose checkpoint loads read data only."""
from __future__ import annotations

import os
from typing import Callable, Union

import torch
from mmengine.registry import RUNNERS
from mmengine.runner import CheckpointLoader, Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from mmdat.utils.checkpoint_safety import CheckpointSecurityError, load_mmengine_checkpoint


@RUNNERS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class CheckpointSafeRunner(Runner):
    """``Runner`` whose checkpoint loads (``load_from``, ``resume``, ``tools/test.py``) are safe.

    Every checkpoint is read with mmdat's restricted unpickler
    (:func:`mmdat.utils.checkpoint_safety.load_mmengine_checkpoint`): tensors, plain Python data,
    numpy's numeric arrays and scalars (checked substitutes) and mmengine's HistoryBuffer; anything
    else is refused with :class:`CheckpointSecurityError` naming the file. URLs (``http(s)://``,
    ``file://``) are downloaded once into mmdat's checkpoint cache and read the same way; other
    mmengine schemes are refused, since their loaders unpickle without restriction.
    ``mmdat.apis.build_runner`` builds this runner unless the config sets ``runner_type``.
    """

    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False, revise_keys: list = [(r'^module.', '')]):
        """mmengine's ``Runner.load_checkpoint`` (hooks, key revision, bookkeeping), reading the file
        through :data:`SAFE_SCHEME`, mmdat's restricted loader."""
        return super().load_checkpoint(SAFE_SCHEME + os.fspath(filename), map_location, strict, revise_keys)


#: mmengine's checkpoint loaders are chosen by path prefix: this one reads the path after it safely
SAFE_SCHEME = 'mmdat-safe://'


@CheckpointLoader.register_scheme(prefixes=SAFE_SCHEME, force=True)
def load_from_mmdat_safe(filename: str, map_location: Union[str, Callable]) -> dict:
    """The checkpoint loader of :data:`SAFE_SCHEME` paths (only :class:`CheckpointSafeRunner` makes them)."""
    return _load_safely(filename[len(SAFE_SCHEME):], map_location)


def load_model_checkpoint(model: torch.nn.Module, filename: str, map_location: str = 'cpu',
                          strict: bool = False) -> dict:
    """mmengine's ``load_checkpoint`` with :class:`CheckpointSafeRunner`'s loading policy."""
    checkpoint = _load_safely(filename, map_location)
    return _load_checkpoint_to_model(model, checkpoint, strict)


def _load_safely(filename: Union[str, os.PathLike], map_location: Union[str, Callable]) -> dict:
    from mmdat.models.vqgan_checkpoint import is_checkpoint_url, resolved_checkpoint
    name = os.fspath(filename)
    if '://' in name and not is_checkpoint_url(name):
        raise CheckpointSecurityError(
            f'{name}: mmdat loads checkpoints from local files and http(s)/file URLs only (the '
            'loaders of other mmengine schemes unpickle without restriction); download it first')
    with resolved_checkpoint(name) as path:  # a URL is downloaded once, and dropped if refused
        return load_mmengine_checkpoint(path, map_location)
