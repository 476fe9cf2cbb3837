"""Run checkpoint files through every mmdat loader, in a process of their own (a crash fails a test,
not the test session). Used by tests/test_checkpoint_security.py.

    python tests/checkpoint_load_harness.py CONFIG EXPECTED_WEIGHTS OUT_DIR FILE...

Loaders: plain ``torch.load(weights_only=True)`` after ``import mmdat``; then, with the process
allow-list widened the way mmdat used to widen it (the real ``getattr``, ``HistoryBuffer``, numpy's
own ``_reconstruct``/``scalar``/``dtype``/``ndarray`` and ``numpy.dtypes.*``) to show that mmdat's
loaders do not depend on it: ``load_vqgan_state_dict`` (what ``VQGAN(checkpoint=...)`` uses),
``load_model_checkpoint``, ``CheckpointSafeRunner.load_checkpoint`` (``load_from``/``tools/test.py``),
``CheckpointSafeRunner.resume`` (``--resume``) and the converter tool. Prints one JSON line per
(file, loader), flushed as it goes, then one line with the modules named in the files' pickles that
were imported during the loads (there must be none).
"""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import pickletools
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

import mmdat  # noqa: F401
from mmdat.apis import build_runner
from mmdat.engine import load_model_checkpoint
from mmdat.models import VQGANCheckpointError
from mmdat.models.vqgan_checkpoint import load_vqgan_state_dict
from mmdat.utils import CheckpointSecurityError

REPO = Path(__file__).resolve().parents[1]


def named_modules(path: Path) -> set[str]:
    """Modules (and their parent packages) that the pickle of ``path`` names in GLOBAL opcodes."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    modules = set()
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name == 'GLOBAL':
                parts = arg.split(' ', 1)[0].split('.')
                modules.update('.'.join(parts[:i]) for i in range(1, len(parts) + 1))
    except ValueError:
        pass  # a deliberately broken stream: what was read so far counts
    return modules


def run_converter(path: Path, out_dir: Path) -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location('vqgan_to_state_dict',
                                                  REPO / 'tools/model_converters/vqgan_to_state_dict.py')
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    argv, sys.argv = sys.argv, ['vqgan_to_state_dict.py', str(path), str(out_dir / f'{path.stem}.converted.pth')]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            status = converter.main()
    finally:
        sys.argv = argv
    if status != 0:
        raise VQGANCheckpointError(f'converter exited with {status}: {stderr.getvalue().strip()}')


def widen_process_allow_list() -> None:
    numpy_core = np._core.multiarray
    torch.serialization.add_safe_globals(
        [getattr, HistoryBuffer, np.ndarray, np.dtype, numpy_core._reconstruct, numpy_core.scalar]
        + [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')])


def main() -> int:
    config, expected_path, out_dir, *files = sys.argv[1:]
    out_dir = Path(out_dir)
    expected = torch.load(expected_path, weights_only=True)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(out_dir / 'work')
    runner = build_runner(cfg)
    files = [Path(f) for f in files]
    named = set().union(*(named_modules(f) for f in files))
    before = set(sys.modules)

    def report(path: Path, loader: str, fn) -> None:
        record = dict(file=path.stem, loader=loader)
        try:
            result = fn()
            record['outcome'] = 'loaded'
            if loader == 'vqgan':
                record['weights_equal'] = sorted(result) == sorted(expected) and all(
                    torch.equal(result[k], expected[k]) and result[k].dtype == expected[k].dtype
                    for k in expected)
        except (pickle.UnpicklingError, VQGANCheckpointError, CheckpointSecurityError) as err:
            record.update(outcome='refused', error=type(err).__name__, message=str(err)[:600])
        except Exception as err:  # noqa: BLE001 (reported, and the test fails on it)
            record.update(outcome='failed', error=type(err).__name__, message=str(err)[:600])
        print(json.dumps(record), flush=True)

    for path in files:
        report(path, 'torch.load', lambda: torch.load(path, weights_only=True))
    widen_process_allow_list()
    for path in files:
        report(path, 'vqgan', lambda: load_vqgan_state_dict(path))
        report(path, 'load_model_checkpoint', lambda: load_model_checkpoint(torch.nn.Linear(1, 1), str(path)))
        report(path, 'runner.load_checkpoint', lambda: runner.load_checkpoint(str(path)))
        report(path, 'runner.resume', lambda: runner.resume(str(path)))
        report(path, 'converter', lambda: run_converter(path, out_dir))
    imported = sorted(m for m in named if m in sys.modules and m not in before)
    print(json.dumps(dict(imported=imported, named=sorted(named))), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
