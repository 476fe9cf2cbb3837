"""No checkpoint runs code in a process that imported mmdat (issue: weights-only loading policy).

Every hostile file of tests/hostile_checkpoints.py goes through every loading path: plain
``torch.load`` after ``import mmdat``, ``VQGAN(checkpoint=...)``, a runner's ``load_from`` (what
``tools/test.py`` does), ``--resume`` and ``load_model_checkpoint``; a few also through the real
command-line tools. None may create the marker file; each must fail naming the file.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_VQGAN, run_tool, tiny_cls_config
from hostile_checkpoints import write_all, write_checkpoint, payloads
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

import mmdat  # noqa: F401
from mmdat.apis import build_runner
from mmdat.engine import load_model_checkpoint
from mmdat.models import VQGAN, VQGANCheckpointError
from mmdat.utils import CheckpointSecurityError, mmengine_checkpoint_objects

HOSTILE = sorted(payloads(REPO / 'unused-marker'))
# the attribute-walking gadgets run code when the real getattr is allow-listed (the old policy)
GETATTR_GADGETS = ['getattr_walk_eval', 'getattr_walk_exec', 'py2_getattr_walk_eval', 'getattr_walk_import']


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp('hostile')
    marker = root / 'MARKER'
    return write_all(root / 'files', marker), marker


@pytest.fixture(autouse=True)
def process_allow_list():
    """Every test leaves torch's process-wide allow-list exactly as it found it."""
    saved = list(torch.serialization.get_safe_globals())
    yield saved
    after = list(torch.serialization.get_safe_globals())
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)
    assert set(after) == set(saved), 'a test or a loader left the process allow-list changed'


def restore(saved: list) -> None:
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


@pytest.fixture
def class_statistics():
    """HistoryBuffer keeps its statistics methods on the class: check that no load changed them."""
    HistoryBuffer()  # the first buffer of a process registers the defaults on the class
    saved = dict(HistoryBuffer._statistics_methods)
    yield saved
    changed = HistoryBuffer._statistics_methods != saved
    HistoryBuffer._statistics_methods.clear()
    HistoryBuffer._statistics_methods.update(saved)
    assert not changed, 'a checkpoint changed HistoryBuffer._statistics_methods'


def test_import_changes_no_global_loading_policy():
    """torch and the upstream packages register a few safe globals of their own at import (e.g.
    torch.distributed's exceptions); importing mmdat on top of them adds nothing."""
    code = ('import torch, torch.distributed, mmengine.runner, mmpretrain.models, mmdet.models, mmseg.models\n'
            'before = list(torch.serialization.get_safe_globals())\n'
            'import mmdat, mmdat.apis, mmdat.engine\n'
            'after = list(torch.serialization.get_safe_globals())\n'
            'print("UNCHANGED", before == after, "GETATTR", any(g is getattr or '
            '(isinstance(g, tuple) and "getattr" in g[1]) for g in after))')
    out = run_tool([sys.executable, '-c', code], cwd=REPO)
    assert 'UNCHANGED True GETATTR False' in out, out


def test_gadgets_are_real_under_a_global_getattr_allowance(hostile, tmp_path, process_allow_list):
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


@pytest.mark.parametrize('name', HOSTILE)
def test_plain_torch_load_after_import(name, hostile, class_statistics):
    files, marker = hostile
    with pytest.raises(pickle.UnpicklingError):
        torch.load(files[name], weights_only=True)
    assert not marker.exists()


@pytest.mark.parametrize('name', HOSTILE)
def test_vqgan_loader_refuses(name, hostile, class_statistics):
    files, marker = hostile
    with pytest.raises(VQGANCheckpointError, match=str(files[name])):
        VQGAN(**TINY_VQGAN, checkpoint=files[name])
    assert not marker.exists()


@pytest.mark.parametrize('name', GETATTR_GADGETS + ['history_buffer_state'])
def test_vqgan_loader_ignores_the_process_allow_list(name, hostile, class_statistics, process_allow_list):
    """Even when the process itself allow-lists the real getattr and HistoryBuffer."""
    files, marker = hostile
    torch.serialization.add_safe_globals([getattr, HistoryBuffer])
    try:
        with pytest.raises(VQGANCheckpointError, match=str(files[name])):
            VQGAN(**TINY_VQGAN, checkpoint=files[name])
        with pytest.raises(CheckpointSecurityError, match=str(files[name])):
            load_model_checkpoint(torch.nn.Linear(1, 1), str(files[name]))
        assert {getattr, HistoryBuffer} <= set(torch.serialization.get_safe_globals())
    finally:
        restore(process_allow_list)
    assert not marker.exists()


@pytest.fixture(scope='module')
def cls_config(tmp_path_factory, tiny_vqgan_cfg):
    from mmdat.datasets import make_shapes_classification
    root = tmp_path_factory.mktemp('security_cls')
    make_shapes_classification(root / 'data', num_per_class=2, size=16,
                               classes=('circle', 'square', 'triangle'))
    return tiny_cls_config(root, root / 'data', tiny_vqgan_cfg)


def _runner(config: str, work_dir, **overrides):
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.update(overrides)
    return build_runner(cfg)


@pytest.mark.parametrize('name', HOSTILE)
def test_runner_load_from_and_resume_refuse(name, hostile, cls_config, tmp_path, class_statistics):
    files, marker = hostile
    path = str(files[name])
    runner = _runner(cls_config, tmp_path / 'test', load_from=path)
    with pytest.raises(CheckpointSecurityError, match=path):
        runner.test()  # tools/test.py: load_from + runner.test()
    runner = _runner(cls_config, tmp_path / 'resume', load_from=path, resume=True)
    with pytest.raises(CheckpointSecurityError, match=path):
        runner.train()  # tools/train.py --resume PATH
    with pytest.raises(CheckpointSecurityError, match=path):
        load_model_checkpoint(torch.nn.Linear(1, 1), path)
    assert not marker.exists()


@pytest.mark.parametrize('tool', ['test', 'resume'])
def test_tools_refuse_hostile_checkpoints(tool, hostile, cls_config, tmp_path):
    """The command lines themselves (the runner paths above cover every file in-process)."""
    files, marker = hostile
    name = 'getattr_walk_eval' if tool == 'test' else 'history_buffer_state'
    args = (['tools/test.py', cls_config, str(files[name])] if tool == 'test' else
            ['tools/train.py', cls_config, '--resume', str(files[name])])
    with pytest.raises(AssertionError) as failure:
        run_tool([sys.executable, *args, '--work-dir', str(tmp_path / 'work')], cwd=REPO)
    message = str(failure.value)
    assert 'CheckpointSecurityError' in message and str(files[name]) in message, message[-2000:]
    assert not marker.exists()


def test_genuine_mmengine_checkpoint_round_trip(tmp_path, class_statistics):
    """What mmengine stores (HistoryBuffer with its statistics, numpy objects) loads in the context
    and only there, as the genuine classes."""
    hub = MessageHub.get_instance('security-round-trip')
    hub.update_scalar('train/loss', 1.0)
    hub.update_scalar('train/loss', 2.0)
    hub.update_info('array', np.arange(3.0))
    path = tmp_path / 'genuine.pth'
    torch.save({'message_hub': hub.state_dict(), 'meta': {'seed': np.int64(3)},
                'state_dict': {'w': torch.ones(2)}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with mmengine_checkpoint_objects():
        loaded = torch.load(path, weights_only=True)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert type(buffer) is HistoryBuffer and buffer.mean() == 1.5 and buffer.statistics('max') == 2.0
    assert loaded['meta']['seed'] == 3 and loaded['message_hub']['runtime_info']['array'].tolist() == [0, 1, 2]


def test_context_restores_a_users_allow_list(process_allow_list):
    class Trusted:
        pass
    torch.serialization.add_safe_globals([Trusted, getattr])
    try:
        with mmengine_checkpoint_objects():
            names = [g for g in torch.serialization.get_safe_globals() if not isinstance(g, tuple)]
            assert Trusted in names and getattr not in names  # the real getattr is set aside
        assert {Trusted, getattr} <= set(torch.serialization.get_safe_globals())
    finally:
        restore(process_allow_list)


def test_legacy_and_non_checkpoint_files_are_refused(tmp_path):
    legacy = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {}}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(VQGANCheckpointError, match='legacy'):
        VQGAN(**TINY_VQGAN, checkpoint=legacy)
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(VQGANCheckpointError, match='not a PyTorch checkpoint'):
        VQGAN(**TINY_VQGAN, checkpoint=junk)
    broken = write_checkpoint(tmp_path / 'broken.pth', b'\x93garbage')
    with pytest.raises(VQGANCheckpointError, match=str(broken)):
        VQGAN(**TINY_VQGAN, checkpoint=broken)


def test_train_kill_resume_test_end_to_end(cls_config, tmp_path):
    """Genuine mmengine checkpoints under weights-only loading: train, kill -9 mid-run, --resume,
    then tools/test.py on the result."""
    import os
    import re
    import signal
    import subprocess
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
