"""Shared fixtures: tiny VQGAN checkpoints, synthetic datasets, config files written by tests."""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import mmdat  # noqa: F401  (registers mmdat's modules, as custom_imports does)

REPO = Path(__file__).resolve().parents[1]
# A VQGAN small enough for CPU tests (GroupNorm(32) needs ch to be a multiple of 32).
TINY_VQGAN = dict(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=4,
                  n_embed=32, embed_dim=4, resolution=16)


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


def write_config(directory: Path, name: str, body: str) -> str:
    path = Path(directory) / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run_tool(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> str:
    """Run a repo tool in a subprocess with this interpreter; returns stdout+stderr, fails loudly."""
    full_env = {**os.environ, 'PYTHONPATH': f'{REPO}:{REPO / "tests"}', 'PYTHON': sys.executable,
                'OMP_NUM_THREADS': '1', **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(map(str, args))} failed:\n{out[-6000:]}'
    return out


def record_loss_calls(model) -> list[dict]:
    """Wrap ``model.loss``: record the inputs and (a copy of) the samples of every call."""
    calls = []
    plain = model.loss

    def loss(inputs, data_samples):
        calls.append(dict(inputs=inputs.detach().clone(), attack=inputs.requires_grad,
                          samples=copy.deepcopy(data_samples)))
        return plain(inputs, data_samples)

    model.loss = loss
    return calls


def tiny_cls_config(directory: Path, data_root, vqgan_cfg: dict, extra: str = '') -> str:
    """The demo classification config shrunk to 3 classes of 16x16 shapes and 1 epoch."""
    return write_config(directory, 'tiny_cls_dat.py', f"""
        _base_ = ['{REPO}/configs/demo/resnet-tiny_dat_shapes.py']
        classes = ('circle', 'square', 'triangle')
        model = dict(backbone=dict(stem_channels=8, base_channels=8),
                     head=dict(num_classes=3, in_channels=64))
        data_preprocessor = dict(num_classes=3)
        train_dataloader = dict(batch_size=4, dataset=dict(data_root='{data_root}', classes=classes))
        val_dataloader = dict(dataset=dict(data_root='{data_root}', classes=classes))
        test_dataloader = val_dataloader
        train_cfg = dict(max_epochs=1, val_interval=1)
        custom_hooks = [dict(type='DATHook', vqgan={vqgan_cfg!r}, vis_interval=2)]
        default_hooks = dict(logger=dict(interval=1))
        {extra}
        """)


def free_port() -> str:
    """A free TCP port on the loopback interface, for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def attach(model, seed: int = 0):
    """Wire a random tiny VQGAN into ``model``'s DAT preprocessor, as DATHook does; returns it."""
    from mmdat.models import VQGAN
    torch.manual_seed(0)
    vqgan = VQGAN(**TINY_VQGAN)
    model.data_preprocessor.attach_dat(model, vqgan, seed=seed)
    return vqgan


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
