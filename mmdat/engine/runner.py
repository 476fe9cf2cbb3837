"""``CheckpointSafeRunner``: mmengine's Runner whose checkpoint loads stay weights-only and safe."""
from __future__ import annotations

import contextlib
import pickle
from typing import Callable, Iterator, Union

import torch

from mmengine.registry import RUNNERS
from mmengine.runner import Runner, load_checkpoint

from mmdat.utils.checkpoint_safety import (CheckpointSecurityError, mmengine_checkpoint_objects,
                                           unpickling_reason)


@RUNNERS.register_module()
class CheckpointSafeRunner(Runner):
    """``Runner`` that can resume and test mmengine checkpoints under weights-only loading.

    Every checkpoint the runner loads (``load_from``, ``resume``, ``tools/test.py``) is read with
    torch's weights-only unpickler plus exactly the objects mmengine stores (its HistoryBuffer,
    numpy arrays; see :mod:`mmdat.utils.checkpoint_safety`), allowed for that load only. A file
    that needs anything else is refused with :class:`CheckpointSecurityError` naming the file.
    ``mmdat.apis.build_runner`` builds this runner unless the config sets ``runner_type``.
    """

    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False, revise_keys: list = [(r'^module.', '')]):
        with _refusing_unsafe(filename):
            return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                           revise_keys=revise_keys)


def load_model_checkpoint(model: torch.nn.Module, filename: str, map_location: str = 'cpu',
                          strict: bool = False) -> dict:
    """mmengine's ``load_checkpoint`` with :class:`CheckpointSafeRunner`'s loading policy."""
    with _refusing_unsafe(filename):
        return load_checkpoint(model, filename, map_location=map_location, strict=strict)


@contextlib.contextmanager
def _refusing_unsafe(filename: str) -> Iterator[None]:
    try:
        with mmengine_checkpoint_objects():
            yield
    except (pickle.UnpicklingError, CheckpointSecurityError) as err:
        raise CheckpointSecurityError(
            f'{filename}: refused to load this checkpoint: it holds objects that weights-only '
            f'loading does not allow (mmdat loads mmengine checkpoints with torch.load('
            f'weights_only=True) plus mmengine\'s own HistoryBuffer/numpy objects only). '
            f'Only if you trust the file, load it yourself without weights_only and re-save its '
            f'state_dict. Reason: {unpickling_reason(err)}') from err

