"""No checkpoint runs code or forges memory in a process that imported mmdat (issue 15).

Every hostile file of tests/hostile_checkpoints.py goes through every loading path in a subprocess
(tests/checkpoint_load_harness.py: plain ``torch.load``, the VQGAN loader, the runner's
``load_from``/``--resume``, ``load_model_checkpoint``, the converter), so that a crash fails a test
instead of the session; two also through the real command-line tools. None may create the marker
file or import a module the file names; refusals name the file.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_VQGAN, run_tool, tiny_cls_config
from hostile_checkpoints import numpy_payloads, payloads, stand_in_payloads, write_all, write_checkpoint
from make_lightning_fixtures import MICRO_VQGAN
from mmengine.logging import HistoryBuffer, MessageHub

import mmdat  # noqa: F401
from mmdat.engine import load_model_checkpoint
from mmdat.models import VQGAN, VQGANCheckpointError
from mmdat.utils import CheckpointSecurityError, load_checkpoint_file, load_mmengine_checkpoint

GADGETS = sorted(payloads(REPO / 'unused-marker'))
STAND_INS = sorted(stand_in_payloads(REPO / 'unused-marker'))
NUMPY = sorted(numpy_payloads())
#: stand-in files whose gadgets are inert: the VQGAN loader keeps the weights, the others refuse
INERT = ['stand_in_called', 'stand_in_class_with_state', 'stand_in_dict_key']
HOSTILE = GADGETS + STAND_INS + NUMPY
# the attribute-walking gadgets run code when the real getattr is allow-listed (mmdat's first policy)
GETATTR_GADGETS = ['getattr_walk_eval', 'getattr_walk_exec', 'py2_getattr_walk_eval', 'getattr_walk_import']
MMDAT_LOADERS = ['vqgan', 'load_model_checkpoint', 'runner.load_checkpoint', 'runner.resume', 'converter']


@pytest.fixture(scope='module')
def micro_weights() -> dict:
    torch.manual_seed(0)
    return {k: v.half() for k, v in VQGAN(**MICRO_VQGAN).state_dict().items()}


@pytest.fixture(scope='module')
def hostile(tmp_path_factory, micro_weights):
    root = tmp_path_factory.mktemp('hostile')
    marker = root / 'MARKER'
    return write_all(root / 'files', marker, micro_weights), marker


@pytest.fixture(autouse=True)
def process_allow_list():
    """Every test leaves torch's process-wide allow-list exactly as it found it."""
    saved = list(torch.serialization.get_safe_globals())
    yield saved
    after = list(torch.serialization.get_safe_globals())
    restore(saved)
    assert set(after) == set(saved), 'a test or a loader left the process allow-list changed'


def restore(saved: list) -> None:
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


@pytest.fixture(scope='module')
def cls_config(tmp_path_factory, tiny_vqgan_cfg):
    from mmdat.datasets import make_shapes_classification
    root = tmp_path_factory.mktemp('security_cls')
    make_shapes_classification(root / 'data', num_per_class=2, size=16,
                               classes=('circle', 'square', 'triangle'))
    return tiny_cls_config(root, root / 'data', tiny_vqgan_cfg)


@pytest.fixture(scope='module')
def harness(hostile, cls_config, micro_weights, tmp_path_factory):
    """Every hostile file through every loader in one subprocess: the record of each (file, loader),
    the modules imported, and how the subprocess ended."""
    files, marker = hostile
    work = tmp_path_factory.mktemp('harness')
    expected = work / 'expected.pth'
    torch.save(micro_weights, expected)
    cmd = [sys.executable, str(REPO / 'tests' / 'checkpoint_load_harness.py'), cls_config, str(expected),
           str(work), *map(str, files.values())]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', 'MMDAT_CACHE_DIR': str(work / 'cache')})
    records, summary = {}, None
    for line in proc.stdout.splitlines():
        if line.startswith('{'):
            record = json.loads(line)
            if 'imported' in record:
                summary = record
            else:
                records[record['file'], record['loader']] = record
    return dict(records=records, summary=summary, returncode=proc.returncode, stderr=proc.stderr[-3000:],
                files=files, marker=marker)


def _record(harness: dict, name: str, loader: str) -> dict:
    record = harness['records'].get((name, loader))
    assert record is not None, (f'no result for {name} / {loader}: the harness exited with '
                                f'{harness["returncode"]}\n{harness["stderr"]}')
    return record


def test_harness_ran_to_the_end_and_imported_nothing(harness):
    assert harness['returncode'] == 0, harness['stderr']
    summary = harness['summary']
    assert summary is not None and summary['imported'] == [], summary
    # the files do name modules that a real unpickler would import
    assert {'webbrowser', 'smtplib', 'ftplib', 'http.server', 'pdb', 'pytorch_lightning'} <= set(summary['named'])
    assert not harness['marker'].exists()


@pytest.mark.parametrize('name', HOSTILE)
def test_plain_torch_load_after_import(name, harness):
    record = _record(harness, name, 'torch.load')
    assert record['outcome'] == 'refused' and record['error'] == 'UnpicklingError', record


@pytest.mark.parametrize('loader', MMDAT_LOADERS)
@pytest.mark.parametrize('name', HOSTILE)
def test_mmdat_loaders(name, loader, harness):
    """Refused with the file's name, or (inert stand-ins, VQGAN loader and converter) loaded with the
    exact weights; never another exception, never a crash."""
    record = _record(harness, name, loader)
    if name in INERT and loader in ('vqgan', 'converter'):
        assert record['outcome'] == 'loaded', record
        assert loader == 'converter' or record['weights_equal'], record
        return
    assert record['outcome'] == 'refused', record
    assert str(harness['files'][name]) in record['message'], record
    if name in NUMPY:
        assert 'numpy' in record['message'], record
    if name in INERT:  # the mmengine loaders name what they refuse
        assert 'not plain data' in record['message'], record
    assert not harness['marker'].exists()


def test_gadgets_are_real_under_a_global_getattr_allowance(hostile, process_allow_list):
    """Guard against tests that cannot fail: with the real getattr allowed process-wide (what
    mmdat used to do at import), the attribute walks do run code."""
    files, marker = hostile
    torch.serialization.add_safe_globals([getattr])
    try:
        for name in GETATTR_GADGETS:
            marker.unlink(missing_ok=True)
            with pytest.raises(Exception):
                torch.load(files[name], weights_only=True)
            assert marker.exists(), name
    finally:
        restore(process_allow_list)
        marker.unlink(missing_ok=True)


@pytest.mark.parametrize('name, crash', [('numpy_object_scalar', True), ('numpy_object_array_from_bytes', True),
                                         ('numpy_subarray_itemsize_lie', True),
                                         ('numpy_ndarray_views_object_buffer', False)])
def test_numpy_forgeries_are_real_under_numpys_own_functions(name, crash, hostile):
    """Guard against tests that cannot fail: loaded through numpy's own _reconstruct/scalar/dtype
    (what mmdat allowed before), these files crash the process or expose object addresses."""
    files, _ = hostile
    code = ('import sys, torch, numpy as np\n'
            'core = np._core.multiarray\n'
            'torch.serialization.add_safe_globals([np.ndarray, np.dtype, core._reconstruct, core.scalar]'
            ' + [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")])\n'
            'payload = torch.load(sys.argv[1], weights_only=True)["payload"]\n'
            'print("LOADED", repr(payload))\n')
    proc = subprocess.run([sys.executable, '-c', code, str(files[name])], capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    if crash:
        assert proc.returncode < 0, (proc.returncode, proc.stdout, proc.stderr[-1000:])
    else:  # the object array's item addresses, read as integers
        assert proc.returncode == 0 and 'LOADED array([' in proc.stdout and 'uint64' in proc.stdout, proc.stdout


def test_import_changes_no_global_loading_policy():
    """torch and the upstream packages register a few safe globals of their own at import (e.g.
    torch.distributed's exceptions); importing mmdat on top of them adds nothing."""
    code = ('import torch, torch.distributed, mmengine.runner, mmpretrain.models, mmdet.models, mmseg.models\n'
            'before = list(torch.serialization.get_safe_globals())\n'
            'import mmdat, mmdat.apis, mmdat.engine\n'
            'after = list(torch.serialization.get_safe_globals())\n'
            'print("UNCHANGED", before == after)')
    out = run_tool([sys.executable, '-c', code], cwd=REPO)
    assert 'UNCHANGED True' in out, out


@pytest.mark.parametrize('tool, name', [('test', 'getattr_walk_eval'), ('resume', 'numpy_object_scalar')])
def test_tools_refuse_hostile_checkpoints(tool, name, hostile, cls_config, tmp_path):
    """The command lines themselves (the harness covers every file through the same functions)."""
    files, marker = hostile
    args = (['tools/test.py', cls_config, str(files[name])] if tool == 'test' else
            ['tools/train.py', cls_config, '--resume', str(files[name])])
    with pytest.raises(AssertionError) as failure:
        run_tool([sys.executable, *args, '--work-dir', str(tmp_path / 'work')], cwd=REPO)
    message = str(failure.value)
    assert 'CheckpointSecurityError' in message and str(files[name]) in message, message[-2000:]
    assert not marker.exists()


def test_genuine_mmengine_checkpoint_round_trip(tmp_path):
    """What mmengine stores (HistoryBuffer with its statistics, numpy arrays and scalars of every
    admitted dtype, a state dict with _metadata) loads as the genuine objects, bit for bit."""
    hub = MessageHub.get_instance('security-round-trip')
    hub.update_scalar('train/loss', 1.0)
    hub.update_scalar('train/loss', 2.0)
    arrays = {code: (np.arange(6) % 3).astype(code).reshape(2, 3) for code in
              ('?', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8')}
    arrays['fortran'] = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    arrays['empty'] = np.zeros((0, 4), dtype=np.float32)
    hub.update_info('arrays', arrays)
    model = torch.nn.BatchNorm2d(2)
    path = tmp_path / 'genuine.pth'
    torch.save({'message_hub': hub.state_dict(), 'state_dict': model.state_dict(),
                'meta': {'seed': np.int64(3), 'lr': np.float32(0.5), 'flag': np.bool_(True), 'epoch': 2}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # plain torch refuses numpy; mmdat's own loader does not
    loaded = load_mmengine_checkpoint(path)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert type(buffer) is HistoryBuffer and buffer.mean() == 1.5 and buffer.statistics('max') == 2.0
    for key, array in arrays.items():
        got = loaded['message_hub']['runtime_info']['arrays'][key]
        assert type(got) is np.ndarray and got.dtype == array.dtype and got.flags.writeable, key
        assert got.shape == array.shape and got.tobytes(order='A') == array.tobytes(order='A'), key
        assert got.flags.f_contiguous == array.flags.f_contiguous, key
    meta = loaded['meta']
    assert (type(meta['seed']), type(meta['lr']), type(meta['flag'])) == (np.int64, np.float32, np.bool_)
    assert meta == {'seed': 3, 'lr': 0.5, 'flag': True, 'epoch': 2}
    assert loaded['state_dict']._metadata == model.state_dict()._metadata
    assert all(torch.equal(loaded['state_dict'][k], v) for k, v in model.state_dict().items())


def test_numpy_arrays_shared_and_referenced_early(tmp_path):
    """An array pickled twice is one object after loading; a reference to an array before its data
    arrives (which would hand out the placeholder) is refused."""
    from hostile_checkpoints import FALSE, TRUE, NONE, call, glob, integer, raw_bytes, text, tup
    shared = np.arange(2.0)
    torch.save({'a': shared, 'b': shared}, tmp_path / 'shared.pth')
    loaded = load_mmengine_checkpoint(tmp_path / 'shared.pth')
    assert loaded['a'] is loaded['b'] and loaded['a'].tolist() == [0.0, 1.0]
    array = call(glob('numpy._core.multiarray', '_reconstruct'), glob('numpy', 'ndarray'), tup(integer(0)),
                 raw_bytes(b'b'))
    dtype = call(glob('numpy', 'dtype'), text('f8'), FALSE, TRUE) + tup(
        integer(3), text('<'), NONE, NONE, NONE, integer(-1), integer(-1), integer(0)) + b'b'
    early = (b']' + array + b'q\x00' + b'h\x00' + b'a'  # list.append(memo[0]) before the BUILD
             + tup(integer(1), tup(integer(1)), dtype, FALSE, raw_bytes(b'\0' * 8)) + b'b' + b'a')
    path = write_checkpoint(tmp_path / 'early.pth', early)
    with pytest.raises(CheckpointSecurityError, match=f'{path}.*before its data'):
        load_checkpoint_file(path)


def test_foreign_objects_are_stand_ins_and_refused_by_the_mmengine_loaders(tmp_path):
    """A checkpoint with a pickled Python object: the generic loader gives an inert stand-in that
    recorded its state without applying it; the mmengine loaders refuse it by name."""
    import argparse
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'args': argparse.Namespace(lr=0.1)}, path)
    stand_in = load_checkpoint_file(path)['args']
    assert stand_in.global_name == 'argparse.Namespace' and stand_in.state == {'lr': 0.1}
    assert not hasattr(stand_in, 'lr')
    with pytest.raises(CheckpointSecurityError, match=f'{path}.*argparse.Namespace'):
        load_model_checkpoint(torch.nn.Linear(1, 1), str(path))


def test_url_checkpoints_load_through_the_same_loader(hostile, tmp_path, monkeypatch):
    """``load_from=<URL>``: mmengine would unpickle through torch.hub without restriction; mmdat
    downloads into its cache and loads the same safe way, dropping a refused download, and refuses
    other schemes."""
    from mmdat.models import vqgan_checkpoint
    cache = tmp_path / 'cache'
    monkeypatch.setattr(vqgan_checkpoint, 'CACHE_DIR', cache)
    monkeypatch.setenv('LOCAL_RANK', '0')
    files, marker = hostile
    with pytest.raises(CheckpointSecurityError, match='os.system'):
        load_model_checkpoint(torch.nn.Linear(1, 1), files['reduce_os_system'].as_uri())
    assert list(cache.iterdir()) == [] and not marker.exists()
    model = torch.nn.Linear(2, 1)
    torch.save({'state_dict': model.state_dict(), 'meta': {'seed': np.int64(1)}}, tmp_path / 'good.pth')
    target = torch.nn.Linear(2, 1)
    load_model_checkpoint(target, (tmp_path / 'good.pth').as_uri())
    assert torch.equal(target.weight, model.weight) and len(list(cache.iterdir())) == 1
    with pytest.raises(CheckpointSecurityError, match='local files and http'):
        load_model_checkpoint(target, 'open-mmlab://resnet50_v1c')


_STORAGE = (b'(X\x07\x00\x00\x00storage' + b'ctorch\nUntypedStorage\n' + b'X\x01\x00\x00\x000'
            + b'X\x03\x00\x00\x00cpu' + b'K\x01tQ')


@pytest.mark.parametrize('error, body', [
    ('TypeError', b'ctorch._utils\n_rebuild_tensor_v2\n(K\x01tR'),  # a rebuilder with wrong arguments
    ('RuntimeError', b'ctorch._utils\n_rebuild_tensor\n(' + _STORAGE + b'K\x00K\x09\x85K\x01\x85tR'),  # out of bounds
    ('AttributeError', b'ctorch._utils\n_rebuild_device_tensor_from_cpu_tensor\n(K\x01NX\x03\x00\x00\x00cpu\x89tR'),
    ('EOFError', b'}X\x05\x00\x00\x00a'),  # a string longer than the stream
])
def test_other_errors_are_wrapped_with_the_file_name(error, body, tmp_path):
    path = write_checkpoint(tmp_path / f'{error}.pth', body)
    for load in (lambda: load_checkpoint_file(path),
                 lambda: load_model_checkpoint(torch.nn.Linear(1, 1), str(path))):
        with pytest.raises(CheckpointSecurityError, match=str(path)) as info:
            load()
        assert error in str(info.value), info.value
    with pytest.raises(VQGANCheckpointError, match=str(path)):
        VQGAN(**TINY_VQGAN, checkpoint=path)


def test_legacy_and_non_checkpoint_files_are_refused(tmp_path):
    legacy = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {}}, legacy, _use_new_zipfile_serialization=False)
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    broken = write_checkpoint(tmp_path / 'broken.pth', b'\x93garbage')
    for path, match in ((legacy, 'legacy'), (junk, 'not a PyTorch checkpoint'), (broken, 'could not read')):
        with pytest.raises(VQGANCheckpointError, match=f'{path}.*{match}'):
            VQGAN(**TINY_VQGAN, checkpoint=path)
        with pytest.raises(CheckpointSecurityError, match=f'{path}.*{match}'):
            load_model_checkpoint(torch.nn.Linear(1, 1), str(path))


def test_train_kill_resume_test_end_to_end(cls_config, tmp_path):
    """Genuine mmengine checkpoints through mmdat's loader: train, kill -9 mid-run, --resume,
    then tools/test.py on the result."""
    import re
    import signal
    import time
    work = tmp_path / 'work'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.Popen([sys.executable, 'tools/train.py', cls_config, '--work-dir', str(work),
                             '--cfg-options', 'train_cfg.max_epochs=1000', 'default_hooks.checkpoint.interval=1',
                             'default_hooks.checkpoint.max_keep_ckpts=-1'],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    marker = work / 'last_checkpoint'  # mmengine writes it once a checkpoint is complete
    complete = ''
    try:
        deadline = time.monotonic() + 300
        while not complete and time.monotonic() < deadline and proc.poll() is None:
            complete = marker.read_text().strip() if marker.is_file() else ''
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the training run ended before it was killed'
    last = int(Path(complete).stem.split('_')[1])
    out = run_tool([sys.executable, 'tools/train.py', cls_config, '--work-dir', str(work), '--resume',
                    complete, '--cfg-options', f'train_cfg.max_epochs={last + 1}'], cwd=REPO)
    assert re.search(rf'resumed epoch: {last}', out.lower()), out[-3000:]
    assert re.search(r'adv_loss: \d', out), out[-3000:]
    final = work / f'epoch_{last + 1}.pth'
    assert final.is_file()
    out = run_tool([sys.executable, 'tools/test.py', cls_config, str(final),
                    '--work-dir', str(tmp_path / 'test')], cwd=REPO)
    assert 'accuracy/top1' in out
