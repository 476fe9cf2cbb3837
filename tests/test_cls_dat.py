"""DAT in mmpretrain: the classification preprocessor, the hook and the training tools."""
from __future__ import annotations

import copy
import json
import logging
import re

import pytest
import torch

from conftest import REPO, TINY_VQGAN, attach, dist_train_decisions, free_port, run_tool, sgd, tiny_cls_config

mmpretrain = pytest.importorskip('mmpretrain')
from mmpretrain.registry import MODELS as CLS_MODELS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

from mmdat.utils import load_mmengine_checkpoint  # noqa: E402

NUM_CLASSES = 3


def build_classifier(dat: dict | None = None, batch_augments: list | None = None, **pre_kwargs):
    pre_kwargs = {'mean': [123.675, 116.28, 103.53], 'std': [58.395, 57.12, 57.375],
                  'to_rgb': True, **pre_kwargs}
    pre = dict(type='DATClsDataPreprocessor', num_classes=NUM_CLASSES,
               dat={'random_start_prob': 0.5, **(dat or {})}, **pre_kwargs)
    cfg = dict(type='ImageClassifier',
               backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64),
               data_preprocessor=pre)
    if batch_augments:
        cfg['train_cfg'] = dict(augments=batch_augments)
    torch.manual_seed(0)
    return CLS_MODELS.build(cfg)


def make_batch(n=4, size=16):
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(n)]
    samples = [DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def test_train_step_sums_clean_and_adversarial_losses():
    model = build_classifier(dat=dict(random_start_prob=0.0))
    attach(model)
    data = model.data_preprocessor(make_batch(), training=True)
    losses = model(**data, mode='loss')  # mmpretrain's head reports its loss as 'loss'
    total, log_vars = model.parse_losses(losses)
    assert 'adv_loss' in log_vars
    assert float(total) == pytest.approx(float(losses['loss'] + log_vars['adv_loss']), rel=1e-5)
    assert model.data_preprocessor._dat[1].pending is None  # consumed exactly once
    report = model.data_preprocessor.last_dat_report
    assert report.applied and report.random_start is False and not report.skipped
    # one full train_step updates the parameters
    before = [p.detach().clone() for p in model.parameters()]
    log_vars = model.train_step(make_batch(), sgd(model))
    assert 'adv_loss' in log_vars and torch.isfinite(log_vars['loss'])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_vqgan_stays_out_of_model_state_and_optimizer():
    model = build_classifier()
    n_params = len(list(model.parameters()))
    keys = set(model.state_dict())
    vqgan = attach(model)
    assert set(model.state_dict()) == keys
    assert len(list(model.parameters())) == n_params
    assert all(not p.requires_grad for p in vqgan.parameters())
    assert not any('encoder.' in k or 'quantize' in k for k in keys)
    copy.deepcopy(model)  # EMA deep-copies the model: must not fail


def test_loss_weights_and_apply_prob():
    model = build_classifier(dat=dict(random_start_prob=0.0, adv_loss_weight=0.5,
                                      clean_loss_weight=2.0))
    attach(model)
    data = model.data_preprocessor(make_batch(), training=True)
    clean = float(model.loss(data['inputs'], copy.deepcopy(data['data_samples']))['loss'])
    losses = model(**data, mode='loss')  # the adversarial half joins here, clean loss weighted
    total, log_vars = model.parse_losses(losses)
    assert float(losses['loss']) == pytest.approx(2.0 * clean, rel=1e-5)
    assert float(total) == pytest.approx(2.0 * clean + float(log_vars['adv_loss']), rel=1e-5)
    assert float(log_vars['adv_loss']) > 0
    plain = build_classifier(dat=dict(apply_prob=0.0))
    attach(plain)
    log_vars = plain.train_step(make_batch(), sgd(plain))
    assert 'adv_loss' not in log_vars
    assert plain.data_preprocessor.last_dat_report.applied is False


@pytest.fixture(scope='module')
def dat_reference() -> dict:
    """The recorded reference run (tests/data/dat_reference_cls.pt, see tests/dat_reference.py)."""
    recorded = torch.load(REPO / 'tests/data/dat_reference_cls.pt', weights_only=True)
    recorded.pop('recorded_from')
    return recorded


def test_same_losses_and_parameters_as_recorded_reference(dat_reference):
    """Three DAT steps give the recorded losses and parameters, within tolerances that cross-CPU float
    reassociation cannot break (tests/dat_reference.py)."""
    from dat_reference import assert_matches_reference, run_reference
    assert_matches_reference(run_reference(), dat_reference)


def test_reference_check_absorbs_kernel_reassociation(dat_reference):
    """Other convolution kernels (oneDNN off: the native ones group the sums differently, as another
    CPU's kernels do) change the last bits of the run, and the check still passes."""
    from dat_reference import assert_matches_reference, run_reference
    with torch.backends.mkldnn.flags(enabled=False):
        other_kernels = run_reference()
    differs = [name for name, p in other_kernels['parameters'].items()
               if not torch.equal(p, dat_reference['parameters'][name])]
    assert differs, 'expected other kernels to change the last bits somewhere'
    assert_matches_reference(other_kernels, dat_reference)


def _adversarial_half_out_of_the_objective(monkeypatch):
    """The adversarial losses are still computed and logged, but no longer reach the gradient."""
    from mmdat.models.data_preprocessors import loss_joining
    merge = loss_joining.merge_dat_losses

    def merge_detached(clean, adversarial, *args, **kwargs):
        return merge(clean, {k: v.detach() for k, v in adversarial.items()}, *args, **kwargs)

    monkeypatch.setattr(loss_joining, 'merge_dat_losses', merge_detached)
    return {}


@pytest.mark.parametrize('mutation', [
    lambda mp: dict(adv_loss_weight=0.5 * 1.01),  # adversarial weight off by 1 %
    _adversarial_half_out_of_the_objective,        # adversarial half dropped from the objective
    lambda mp: dict(random_start_prob=0.0),        # random start skipped
    lambda mp: dict(eps=0.0, step_size=0.0),       # no attack: the model trains on Q(Q(x))
], ids=['adv-weight-1pct', 'adversarial-half-dropped', 'random-start-skipped', 'attack-off'])
def test_reference_check_catches_real_changes(dat_reference, monkeypatch, mutation):
    from dat_reference import assert_matches_reference, run_reference
    changed = run_reference(dat=mutation(monkeypatch))
    with pytest.raises(AssertionError):
        assert_matches_reference(changed, dat_reference)


@CLS_MODELS.register_module(force=True)
class LossWithoutForward(CLS_MODELS.get('ImageClassifier')):
    """A custom train_step that computes its loss without ``forward(mode='loss')``."""

    def train_step(self, data, optim_wrapper):
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self.loss(data['inputs'], data['data_samples'])
        parsed, log_vars = self.parse_losses(losses)
        optim_wrapper.update_params(parsed)
        return log_vars


def test_unconsumed_adversarial_losses_stop_training(tmp_path, shapes_cls, tiny_vqgan_cfg):
    model = build_classifier()
    model.__class__ = LossWithoutForward
    attach(model)
    model.train_step(make_batch(), sgd(model))
    with pytest.raises(RuntimeError, match='LossWithoutForward.train_step never passed them'):
        model.data_preprocessor.end_dat_iteration()
    # through the runner: stops at the first iteration, naming the model class
    from mmengine.config import Config
    from mmdat.apis import build_runner
    cfg = Config.fromfile(tiny_cls_config(tmp_path, shapes_cls, tiny_vqgan_cfg))
    cfg.model.type = 'LossWithoutForward'
    cfg.work_dir = str(tmp_path / 'work')
    runner = build_runner(cfg)
    with pytest.raises(RuntimeError, match="LossWithoutForward.*forward\\(inputs, data_samples, mode='loss'\\)"):
        runner.train()
    assert runner.iter == 0


def test_mixup_cutmix_soft_targets_are_attacked_as_trained():
    augments = [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    model = build_classifier(batch_augments=augments)
    attach(model)
    data = make_batch(n=6)
    out = model.data_preprocessor(copy.deepcopy(data), training=True)
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    assert scores.shape == (6, NUM_CLASSES)
    assert torch.allclose(scores.sum(1), torch.ones(6))
    assert ((scores > 0) & (scores < 1)).any(), 'expected soft targets from Mixup/CutMix'
    assert model.data_preprocessor._dat[1].pending is not None
    assert 'adv_loss' in model(**out, mode='loss')  # consumed by the model's loss forward
    log_vars = model.train_step(data, sgd(model))
    assert torch.isfinite(log_vars['adv_loss'])


def test_validation_is_untouched():
    model = build_classifier()
    attach(model)
    plain = CLS_MODELS.build(dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                                  mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                                  to_rgb=True))
    data = make_batch()
    ours = model.data_preprocessor(copy.deepcopy(data), training=False)
    theirs = plain(copy.deepcopy(data), training=False)
    assert torch.equal(ours['inputs'], theirs['inputs'])
    assert model.data_preprocessor._dat[1].pending is None


@pytest.mark.parametrize('to_rgb', [True, False])
def test_unit_rgb_round_trip_and_channel_order(to_rgb):
    model = build_classifier(to_rgb=to_rgb)
    pre = model.data_preprocessor
    raw = torch.randint(0, 256, (2, 3, 5, 5)).float()  # as loaded: BGR
    normalised = ((raw.flip(1) if to_rgb else raw) - pre.mean) / pre.std
    unit = pre.to_unit_rgb(normalised)
    torch.testing.assert_close(unit, raw.flip(1) / 255)  # always RGB for the VQGAN
    torch.testing.assert_close(pre.from_unit_rgb(unit), normalised, rtol=1e-5, atol=1e-5)


def test_non_finite_attack_gradient_skips_adversarial_half(caplog):
    model = build_classifier()
    attach(model)
    plain_loss = model.loss

    def loss_nan_when_attacked(inputs, samples):
        losses = plain_loss(inputs, samples)
        if inputs.requires_grad:  # only the attack differentiates w.r.t. the input
            losses = {k: v * float('nan') for k, v in losses.items()}
        return losses

    model.loss = loss_nan_when_attacked
    with caplog.at_level(logging.WARNING):
        log_vars = model.train_step(make_batch(), sgd(model))
    assert 'adv_loss' not in log_vars and torch.isfinite(log_vars['loss'])
    assert model.data_preprocessor.last_dat_report.skipped_total == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_adversarial_loss_skips_adversarial_half():
    model = build_classifier()
    attach(model)
    plain_loss = model.loss
    calls = []

    def loss_nan_on_adversarial_forward(inputs, samples):
        calls.append(inputs.requires_grad)
        losses = plain_loss(inputs, samples)
        if len(calls) == 2:  # attack, then the adversarial forward, then the clean one
            losses = {k: v * float('inf') for k, v in losses.items()}
        return losses

    model.loss = loss_nan_on_adversarial_forward
    log_vars = model.train_step(make_batch(), sgd(model))
    assert calls == [True, False, False]
    assert 'adv_loss' not in log_vars and torch.isfinite(log_vars['loss'])
    assert model.data_preprocessor.last_dat_report.skipped_total == 1
    assert model.data_preprocessor.last_dat_report.skipped is True


def test_bad_channels_and_missing_wiring():
    with pytest.raises(ValueError, match='3-channel'):
        build_classifier(mean=[127.5], std=[127.5])
    model = build_classifier()
    with pytest.raises(RuntimeError, match='DATHook'):
        model.train_step(make_batch(), sgd(model))
    attach(model)
    gray = dict(inputs=[torch.zeros(1, 8, 8, dtype=torch.uint8)] * 2,
                data_samples=[DataSample().set_gt_label(0) for _ in range(2)])
    pre = CLS_MODELS.build(dict(type='DATClsDataPreprocessor', num_classes=NUM_CLASSES))
    with pytest.raises(ValueError, match='3-channel'):
        pre(gray, training=True)
    with pytest.raises(KeyError, match='unknown DAT settings'):
        build_classifier(dat=dict(epsilon=0.1))


def test_hook_refuses_missing_checkpoint():
    from mmdat.engine import DATHook
    with pytest.raises(FileNotFoundError, match='does not exist'):
        DATHook(vqgan=dict(type='VQGAN', **TINY_VQGAN, checkpoint='/no/such/vqgan.ckpt'))


# ----------------------------------------------------------------------------- tools


@pytest.fixture(scope='module')
def shapes_cls(tmp_path_factory):
    from mmdat.datasets import make_shapes_classification
    root = tmp_path_factory.mktemp('shapes_cls')
    make_shapes_classification(root, num_per_class=4, size=16, classes=('circle', 'square', 'triangle'))
    return root


def test_train_tool_end_to_end(tmp_path, shapes_cls, tiny_vqgan_cfg):
    config = tiny_cls_config(tmp_path, shapes_cls, tiny_vqgan_cfg)
    work = tmp_path / 'work'
    out = run_tool([__import__('sys').executable, 'tools/train.py', config, '--work-dir', str(work)],
                   cwd=REPO)
    assert re.search(r' loss: \d', out) and re.search(r'adv_loss: \d', out), out[-3000:]
    assert 'dat_codes_changed' in out and 'dat_reconstruction_psnr' in out
    assert list(work.rglob('dat_examples_*.png')), 'DAT triplets were not visualised'
    ckpt = next(work.glob('epoch_1.pth'))
    # the checkpoint holds the model only, never the VQGAN
    state = load_mmengine_checkpoint(ckpt)['state_dict']
    assert not any(k.startswith(('vqgan', 'encoder.', 'decoder.')) for k in state)
    # tools/test.py evaluates it (mmdat's restricted loader reads mmengine's checkpoint)
    out = run_tool([__import__('sys').executable, 'tools/test.py', config, str(ckpt),
                    '--work-dir', str(tmp_path / 'test')], cwd=REPO)
    assert 'accuracy/top1' in out
    # the same through torchrun with 2 CPU processes, dumping the predictions
    run_tool(['bash', 'tools/dist_test.sh', config, str(ckpt), '2', '--work-dir',
              str(tmp_path / 'dist_test'), '--out', str(tmp_path / 'preds.pkl')],
             cwd=REPO, env={'PORT': free_port()})
    assert (tmp_path / 'preds.pkl').stat().st_size > 0
    # resume a DAT run from its checkpoint
    out = run_tool([__import__('sys').executable, 'tools/train.py', config, '--work-dir', str(work),
                    '--resume', '--cfg-options', 'train_cfg.max_epochs=2'], cwd=REPO)
    assert 'resumed epoch: 1' in out.lower() or 'Load checkpoint from' in out


def test_dist_train_two_cpu_processes_decide_alike(tmp_path, shapes_cls, tiny_vqgan_cfg):
    config = tiny_cls_config(tmp_path, shapes_cls, tiny_vqgan_cfg, extra=f"""
        custom_imports = dict(imports=['mmdat', 'dat_probe'], allow_failed_imports=False)
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r}),
                        dict(type='DATDecisionRecorder', out_dir='{tmp_path}')]
        data_preprocessor = dict(num_classes=3, dat=dict(random_start_prob=0.5, apply_prob=0.7))
        train_cfg = dict(max_epochs=2, val_interval=2)
        """)
    rank0 = dist_train_decisions(config, tmp_path)
    assert any(d['applied'] for d in rank0)


def test_dist_validation_and_checkpoint_are_one_model(tmp_path, tiny_vqgan_cfg):
    """Issue 19: with per-rank BatchNorm statistics (DDP broadcast_buffers=False) a 2-process run
    validated each rank's half of the val set with a different model and saved rank 0's. The tools
    now average the buffers over the ranks: both ranks validate the saved model, and tools/test.py
    on the checkpoint reproduces the logged metric (9 val images: the sampler's padding is dropped)."""
    import sys
    from dat_probe import buffer_digest
    from mmdat.datasets import make_shapes_classification
    root = tmp_path / 'data'
    make_shapes_classification(root, num_per_class=dict(train=8, val=3), size=16,
                               classes=('circle', 'square', 'triangle'))
    config = tiny_cls_config(tmp_path, root, tiny_vqgan_cfg, extra=f"""
        custom_imports = dict(imports=['mmdat', 'dat_probe'], allow_failed_imports=False)
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r}),
                        dict(type='BufferRecorder', out_dir='{tmp_path}')]
        """)
    work = tmp_path / 'work'
    run_tool(['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work)], cwd=REPO,
             env={'PORT': free_port()})
    ranks = [json.loads((tmp_path / f'buffers_rank{r}.json').read_text()) for r in (0, 1)]
    assert ranks[0]['digest'] == ranks[1]['digest']  # one model on both ranks
    state = load_mmengine_checkpoint(work / 'epoch_1.pth')['state_dict']
    model = build_classifier()
    saved = [(name, state[name]) for name, _ in model.named_buffers() if name in state]
    assert any('running_mean' in name for name, _ in saved)
    assert buffer_digest(saved) == ranks[0]['digest']  # ... and it is the saved model
    out = run_tool([sys.executable, 'tools/test.py', config, str(work / 'epoch_1.pth'),
                    '--work-dir', str(tmp_path / 'test')], cwd=REPO)
    tested = float(re.search(r'accuracy/top1: ([0-9.]+)', out).group(1))
    assert tested == pytest.approx(ranks[0]['metrics']['accuracy/top1'], abs=1e-3)


@pytest.mark.parametrize('collect_stats', [False, True])
def test_two_encodes_and_two_decodes_per_iteration(collect_stats):
    """DAT does no VQGAN work it does not need: Q(x) and Q(x'), statistics included."""
    from mmdat.dat import DATIterationSettings
    model = build_classifier(dat=dict(random_start_prob=1.0))
    vqgan = attach(model)
    calls = []
    for name in ('encode', 'decode'):
        plain = getattr(vqgan, name)

        def counted(*args, _name=name, _plain=plain, **kwargs):
            calls.append(_name)
            return _plain(*args, **kwargs)

        setattr(vqgan, name, counted)
    model.data_preprocessor.begin_dat_iteration(DATIterationSettings(collect_stats=collect_stats))
    log_vars = model.train_step(make_batch(), sgd(model))
    assert 'adv_loss' in log_vars
    assert sorted(calls) == ['decode', 'decode', 'encode', 'encode']
