"""Shared fixtures: tiny VQGAN checkpoints, synthetic datasets, config files written by tests, and
running the repository's command-line tools (``tools/``) from this checkout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch

import mmdat  # noqa: F401  (registers mmdat's modules, as custom_imports does)

from mmdat.testing import (TINY_VQGAN, attach_tiny_vqgan, free_port,  # noqa: F401  (re-exported)
                           record_loss_calls, sgd, tiny_cls_config, tiny_det_config,
                           tiny_seg_config, write_config)

#: the source checkout under test (its tools/ and configs/)
REPO = Path(__file__).resolve().parents[1]


def run_tool(args: list, cwd: os.PathLike = REPO, timeout: int = 600, env: Optional[dict] = None) -> str:
    """Run a command (e.g. ``[sys.executable, 'tools/train.py', ...]``) single-threaded with this
    checkout on ``PYTHONPATH``; returns stdout + stderr and raises AssertionError with the output's
    tail if it fails."""
    full_env = {**os.environ, 'PYTHONPATH': f'{REPO}:{REPO / "tests"}', 'PYTHON': sys.executable,
                'OMP_NUM_THREADS': '1', **(env or {})}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(map(str, args))} failed:\n{out[-6000:]}'
    return out


@pytest.fixture(scope='session', autouse=True)
def single_thread():
    """Tiny models gain nothing from threads, and OpenMP threads crawl on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def tiny_vqgan_checkpoint(tmp_path_factory) -> str:
    """A randomly initialised tiny VQGAN saved Lightning-style, as the published ones are."""
    from mmdat.models import VQGAN
    torch.manual_seed(0)
    vqgan = VQGAN(**TINY_VQGAN)
    path = tmp_path_factory.mktemp('vqgan') / 'tiny_vqgan.ckpt'
    torch.save({'state_dict': vqgan.state_dict(), 'global_step': 0}, path)
    return str(path)


@pytest.fixture(scope='session')
def tiny_vqgan_cfg(tiny_vqgan_checkpoint) -> dict:
    return dict(type='VQGAN', **TINY_VQGAN, checkpoint=tiny_vqgan_checkpoint)


attach = attach_tiny_vqgan  # the name the tests use


def dist_train_decisions(config: str, tmp_path: Path) -> list[dict]:
    """Train ``config`` with 2 CPU processes through tools/dist_train.sh (the config records DAT
    decisions with tests/dat_probe.py's DATDecisionRecorder into ``tmp_path``); assert that both
    ranks decided alike at every step and return rank 0's decisions."""
    run_tool(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(tmp_path / 'work')],
             cwd=REPO, env={'PORT': free_port()})
    rank0 = json.loads((tmp_path / 'decisions_rank0.json').read_text())
    rank1 = json.loads((tmp_path / 'decisions_rank1.json').read_text())
    assert len(rank0) == len(rank1) >= 3
    assert rank0 == rank1
    assert {d['step'] for d in rank0} == set(range(len(rank0)))
    return rank0
