"""Shared fixtures: tiny VQGAN checkpoints, synthetic datasets, config files written by tests."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

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
