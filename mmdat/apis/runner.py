"""Config loading and runner construction shared by ``tools/train.py`` and ``tools/test.py``."""
from __future__ import annotations

import argparse
import gc
import logging
import os
from pathlib import Path

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmdat.engine.hooks import RankAverageBuffersHook
from mmdat.engine.runner import CheckpointSafeRunner


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options every mmdat tool takes: work dir, config overrides, launcher."""
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_iters=10')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    # torchrun sets LOCAL_RANK; torch.distributed.launch passes --local_rank / --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config with command-line overrides, work dir and launcher applied."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = str(Path('work_dirs') / Path(args.config).stem)
    if args.launcher != 'none':
        average_buffers_over_ranks(cfg)
        if not torch.cuda.is_available():
            setup_cpu_distributed(cfg)
    return cfg


def average_buffers_over_ranks(cfg: Config) -> None:
    """Distributed runs: add :class:`~mmdat.engine.hooks.RankAverageBuffersHook` to ``custom_hooks``
    (unless the config has it), so that validation and checkpoints see one model on every rank."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('RankAverageBuffersHook', RankAverageBuffersHook) for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='RankAverageBuffersHook')]


def setup_cpu_distributed(cfg: Config) -> None:
    """Distributed runs without GPUs (gloo): mmengine's launcher assumes CUDA devices.

    The process group is created here, before the Runner (which then skips its own init), and DDP
    is wrapped without device ids.
    """
    import torch.distributed as dist
    global _OWN_CPU_GROUP
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
        _OWN_CPU_GROUP = True
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper.update(device_ids=None, broadcast_buffers=False)
    cfg.model_wrapper_cfg = wrapper


_OWN_CPU_GROUP = False


def close_cpu_distributed() -> None:
    """Tear down the gloo group that :func:`setup_cpu_distributed` created (elsewhere: nothing).

    Call it once the tool's runner is gone, after ``main()`` returned. Gloo's worker threads must
    be joined while Python is fully alive: a worker that has finished a collective drops the last
    reference to its tensors, and a tensor whose Python object outlived its last Python reference
    is freed under the GIL. Once the interpreter is finalizing, ``take_gil()`` ends that thread with
    ``pthread_exit()``, whose forced unwind through the noexcept ``ProcessGroupGloo::AsyncWork``
    destructor calls ``std::terminate``: "terminate called without an active exception" (SIGABRT)
    after all results were written. ``destroy_process_group()`` joins the threads only when nothing
    else holds the group, and DDP's reducer holds it until the runner (kept by reference cycles) is
    collected: hence the collection first.
    """
    global _OWN_CPU_GROUP
    if not _OWN_CPU_GROUP:
        return
    import torch.distributed as dist
    gc.collect()
    if dist.is_initialized():
        dist.barrier()  # no rank closes its connections while another still uses them
        dist.destroy_process_group()  # the last reference: ~ProcessGroupGloo joins the threads
    _OWN_CPU_GROUP = False


def build_runner(cfg: Config) -> Runner:
    """The runner for ``cfg``: :class:`CheckpointSafeRunner` unless the config sets ``runner_type``.

    ``CheckpointSafeRunner`` resumes and tests mmengine checkpoints under weights-only loading
    without widening torch's allow-list for anything else. A custom ``runner_type`` is built as
    mmengine's own tools do; a warning says that its loads get no such allowance.
    """
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
        if not isinstance(runner, CheckpointSafeRunner):
            print_log(f'runner_type={cfg.runner_type!r} is not a CheckpointSafeRunner: resuming or '
                      'testing mmengine checkpoints may fail under weights-only loading',
                      logger='current', level=logging.WARNING)
        return runner
    return CheckpointSafeRunner.from_cfg(cfg)
