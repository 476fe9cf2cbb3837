"""A skip of DAT's adversarial half is the same on every rank, counted once, and survives --resume.

The distributed run: 2 CPU processes through tools/dist_train.sh with a model whose every loss call
runs an ``all_reduce`` (as mmdet's ``reduce_mean`` and SyncBN do) and whose loss is non-finite on
rank 1 only: the attack's loss at iteration 1, the adversarial loss at iteration 2
(tests/collective_probe.py). Without agreement rank 0 would run an adversarial forward that rank 1
skips, and the collectives would mismatch.
"""
from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO, dist_train_decisions, run_tool, sgd, tiny_cls_config
from mmdat.testing import logged_messages

pytest.importorskip('mmpretrain')
from mmengine.logging import MessageHub  # noqa: E402

from mmdat.engine import DATHook  # noqa: E402
from mmdat.models.data_preprocessors.rank_agreement import describe_ranks, ranks_flagging  # noqa: E402


@pytest.fixture(scope='module')
def shapes_cls(tmp_path_factory):
    from mmdat.datasets import make_shapes_classification
    root = tmp_path_factory.mktemp('shapes_cls')
    make_shapes_classification(root, num_per_class=4, size=16, classes=('circle', 'square', 'triangle'))
    return root


def test_single_process_agreement_is_the_local_flag():
    assert ranks_flagging(True) == [0] and ranks_flagging(False) == []
    assert describe_ranks([0]) == ''


def test_two_ranks_one_non_finite_every_rank_skips(tmp_path, shapes_cls, tiny_vqgan_cfg):
    model = """dict(type='CollectiveLossClassifier', backbone=dict(stem_channels=8, base_channels=8),
                     head=dict(num_classes=3, in_channels=64), nan_attack_iters=[1],
                     inf_adversarial_iters=[2])"""
    config = tiny_cls_config(tmp_path, shapes_cls, tiny_vqgan_cfg, extra=f"""
        custom_imports = dict(imports=['mmdat', 'dat_probe', 'collective_probe'], allow_failed_imports=False)
        model = {model}
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r}),
                        dict(type='DATDecisionRecorder', out_dir='{tmp_path}')]
        train_cfg = dict(max_epochs=2, val_interval=10)
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, save_best=None))
        """)
    # 12 images, 2 ranks, batch 4: 2 iterations per epoch, 4 in all; the run must end
    rank0 = dist_train_decisions(config, tmp_path)
    assert [d['skipped'] for d in rank0] == [False, True, True, False]
    log = next((tmp_path / 'work').glob('*/*.log')).read_text()  # rank 0's log file
    assert log.count('every rank skips the adversarial half') == 2  # once per skipped iteration
    assert 'non-finite attack loss or gradient on rank 1; every rank skips' in log
    assert 'non-finite adversarial loss on rank 1; every rank skips' in log
    assert '(2 skipped so far)' in log
    assert 'skipped in 2 iterations' in log
    # the counter survives --resume (one process now: no rank 1, so no new skip)
    out = run_tool([sys.executable, 'tools/train.py', config, '--work-dir', str(tmp_path / 'work'),
                    '--resume', '--cfg-options', 'train_cfg.max_epochs=3'], cwd=REPO)
    assert "continuing the totals of the resumed run: {'skipped': 2" in out
    assert 'skipped in 2 iterations' in out, out[-3000:]


def test_hook_keeps_the_counters_in_the_message_hub(tiny_vqgan_cfg):
    """What --resume relies on: the totals go to the runner's MessageHub runtime information (saved
    in checkpoints) after every iteration and come back from it in before_train."""
    from test_dat_amp import build_classifier, image_batch

    model = build_classifier()
    pre = model.data_preprocessor
    hook = DATHook(vqgan=tiny_vqgan_cfg)
    hub = MessageHub('test_dat_counters')  # the runner's hub; not made the current instance
    hub.update_info('dat_counters', dict(skipped=5, zero_gradient_images=7))
    runner = SimpleNamespace(model=model, message_hub=hub, hooks=[], seed=0, iter=0, max_iters=1)
    hook.before_train(runner)  # attaches the tiny VQGAN and restores the totals
    assert (pre.dat_counters.skipped, pre.dat_counters.zero_gradient_images) == (5, 7)
    plain_loss = model.loss
    model.loss = lambda inputs, samples: {k: v * (math.nan if inputs.requires_grad else 1.0)
                                          for k, v in plain_loss(inputs, samples).items()}
    hook.before_train_iter(runner, 0)
    with logged_messages() as messages:
        model.train_step(image_batch(), sgd(model))
    hook.after_train_iter(runner, 0)
    assert hub.get_info('dat_counters') == dict(skipped=6, zero_gradient_images=7)
    assert any('(6 skipped so far)' in m for m in messages)

