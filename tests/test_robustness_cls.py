"""Corruption benchmarks of a tiny classifier through tools/test.py: released ImageNet-C folders
(as stored and with easyrobust's resize), on the fly, make_corrupted.py copies, resume after a
kill, and every bad input failing before evaluation."""
from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, free_port, run_tool, write_config

pytest.importorskip('mmpretrain')
pytest.importorskip('imagecorruptions')
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner.loops import TestLoop as _TestLoop  # noqa: E402

from mmdat.apis import build_runner  # noqa: E402
from mmdat.datasets import make_shapes_classification  # noqa: E402
from mmdat.datasets.transforms import corrupt_image  # noqa: E402
from mmdat.robustness import RobustnessTestLoop  # noqa: E402
from mmdat.robustness.corruption import _scan_class_folders  # noqa: E402

# not the sorted folder order: labels of ImageNet-C-style folders must follow the names
CLASSES = ('triangle', 'circle', 'square')
CELLS = ['gaussian_noise', 'contrast']
SEVERITIES = ['1', '2']


def tool(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem + '_tool', REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TEST_TOOL = tool('tools/test.py')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_vqgan_cfg):
    """A 3-iteration DAT checkpoint of a tiny ResNet on 32x32 shapes (12 validation images)."""
    tmp = tmp_path_factory.mktemp('rob_cls')
    root = tmp / 'shapes'
    make_shapes_classification(root, num_per_class=dict(train=4, val=4), size=32, classes=CLASSES)
    config = write_config(tmp, 'tiny_cls.py', f"""
        _base_ = ['{REPO}/configs/demo/resnet-tiny_dat_shapes.py']
        classes = {CLASSES!r}
        model = dict(backbone=dict(stem_channels=8, base_channels=8), head=dict(num_classes=3, in_channels=64))
        data_preprocessor = dict(num_classes=3)
        train_dataloader = dict(batch_size=4, dataset=dict(data_root='{root}', classes=classes))
        val_dataloader = dict(batch_size=8, dataset=dict(data_root='{root}', classes=classes))
        test_dataloader = val_dataloader
        train_cfg = dict(max_epochs=1, val_interval=10)
        custom_hooks = [dict(type='DATHook', vqgan={tiny_vqgan_cfg!r})]
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
        """)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(tmp / 'train')
    build_runner(cfg).train()
    return dict(tmp=tmp, root=root, config=config, ckpt=str(tmp / 'train' / 'epoch_1.pth'))


def imagenet_c_folders(trained) -> Path:
    """<root>/<corruption>/<severity>/<class>/<image>: gaussian_noise/1 holds the clean images."""
    out = trained['tmp'] / 'imagenet-c'
    if out.exists():
        return out
    for corruption in CELLS:
        for severity in SEVERITIES:
            for src in sorted((trained['root'] / 'val').rglob('*.png')):
                dst = out / corruption / severity / src.parent.name / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if (corruption, severity) == ('gaussian_noise', '1'):
                    shutil.copy(src, dst)
                else:
                    img = np.asarray(Image.open(src).convert('RGB'))
                    Image.fromarray(corrupt_image(img, corruption, int(severity), index=0)).save(dst)
    return out


def predictions(path: Path) -> dict:
    with open(path, 'rb') as f:
        samples = pickle.load(f)
    return {f'{Path(s["img_path"]).parent.name}/{Path(s["img_path"]).name}':
            (int(s['gt_label'][0]), s['pred_score'].numpy()) for s in samples}


def test_released_imagenet_c_layout(trained):
    folders = imagenet_c_folders(trained)
    work = trained['tmp'] / 'work_ic'
    TEST_TOOL.main([trained['config'], trained['ckpt'], '--corruptions', *CELLS, '--severities', *SEVERITIES,
                    '--corruption-root', str(folders), '--work-dir', str(work), '--out', str(work / 'p.pkl')])
    record = json.loads((work / 'robustness.json').read_text())
    assert record['settings']['source'] == 'imagenet-c'
    assert 'no Resize/CenterCrop' in record['settings']['preprocessing']
    assert set(record['results']) == {'clean', *CELLS}
    assert all(set(record['results'][c]) == set(SEVERITIES) for c in CELLS)
    # the folder of clean copies gives the clean predictions and labels, image by image
    clean, copy = predictions(work / 'p_clean.pkl'), predictions(work / 'p_gaussian_noise_1.pkl')
    assert clean.keys() == copy.keys() and len(clean) == 12
    for name, (label, score) in clean.items():
        assert copy[name][0] == label == CLASSES.index(name.split('/')[0])
        assert np.allclose(copy[name][1], score, atol=1e-6), name
    assert record['results']['gaussian_noise']['1'] == record['results']['clean']['0']
    table = (work / 'robustness.md').read_text()
    assert '**accuracy/top1** (%)' in table and '| contrast |' in table and 'mCE' in table
    assert table in ''.join(p.read_text() for p in work.rglob('*.log'))  # printed (and logged)
    assert (work / 'robustness.png').read_bytes()[:4] == b'\x89PNG'

    # easyrobust's Resize(256) + CenterCrop(224): stated, and it changes what the model sees
    work = trained['tmp'] / 'work_ic_resize'
    TEST_TOOL.main([trained['config'], trained['ckpt'], '--corruptions', 'gaussian_noise', '--severities', '1',
                    '--corruption-root', str(folders), '--imagenet-c-resize', '--work-dir', str(work),
                    '--out', str(work / 'p.pkl')])
    record = json.loads((work / 'robustness.json').read_text())
    assert 'Resize(256, bicubic) + CenterCrop(224)' in record['settings']['preprocessing']
    resized = predictions(work / 'p_gaussian_noise_1.pkl')
    assert any(not np.allclose(resized[n][1], clean[n][1], atol=1e-4) for n in clean)


def test_folder_labels_follow_class_names(tmp_path):
    for name in ('b', 'a'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'x.JPEG').write_bytes(b'')
    assert _scan_class_folders(tmp_path, ('b', 'a')) == [('a/x.JPEG', 1), ('b/x.JPEG', 0)]
    # wnid folders (not class names): sorted order, as ImageNet's labels
    assert _scan_class_folders(tmp_path, ('cat', 'dog')) == [('a/x.JPEG', 0), ('b/x.JPEG', 1)]
    with pytest.raises(ValueError, match='2 class folders but the test set has 3'):
        _scan_class_folders(tmp_path, ('x', 'y', 'z'))


def test_on_the_fly_equals_make_corrupted_copies(trained):
    work = trained['tmp'] / 'work_fly'
    TEST_TOOL.main([trained['config'], trained['ckpt'], '--corruptions', *CELLS, '--severities', *SEVERITIES,
                    '--work-dir', str(work), '--workers', '2', '--out', str(work / 'p.pkl')])
    fly = json.loads((work / 'robustness.json').read_text())
    assert fly['settings']['source'] == 'on-the-fly' and 'RGB' in fly['settings']['preprocessing']
    assert all(fly['seconds'][c][s] > 0 for c in CELLS for s in SEVERITIES)
    noisy, clean = predictions(work / 'p_gaussian_noise_2.pkl'), predictions(work / 'p_clean.pkl')
    assert any(not np.allclose(noisy[k][1], clean[k][1], atol=1e-4) for k in clean)

    # a PNG copy (lossless) written by 2 worker processes holds the same pixels: same predictions
    copies = trained['tmp'] / 'copies'
    tool('tools/dataset_converters/make_corrupted.py').main(
        [trained['config'], str(copies), '--corruptions', *CELLS, '--severities', *SEVERITIES, '--workers', '2'])
    copied_ann = copies / 'contrast' / '2' / 'meta' / 'val.txt'
    assert copied_ann.read_text() == (trained['root'] / 'meta/val.txt').read_text()
    assert (copies / 'contrast' / '2' / '.mmdat_corrupted.json').is_file()
    work2 = trained['tmp'] / 'work_copy'
    TEST_TOOL.main([trained['config'], trained['ckpt'], '--corruptions', *CELLS, '--severities', *SEVERITIES,
                    '--corruption-root', str(copies), '--work-dir', str(work2), '--out', str(work2 / 'p.pkl')])
    copy = json.loads((work2 / 'robustness.json').read_text())
    assert copy['settings']['source'] == 'copy'
    assert copy['results'] == fly['results']
    for c in CELLS:
        for s in SEVERITIES:
            a, b = predictions(work / f'p_{c}_{s}.pkl'), predictions(work2 / f'p_{c}_{s}.pkl')
            assert all(np.array_equal(a[k][1], b[k][1]) for k in a)

    # one worker writes byte-identical files
    single = trained['tmp'] / 'copies_1'
    tool('tools/dataset_converters/make_corrupted.py').main(
        [trained['config'], str(single), '--corruptions', 'contrast', '--severities', '2'])
    written = sorted((single / 'contrast' / '2' / 'val').rglob('*.png'))
    assert len(written) == 12
    for f in written:
        twin = copies / 'contrast' / '2' / 'val' / f.relative_to(single / 'contrast/2/val')
        assert f.read_bytes() == twin.read_bytes()


def test_exact_imagenet_c_protocol_on_the_fly(trained):
    """--imagenet-c-protocol: 224x224 inputs (Resize 256, CenterCrop 224, corrupt, JPEG 85), named as such."""
    work = trained['tmp'] / 'work_protocol'
    TEST_TOOL.main([trained['config'], trained['ckpt'], '--corruptions', 'contrast', '--imagenet-c-protocol',
                    '--work-dir', str(work), '--out', str(work / 'p.pkl')])
    record = json.loads((work / 'robustness.json').read_text())
    settings = record['settings']
    assert settings['source'] == 'imagenet-c-protocol' and settings['imagenet_c_protocol'] is True
    assert 'exact ImageNet-C protocol on the fly' in settings['source_description']
    assert 'decoded with PIL without EXIF rotation' in settings['preprocessing']
    assert 'JPEG quality 85' in settings['preprocessing']
    with open(work / 'p_contrast_3.pkl', 'rb') as f:
        samples = pickle.load(f)
    assert len(samples) == 12 and all(tuple(s['img_shape']) == (224, 224) for s in samples)
    with open(work / 'p_clean.pkl', 'rb') as f:
        assert all(tuple(s['img_shape']) == (32, 32) for s in pickle.load(f))  # the config's own pipeline
    summary = record['summary']['accuracy/top1']
    assert summary['mean_CE_corruptions'] == 1 and 'mCE' not in summary  # 1 of 15: not an mCE yet
    assert summary['mCE_label'] == 'mean CE (1 of 15 corruptions; not comparable with published mCE)'
    table = (work / 'robustness.md').read_text()
    assert 'Source of the numbers: exact ImageNet-C protocol on the fly' in table


def corruption_runner(trained, work: Path, corruptions, severities, load_from=True):
    """A runner of the trained config whose test loop is a ``CorruptionTestLoop``."""
    cfg = Config.fromfile(trained['config'])
    cfg.work_dir = str(work)
    cfg.load_from = trained['ckpt'] if load_from else None
    cfg.test_cfg = dict(type='CorruptionTestLoop', corruptions=corruptions, severities=severities)
    return build_runner(cfg)


def test_resume_after_a_kill(trained, monkeypatch, capsys):
    work = trained['tmp'] / 'work_resume'
    plain_evaluate = RobustnessTestLoop.evaluate
    calls = []

    def dying_evaluate(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # killed in the middle of the 4th cell
            raise KeyboardInterrupt
        return plain_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(RobustnessTestLoop, 'evaluate', dying_evaluate)
    runner = corruption_runner(trained, work, CELLS, [1, 2])
    clean_loader, evaluator = runner.test_loop.dataloader, runner.test_loop.evaluator
    with pytest.raises(KeyboardInterrupt):
        runner.test()
    # the loop's own dataloader and evaluator are back after the interruption
    assert runner.test_loop.dataloader is clean_loader and runner.test_loop.evaluator is evaluator
    first = json.loads((work / 'robustness.json').read_text())
    assert {c: sorted(r) for c, r in first['results'].items()} == {'clean': ['0'], 'gaussian_noise': ['1', '2']}

    calls.clear()
    monkeypatch.setattr(RobustnessTestLoop, 'evaluate',
                        lambda self, *a, **k: calls.append(1) or plain_evaluate(self, *a, **k))
    runner = corruption_runner(trained, work, CELLS, [1, 2])
    runner.test()
    record = runner.test_loop.results['corruptions']
    assert len(calls) == 2  # only contrast 1 and 2: no finished cell recomputed
    assert 'resuming from' in capsys.readouterr().out + ''.join(open(p).read() for p in work.rglob('*.log'))
    for c in ('clean', 'gaussian_noise'):
        assert record['results'][c] == first['results'][c]
    assert sorted(record['results']['contrast']) == ['1', '2']
    # the resumed record equals an uninterrupted run's
    fly = trained['tmp'] / 'work_fly' / 'robustness.json'
    if fly.is_file():
        assert record['results'] == json.loads(fly.read_text())['results']


def expect_exit(argv, capsys, message):
    with pytest.raises(SystemExit) as err:
        TEST_TOOL.main(argv)
    assert err.value.code != 0
    assert message in capsys.readouterr().err + str(err.value.code)


def test_bad_inputs_fail_before_evaluation(trained, capsys, monkeypatch):
    base = [trained['config'], trained['ckpt'], '--work-dir', str(trained['tmp'] / 'work_bad')]
    expect_exit(base + ['--corruptions', 'rain'], capsys, "unknown corruption 'rain'")
    expect_exit(base + ['--corruptions', 'fog', '--severities', '7'], capsys, 'outside 0..5')
    expect_exit(base + ['--legacy-bgr'], capsys, '--legacy-bgr needs --corruptions')
    expect_exit(base + ['--ood-root', 'imagenet-r'], capsys, 'NAME=PATH')
    expect_exit(base + ['--ood', 'imagenet-z'], capsys, "invalid choice: 'imagenet-z'")
    expect_exit(base + ['--ood', 'imagenet-r', '--ood-root', 'imagenet-z=/x'], capsys, "unknown benchmark 'imagenet-z'")

    monkeypatch.setattr(RobustnessTestLoop, 'evaluate', lambda self, *a: pytest.fail('evaluation started'))
    monkeypatch.setattr(_TestLoop, 'run', lambda self: pytest.fail('evaluation started'))
    folders = imagenet_c_folders(trained)
    with pytest.raises(FileNotFoundError, match=r'missing folder .*fog/1'):
        TEST_TOOL.main(base + ['--corruptions', 'gaussian_noise', 'fog', '--corruption-root', str(folders)])
    with pytest.raises(ValueError, match='legacy_bgr'):
        TEST_TOOL.main(base + ['--corruptions', 'contrast', '--severities', '1', '--corruption-root',
                               str(folders), '--legacy-bgr'])
    with pytest.raises(ValueError, match='imagenet_c_resize'):
        TEST_TOOL.main(base + ['--corruptions', 'contrast', '--imagenet-c-resize'])
    with pytest.raises(ValueError, match='imagenet_c_protocol .* does not apply to the corruption source'):
        TEST_TOOL.main(base + ['--corruptions', 'contrast', '--corruption-root', str(folders),
                               '--imagenet-c-protocol'])
    with pytest.raises(ValueError, match='legacy_bgr .* does not apply'):
        TEST_TOOL.main(base + ['--corruptions', 'contrast', '--imagenet-c-protocol', '--legacy-bgr'])
    # images under imagecorruptions' 32x32 minimum: found by the check pass, before the first cell
    small = trained['tmp'] / 'small_shapes'
    make_shapes_classification(small, num_per_class=dict(train=1, val=2), size=24, classes=CLASSES)
    with pytest.raises(ValueError, match=r'6 image\(s\) of the test set cannot be corrupted at their original '
                       r'resolution: .*val/.*\.png \(24x24 px, under 32x32\)'):
        TEST_TOOL.main(base + ['--corruptions', 'fog', '--cfg-options', f'test_dataloader.dataset.data_root={small}'])
    # a head that does not fit the checkpoint, classes other than the checkpoint's
    with pytest.raises(ValueError, match=r'(?s)does not fit the model .*head.fc.weight: \(3, 64\) in the checkpoint'):
        TEST_TOOL.main(base + ['--corruptions', 'fog', '--cfg-options', 'model.head.num_classes=4',
                               'data_preprocessor.num_classes=4'])
    with pytest.raises(ValueError, match='was trained on the classes'):
        TEST_TOOL.main(base + ['--corruptions', 'fog', '--cfg-options',
                               "test_dataloader.dataset.classes=['circle','square','triangle']"])
    assert not (trained['tmp'] / 'work_bad' / 'robustness.json').exists()
    # a record of another benchmark in the work dir is not mixed with this one
    other = trained['tmp'] / 'work_other'
    other.mkdir()
    (other / 'robustness.json').write_text(json.dumps(dict(format=1, settings=dict(task='classification', seed=5),
                                                           results={}, seconds={})))
    with pytest.raises(ValueError, match='another benchmark'):
        TEST_TOOL.main([trained['config'], trained['ckpt'], '--work-dir', str(other), '--corruptions', 'fog'])


def test_two_processes_give_the_single_process_record(trained):
    """tools/dist_test.sh passes the flags through; 2 CPU ranks, rank 0 writes the same record."""
    single = trained['tmp'] / 'work_single'
    TEST_TOOL.main([trained['config'], trained['ckpt'], '--corruptions', 'impulse_noise', '--severities', '3',
                    '--work-dir', str(single)])
    dist = trained['tmp'] / 'work_dist'
    run_tool(['bash', 'tools/dist_test.sh', trained['config'], trained['ckpt'], '2', '--corruptions',
              'impulse_noise', '--severities', '3', '--workers', '1', '--work-dir', str(dist)],
             cwd=REPO, env={'PORT': free_port()})
    a, b = (json.loads((d / 'robustness.json').read_text()) for d in (single, dist))
    assert a['results'] == b['results'] and set(b['results']) == {'clean', 'impulse_noise'}
    assert not list(dist.glob('.robustness.json.*'))  # no temporary file left behind


def test_runner_without_checkpoint_evaluates_its_model_as_it_is(trained):
    """E.g. runner.test() right after runner.train(): no load_from, the model in memory is evaluated."""
    runner = corruption_runner(trained, trained['tmp'] / 'work_in_memory', ['impulse_noise'], [3], load_from=False)
    runner.load_checkpoint(trained['ckpt'])
    headline = runner.test()
    record = runner.test_loop.results['corruptions']
    assert record['settings']['checkpoint'] is None
    single = trained['tmp'] / 'work_single' / 'robustness.json'
    if single.is_file():  # the same cells through tools/test.py with the checkpoint
        assert record['results'] == json.loads(single.read_text())['results']
    assert record['summary']['accuracy/top1']['pc']['cells'] == 1
    assert headline['corruptions/accuracy/top1/P'] == record['results']['clean']['0']['accuracy/top1']


class LifecycleRecorder(Hook):
    """Counts the runner's hook calls; records the dataloader length hooks see in each test epoch."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.epoch_sizes: list[int] = []

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def before_run(self, runner) -> None:
        self._count('before_run')

    def after_run(self, runner) -> None:
        self._count('after_run')

    def after_load_checkpoint(self, runner, checkpoint) -> None:
        self._count('after_load_checkpoint')

    def before_test(self, runner) -> None:
        self._count('before_test')

    def after_test(self, runner) -> None:
        self._count('after_test')

    def before_test_epoch(self, runner) -> None:
        self._count('before_test_epoch')
        self.epoch_sizes.append(len(runner.test_dataloader.dataset))

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._count('after_test_epoch')
        assert 'accuracy/top1' in metrics


def test_runner_owns_the_lifecycle(trained):
    """runner.test() sets hooks up once, reads the checkpoint once; each cell is one test epoch."""
    runner = corruption_runner(trained, trained['tmp'] / 'work_lifecycle', ['contrast'], [1, 2])
    recorder = LifecycleRecorder()
    runner.register_hook(recorder)
    runner.test()
    assert recorder.calls == dict(before_run=1, after_load_checkpoint=1, before_test=1, before_test_epoch=3,
                                  after_test_epoch=3, after_test=1, after_run=1)
    assert recorder.epoch_sizes == [12, 12, 12]
    assert runner.test_dataloader.dataset is runner.test_loop.dataloader.dataset  # the clean set is back


def test_config_declares_the_benchmark(trained):
    """test_cfg in a config runs the same benchmark as the tools/test.py flags."""
    config = write_config(trained['tmp'], 'declared.py', f"""
        _base_ = ['{trained['config']}']
        test_cfg = dict(type='CorruptionTestLoop', corruptions=['contrast'], severities=[2])
        """)
    declared, flags = trained['tmp'] / 'work_declared', trained['tmp'] / 'work_flags'
    TEST_TOOL.main([config, trained['ckpt'], '--work-dir', str(declared)])
    TEST_TOOL.main([trained['config'], trained['ckpt'], '--work-dir', str(flags), '--corruptions', 'contrast',
                    '--severities', '2'])
    a, b = (json.loads((d / 'robustness.json').read_text()) for d in (declared, flags))
    assert a['results'] == b['results'] and set(a['results']) == {'clean', 'contrast'}


def test_robustness_validation_while_training(trained):
    """RobustnessValLoop: mPC next to top-1 in every validation, the best checkpoint by mPC, scalars for
    the visualizer; its cells score what the corruption benchmark scores on the same model."""
    config = write_config(trained['tmp'], 'val_robust.py', f"""
        _base_ = ['{trained['config']}']
        train_cfg = dict(max_epochs=2, val_interval=1)
        val_cfg = dict(type='RobustnessValLoop', corruptions=['contrast', 'gaussian_noise'], severities=[1, 3])
        default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='robustness/mPC',
                                             rule='greater'))
        """)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(trained['tmp'] / 'work_val')
    runner = build_runner(cfg)
    runner.train()
    history = runner.message_hub.log_scalars
    mpc = history['val/robustness/mPC'].data[0]
    assert len(mpc) == 2  # one per validation
    cells = {k: history[f'val/robustness/{k}'].data[0][-1] for k in
             ('contrast_1', 'contrast_3', 'gaussian_noise_1', 'gaussian_noise_3')}
    assert mpc[-1] == pytest.approx(np.mean(list(cells.values())))
    clean = history['val/accuracy/top1'].data[0][-1]
    assert history['val/robustness/rPC'].data[0][-1] == pytest.approx(100 * mpc[-1] / clean)
    best = list(Path(cfg.work_dir).glob('best_robustness_mPC_epoch_*.pth'))
    assert len(best) == 1 and int(best[0].stem.rsplit('_', 1)[1]) == 1 + int(np.argmax(mpc))
    scalars = [json.loads(line) for line in next(Path(cfg.work_dir).rglob('vis_data/scalars.json')).open()]
    validations = [s for s in scalars if 'robustness/mPC' in s]
    assert [v['robustness/mPC'] for v in validations] == pytest.approx(list(mpc))
    assert all('accuracy/top1' in v for v in validations)
    # the same cells through the corruption benchmark on the last model
    runner = corruption_runner(trained, trained['tmp'] / 'work_val_check', ['contrast', 'gaussian_noise'], [1, 3],
                               load_from=False)
    runner.load_checkpoint(str(Path(cfg.work_dir) / 'epoch_2.pth'))
    runner.test()
    results = runner.test_loop.results['corruptions']['results']
    assert results['clean']['0']['accuracy/top1'] == pytest.approx(clean)
    for key, value in cells.items():
        corruption, severity = key.rsplit('_', 1)
        assert results[corruption][severity]['accuracy/top1'] == pytest.approx(value)


def test_robustness_validation_refuses_bad_input(trained):
    cfg = Config.fromfile(trained['config'])
    cfg.work_dir = str(trained['tmp'] / 'work_val_bad')
    cfg.val_cfg = dict(type='RobustnessValLoop', corruptions=['rain'])
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        build_runner(cfg).val_loop
    cfg.val_cfg = dict(type='RobustnessValLoop', severities=[0])
    with pytest.raises(ValueError, match='at least one severity'):
        build_runner(cfg).val_loop
