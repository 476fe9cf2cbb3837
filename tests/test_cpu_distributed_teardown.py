"""CPU-distributed tools end normally: close_cpu_distributed() joins gloo's threads before exit.

A gloo worker thread still alive while the interpreter finalizes can abort the process at exit
("terminate called without an active exception", issue 20): the tools' runs through torchrun
(tests/test_cls_dat.py and the other dist_train/dist_test cases) fail on any non-zero exit, but
that abort is a race (about 1 run in 30 here), so this test checks its precondition directly.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from conftest import free_port


def _threads() -> int:
    return len(os.listdir('/proc/self/task'))


def _teardown_worker(rank: int, port: str, out_dir: str) -> None:
    """One of 2 processes set up as tools/train.py is under torchrun: the group, a DDP model held
    in a reference cycle (as mmengine's runner holds it), collectives, then the tool's ending."""
    from mmengine.config import Config
    from mmengine.dist import broadcast_object_list
    from mmengine.model import MMDistributedDataParallel
    from mmdat.apis import close_cpu_distributed, setup_cpu_distributed
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=port, RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE='2')
    torch.set_num_threads(1)
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    module(torch.randn(2, 4))
    before = _threads()
    cfg = Config(dict())
    setup_cpu_distributed(cfg)
    wrapper = {k: v for k, v in cfg.model_wrapper_cfg.items() if k != 'type'}
    holder = dict(model=MMDistributedDataParallel(module=module, **wrapper))
    holder['self'] = holder  # only the garbage collector frees the model, as with the runner
    holder['model'](torch.randn(2, 4)).sum().backward()
    results = [rank] if rank == 0 else [None]
    broadcast_object_list(results)  # the evaluator's last collective: tensors made in Python
    during = _threads()
    del holder
    close_cpu_distributed()
    with open(f'{out_dir}/rank{rank}.json', 'w') as f:
        json.dump(dict(before=before, during=during, after=_threads(), results=results), f)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='counts threads in /proc/self/task')
def test_close_cpu_distributed_joins_gloo_threads(tmp_path):
    import torch.multiprocessing as mp
    mp.start_processes(_teardown_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')  # fork: the children inherit the imports (fast)
    for rank in (0, 1):
        counts = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert counts['results'] == [0]
        assert counts['during'] >= counts['before'] + 2, counts  # gloo's worker and I/O threads
        assert counts['after'] == counts['before'], counts  # ... joined before the interpreter ends
