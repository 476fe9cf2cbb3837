"""Bad command lines of tools/train.py and tools/test.py stop at once, with a message that says why."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

CONFIG = 'configs/demo/resnet-tiny_dat_shapes.py'


def run_failing(args: list, tmp_path) -> str:
    """Run a tool that must fail; returns its output (stdout + stderr)."""
    env = {**os.environ, 'PYTHONPATH': f'{REPO}:{REPO / "tests"}', 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    return out


@pytest.mark.parametrize('checkpoint', ['missing/epoch_1.pth', 'a_directory'])
def test_test_tool_checks_the_checkpoint_path_before_building_anything(tmp_path, checkpoint):
    (tmp_path / 'a_directory').mkdir()
    out = run_failing([REPO / 'tools/test.py', REPO / CONFIG, checkpoint], tmp_path)
    reason = 'not found' if checkpoint.startswith('missing') else 'is a directory'
    assert f'checkpoint {checkpoint} {reason}' in out
    # no runner was built: no environment or config dump, no work dir
    # argparse's usage and the error, nothing else (no environment or config dump)
    assert 'System environment' not in out and 'Config:' not in out and len(out.splitlines()) < 25, out
    assert out.rstrip().splitlines()[-1].startswith('test.py: error: checkpoint'), out
    assert not (tmp_path / 'work_dirs').exists()


def test_test_tool_leaves_urls_to_the_loader():
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmdat_test_tool', REPO / 'tools/test.py')
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    assert test_tool.checkpoint_problem('https://example.org/model.pth') is None
    assert test_tool.checkpoint_problem('open-mmlab://resnet50') is None
    assert test_tool.checkpoint_problem(str(REPO / 'README.md')) is None  # any existing file
    assert test_tool.checkpoint_problem(None) is None  # --report needs none


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU-only message')
def test_amp_on_a_cpu_says_it_needs_a_gpu_before_building_anything(tmp_path):
    out = run_failing([REPO / 'tools/train.py', REPO / CONFIG, '--amp', '--work-dir', tmp_path / 'work'], tmp_path)
    assert '--amp needs a GPU' in out and 'Train without --amp' in out
    assert 'System environment' not in out and not (tmp_path / 'work').exists()
