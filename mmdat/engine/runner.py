"""``CheckpointSafeRunner``: mmengine's Runner whose checkpoint loads read data only."""
from __future__ import annotations

import os
from typing import Callable, Union

import torch
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
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
        checkpoint = _load_safely(filename, map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


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
