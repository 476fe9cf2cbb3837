"""OOD classification benchmarks: class lists, 200-class masking, dataset folder rules, the OOD test loop."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import DefaultScope
from PIL import Image

from conftest import REPO, write_config
from mmdat.apis import build_runner
from mmdat.datasets import ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2, StylizedImageNet
from mmdat.datasets.imagenet_lists import imagenet_1k_wnids, subset_indices, subset_wnids
from mmdat.evaluation.metrics import SubsetAccuracy
from mmdat.robustness.ood import OOD_BENCHMARKS, OOD_TEST_PIPELINE

WNIDS = imagenet_1k_wnids()
R_IDX, A_IDX = subset_indices('imagenet-r'), subset_indices('imagenet-a')
OUTSIDE = 10  # an ImageNet-1k class in neither ImageNet-R nor ImageNet-A
R_BEST, R_SECOND = 57, 3  # positions in the ImageNet-R subset the tiny model ranks first and second
V2_FOLDERS = {'10': 2, '2': 1, '100': 1}  # images per V2 class folder


def write_image(path: Path, seed: int, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_class_folders(root: Path, names, images: dict[str, int], ext: str = '.jpg') -> Path:
    """``root/<name>/`` for every name (empty), with ``images[name]`` tiny images in some of them."""
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (name, count) in enumerate(images.items()):
        for j in range(count):
            write_image(root / name / f'img_{j}{ext}', seed=100 * i + j)
    return root


@pytest.fixture(scope='module')
def tiny_r(tmp_path_factory) -> Path:
    wnids = subset_wnids('imagenet-r')
    return make_class_folders(tmp_path_factory.mktemp('imagenet-r'), wnids,
                              {wnids[R_BEST]: 2, wnids[R_SECOND]: 1})


@pytest.fixture(scope='module')
def tiny_v2(tmp_path_factory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp('imagenet-v2'), map(str, range(1000)), V2_FOLDERS,
                              ext='.jpeg')


# ---------------------------------------------------------------------------------------- class lists

def test_shipped_class_lists_agree():
    assert len(WNIDS) == 1000 and list(WNIDS) == sorted(set(WNIDS))
    for subset in ('imagenet-r', 'imagenet-a'):
        wnids, indices = subset_wnids(subset), subset_indices(subset)
        assert len(wnids) == len(set(wnids)) == 200 and list(wnids) == sorted(wnids)
        assert list(indices) == sorted(set(indices)) and 0 <= indices[0] and indices[-1] < 1000
        assert [WNIDS[i] for i in indices] == list(wnids)
    assert len(set(R_IDX) & set(A_IDX)) == 86  # as the reference notes record
    assert R_IDX[:4] == (1, 2, 4, 6)  # hendrycks' commented list starts [1, 2, 4, 6, ...]
    assert OUTSIDE not in R_IDX and OUTSIDE not in A_IDX


# ------------------------------------------------------------------------------------ subset metric

def _samples(scores: torch.Tensor, labels):
    from mmpretrain.structures import DataSample
    return [DataSample().set_pred_score(s).set_gt_label(int(y)) for s, y in zip(scores, labels)]


@pytest.mark.parametrize('subset', ['imagenet-r', 'imagenet-a'])
def test_scores_restricted_to_the_200_classes_before_argmax(subset):
    idx = subset_indices(subset)
    labels = [0, 57, 199, 3]
    scores = torch.zeros(4, 1000)
    scores[:, OUTSIDE] = 10.0  # global arg-max of every sample: a class outside the subset
    for row, label in enumerate(labels[:3]):
        scores[row, idx[label]] = 5.0  # best subset class = the true one
    scores[3, idx[4]] = 5.0  # sample 3: best subset class is wrong ...
    scores[3, idx[3]] = 4.0  # ... its true class comes second
    evaluator = Evaluator(SubsetAccuracy(subset=subset, topk=(1, 5)))
    evaluator.process(_samples(scores, labels))
    metrics = evaluator.evaluate(4)
    assert metrics['accuracy/top1'] == pytest.approx(75.0)
    assert metrics['accuracy/top5'] == pytest.approx(100.0)

    # without the restriction every arg-max is the outside class: the protocol matters
    from mmpretrain.evaluation import Accuracy
    plain = Evaluator(Accuracy(topk=1))
    plain.process(_samples(scores, labels))
    assert plain.evaluate(4)['accuracy/top1'] == 0.0


def test_subset_accuracy_explicit_indices():
    metric = SubsetAccuracy(subset=[7, 2], num_classes=10)  # label 0 -> class 7, label 1 -> class 2
    scores = torch.tensor([[0, 0, 1, 0, 0, 0, 0, 3, 9, 0], [0, 0, 5, 0, 0, 0, 0, 3, 9, 0]], dtype=torch.float)
    evaluator = Evaluator(metric)
    evaluator.process(_samples(scores, [0, 0]))
    assert evaluator.evaluate(2)['accuracy/top1'] == pytest.approx(50.0)


@pytest.mark.parametrize('kwargs, match', [
    (dict(subset='imagenet-x'), 'unknown subset'),
    (dict(subset=[]), 'empty'),
    (dict(subset=[1, 1]), 'repeated'),
    (dict(subset=[0, 1000]), r'\[0, 1000\)'),
    (dict(subset=[0, 1], topk=(1, 5)), 'top-5 is impossible'),
])
def test_subset_accuracy_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubsetAccuracy(**kwargs)


def test_subset_accuracy_bad_predictions():
    from mmpretrain.structures import DataSample
    metric = SubsetAccuracy('imagenet-r')
    with pytest.raises(ValueError, match='outputs 10 class scores'):
        metric.process(None, [s.to_dict() for s in _samples(torch.rand(1, 10), [0])])
    with pytest.raises(ValueError, match='label 250 is outside the 200'):
        metric.process(None, [s.to_dict() for s in _samples(torch.rand(1, 1000), [250])])
    with pytest.raises(ValueError, match='pred_score'):
        metric.process(None, [DataSample().set_pred_label(3).set_gt_label(3).to_dict()])


def test_subset_arg_max_uses_the_logits_where_the_softmax_underflows():
    logits = torch.zeros(2, 1000)
    logits[:, OUTSIDE] = 200.0  # exp(-197) underflows: every subset class gets pred_score 0 in float32
    logits[0, R_IDX[57]] = 3.0
    logits[1, R_IDX[3]] = 2.0
    scores = torch.softmax(logits, dim=1)
    assert float(scores[:, list(R_IDX)].max()) == 0.0
    labels = [57, 3]
    with pytest.raises(ValueError, match='underflowed to 0.*KeepLogitsHook'):
        SubsetAccuracy('imagenet-r').process(None, [s.to_dict() for s in _samples(scores, labels)])
    samples = _samples(scores, labels)
    for sample, row in zip(samples, logits):
        sample.set_field(row, 'pred_logits')
    evaluator = Evaluator(SubsetAccuracy('imagenet-r', topk=(1, 5)))  # thrs=0., the default
    evaluator.process(samples)
    assert evaluator.evaluate(2) == pytest.approx({'accuracy/top1': 100.0, 'accuracy/top5': 100.0})


def test_ood_images_are_read_by_pil_without_exif_rotation(tmp_path):
    from mmcv.transforms import Compose
    pixels = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees when displayed
    Image.fromarray(pixels).save(tmp_path / 'rotated.jpg', exif=exif, quality=95)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = Compose([dict(t) for t in OOD_TEST_PIPELINE[:-1]])
        out = pipeline(dict(img_path=str(tmp_path / 'rotated.jpg')))['img']
    # the references: Image.open(path).convert('RGB') (no EXIF rotation), Resize(256, bicubic), CenterCrop(224)
    image = Image.open(tmp_path / 'rotated.jpg').convert('RGB')
    assert image.size == (90, 60)
    image = image.resize((int(256 * 90 / 60), 256), Image.BICUBIC)
    left = int(round((image.size[0] - 224) / 2.0))
    expected = np.asarray(image.crop((left, 16, left + 224, 240)))
    assert out.shape == (224, 224, 3)
    assert np.abs(out[..., ::-1].astype(int) - expected.astype(int)).max() <= 1


# ----------------------------------------------------------------------------------------- datasets

def _labels_by_folder(dataset) -> dict[str, set]:
    found: dict[str, set] = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        found.setdefault(Path(info['img_path']).parent.name, set()).add(info['gt_label'])
    return found


def test_v2_folders_map_by_integer_value(tiny_v2):
    dataset = ImageNetV2(data_root=str(tiny_v2))
    assert len(dataset) == 4
    assert _labels_by_folder(dataset) == {'10': {10}, '2': {2}, '100': {100}}
    assert len(dataset.metainfo['classes']) == 1000 and dataset.metainfo['classes'][10].startswith('brambling')
    # the pitfall ImageNetV2 avoids: a string sort puts folder '10' at position 2
    from mmpretrain.datasets import CustomDataset
    assert _labels_by_folder(CustomDataset(data_root=str(tiny_v2)))['10'] == {2}


def test_v2_zero_padded_folders(tmp_path):
    root = make_class_folders(tmp_path, [f'{i:04d}' for i in range(1000)], {'0010': 1, '0999': 1})
    assert _labels_by_folder(ImageNetV2(data_root=str(root))) == {'0010': {10}, '0999': {999}}


def test_imagenet_r_labels_are_positions_among_the_200_wnids(tiny_r):
    (tiny_r / 'README.txt').write_text('plain files next to the class folders are ignored')
    (tiny_r / subset_wnids('imagenet-r')[R_BEST] / 'notes.txt').write_text('not an image')
    dataset = ImageNetR(data_root=str(tiny_r))
    wnids = subset_wnids('imagenet-r')
    assert _labels_by_folder(dataset) == {wnids[R_BEST]: {R_BEST}, wnids[R_SECOND]: {R_SECOND}}
    assert len(dataset) == 3 and len(dataset.metainfo['classes']) == 200


def test_imagenet_a_labels_and_nested_images(tmp_path):
    wnids = subset_wnids('imagenet-a')
    root = make_class_folders(tmp_path / 'imagenet-a', wnids, {wnids[0]: 1, wnids[199]: 1})
    write_image(root / wnids[5] / 'nested' / 'deep.PNG', seed=3)
    dataset = ImageNetA(data_root=str(root))
    assert _labels_by_folder(dataset) == {wnids[0]: {0}, wnids[199]: {199}, 'nested': {5}}
    # ImageNet-A's own class names come from the 1k list at its indices
    assert dataset.metainfo['classes'][0] == ImageNetSketch.class_names()[A_IDX[0]]


@pytest.mark.parametrize('dataset_cls', [ImageNetSketch, StylizedImageNet])
def test_1000_wnid_datasets_use_imagenet_indices(tmp_path, dataset_cls):
    root = make_class_folders(tmp_path / 'sketch', WNIDS, {WNIDS[0]: 1, WNIDS[999]: 2}, ext='.JPEG')
    dataset = dataset_cls(data_root=str(tmp_path), data_prefix='sketch')
    assert _labels_by_folder(dataset) == {WNIDS[0]: {0}, WNIDS[999]: {999}}
    assert len(dataset) == 3
    assert root.is_dir()


def test_dataset_bad_inputs(tmp_path, tiny_r):
    r_wnids = subset_wnids('imagenet-r')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ImageNetR(data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(ValueError, match='give data_root'):
        ImageNetR()
    with pytest.raises(ValueError, match='ann_file is not supported'):
        ImageNetR(data_root=str(tiny_r), ann_file='meta/test.txt')

    few = make_class_folders(tmp_path / 'few', r_wnids[:199], {r_wnids[0]: 1})
    with pytest.raises(ValueError, match=f'expects 200 class folders .* found 199; missing wnids: {r_wnids[199]}'):
        ImageNetR(data_root=str(few))
    not_r = next(w for i, w in enumerate(WNIDS) if i not in R_IDX)
    (few / not_r).mkdir()
    with pytest.raises(ValueError, match=f'not ImageNet-R wnids: {not_r}'):
        ImageNetR(data_root=str(few))
    with pytest.raises(ValueError, match='not ImageNet-Sketch wnids: misc'):
        ImageNetSketch(data_root=str(make_class_folders(tmp_path / 'misc', list(WNIDS[:999]) + ['misc'], {})))

    empty = make_class_folders(tmp_path / 'empty', r_wnids, {})
    with pytest.raises(ValueError, match='no image files'):
        ImageNetR(data_root=str(empty))
    nested = make_class_folders(tmp_path / 'archive' / 'sketch', WNIDS[:3], {WNIDS[0]: 1})
    with pytest.raises(ValueError, match="single folder 'sketch': did you mean"):
        ImageNetSketch(data_root=str(nested.parent))

    with pytest.raises(ValueError, match='named by their ImageNet-1k index 0..999; .* found 1000, abc'):
        ImageNetV2(data_root=str(make_class_folders(tmp_path / 'v2a', ['abc', '1000', '5'], {})))
    with pytest.raises(ValueError, match='several folders name the same class .*: 007, 7'):
        ImageNetV2(data_root=str(make_class_folders(tmp_path / 'v2b', ['7', '007', '8'], {})))
    short = make_class_folders(tmp_path / 'v2c', map(str, range(999)), {'3': 1})
    with pytest.raises(ValueError, match='expects 1000 class folders .* found 999; missing classes: 999'):
        ImageNetV2(data_root=str(short))


# ------------------------------------------------------------------------------------- evaluate_ood

def tiny_classifier_config(work_dir: Path, num_classes: int = 1000, **extra) -> Config:
    """A tiny ImageNet-style classifier whose test set is the config's own (unused by OOD)."""
    return Config(dict(
        default_scope='mmpretrain',
        work_dir=str(work_dir),
        model=dict(type='ImageClassifier',
                   backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8, out_indices=(3, )),
                   neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='LinearClsHead', num_classes=num_classes, in_channels=64)),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=num_classes,
                               mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
        test_dataloader=dict(batch_size=3, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                             dataset=dict(type='CustomDataset', data_root='unused', pipeline=[])),
        test_evaluator=dict(type='Accuracy'),
        test_cfg=dict(),
        log_level='WARNING',
        **extra))


@pytest.fixture(scope='module')
def fixed_ranking_checkpoint(tmp_path_factory) -> str:
    """Weights that ignore the image: scores are the head's bias, ranking OUTSIDE first, then the
    ImageNet-R classes at positions R_BEST and R_SECOND."""
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(tiny_classifier_config(Path('.')).model)
    fc = model.head.fc
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.zero_()
        fc.bias[OUTSIDE] = 5.0
        fc.bias[R_IDX[R_BEST]] = 3.0
        fc.bias[R_IDX[R_SECOND]] = 2.0
    path = tmp_path_factory.mktemp('ckpt') / 'fixed_ranking.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return str(path)


@pytest.fixture(scope='module')
def underflow_checkpoint(fixed_ranking_checkpoint, tmp_path_factory) -> str:
    """The fixed ranking with OUTSIDE 200 logits ahead: the softmax of every ImageNet-R class is 0."""
    checkpoint = torch.load(fixed_ranking_checkpoint, weights_only=True)
    checkpoint['state_dict']['head.fc.bias'][OUTSIDE] = 200.0
    path = tmp_path_factory.mktemp('ckpt') / 'underflow.pth'
    torch.save(checkpoint, path)
    return str(path)


def evaluate_ood(cfg: Config, names, data_roots=None, out_dir=None) -> dict:
    """``runner.test()`` with an ``OODTestLoop``: the per-benchmark results of the loop."""
    cfg.test_cfg = dict(type='OODTestLoop', benchmarks=names, data_roots=data_roots, out_dir=out_dir)
    runner = build_runner(cfg)
    flat = runner.test()
    results = runner.test_loop.results['ood']
    assert flat == {f'ood/{n}/{k}': v for n, metrics in results.items() for k, v in metrics.items()}
    return results


def test_ood_loop_ranks_logits_where_the_softmax_underflows(tmp_path, tiny_r, underflow_checkpoint):
    cfg = tiny_classifier_config(tmp_path / 'work', load_from=underflow_checkpoint)
    results = evaluate_ood(cfg, ['imagenet-r'], data_roots={'imagenet-r': str(tiny_r)})
    assert results['imagenet-r'] == pytest.approx({'accuracy/top1': 200 / 3, 'accuracy/top5': 100.0})
    # out_dir defaults to the work dir
    assert json.loads((tmp_path / 'work' / 'ood.json').read_text())['results'] == results


def test_ood_loop_end_to_end(tmp_path, tiny_r, tiny_v2, fixed_ranking_checkpoint):
    cfg = tiny_classifier_config(tmp_path / 'work', load_from=fixed_ranking_checkpoint)
    out_dir = tmp_path / 'out'
    roots = {'imagenet-r': str(tiny_r), 'imagenet-v2': str(tiny_v2)}
    results = evaluate_ood(cfg, ['imagenet-r', 'imagenet-v2'], data_roots=roots, out_dir=str(out_dir))
    # ImageNet-R: the 1000-way arg-max is always OUTSIDE; restricted to the 200 classes it is R_BEST
    # (2 of the 3 images), and R_SECOND (the third image) comes second: top-5 = 100
    assert results['imagenet-r'] == pytest.approx({'accuracy/top1': 200 / 3, 'accuracy/top5': 100.0})
    # ImageNetV2: always class 10 = folder '10' (2 of 4 images); a string-sorted mapping would score 0
    assert results['imagenet-v2']['accuracy/top1'] == pytest.approx(50.0)
    saved = json.loads((out_dir / 'ood.json').read_text())
    assert saved['results'] == results
    assert saved['details']['imagenet-r']['num_images'] == 3
    assert saved['details']['imagenet-v2']['data_root'] == str(tiny_v2)
    table = (out_dir / 'ood.md').read_text()
    assert '| ImageNet-R | 66.67 | 100.00 | 3 | 200 of 1000 (scores restricted) |' in table
    assert '| ImageNetV2 | 50.00 |' in table


def test_ood_loop_declared_in_a_config(tmp_path, tiny_v2, fixed_ranking_checkpoint):
    """A config states the benchmark as its test loop; its own test set (data_root='unused') is never built."""
    model = tiny_classifier_config(tmp_path).model
    config = write_config(tmp_path, 'ood_loop.py', f"""
        custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)
        default_scope = 'mmpretrain'
        model = {model.to_dict()!r}
        data_preprocessor = dict(type='ClsDataPreprocessor', num_classes=1000, mean=[123.675, 116.28, 103.53],
                                 std=[58.395, 57.12, 57.375], to_rgb=True)
        test_dataloader = dict(batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                               dataset=dict(type='CustomDataset', data_root='unused', pipeline=[]))
        test_evaluator = dict(type='Accuracy')
        test_cfg = dict(type='OODTestLoop', benchmarks=['imagenet-v2'], data_roots={{'imagenet-v2': '{tiny_v2}'}})
        work_dir = '{tmp_path / "work"}'
        load_from = '{fixed_ranking_checkpoint}'
        log_level = 'WARNING'
        """)
    runner = build_runner(Config.fromfile(config))
    metrics = runner.test()
    assert set(metrics) == {'ood/imagenet-v2/accuracy/top1', 'ood/imagenet-v2/accuracy/top5'}
    assert metrics['ood/imagenet-v2/accuracy/top1'] == pytest.approx(50.0)


def plain(value):
    """Configs and dicts as plain JSON-like data (tuples and lists compare equal)."""
    return json.loads(json.dumps(value.to_dict() if hasattr(value, 'to_dict') else value))


@pytest.mark.parametrize('name', list(OOD_BENCHMARKS))
def test_base_dataset_configs_match_the_benchmarks(name):
    bench = OOD_BENCHMARKS[name]
    cfg = Config.fromfile(str(REPO / bench.config))
    assert plain(cfg.test_dataloader.dataset) == plain(bench.dataset_cfg())
    assert plain(cfg.test_dataloader.dataset.pipeline) == plain(OOD_TEST_PIPELINE)
    assert plain(cfg.test_evaluator) == plain(bench.evaluator_cfg())
    assert cfg.test_dataloader.sampler == dict(type='DefaultSampler', shuffle=False)


@pytest.mark.parametrize('name, data, top1, checkpoint', [
    ('imagenet-v2', 'tiny_v2', 50.0, 'fixed_ranking_checkpoint'),
    ('imagenet-r', 'tiny_r', 200 / 3, 'fixed_ranking_checkpoint'),
    ('imagenet-r', 'tiny_r', 200 / 3, 'underflow_checkpoint')])  # the config's KeepLogitsHook keeps the logits
def test_base_dataset_config_as_base_of_a_test_config(request, tmp_path, name, data, top1, checkpoint):
    model = tiny_classifier_config(tmp_path).model
    config = write_config(tmp_path, 'ood_test.py', f"""
        _base_ = ['{REPO / OOD_BENCHMARKS[name].config}']
        custom_imports = dict(imports=['mmdat'], allow_failed_imports=False)
        default_scope = 'mmpretrain'
        model = {model.to_dict()!r}
        data_preprocessor = dict(num_classes=1000, mean=[123.675, 116.28, 103.53],
                                 std=[58.395, 57.12, 57.375], to_rgb=True)
        test_dataloader = dict(num_workers=0, persistent_workers=False, batch_size=4,
                               dataset=dict(data_root='{request.getfixturevalue(data)}'))
        test_cfg = dict()
        work_dir = '{tmp_path / "work"}'
        load_from = '{request.getfixturevalue(checkpoint)}'
        log_level = 'WARNING'
        """)
    assert build_runner(Config.fromfile(config)).test()['accuracy/top1'] == pytest.approx(top1)


def test_ood_loop_bad_inputs(tmp_path, tiny_r, tiny_v2):
    cfg = tiny_classifier_config(tmp_path / 'work')
    roots = {'imagenet-r': str(tiny_r), 'imagenet-v2': str(tiny_v2)}
    with pytest.raises(ValueError, match="unknown OOD benchmark.*'imagenet-c'.*imagenet-r, imagenet-a"):
        evaluate_ood(cfg, ['imagenet-r', 'imagenet-c'], roots)
    with pytest.raises(ValueError, match='no OOD benchmark given'):
        evaluate_ood(cfg, [], roots)
    with pytest.raises(ValueError, match="data_roots names unknown benchmark.*'imagenet_r'"):
        evaluate_ood(cfg, ['imagenet-r'], {'imagenet_r': str(tiny_r)})
    with pytest.raises(ValueError, match=r"folder\(s\) not found: imagenet-a: 'data/imagenet-a'"):
        evaluate_ood(cfg, ['imagenet-r', 'imagenet-a'], roots)
    # a wrong folder for one benchmark stops the run before the first benchmark is evaluated
    out_dir = tmp_path / 'out'
    with pytest.raises(ValueError, match='ImageNetV2: class folders must be named by their ImageNet-1k index'):
        evaluate_ood(cfg, ['imagenet-r', 'imagenet-v2'], dict(roots, **{'imagenet-v2': str(tiny_r)}),
                     out_dir=str(out_dir))
    assert not out_dir.exists()

    with pytest.raises(ValueError, match="ImageNet-1k classifier .* head has 10 classes"):
        evaluate_ood(tiny_classifier_config(tmp_path / 'work10', num_classes=10), ['imagenet-r'], roots)


@pytest.mark.parametrize('config', ['faster-rcnn-tiny_dat_shapes.py', 'fcn-tiny_dat_shapes.py'])
def test_ood_loop_refuses_detectors_and_segmentors(tmp_path, tiny_r, config):
    pytest.importorskip('mmcv.ops')
    cfg = Config.fromfile(str(REPO / 'configs/demo' / config))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.custom_hooks = []  # no VQGAN needed to test
    with pytest.raises(ValueError, match='does not apply to detectors or segmentors'):
        evaluate_ood(cfg, ['imagenet-r'], {'imagenet-r': str(tiny_r)})
