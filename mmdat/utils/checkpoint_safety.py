"""Weights-only loading of mmengine checkpoints, without widening what a file can do.

torch >= 2.6 loads weights-only by default and mmengine passes no ``weights_only``. mmengine's
checkpoints hold a few plain objects besides tensors: the message hub's ``HistoryBuffer``, numpy
arrays, dtypes and scalars, and (pickle protocol 2) ``builtins.getattr(HistoryBuffer, 'mean')`` for
each buffer's statistics methods. This module lets exactly those through, and only while mmdat's
own code loads a checkpoint:

* **Nothing at import.** :func:`mmengine_checkpoint_objects` is a context manager, entered and left
  around one load (``CheckpointSafeRunner.load_checkpoint``, the VQGAN loader). Outside it torch's
  allow-list is what the user made it.
* **No general callable.** The pickle name ``builtins.getattr`` is mapped to
  :func:`history_buffer_getattr`, which resolves only ``HistoryBuffer.min/max/mean/current`` and
  refuses every other object or attribute (the real ``getattr`` lets a crafted file walk from a
  trusted function to ``eval`` and call it through torch's own rebuild helpers).
* **No hostile state.** ``HistoryBuffer.__setstate__`` copies the pickled statistics methods into
  the class, i.e. into every buffer of the process. The name ``mmengine...HistoryBuffer`` is mapped to
  :class:`_CheckedHistoryBuffer`, whose ``__setstate__`` accepts only the genuine fields and
  methods and then turns the object into a plain ``HistoryBuffer``.
* **Independent of the process.** While the context is active, entries of the process allow-list
  that claim the same names (e.g. the real ``getattr``) are set aside, and restored afterwards.
  :func:`checkpoint_global_names` statically lists a file's globals so a loader can apply its own
  policy whatever the process allows (the VQGAN loader does).

The context changes torch's process-wide list for the duration of one load, as torch's own
``torch.serialization.safe_globals`` does; it is not meant for loads running concurrently in threads.
"""
from __future__ import annotations

import _compat_pickle
import contextlib
import io
import os
import pickletools
import zipfile
from typing import Callable, Iterator, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = ['CheckpointSecurityError', 'history_buffer_getattr', 'mmengine_checkpoint_globals',
           'mmengine_checkpoint_objects', 'checkpoint_global_names', 'refused_global_names',
           'unpickling_reason', 'HISTORY_BUFFER_STATISTICS']

#: the statistics methods that HistoryBuffer pickles by reference
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')
_HISTORY_BUFFER_NAME = 'mmengine.logging.history_buffer.HistoryBuffer'
_HISTORY_BUFFER_FIELDS = {'max_length', '_log_history', '_count_history', 'statistics_methods'}

SafeGlobal = Union[Callable, tuple]


class CheckpointSecurityError(RuntimeError):
    """A checkpoint holds objects that mmdat refuses to unpickle."""


def history_buffer_getattr(obj: object, name: str) -> Callable:
    """``getattr`` restricted to ``HistoryBuffer.min/max/mean/current``; anything else is refused.

    Registered for weights-only loading under the pickle name ``builtins.getattr``.
    """
    # while mmengine's objects are allowed, the pickle name of HistoryBuffer gives _CheckedHistoryBuffer
    if obj in (HistoryBuffer, _CheckedHistoryBuffer) and isinstance(name, str) \
            and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise CheckpointSecurityError(
        f'refused getattr({_describe(obj)}, {name!r}): a checkpoint may only reference '
        f'HistoryBuffer.{"/".join(HISTORY_BUFFER_STATISTICS)} through getattr')


class _CheckedHistoryBuffer(HistoryBuffer):
    """Unpickling stand-in for ``HistoryBuffer``: validates the state, then becomes a HistoryBuffer."""

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict) or not set(state) <= _HISTORY_BUFFER_FIELDS:
            extra = sorted(set(state) - _HISTORY_BUFFER_FIELDS) if isinstance(state, dict) else state
            raise CheckpointSecurityError(f'refused a HistoryBuffer with unexpected state {extra!r}')
        methods = state.get('statistics_methods', {})
        if not isinstance(methods, dict) or any(
                name not in HISTORY_BUFFER_STATISTICS or fn is not getattr(HistoryBuffer, name)
                for name, fn in methods.items()):
            raise CheckpointSecurityError(
                f'refused a HistoryBuffer whose statistics methods are not the genuine '
                f'{HISTORY_BUFFER_STATISTICS}: {methods!r}')
        if not isinstance(state.get('max_length', 0), int) or not all(
                isinstance(state.get(k, np.empty(0)), np.ndarray) and state.get(k, np.empty(0)).dtype.kind in 'biuf'
                for k in ('_log_history', '_count_history')):
            raise CheckpointSecurityError('refused a HistoryBuffer whose history is not numeric arrays')
        self.__class__ = HistoryBuffer
        HistoryBuffer.__setstate__(self, {k: v for k, v in state.items() if k != 'statistics_methods'})


def mmengine_checkpoint_globals() -> list[SafeGlobal]:
    """What mmengine writes into its checkpoints, as ``torch.serialization`` safe globals."""
    safe: list[SafeGlobal] = [(history_buffer_getattr, 'builtins.getattr'),
                              (_CheckedHistoryBuffer, _HISTORY_BUFFER_NAME),
                              np.ndarray, np.dtype, np._core.multiarray._reconstruct,
                              np._core.multiarray.scalar]
    # numpy's dtype classes (e.g. numpy.dtypes.Float64DType) pickle by class
    safe += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith('DType')]
    return safe


def _global_name(entry: SafeGlobal) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


@contextlib.contextmanager
def mmengine_checkpoint_objects() -> Iterator[None]:
    """Allow exactly mmengine's checkpoint objects (see the module doc) for the loads inside."""
    ours = mmengine_checkpoint_globals()
    names = {_global_name(g) for g in ours}
    present = torch.serialization.get_safe_globals()
    shadowing = [g for g in present if _global_name(g) in names and g not in ours]
    added = [g for g in ours if g not in present]
    if shadowing:
        _remove_safe_globals(shadowing)
    torch.serialization.add_safe_globals(added)
    try:
        yield
    finally:
        _remove_safe_globals(added)
        if shadowing:
            torch.serialization.add_safe_globals(shadowing)


def _remove_safe_globals(entries: list[SafeGlobal]) -> None:
    # torch offers add/clear/get; removing a few entries is clear + re-add of the rest
    keep = [g for g in torch.serialization.get_safe_globals() if g not in entries]
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(keep)


def checkpoint_global_names(path: Union[str, os.PathLike]) -> set[str]:
    """Every ``module.name`` a ``torch.save`` zip checkpoint references, found statically.

    torch's weights-only unpickler resolves callables only through the pickle GLOBAL opcode, so this
    list is complete for what such a load can touch. Raises :class:`CheckpointSecurityError` for
    files that are not ``torch.save`` zip archives.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            records = [n for n in archive.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
            if len(records) != 1:
                raise CheckpointSecurityError(
                    f'{path}: not a torch.save checkpoint (expected one data.pkl, found {records})')
            data = archive.read(records[0])
    except zipfile.BadZipFile as err:
        raise CheckpointSecurityError(
            f'{path}: not a torch.save zip checkpoint ({err}); the legacy (torch < 1.6) format is '
            'not read by mmdat, re-save the file with a current torch') from err
    names = set()
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name == 'GLOBAL':
                names.add(_python3_name(*arg.split(' ', 1)))
            elif opcode.name in ('STACK_GLOBAL', 'INST', 'OBJ'):
                names.add(f'<{opcode.name} opcode>')  # never produced by torch.save; refused
    except (ValueError, EOFError) as err:
        raise CheckpointSecurityError(f'{path}: corrupt pickle stream ({err})') from err
    return names


def _python3_name(module: str, name: str) -> str:
    """A protocol-2 global name as Python 3 (and torch's unpickler) resolves it."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f'{module}.{name}'


def refused_global_names(path: Union[str, os.PathLike]) -> list[str]:
    """Globals of ``path`` outside torch's built-in weights-only set and mmengine's objects.

    Whatever the process allow-list holds: a loader that refuses these is independent of it.
    """
    names = checkpoint_global_names(path)
    ours = {_global_name(g) for g in mmengine_checkpoint_globals()}
    user = {_global_name(g) for g in torch.serialization.get_safe_globals()}
    # torch reports what neither its defaults nor the process allow-list accept; names the
    # process allow-list accepts are not known to be torch defaults, so they count as refused
    not_default = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))) | user
    return sorted(n for n in names if n not in ours and (n in not_default or n.startswith('<')))


def unpickling_reason(err: Exception, limit: int = 400) -> str:
    """The line of a weights-only unpickling error that says what was refused (torch's messages
    are many lines of advice around one line of reason)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]
    detail = [ln for ln in lines if 'WeightsUnpickler error' in ln or 'Unsupported global' in ln
              or 'refused' in ln]
    return (detail or lines)[0][:limit]


def _describe(obj: object) -> str:
    name = getattr(obj, '__qualname__', None) or type(obj).__qualname__
    return f'<{name}>'
