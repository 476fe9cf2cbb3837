"""Tests of the demo (mmdat.apis.demo, tools/demo.py): data, summary maths, shortened end-to-end runs."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, record_loss_calls, run_tool
from mmdat.apis.demo import (DEMO_TASKS, _LogLinesOnly, build_demo_data, demo_config, format_table, pretrain_backbone,
                             run_demo, summarize, training_curves)

pytest.importorskip('imagecorruptions')

TWO_CORRUPTIONS = ('gaussian_noise', 'defocus_blur')


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob('*')) if p.is_file()}


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_demo_data_is_deterministic_and_reaches_the_demo_datasets(tmp_path, task):
    from mmengine.registry import init_default_scope
    from mmdat.registry import DATASETS
    a = build_demo_data(task, tmp_path / 'a', num_train=3, num_val=2)
    build_demo_data(task, tmp_path / 'b', num_train=3, num_val=2)
    assert tree(tmp_path / 'a') == tree(tmp_path / 'b')
    cfg = demo_config(task, tmp_path / 'work', tmp_path / 'a', dat=True)
    init_default_scope(cfg.default_scope)
    n = {'train': 0, 'val': 0}
    for split, loader in (('train', 'train_dataloader'), ('val', 'val_dataloader'), ('val', 'test_dataloader')):
        dataset = DATASETS.build(cfg[loader].dataset)
        expected = a['splits'][split]['num_images']
        assert len(dataset) == expected > 0
        sample = dataset[0]
        assert sample['inputs'].shape[0] == 3
        n[split] = len(dataset)
    assert n == {'train': 12 if task == 'cls' else 3, 'val': 8 if task == 'cls' else 2}


def test_demo_config_switches_dat_only(tmp_path):
    plain = demo_config('cls', tmp_path / 'p', tmp_path / 'data', dat=False)
    dat = demo_config('cls', tmp_path / 'd', tmp_path / 'data', dat=True)
    assert plain.data_preprocessor.dat.enabled is False and dat.data_preprocessor.dat.enabled is True
    for cfg in (plain, dat):
        cfg.data_preprocessor.dat.enabled = None
        cfg.work_dir = cfg.visualizer.name = None
    assert plain.to_dict() == dat.to_dict()
    det = demo_config('det', tmp_path / 'w', tmp_path / 'coco', dat=False, cfg_options={'train_cfg.max_epochs': 1})
    assert det.model.data_preprocessor.dat.enabled is False and det.train_cfg.max_epochs == 1
    assert det.test_evaluator.ann_file == str(tmp_path / 'coco' / 'annotations' / 'instances_val.json')
    with pytest.raises(ValueError, match='unknown demo task'):
        demo_config('pose', tmp_path, tmp_path, dat=True)


def test_demo_models_differ_in_their_dat_settings_only(tmp_path):
    cfgs = {m: demo_config('seg', tmp_path / m, tmp_path / 'data', m) for m in ('plain', 'recon', 'DAT')}
    dats = {m: dict(c.model.data_preprocessor.dat) for m, c in cfgs.items()}
    assert dats['plain']['enabled'] is False and dats['recon']['enabled'] is dats['DAT']['enabled'] is True
    assert dats['recon']['eps'] == 0.0 and dats['DAT']['eps'] == 0.1  # the paper's default stays
    assert {k: v for k, v in dats['recon'].items() if k not in ('eps', 'enabled')} == \
        {k: v for k, v in dats['DAT'].items() if k not in ('eps', 'enabled')}
    with pytest.raises(ValueError, match='unknown demo model'):
        demo_config('seg', tmp_path, tmp_path, 'adv')


def test_recon_model_trains_on_the_reconstruction_of_the_reconstruction(tmp_path):
    """The ablation on the det demo's real batches (padding, BGR -> RGB, normalisation): no attack
    forward, and the adversarial half sees Q(Q(x)) in each image's valid region, padding unchanged."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    from mmdat.registry import DATASETS, MODELS
    from mmdat.models import VQGAN
    build_demo_data('det', tmp_path / 'data', num_train=2, num_val=1)
    cfg = demo_config('det', tmp_path / 'w', tmp_path / 'data', 'recon')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    vqgan = VQGAN.from_preset('tiny-shapes').eval()
    model.data_preprocessor.attach_dat(model, vqgan)
    calls = record_loss_calls(model)
    batch = pseudo_collate([dataset[0], dataset[1]])
    out = model.data_preprocessor(batch, training=True)
    assert [c['attack'] for c in calls] == [False], 'eps = 0 must not run the attack'
    x, x_adv = out['inputs'], calls[0]['inputs']
    pre, sizes = model.data_preprocessor, [tuple(s.img_shape) for s in out['data_samples']]
    assert len(set(sizes)) == 2  # one image padded
    rec = pre.dat_attack.quantize(pre.to_unit_rgb(x), sizes)
    expected = pre.to_model_inputs(pre.dat_attack.quantize(rec, sizes), x, sizes)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-5)
    for i, (h, w) in enumerate(sizes):
        assert (x_adv[i, :, :h, :w] - x[i, :, :h, :w]).abs().amax() > 0.05  # the VQGAN did change the image
        assert torch.equal(x_adv[i, :, h:], x[i, :, h:]) and torch.equal(x_adv[i, :, :, w:], x[i, :, :, w:])


def test_det_demo_fine_tunes_from_the_pretrained_backbone(tmp_path):
    """pretrain -> fine-tune: the classifier's backbone is exported, loaded into the detector's
    backbone key for key by its init_cfg, and reused (not retrained) by a second call."""
    from mmengine.registry import DefaultScope
    from mmdat.registry import MODELS
    lines = []
    options = dict(num_train=4, num_val=1, data_root=tmp_path / 'cls48',
                   cfg_options={'train_cfg.max_epochs': 1, 'train_dataloader.batch_size': 8})
    record = pretrain_backbone('det', tmp_path / 'pretrain', log=lines.append, **options)
    assert record['reused'] is False and 0 <= record['top1'] <= 100
    saved = torch.load(record['checkpoint'], weights_only=True)['state_dict']
    assert saved and all(k.startswith('backbone.') for k in saved)
    cfg = demo_config('det', tmp_path / 'w', tmp_path / 'coco', 'plain', pretrained=record['checkpoint'])
    fresh_cfg = demo_config('det', tmp_path / 'w', tmp_path / 'coco', 'plain')
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector, fresh = MODELS.build(cfg.model), MODELS.build(fresh_cfg.model)
    detector.init_weights()
    fresh.init_weights()
    loaded = detector.backbone.state_dict()
    assert set(loaded) == {k[len('backbone.'):] for k in saved}
    for key, value in saved.items():
        assert torch.equal(loaded[key[len('backbone.'):]], value), key
    assert not torch.equal(fresh.backbone.conv1.weight, detector.backbone.conv1.weight)
    again = pretrain_backbone('det', tmp_path / 'pretrain', log=lines.append, **options)
    assert again['reused'] is True and again['top1'] == record['top1']
    assert any('reusing the pretrained backbone' in line for line in lines)


def test_training_curves_split_clean_and_adversarial_loss():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_training_curves')
    for it in range(8):
        clean, adv = 2.0 - 0.1 * it, 3.0 - 0.1 * it
        hub.update_scalar('train/loss', clean + adv + 0.5)  # + a second adversarial term
        hub.update_scalar('train/adv_loss_cls', adv)
        hub.update_scalar('train/adv_loss_bbox', 0.5)
        hub.update_scalar('train/adv_acc', 90.0)  # not a loss
        if it % 4 == 0:
            hub.update_scalar('train/dat_codes_changed', 0.1 * (it + 1))
    curves = training_curves(hub, parts=2)
    assert curves['series']['clean_loss'] == pytest.approx([2.0 - 0.1 * it for it in range(8)])
    assert curves['summary']['adversarial_loss'] == pytest.approx([3.5 - 0.15, 3.5 - 0.55])
    assert curves['summary']['dat_codes_changed'] == pytest.approx([0.1, 0.5])
    plain = MessageHub.get_instance('test_training_curves_plain')
    plain.update_scalar('train/loss', 1.0)
    assert set(training_curves(plain)['series']) == {'clean_loss'}
    # mmpretrain's loss key is 'loss': parse_losses logs that key's value (the clean loss), not the total
    cls = MessageHub.get_instance('test_training_curves_cls')
    for clean, adv in ((1.5, 2.0), (0.5, 0.75)):
        cls.update_scalar('train/loss', clean)
        cls.update_scalar('train/adv_loss', adv)
    cls_curves = training_curves(cls)['series']
    assert cls_curves['clean_loss'] == [1.5, 0.5] and cls_curves['adversarial_loss'] == [2.0, 0.75]


def test_summary_relative_mce_and_table():
    plain = dict(clean=100.0, corruptions={'noise': {1: 90.0, 2: 70.0}, 'blur': {1: 100.0, 2: 100.0},
                                           'fog': {1: 80.0, 2: 80.0}})
    dat = dict(clean=99.0, corruptions={'noise': {1: 95.0, 2: 85.0}, 'blur': {1: 100.0, 2: 90.0},
                                        'fog': {1: 70.0, 2: 70.0}})
    s = summarize({'plain': plain, 'DAT': dat})
    assert s['plain']['relative_mce'] == pytest.approx(100.0)
    # noise: (5 + 15) / (10 + 30) = 50%; fog: 60 / 40 = 150%; blur: no error of plain -> left out
    assert s['DAT']['relative_mce'] == pytest.approx(100.0)
    assert s['DAT']['mce_excluded'] == ['blur']
    assert s['DAT']['mean_corrupted'] == pytest.approx(np.mean([95, 85, 100, 90, 70, 70]))
    assert s['DAT']['per_severity'] == {1: pytest.approx(265 / 3), 2: pytest.approx(245 / 3)}
    assert s['DAT']['per_corruption']['noise'] == pytest.approx(90.0)
    assert s['DAT']['relative_robustness'] == pytest.approx(100 * np.mean([95, 85, 100, 90, 70, 70]) / 99)
    s2 = summarize({'plain': plain, 'DAT': dict(dat, corruptions={**dat['corruptions'], 'fog': {1: 90.0, 2: 90.0}})})
    assert s2['DAT']['relative_mce'] == pytest.approx((50 + 50) / 2)
    table = format_table(s, 'top-1')
    lines = table.splitlines()
    assert lines[0].split() == ['top-1', '(%)', 'plain', 'DAT']
    assert lines[1].split() == ['clean', '100.00', '99.00']
    assert lines[3].split()[:3] == ['corrupted', '/', 'clean']
    assert 'mCE vs plain' in table and 'noise' in table and 'severity 2' in table and 'leaves out blur' in table
    scaled = summarize({'a': dict(clean=0.5, corruptions={'x': {1: 0.25}})}, scale=100)
    assert scaled['a']['clean'] == 50 and scaled['a']['per_corruption']['x'] == 25


def test_quiet_stdout_keeps_log_lines_only():
    import io
    real = io.StringIO()
    quiet = _LogLinesOnly(real)
    quiet.write('loading annotations into memory...\nDone (t=0.00s)\n[DAT] epoch 1/4  loss 1.0')
    assert real.getvalue() == ''  # the last line is not complete yet
    quiet.write(' ETA 0m01s\n11/30 12:00:00 - mmengine - INFO - robustness [1/5] clean\n Average Precision\n')
    assert real.getvalue().splitlines() == ['[DAT] epoch 1/4  loss 1.0 ETA 0m01s',
                                            '11/30 12:00:00 - mmengine - INFO - robustness [1/5] clean']


def _check_outputs(work_dir: Path, result: dict, metric_name: str, models=('plain', 'DAT')) -> None:
    assert list(result['summary']) == list(models)
    for s in result['summary'].values():
        assert set(s['per_corruption']) == set(TWO_CORRUPTIONS)
        assert {int(k) for k in s['per_severity']} == {1, 5}  # str keys once read back from results.json
        assert 0 <= s['clean'] <= 100 and np.isfinite(s['mean_corrupted'])
    assert result['summary']['plain']['relative_mce'] == pytest.approx(100.0) or \
        result['summary']['plain']['mce_excluded'] == list(TWO_CORRUPTIONS)
    stored = json.loads((work_dir / 'results.json').read_text())
    assert stored['table'] == result['table'] and stored['severities'] == [1, 5]
    assert metric_name in (work_dir / 'results.txt').read_text()
    for name in (m.lower() for m in models):
        assert 'clean_loss' in json.loads((work_dir / name / 'curves.json').read_text())['series']
        rob = json.loads((work_dir / name / 'robustness.json').read_text())  # the robustness benchmark's record
        assert set(rob['results']) == {'clean', *TWO_CORRUPTIONS}
        assert all(set(rob['results'][c]) == {'1', '5'} for c in TWO_CORRUPTIONS)
    with Image.open(work_dir / 'accuracy_vs_severity.png') as im:
        assert im.size[0] > 200
    with Image.open(work_dir / 'dat_examples.png') as im:
        assert im.size[0] > 100


def test_cls_demo_end_to_end_through_the_tool(tmp_path):
    out = run_tool([sys.executable, str(REPO / 'tools/demo.py'), '--work-dir', str(tmp_path / 'work'),
                    '--data-root', str(tmp_path / 'data'), '--corruptions', *TWO_CORRUPTIONS,
                    '--severities', '1', '5', '--num-train', '4', '--num-val', '2',
                    '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=8'],
                   cwd=tmp_path)
    result = json.loads((tmp_path / 'work' / 'results.json').read_text())
    _check_outputs(tmp_path / 'work', result, 'top-1')
    assert '[plain] epoch 1/1' in out and '[DAT] epoch 1/1' in out and 'ETA' in out
    assert 'mCE vs plain' in out and str(tmp_path / 'work' / 'dat_examples.png') in out
    # the demo config validates with a RobustnessValLoop: clean top-1 and mPC per epoch, one plot of both runs
    for model in ('plain', 'DAT'):
        (validation,) = result['validation'][model]
        assert validation['step'] == 1 and validation['unit'] == 'epoch' and 'accuracy/top1' in validation['metrics']
        cells = [v for k, v in validation['metrics'].items() if k.startswith('robustness/') and k[-2:] == '_3']
        assert len(cells) == 5 and validation['metrics']['robustness/mPC'] == pytest.approx(np.mean(cells))
        assert f'[demo] {model}: validation mPC (epoch: value) 1: ' in out
        assert list((tmp_path / 'work' / model.lower()).glob('best_robustness_mPC_epoch_1.pth'))
    with Image.open(tmp_path / 'work' / 'validation_mpc.png') as im:
        assert im.size[0] > 200
    # 2 iterations, vis_interval 250: the last iteration's examples are kept (issue 19)
    assert list((tmp_path / 'work' / 'dat').glob('*/vis_data/vis_image/dat_examples_2.png'))


@pytest.mark.parametrize('task,options,metric_name,models', [
    ('det', {'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 1,
             'custom_hooks.0.stats_interval': 1}, 'box AP', ('plain', 'recon', 'DAT')),
    ('seg', {'train_cfg.max_iters': 4, 'train_cfg.val_interval': 4, 'param_scheduler.0.end': 4,
             'default_hooks.checkpoint.interval': 4}, 'mIoU', ('plain', 'DAT')),
])
def test_det_and_seg_demos_end_to_end(tmp_path, task, options, metric_name, models):
    lines = []
    pretrain = dict(num_train=4, num_val=1, data_root=tmp_path / 'cls48',
                    cfg_options={'train_cfg.max_epochs': 1, 'train_dataloader.batch_size': 8})
    result = run_demo(task, tmp_path / 'work', tmp_path / 'data', corruptions=TWO_CORRUPTIONS, severities=(1, 5),
                      num_train=4, num_val=2, cfg_options={**options, 'custom_hooks.0.vis_interval': 1},
                      models=models, pretrain_options=pretrain if task == 'det' else None, log=lines.append)
    _check_outputs(tmp_path / 'work', result, metric_name, models)
    assert result['metric'] == DEMO_TASKS[task].metric
    assert any(line.startswith('[DAT] ') and 'ETA' in line for line in lines)
    assert ('pretrain' in result) == (task == 'det')
    if task == 'det':
        assert any(line.startswith('[pretrain] ') for line in lines)
        for model in ('recon', 'DAT'):
            assert set(result['diagnostics'][model]) >= {'clean_loss', 'adversarial_loss', 'dat_codes_changed'}
        assert set(result['diagnostics']['plain']) == {'clean_loss'}
        assert 'recon = DAT with eps 0' in (tmp_path / 'work' / 'results.txt').read_text()


def test_data_only_writes_what_the_demo_configs_read(tmp_path):
    out = run_tool([sys.executable, str(REPO / 'tools/demo.py'), '--task', 'cls', '--data-only',
                    '--data-root', str(tmp_path / 'data'), '--num-train', '2', '--num-val', '1'], cwd=tmp_path)
    assert (tmp_path / 'data' / 'meta' / 'train.txt').is_file() and (tmp_path / 'data' / 'meta' / 'val.txt').is_file()
    assert len(list((tmp_path / 'data' / 'train').rglob('*.png'))) == 8  # 2 per class
    assert not (tmp_path / 'work_dirs').exists()  # nothing trained
    assert 'tools/train.py configs/demo/resnet-tiny_dat_shapes.py' in out


@pytest.mark.parametrize('config', sorted((REPO / 'configs' / 'demo').glob('*.py')), ids=lambda p: p.name)
def test_every_demo_config_says_how_to_write_its_data(config):
    from mmengine.config import Config
    data_root = str(Config.fromfile(str(config)).train_dataloader.dataset.data_root).rstrip('/')
    task = next(name for name, spec in DEMO_TASKS.items()
                if data_root in (spec.data_root, spec.pretrain and spec.pretrain.data_root))
    assert f'python tools/demo.py --task {task} --data-only' in config.read_text()


def test_run_demo_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='unknown corruption'):
        run_demo('cls', tmp_path / 'w', tmp_path / 'd', corruptions=['rain'])
    with pytest.raises(ValueError, match='unknown demo task'):
        run_demo('pose', tmp_path / 'w', tmp_path / 'd')
    with pytest.raises(ValueError, match='distinct demo models'):
        run_demo('cls', tmp_path / 'w', tmp_path / 'd', models=['plain', 'plain'])
    with pytest.raises(ValueError, match='at least one image'):
        build_demo_data('cls', tmp_path / 'd', num_train=0)
    assert not (tmp_path / 'd').exists()
