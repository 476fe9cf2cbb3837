"""Checkpoints are data: one restricted unpickler for every checkpoint mmdat loads.

:func:`load_checkpoint_file` reads a ``torch.save`` zip checkpoint with ``torch.load`` and
:class:`RestrictedUnpickler` (through ``pickle_module``), a pickle machine of mmdat's own that
imports nothing and calls nothing but a fixed table:

* **torch's tensor rebuilders** (dense, sparse, quantized, meta, parameter), each behind a check
  that its arguments are plain data (no class, function or stand-in; no backward hooks), and
  torch's own data types (``torch.Size``, dtypes, storages, ``OrderedDict``...).
* **mmengine's checkpoint objects**: ``HistoryBuffer`` through :class:`_CheckedHistoryBuffer`, and
  the pickle name ``builtins.getattr`` through :func:`history_buffer_getattr`, which resolves
  ``HistoryBuffer.min/max/mean/current`` and, on a stand-in, gives the stand-in of the nested name
  (``getattr(stand-in Outer, 'Inner')``: how protocol 2 pickles nested classes); nothing else.
* **numpy arrays, scalars and dtypes** through checked substitutes: only the built-in numeric dtypes
  (bool, signed/unsigned integers, floats) in native byte order; arrays and scalars are rebuilt with
  ``np.frombuffer`` from bytes of exactly the right length. numpy's own ``_reconstruct``, ``dtype``
  constructor and ``__setstate__`` never run, so no object, void, structured or sub-array dtype
  (nor a forged one) can be built.
* **Every other global** (Lightning's callbacks, ``argparse.Namespace``, ``os.system``...) becomes an
  inert :class:`StandIn` class named after it: nothing is imported, and creating, calling, filling
  or setting state on a stand-in only records the data.

What each loader keeps is its own policy: the VQGAN loader keeps the state dict's tensors and
ignores stand-ins elsewhere (so published Lightning checkpoints load directly); mmengine checkpoint
loads (:func:`load_mmengine_checkpoint`) refuse any stand-in. Nothing here changes torch's
process-wide loading policy, and the loader holds no global state.
"""
from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import reprlib
import struct
import sys
import types
import zipfile
from collections import Counter, OrderedDict
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = ['CheckpointSecurityError', 'StandIn', 'RestrictedUnpickler', 'load_checkpoint_file',
           'load_mmengine_checkpoint', 'stand_ins_in', 'history_buffer_getattr',
           'SAFE_NUMPY_DTYPES', 'HISTORY_BUFFER_STATISTICS']

#: the statistics methods that HistoryBuffer pickles by reference
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')
_HISTORY_BUFFER_NAME = 'mmengine.logging.history_buffer.HistoryBuffer'
_HISTORY_BUFFER_FIELDS = {'max_length', '_log_history', '_count_history', 'statistics_methods'}

#: numpy dtypes a checkpoint may hold (numpy's pickled type strings): bool, integers, floats
SAFE_NUMPY_DTYPES: dict[str, np.dtype] = {
    code: np.dtype(code) for code in ('b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8')}
_SAFE_DTYPE_OBJECTS = {id(d): d for d in SAFE_NUMPY_DTYPES.values()}
_NATIVE_ORDER = '<' if sys.byteorder == 'little' else '>'
_MAX_CONTAINER_DEPTH = 32


class CheckpointSecurityError(RuntimeError):
    """A checkpoint holds objects that mmdat refuses to unpickle, or could not be read."""


class _Refused(pickle.UnpicklingError):
    """Raised inside the unpickler; :func:`load_checkpoint_file` adds the file's name."""


# ----------------------------------------------------------------------------- stand-ins
class StandIn:
    """Inert record of a pickled object whose class or function mmdat does not import.

    Each global name the file references gets its own subclass (``global_name`` says which).
    Creating one (pickle's REDUCE/NEWOBJ) records the arguments, BUILD records the state, and
    SETITEMS/APPENDS record the items; nothing else happens, nothing is looked up or called.
    """

    __slots__ = ('args', 'state', 'items')
    global_name = '?'

    def __new__(cls, *args: Any, **kwargs: Any) -> 'StandIn':
        obj = object.__new__(cls)
        obj.args = args + ((kwargs, ) if kwargs else ())
        obj.state = None
        obj.items = []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # everything is recorded by __new__

    def __repr__(self) -> str:
        return f'<stand-in for {self.global_name}>'


class StandInCall(StandIn):
    """A stand-in *instance* used as a callable: records the callee and the arguments."""

    __slots__ = ()
    global_name = '<call of a stand-in>'


def _stand_in_class(full_name: str) -> type:
    return type(f'StandIn[{full_name}]', (StandIn, ), {'__slots__': (), 'global_name': full_name,
                                                        '__module__': __name__})


def _is_stand_in_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, StandIn)


# ----------------------------------------------------------------------------- mmengine objects
def history_buffer_getattr(obj: object, name: str) -> Callable:
    """``getattr`` restricted to ``HistoryBuffer.min/max/mean/current``; anything else is refused.

    The checkpoint unpickler resolves the pickle name ``builtins.getattr`` to this function.
    """
    if obj in (HistoryBuffer, _CheckedHistoryBuffer) and isinstance(name, str) \
            and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise _Refused(f'refused getattr({_describe(obj)}, {name!r}): a checkpoint may only reference '
                   f'HistoryBuffer.{"/".join(HISTORY_BUFFER_STATISTICS)} through getattr')


class _CheckedHistoryBuffer(HistoryBuffer):
    """Unpickling stand-in for ``HistoryBuffer``: validates the state, then becomes a HistoryBuffer."""

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict) or not set(state) <= _HISTORY_BUFFER_FIELDS:
            extra = sorted(map(_short, set(state) - _HISTORY_BUFFER_FIELDS)) if isinstance(state, dict) else state
            raise _Refused(f'refused a HistoryBuffer with unexpected state {_short(extra)}')
        methods = state.get('statistics_methods', {})
        if not isinstance(methods, dict) or any(
                name not in HISTORY_BUFFER_STATISTICS or fn is not getattr(HistoryBuffer, name)
                for name, fn in methods.items()):
            raise _Refused(f'refused a HistoryBuffer whose statistics methods are not the genuine '
                           f'{HISTORY_BUFFER_STATISTICS}: {_short(methods)}')
        histories = [state.get(k, np.empty(0)) for k in ('_log_history', '_count_history')]
        if type(state.get('max_length', 0)) is not int or not all(
                type(h) is np.ndarray and h.dtype.kind in 'biuf' for h in histories):
            raise _Refused('refused a HistoryBuffer whose history is not numeric arrays')
        self.__class__ = HistoryBuffer
        HistoryBuffer.__setstate__(self, {k: v for k, v in state.items() if k != 'statistics_methods'})


# ----------------------------------------------------------------------------- numpy substitutes
class _NdarrayClassToken:
    """What the pickle name ``numpy.ndarray`` resolves to: accepted only by :func:`_checked_reconstruct`."""

    def __init__(self) -> None:
        raise _Refused('refused to create numpy.ndarray directly (only pickled arrays are rebuilt)')


class _PendingArray:
    """Result of numpy's ``_reconstruct`` until BUILD supplies the array's data."""

    __slots__ = ()


def _checked_dtype(code: object, align: object = False, copy: object = True) -> np.dtype:
    """``numpy.dtype(code, align, copy)`` for the safe numeric dtypes only (numpy's own singleton)."""
    if not isinstance(code, str) or code not in SAFE_NUMPY_DTYPES or align not in (False, 0):
        raise _Refused(f'refused numpy dtype {_short(code)}: checkpoints may hold bool, integer and '
                       f'float arrays only ({", ".join(SAFE_NUMPY_DTYPES)})')
    return SAFE_NUMPY_DTYPES[code]


def _check_dtype_state(dtype: np.dtype, state: object) -> None:
    """BUILD on a dtype: numpy would rewrite the dtype (flags, sizes, fields); here the state must
    describe exactly the native-order built-in dtype it is applied to, and nothing is changed."""
    expected_order = '|' if dtype.itemsize == 1 else _NATIVE_ORDER
    ok = (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
          and state[1] in (expected_order, '=') and state[2:5] == (None, None, None)
          and state[5] in (-1, dtype.itemsize) and state[6] in (-1, dtype.alignment)
          and state[7] == dtype.flags and (len(state) == 8 or state[8] is None))
    if not ok:
        raise _Refused(f'refused numpy dtype state {_short(state)} for {dtype.str}: only native-order '
                       'bool/integer/float dtypes without fields, sub-arrays or flags are loaded')


def _checked_scalar(dtype: object, raw: object) -> np.generic:
    """``numpy.core.multiarray.scalar(dtype, raw)`` for safe dtypes and exactly itemsize bytes."""
    if id(dtype) not in _SAFE_DTYPE_OBJECTS or _SAFE_DTYPE_OBJECTS[id(dtype)] is not dtype:
        raise _Refused(f'refused a numpy scalar of {_describe(dtype)}: not a bool/integer/float dtype')
    if type(raw) is not bytes or len(raw) != dtype.itemsize:
        raise _Refused(f'refused a numpy scalar: {dtype.str} needs {dtype.itemsize} raw bytes, got '
                       f'{_describe(raw)}')
    return np.frombuffer(raw, dtype=dtype)[0]


def _checked_reconstruct(cls: object, shape: object, typecode: object) -> _PendingArray:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``, the only form numpy writes."""
    if cls is not _NdarrayClassToken or type(shape) not in (tuple, list) or list(shape) != [0] \
            or type(shape[0]) is not int or type(typecode) not in (bytes, str) or typecode not in (b'b', 'b'):
        raise _Refused(f'refused numpy _reconstruct({_describe(cls)}, {_short(shape)}, {_short(typecode)}): only '
                       'plain numpy arrays are loaded')
    return _PendingArray()


def _build_array(state: object) -> np.ndarray:
    """The array of a pickled ndarray state ``(1, shape, dtype, is_fortran, raw bytes)``."""
    if not (type(state) is tuple and len(state) == 5 and type(state[0]) is int and state[0] == 1):
        raise _Refused(f'refused a numpy array state of {_describe(state)}')
    _, shape, dtype, fortran, raw = state
    if id(dtype) not in _SAFE_DTYPE_OBJECTS or _SAFE_DTYPE_OBJECTS[id(dtype)] is not dtype:
        raise _Refused(f'refused a numpy array of {_describe(dtype)}: not a bool/integer/float dtype')
    if type(shape) is not tuple or not all(type(n) is int and n >= 0 for n in shape) \
            or len(shape) > 32 or type(fortran) is not bool:
        raise _Refused(f'refused a numpy array with shape {_short(shape)} / fortran flag {_short(fortran)}')
    if type(raw) is not bytes or len(raw) != math.prod(shape) * dtype.itemsize:
        raise _Refused(f'refused a numpy array: shape {shape} of {dtype.str} needs '
                       f'{math.prod(shape) * dtype.itemsize} raw bytes, got {_describe(raw)}')
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order='F' if fortran else 'C').copy(order='K')


# ----------------------------------------------------------------------------- checked builtins
def _checked_encode(text: object, encoding: object = 'utf-8') -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for ``bytes``: latin-1 text only."""
    if type(text) is not str or encoding not in ('latin1', 'latin-1'):
        raise _Refused(f'refused _codecs.encode({_describe(text)}, {encoding!r})')
    return text.encode('latin-1')


def _empty_bytes(*args: object) -> bytes:
    """``bytes()``: how protocol 2 pickles ``b''`` (other bytes go through :func:`_checked_encode`)."""
    if args:
        raise _Refused(f'refused bytes{_describe(args)}')
    return b''


def _checked_bytearray(data: object = b'') -> bytearray:
    if type(data) is not bytes:
        raise _Refused(f'refused bytearray({_describe(data)})')
    return bytearray(data)


def _checked_collection(kind: type) -> Callable:
    def build(items: object = ()) -> Any:
        if type(items) not in (list, tuple):
            raise _Refused(f'refused {kind.__name__}({_describe(items)})')
        return kind(items)
    build.__name__ = f'checked_{kind.__name__}'
    return build


def _checked_complex(real: object = 0.0, imag: object = 0.0) -> complex:
    if type(real) not in (int, float) or type(imag) not in (int, float):
        raise _Refused('refused complex() of non-numbers')
    return complex(real, imag)


def _checked_mapping(kind: type) -> Callable:
    def build(*args: object) -> Any:
        if len(args) > 1 or (args and type(args[0]) is not dict and (type(args[0]) is not list or not all(
                type(p) in (tuple, list) and len(p) == 2 for p in args[0]))):
            raise _Refused(f'refused {kind.__name__}{_describe(args)}')
        return kind(*args)
    build.__name__ = f'checked_{kind.__name__}'
    return build


# ----------------------------------------------------------------------------- tensor rebuilders
_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device,
                 torch.layout, torch.memory_format, torch.qscheme, torch.Size, torch.storage.TypedStorage,
                 torch.UntypedStorage, np.ndarray, np.generic)


def _check_plain(value: object, what: str, depth: int = 0) -> None:
    """Refuse anything in a rebuilder's arguments that is not data (classes, functions, stand-ins)."""
    if depth > _MAX_CONTAINER_DEPTH:
        raise _Refused(f'refused {what}: nested too deeply')
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter) or value._backward_hooks:
            raise _Refused(f'refused {what}: {_describe(value)} is not a plain tensor')
        return
    if type(value) in (tuple, list):
        for item in value:
            _check_plain(item, what, depth + 1)
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            _check_plain(key, what, depth + 1)
            _check_plain(item, what, depth + 1)
        return
    if type(value) not in _PLAIN_LEAVES and not isinstance(value, (np.ndarray, np.generic)):
        raise _Refused(f'refused {what}: it holds {_describe(value)}, not data')
    if isinstance(value, np.ndarray) and value.dtype.kind not in 'biuf':
        raise _Refused(f'refused {what}: numpy array of dtype {value.dtype}')


def _no_hooks(hooks: object, what: str) -> None:
    if hooks is not None and (type(hooks) not in (dict, OrderedDict) or hooks):
        raise _Refused(f'refused {what} with backward hooks {_describe(hooks)} (torch.save writes none)')


def _no_state(state: object, what: str) -> None:
    empty = state is None or (type(state) is dict and not state) or (
        type(state) is tuple and all(s is None or (type(s) is dict and not s) for s in state))
    if not empty:
        raise _Refused(f'refused {what} with Python attribute state {_describe(state)}')


def _checked_rebuilder(fn: Callable, hooks_at: Optional[int] = None, state_at: Optional[int] = None) -> Callable:
    """``fn`` (one of torch's ``_rebuild_*``) behind the plain-data check of its arguments."""
    what = f'torch._utils.{fn.__name__}'

    def rebuild(*args: object) -> Any:
        if hooks_at is not None and len(args) > hooks_at:
            _no_hooks(args[hooks_at], what)
            args = args[:hooks_at] + (OrderedDict(), ) + args[hooks_at + 1:]
        if state_at is not None and len(args) > state_at:
            _no_state(args[state_at], what)
        _check_plain(args, what)
        return fn(*args)

    rebuild.__name__ = rebuild.__qualname__ = f'checked{fn.__name__}'
    return rebuild


def _rebuilders() -> dict[str, Callable]:
    u = torch._utils
    table = {
        '_rebuild_tensor': _checked_rebuilder(u._rebuild_tensor),
        '_rebuild_tensor_v2': _checked_rebuilder(u._rebuild_tensor_v2, hooks_at=5),
        '_rebuild_tensor_v3': _checked_rebuilder(u._rebuild_tensor_v3, hooks_at=5),
        '_rebuild_parameter': _checked_rebuilder(u._rebuild_parameter, hooks_at=2),
        '_rebuild_parameter_with_state': _checked_rebuilder(u._rebuild_parameter_with_state, hooks_at=2,
                                                             state_at=3),
        '_rebuild_qtensor': _checked_rebuilder(u._rebuild_qtensor, hooks_at=6),
        '_rebuild_sparse_tensor': _checked_rebuilder(u._rebuild_sparse_tensor),
        '_rebuild_meta_tensor_no_storage': _checked_rebuilder(u._rebuild_meta_tensor_no_storage),
        '_rebuild_device_tensor_from_cpu_tensor': _checked_rebuilder(u._rebuild_device_tensor_from_cpu_tensor),
        '_rebuild_device_tensor_from_numpy': _checked_rebuilder(u._rebuild_device_tensor_from_numpy),
    }
    return {f'torch._utils.{name}': fn for name, fn in table.items()}


_REBUILDERS = _rebuilders()
_REBUILDER_SET = frozenset(_REBUILDERS.values())


def _checked_rebuild_from_type(func: object, new_type: object, args: object, state: object) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2`` for plain tensors and parameters only."""
    what = 'torch._tensor._rebuild_from_type_v2'
    if not any(func is f for f in _REBUILDER_SET) or not any(new_type is t for t in (torch.Tensor, torch.nn.Parameter)) \
            or type(args) is not tuple:
        raise _Refused(f'refused {what}({_describe(func)}, {_describe(new_type)}, ...): only torch\'s '
                       'tensor rebuilders producing plain tensors are called')
    _no_state(state, what)
    tensor = func(*args)
    return tensor if type(tensor) is new_type else tensor.as_subclass(new_type)


# ----------------------------------------------------------------------------- global names
def _resolution_table() -> dict[str, object]:
    """Every global a checkpoint may name that is not a stand-in, by pickle name."""
    table: dict[str, object] = {}
    # torch's data types (dtypes, storage classes, Size, device, layouts, qschemes, OrderedDict, ...)
    for name, obj in torch._weights_only_unpickler._get_allowed_globals().items():
        if not callable(obj) or isinstance(obj, type) or name == 'torch.serialization._get_layout':
            table[name] = obj
    table.update(_REBUILDERS)
    table['torch._tensor._rebuild_from_type_v2'] = _checked_rebuild_from_type
    table.update({
        'collections.OrderedDict': OrderedDict, 'collections.Counter': Counter,
        '_codecs.encode': _checked_encode, 'builtins.bytes': _empty_bytes, 'builtins.bytearray': _checked_bytearray,
        'builtins.set': _checked_collection(set), 'builtins.frozenset': _checked_collection(frozenset),
        'builtins.complex': _checked_complex,
        'builtins.getattr': history_buffer_getattr, _HISTORY_BUFFER_NAME: _CheckedHistoryBuffer,
    })
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        table[f'{module}._reconstruct'] = _checked_reconstruct
        table[f'{module}.scalar'] = _checked_scalar
    table['numpy.ndarray'] = _NdarrayClassToken
    table['numpy.dtype'] = _checked_dtype
    return table


_RESOLVED = _resolution_table()
# what REDUCE may call and NEWOBJ may create (besides stand-ins)
_CALLABLE = frozenset({*_REBUILDERS.values(), _checked_rebuild_from_type, _checked_encode, _empty_bytes,
                       _checked_bytearray,
                       _RESOLVED['builtins.set'], _RESOLVED['builtins.frozenset'], _checked_complex,
                       history_buffer_getattr, _checked_reconstruct, _checked_scalar, _checked_dtype,
                       torch.Size, torch.device, torch.serialization._get_layout})
_MAPPING_BUILDERS = {OrderedDict: _checked_mapping(OrderedDict), Counter: _checked_mapping(Counter)}
_NEWOBJ_CLASSES = frozenset({_CheckedHistoryBuffer, OrderedDict, Counter})
_MODULE_RENAMES = {'torch.tensor': 'torch._tensor'}  # as torch.load's own unpickler


# ----------------------------------------------------------------------------- the unpickler
class RestrictedUnpickler:
    """Pickle machine for checkpoints (protocols 2-4 without extensions or out-of-band buffers).

    ``torch.load`` subclasses it (its ``find_class`` maps legacy storage names first) and sets
    ``persistent_load`` to its storage loader. Opcodes that can reach arbitrary objects (INST, OBJ,
    EXT*, text PERSID) are refused; GLOBAL/STACK_GLOBAL resolve through :meth:`find_class`, which
    imports nothing.
    """

    def __init__(self, file: io.BufferedIOBase, *, encoding: str = 'utf-8', **unused: Any) -> None:
        self._read = file.read
        self._readline = file.readline
        self._encoding = encoding
        self._stand_ins: dict[str, type] = {}
        self.memo: dict[int, Any] = {}

    def persistent_load(self, pid: object) -> Any:  # replaced by torch.load
        raise _Refused('persistent ids are only valid inside a torch.save checkpoint')

    def find_class(self, module: str, name: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise _Refused('refused a global whose name is not text')
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        module = _MODULE_RENAMES.get(module, module)
        full = f'{module}.{name}'
        if full in _RESOLVED:
            return _RESOLVED[full]
        if full.startswith('torch._utils._rebuild') or full.startswith('torch._tensor._rebuild'):
            raise _Refused(f'refused {full}: mmdat loads dense, sparse, quantized and meta tensors only')
        return self._stand_in(full)

    def _stand_in(self, full_name: str) -> type:
        """The stand-in class for ``full_name`` (one per name and load, so identity holds)."""
        if full_name not in self._stand_ins:
            self._stand_ins[full_name] = _stand_in_class(full_name)
        return self._stand_ins[full_name]

    # ------------------------------------------------------------------ the machine
    def load(self) -> Any:
        self._stack: list[Any] = []
        self._marks: list[list[Any]] = []
        self._pending: dict[int, _PendingArray] = {}
        read = self._read
        while True:
            key = read(1)
            if not key:
                raise EOFError('pickle data ended before STOP')
            handler = self._DISPATCH.get(key[0])
            if handler is None:
                raise _Refused(f'refused pickle opcode {key!r} (not used by torch.save checkpoints)')
            if handler is RestrictedUnpickler._stop:
                if self._pending:
                    raise _Refused('refused a numpy array whose data never came (REDUCE without BUILD)')
                return self._stack.pop()
            handler(self)

    def _pop_mark(self) -> list[Any]:
        items = self._stack
        self._stack = self._marks.pop()
        return items

    def _stop(self) -> None:  # handled in load()
        pass

    def _proto(self) -> None:
        if self._read(1)[0] > 4:
            raise _Refused('refused pickle protocol 5 (out-of-band buffers)')

    def _frame(self) -> None:
        self._read(8)

    def _mark(self) -> None:
        self._marks.append(self._stack)
        self._stack = []

    def _push(self, value: Any) -> None:
        self._stack.append(value)

    def _unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        raw = self._read(size)
        if len(raw) != size:
            raise EOFError('pickle data truncated')
        return struct.unpack(fmt, raw)[0]

    def _read_exact(self, size: int) -> bytes:
        raw = self._read(size)
        if len(raw) != size:
            raise EOFError('pickle data truncated')
        return raw

    def _global(self) -> None:
        module = self._readline()[:-1].decode('utf-8')
        name = self._readline()[:-1].decode('utf-8')
        self._push(self.find_class(module, name))

    def _stack_global(self) -> None:
        name = self._stack.pop()
        module = self._stack.pop()
        self._push(self.find_class(module, name))

    def _reduce(self) -> None:
        args = self._stack.pop()
        func = self._stack[-1]
        if type(args) is not tuple:
            raise _Refused('refused REDUCE with non-tuple arguments')
        self._stack[-1] = self._call(func, args)

    def _call(self, func: Any, args: tuple) -> Any:
        if func is history_buffer_getattr and len(args) == 2 and type(args[1]) is str and (
                _is_stand_in_class(args[0]) or isinstance(args[0], StandIn)):
            # protocol 2 pickles nested names (Outer.Inner, enum members) as getattr(parent, name)
            return self._stand_in(f'{args[0].global_name}.{args[1]}')
        if _is_stand_in_class(func):
            return func(*args)
        if isinstance(func, StandIn):
            return StandInCall(func, *args)
        if func in _MAPPING_BUILDERS:
            return _MAPPING_BUILDERS[func](*args)
        if func in _CALLABLE:
            result = func(*args)
            if isinstance(result, _PendingArray):
                self._pending[id(result)] = result
            return result
        raise _Refused(f'refused to call {_describe(func)}')

    def _newobj(self) -> None:
        args = self._stack.pop()
        cls = self._stack.pop()
        self._push(self._new(cls, args, {}))

    def _newobj_ex(self) -> None:
        kwargs = self._stack.pop()
        args = self._stack.pop()
        cls = self._stack.pop()
        self._push(self._new(cls, args, kwargs))

    def _new(self, cls: Any, args: Any, kwargs: Any) -> Any:
        if type(args) is not tuple or type(kwargs) is not dict:
            raise _Refused('refused NEWOBJ with malformed arguments')
        if _is_stand_in_class(cls):
            return cls(*args, **kwargs)
        if cls in _NEWOBJ_CLASSES and not args and not kwargs:
            return cls.__new__(cls)
        raise _Refused(f'refused to create an object of {_describe(cls)}')

    def _build(self) -> None:
        state = self._stack.pop()
        inst = self._stack[-1]
        if isinstance(inst, StandIn):
            inst.state = state
        elif type(inst) is _CheckedHistoryBuffer:
            inst.__setstate__(state)
        elif isinstance(inst, _PendingArray) and id(inst) in self._pending:
            array = _build_array(state)
            del self._pending[id(inst)]
            self._stack[-1] = array
            for index, value in self.memo.items():
                if value is inst:
                    self.memo[index] = array
        elif id(inst) in _SAFE_DTYPE_OBJECTS:
            _check_dtype_state(inst, state)
        elif type(inst) is OrderedDict:  # a state dict's _metadata, nothing else
            if type(state) is not dict or set(state) != {'_metadata'} \
                    or type(state['_metadata']) not in (dict, OrderedDict):
                raise _Refused(f'refused OrderedDict attributes {_short(state)} (only a state dict\'s _metadata)')
            inst._metadata = state['_metadata']
        else:
            raise _Refused(f'refused to set the state of {_describe(inst)}')

    def _setitem(self) -> None:
        value = self._stack.pop()
        key = self._stack.pop()
        self._set_items(self._stack[-1], [key, value])

    def _setitems(self) -> None:
        items = self._pop_mark()
        self._set_items(self._stack[-1], items)

    def _set_items(self, target: Any, items: list) -> None:
        if isinstance(target, StandIn):
            target.items.extend(zip(items[::2], items[1::2]))
        elif type(target) in (dict, OrderedDict, Counter):
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
        else:
            raise _Refused(f'refused to set items of {_describe(target)}')

    def _append(self) -> None:
        value = self._stack.pop()
        self._extend(self._stack[-1], [value])

    def _appends(self) -> None:
        items = self._pop_mark()
        self._extend(self._stack[-1], items)

    def _extend(self, target: Any, items: list) -> None:
        if isinstance(target, StandIn):
            target.items.extend(items)
        elif type(target) is list:
            target.extend(items)
        else:
            raise _Refused(f'refused to append to {_describe(target)}')

    def _additems(self) -> None:
        items = self._pop_mark()
        target = self._stack[-1]
        if type(target) is not set:
            raise _Refused(f'refused to add items to {_describe(target)}')
        target.update(items)

    def _frozenset(self) -> None:
        self._push(frozenset(self._pop_mark()))

    def _binpersid(self) -> None:
        pid = self._stack.pop()
        ok = (type(pid) is tuple and len(pid) == 5 and pid[0] in ('storage', b'storage')
              and (pid[1] is torch.UntypedStorage or isinstance(pid[1], torch.serialization.StorageType))
              and type(pid[2]) is str and type(pid[3]) is str and type(pid[4]) is int and pid[4] >= 0)
        if not ok:
            raise _Refused(f'refused persistent id {_describe(pid)}: not a torch storage reference')
        self._push(self.persistent_load(pid))

    def _binget(self) -> None:
        self._push(self._memo_get(self._read_exact(1)[0]))

    def _long_binget(self) -> None:
        self._push(self._memo_get(self._unpack('<I')))

    def _memo_get(self, index: int) -> Any:
        if index not in self.memo:
            raise _Refused(f'refused a reference to memo entry {index}, which was never stored')
        return self._not_pending(self.memo[index])

    @staticmethod
    def _not_pending(value: Any) -> Any:
        """A numpy array may be referenced only once its data came (else a placeholder would leak)."""
        if isinstance(value, _PendingArray):
            raise _Refused('refused a reference to a numpy array before its data (BUILD)')
        return value

    def _binput(self) -> None:
        self.memo[self._read_exact(1)[0]] = self._stack[-1]

    def _long_binput(self) -> None:
        self.memo[self._unpack('<I')] = self._stack[-1]

    def _memoize(self) -> None:
        self.memo[len(self.memo)] = self._stack[-1]

    def _tuple(self) -> None:
        self._push(tuple(self._pop_mark()))

    def _tuple_n(n: int) -> Callable:  # noqa: N805 (builds methods)
        def handler(self: 'RestrictedUnpickler') -> None:
            if n == 0:
                self._push(())
            else:
                items = self._stack[-n:]
                del self._stack[-n:]
                self._push(tuple(items))
        return handler

    def _const(value_factory: Callable) -> Callable:  # noqa: N805
        def handler(self: 'RestrictedUnpickler') -> None:
            self._push(value_factory())
        return handler

    def _int(fmt: str) -> Callable:  # noqa: N805
        def handler(self: 'RestrictedUnpickler') -> None:
            self._push(self._unpack(fmt))
        return handler

    def _long(fmt: str) -> Callable:  # noqa: N805
        def handler(self: 'RestrictedUnpickler') -> None:
            size = self._unpack(fmt)
            if size < 0 or size > 1 << 20:
                raise _Refused('refused an integer of more than a megabyte')
            self._push(pickle.decode_long(self._read_exact(size)))
        return handler

    def _binfloat(self) -> None:
        self._push(self._unpack('>d'))

    def _text(fmt: str) -> Callable:  # noqa: N805
        def handler(self: 'RestrictedUnpickler') -> None:
            self._push(str(self._read_exact(self._unpack(fmt)), 'utf-8', 'surrogatepass'))
        return handler

    def _bytes(fmt: str) -> Callable:  # noqa: N805
        def handler(self: 'RestrictedUnpickler') -> None:
            self._push(self._read_exact(self._unpack(fmt)))
        return handler

    def _py2_string(fmt: str) -> Callable:  # noqa: N805
        def handler(self: 'RestrictedUnpickler') -> None:
            data = self._read_exact(self._unpack(fmt))
            self._push(data if self._encoding == 'bytes' else data.decode(self._encoding, 'strict'))
        return handler

    def _pop(self) -> None:
        if self._stack:
            self._stack.pop()
        else:
            self._pop_mark()

    def _pop_mark_op(self) -> None:
        self._pop_mark()

    def _dup(self) -> None:
        self._push(self._not_pending(self._stack[-1]))

    _DISPATCH: dict[int, Callable] = {}


def _dispatch_table() -> dict[int, Callable]:
    U = RestrictedUnpickler  # noqa: N806
    ops = {
        pickle.PROTO: U._proto, pickle.FRAME: U._frame, pickle.STOP: U._stop, pickle.MARK: U._mark,
        pickle.GLOBAL: U._global, pickle.STACK_GLOBAL: U._stack_global, pickle.REDUCE: U._reduce,
        pickle.NEWOBJ: U._newobj, pickle.NEWOBJ_EX: U._newobj_ex, pickle.BUILD: U._build,
        pickle.SETITEM: U._setitem, pickle.SETITEMS: U._setitems, pickle.APPEND: U._append,
        pickle.APPENDS: U._appends, pickle.ADDITEMS: U._additems, pickle.FROZENSET: U._frozenset,
        pickle.BINPERSID: U._binpersid, pickle.BINGET: U._binget, pickle.LONG_BINGET: U._long_binget,
        pickle.BINPUT: U._binput, pickle.LONG_BINPUT: U._long_binput, pickle.MEMOIZE: U._memoize,
        pickle.TUPLE: U._tuple, pickle.EMPTY_TUPLE: U._tuple_n(0), pickle.TUPLE1: U._tuple_n(1),
        pickle.TUPLE2: U._tuple_n(2), pickle.TUPLE3: U._tuple_n(3),
        pickle.NONE: U._const(lambda: None), pickle.NEWTRUE: U._const(lambda: True),
        pickle.NEWFALSE: U._const(lambda: False), pickle.EMPTY_LIST: U._const(list),
        pickle.EMPTY_DICT: U._const(dict), pickle.EMPTY_SET: U._const(set),
        pickle.BININT: U._int('<i'), pickle.BININT1: U._int('<B'), pickle.BININT2: U._int('<H'),
        pickle.LONG1: U._long('<B'), pickle.LONG4: U._long('<i'), pickle.BINFLOAT: U._binfloat,
        pickle.BINUNICODE: U._text('<I'), pickle.SHORT_BINUNICODE: U._text('<B'),
        pickle.BINUNICODE8: U._text('<Q'), pickle.BINBYTES: U._bytes('<I'),
        pickle.SHORT_BINBYTES: U._bytes('<B'), pickle.BINBYTES8: U._bytes('<Q'),
        pickle.BINSTRING: U._py2_string('<i'), pickle.SHORT_BINSTRING: U._py2_string('<B'),
        pickle.POP: U._pop, pickle.POP_MARK: U._pop_mark_op, pickle.DUP: U._dup,
    }
    return {op[0]: handler for op, handler in ops.items()}


RestrictedUnpickler._DISPATCH = _dispatch_table()
for _name in ('_tuple_n', '_const', '_int', '_long', '_text', '_bytes', '_py2_string'):
    delattr(RestrictedUnpickler, _name)


def _restricted_load(file: io.BufferedIOBase, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


#: what ``torch.load(pickle_module=...)`` gets: a module whose Unpickler is the restricted one
RESTRICTED_PICKLE = types.ModuleType('mmdat_restricted_pickle', 'torch.load pickle_module of mmdat')
RESTRICTED_PICKLE.Unpickler = RestrictedUnpickler
RESTRICTED_PICKLE.load = _restricted_load
RESTRICTED_PICKLE.UnpicklingError = pickle.UnpicklingError


# ----------------------------------------------------------------------------- loading
def load_checkpoint_file(path: Union[str, os.PathLike], map_location: Any = 'cpu') -> Any:
    """Load a ``torch.save`` zip checkpoint with :class:`RestrictedUnpickler`.

    Raises :class:`CheckpointSecurityError` naming the file for refused objects and for any
    other failure while reading it (corrupt archive, TypeError/AttributeError in a rebuild...).
    Legacy (torch < 1.6) and TorchScript archives are refused: their loaders run more than pickle.
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointSecurityError(f'{path}: could not open the checkpoint ({err})') from err
    if head != b'PK\x03\x04':
        if head[:1] == b'\x80':
            raise CheckpointSecurityError(
                f'{path}: a legacy (torch < 1.6) checkpoint; mmdat reads only the zip format of torch '
                '>= 1.6 (re-save a trusted legacy file with a current torch)')
        raise CheckpointSecurityError(f'{path}: not a PyTorch checkpoint (unrecognised file header {head!r})')
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise CheckpointSecurityError(f'{path}: corrupt zip archive ({err})') from err
    if any(n == 'constants.pkl' or n.endswith('/constants.pkl') for n in names):
        raise CheckpointSecurityError(f'{path}: a TorchScript archive, which mmdat does not load as a checkpoint')
    if os.environ.get('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '0').lower() in ('1', 'y', 'yes', 'true'):
        raise CheckpointSecurityError(
            f'{path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which makes torch.load refuse any restricted '
            'unpickler, including mmdat\'s (it needs numpy and stand-ins for Lightning objects); unset it')
    try:
        with torch.sparse.check_sparse_tensor_invariants(enable=True):
            return torch.load(path, map_location=map_location, pickle_module=RESTRICTED_PICKLE)
    except pickle.UnpicklingError as err:
        raise CheckpointSecurityError(f'{path}: refused to load the checkpoint: {err}') from err
    except Exception as err:  # corrupt data raises many types; each names the file
        raise CheckpointSecurityError(
            f'{path}: could not read the checkpoint ({type(err).__name__}: {str(err)[:500]})') from err


def walk(obj: Any) -> Iterator[Any]:
    """Every object reachable from ``obj`` through containers and stand-ins (each once)."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if type(item) in (tuple, list, set, frozenset):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
            todo.extend(getattr(item, '__dict__', {}).values())
        elif isinstance(item, StandIn):
            todo.extend((item.args, item.state, item.items))
        elif type(item) is HistoryBuffer:
            todo.extend(vars(item).values())


def stand_ins_in(obj: Any) -> list[str]:
    """Global names of the stand-ins (classes and records) reachable from ``obj``, sorted."""
    names = set()
    for item in walk(obj):
        if _is_stand_in_class(item) or isinstance(item, StandIn):
            names.add(item.global_name)
    return sorted(names)


def load_mmengine_checkpoint(path: Union[str, os.PathLike], map_location: Any = 'cpu') -> dict:
    """An mmengine checkpoint (``load_from``, ``--resume``, ``tools/test.py``) as plain data.

    Refuses (:class:`CheckpointSecurityError`, naming the file) anything that is not data of the
    kinds mmengine writes: tensors, numbers, strings, containers, numpy's numeric arrays and
    scalars, ``HistoryBuffer``. A global the file names is refused, not turned into a stand-in.
    """
    checkpoint = load_checkpoint_file(path, map_location)
    foreign = stand_ins_in(checkpoint)
    if foreign:
        raise CheckpointSecurityError(
            f'{os.fspath(path)}: refused to load this checkpoint: it holds objects that are not plain '
            f'data ({", ".join(foreign[:8])}{" ..." if len(foreign) > 8 else ""}); mmdat loads '
            'mmengine checkpoints of tensors, numbers, strings, numpy numeric arrays and HistoryBuffer')
    if not isinstance(checkpoint, dict):
        raise CheckpointSecurityError(
            f'{os.fspath(path)}: not an mmengine checkpoint (a {type(checkpoint).__name__}, not a dict)')
    return checkpoint


def _short(value: object) -> str:
    """A bounded repr of file data for messages (depth and length limited)."""
    return reprlib.repr(value)


def _describe(obj: object) -> str:
    if isinstance(obj, StandIn) or _is_stand_in_class(obj):
        return f'<stand-in for {obj.global_name}>'
    name = getattr(obj, '__qualname__', None) if isinstance(obj, (type, types.FunctionType)) else None
    return f'<{name or type(obj).__qualname__}>'
