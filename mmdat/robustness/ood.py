"""Out-of-distribution classification benchmarks: ImageNet-R, -A, -Sketch, -V2, Stylized-ImageNet.

:class:`OODSuite` runs a classification runner's model on each benchmark with that benchmark's
published protocol, inside a test loop (``test_cfg=dict(type='OODTestLoop', benchmarks=[...])``;
``tools/test.py CONFIG CKPT --ood ...`` sets it):

- the images are read by the benchmark's dataset class (``mmdat.datasets.imagenet_variants``),
  which applies the benchmark's folder -> label rule (ImageNetV2: ``int(folder)``);
- the pipeline is ``LoadImageFromFile`` decoding with PIL without EXIF rotation (as the references'
  ``Image.open(...).convert('RGB')``) -> short side 256 (bicubic, Pillow) -> centre crop 224 ->
  ``PackInputs`` for every benchmark (:data:`OOD_TEST_PIPELINE`), whatever the config's own test
  pipeline; the model's data preprocessor (mean/std, BGR->RGB) applies as in any test;
- ImageNet-R/A are scored by ``SubsetAccuracy`` (the arg-max of the 1000-way logits restricted to
  the 200 classes; :func:`~mmdat.evaluation.metrics.logits.keep_classifier_logits` keeps
  the logits), the others by plain 1000-way ``Accuracy``; top-1 and top-5 are reported.

Batch size, workers and sampler come from the config's ``test_dataloader``. Every input problem
(unknown benchmark, missing folder, wrong class folders, a detector / segmentor, a head without
1000 classes) raises ``ValueError`` before the first benchmark runs.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import os.path as osp
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmdat.evaluation.metrics.logits import keep_classifier_logits
from mmdat.registry import DATASETS

__all__ = ['OODBenchmark', 'OOD_BENCHMARKS', 'OOD_TEST_PIPELINE', 'OOD_TOPK', 'OODSuite',
           'ood_markdown_table']

# easyrobust's benchmark.py transform for DAT's published numbers (crop_pct 0.875, --interpolation 3 =
# bicubic); hendrycks' ImageNet-R/A code uses the same Resize(256) + CenterCrop(224). Both read the images
# with torchvision's ImageFolder loader, PIL's convert('RGB') without EXIF rotation: so does mmdat.
OOD_TEST_PIPELINE: tuple[dict, ...] = (
    dict(type='LoadImageFromFile', imdecode_backend='pillow', color_type='color_ignore_orientation'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
)
OOD_PREPROCESSING = 'PIL decoding without EXIF rotation, short side 256 (bicubic) + centre crop 224'
OOD_TOPK = (1, 5)
OOD_NUM_CLASSES = 1000  # every benchmark needs an ImageNet-1k classifier


@dataclass(frozen=True)
class OODBenchmark:
    """One out-of-distribution benchmark: where its data lives and how it is scored.

    Args:
        title (str): display name.
        dataset_type (str): registered dataset class (``mmdat.datasets.imagenet_variants``).
        data_root (str): default root folder, relative to the working directory.
        config (str): the matching ``_base_`` dataset config of the repository.
        description (str): one line for the command line's help.
        subset (str, optional): class subset scored by ``SubsetAccuracy``; None for 1000-way
            ``Accuracy``. Defaults to None.
    """

    title: str
    dataset_type: str
    data_root: str
    config: str
    description: str
    subset: Optional[str] = None

    @property
    def num_labels(self) -> int:
        """Number of classes the benchmark's labels range over."""
        return 200 if self.subset else OOD_NUM_CLASSES

    def dataset_cfg(self, data_root: Optional[str] = None) -> dict:
        """The test dataset config (root defaults to :attr:`data_root`)."""
        return dict(type=self.dataset_type, data_root=data_root or self.data_root,
                    pipeline=[dict(t) for t in OOD_TEST_PIPELINE], test_mode=True)

    def evaluator_cfg(self) -> dict:
        """The metric config: ``SubsetAccuracy`` for 200-class subsets, else ``Accuracy``."""
        if self.subset:
            return dict(type='SubsetAccuracy', subset=self.subset, num_classes=OOD_NUM_CLASSES, topk=OOD_TOPK)
        return dict(type='Accuracy', topk=OOD_TOPK)


OOD_BENCHMARKS: Mapping[str, OODBenchmark] = MappingProxyType({
    'imagenet-r': OODBenchmark(
        'ImageNet-R', 'ImageNetR', 'data/imagenet-r', 'configs/_base_/datasets/imagenet_r.py',
        'renditions (art, cartoons, sketches...) of 200 classes; 1000-way scores restricted to the 200',
        subset='imagenet-r'),
    'imagenet-a': OODBenchmark(
        'ImageNet-A', 'ImageNetA', 'data/imagenet-a', 'configs/_base_/datasets/imagenet_a.py',
        'natural adversarial examples of 200 classes; 1000-way scores restricted to the 200',
        subset='imagenet-a'),
    'imagenet-sketch': OODBenchmark(
        'ImageNet-Sketch', 'ImageNetSketch', 'data/imagenet-sketch',
        'configs/_base_/datasets/imagenet_sketch.py', 'sketches of the 1000 classes; 1000-way top-1'),
    'imagenet-v2': OODBenchmark(
        'ImageNetV2', 'ImageNetV2', 'data/imagenetv2-matched-frequency', 'configs/_base_/datasets/imagenet_v2.py',
        'matched-frequency re-collection of the validation set; folders 0..999 read as integers'),
    'stylized-imagenet': OODBenchmark(
        'Stylized-ImageNet', 'StylizedImageNet', 'data/stylized-imagenet',
        'configs/_base_/datasets/stylized_imagenet.py', 'AdaIN-stylised validation images; 1000-way top-1'),
})


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _model_num_classes(model) -> Optional[int]:
    """Number of classes of a classifier's output, when it can be read from the model."""
    head = getattr(model, 'head', None)
    if isinstance(getattr(head, 'num_classes', None), int):
        return head.num_classes
    inner = getattr(model, 'model', None)  # TimmClassifier / HuggingFaceClassifier wrap their network
    config = getattr(inner, 'config', None)
    for value in (getattr(inner, 'num_classes', None), getattr(config, 'num_labels', None)):
        if isinstance(value, int):
            return value
    return None


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(names))  # keep the order, drop repeats
    if not names:
        raise ValueError(f'no OOD benchmark given; choose from {", ".join(OOD_BENCHMARKS)}')
    unknown = [n for n in names if n not in OOD_BENCHMARKS]
    if unknown:
        raise ValueError(f'unknown OOD benchmark(s) {", ".join(map(repr, unknown))}; choose from '
                         f'{", ".join(OOD_BENCHMARKS)}')
    return names


def _check_model(runner: Runner) -> None:
    from mmpretrain.models import BaseClassifier
    model = _unwrap(runner.model)
    if not isinstance(model, BaseClassifier):
        raise ValueError(f'OOD benchmarks evaluate image classifiers (mmpretrain), but the runner holds a '
                         f'{type(model).__name__} ({type(model).__module__}): --ood does not apply to '
                         'detectors or segmentors; use --corruptions for COCO-C / ADE20K-C')
    num_classes = _model_num_classes(model)
    if num_classes is not None and num_classes != OOD_NUM_CLASSES:
        raise ValueError(f'OOD benchmarks need an ImageNet-1k classifier ({OOD_NUM_CLASSES} classes, ImageNet '
                         f'class order), but the model\'s head has {num_classes} classes')
    if num_classes is None:
        runner.logger.warning(f'cannot read the number of classes of {type(model).__name__}; it must output '
                              f'{OOD_NUM_CLASSES} ImageNet-1k scores (only ImageNet-R/A can check it, on their '
                              'first batch)')


def _resolve_roots(names: Sequence[str], data_roots: Optional[Mapping[str, str]]) -> dict[str, str]:
    data_roots = dict(data_roots or {})
    extra = [n for n in data_roots if n not in OOD_BENCHMARKS]
    if extra:
        raise ValueError(f'data_roots names unknown benchmark(s) {", ".join(map(repr, extra))}; choose from '
                         f'{", ".join(OOD_BENCHMARKS)}')
    roots = {n: str(data_roots.get(n) or OOD_BENCHMARKS[n].data_root) for n in names}
    missing = [f'{n}: {r!r}' for n, r in roots.items() if not osp.isdir(r)]
    if missing:
        raise ValueError('OOD benchmark folder(s) not found: ' + '; '.join(missing) + '. Download the data there '
                         '(layouts in configs/_base_/datasets/) or give the folder per benchmark (data_roots)')
    return roots


def _loader_settings(loader_cfg: Optional[Mapping], runner: Runner) -> dict:
    """The test dataloader config's settings (batch size, workers, sampler) without its dataset; defaults
    when the loop was given a built DataLoader instead of a config."""
    if not loader_cfg:
        runner.logger.info('the test dataloader is no config dict: OOD benchmarks use batch_size=32, num_workers=2')
        loader_cfg = dict(batch_size=32, num_workers=2, sampler=dict(type='DefaultSampler', shuffle=False))
    cfg = copy.deepcopy(dict(loader_cfg))
    cfg.pop('dataset', None)
    cfg['persistent_workers'] = False  # each benchmark's loader is used once
    return cfg


def ood_markdown_table(results: Mapping[str, Mapping[str, float]],
                       details: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """A Markdown table of :meth:`OODSuite.run` results (one row per benchmark)."""
    details = details or {}
    lines = ['| benchmark | top-1 (%) | top-5 (%) | images | classes | preprocessing |',
             '|---|---|---|---|---|---|']
    for name, metrics in results.items():
        bench = OOD_BENCHMARKS.get(name)
        info = details.get(name, {})
        cells = [f'{metrics[k]:.2f}' if k in metrics else '-' for k in ('accuracy/top1', 'accuracy/top5')]
        classes = (f'{bench.num_labels} of {OOD_NUM_CLASSES} (scores restricted)' if bench and bench.subset
                   else str(OOD_NUM_CLASSES))
        preprocessing = info.get('preprocessing', OOD_PREPROCESSING)
        lines.append(f'| {bench.title if bench else name} | {cells[0]} | {cells[1]} | '
                     f'{info.get("num_images", "-")} | {classes} | {preprocessing} |')
    return '\n'.join(lines) + '\n'


def _write_outputs(out_dir: str, results: dict, details: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name, text in (('ood.json', json.dumps(dict(results=results, details=details), indent=2) + '\n'),
                       ('ood.md', ood_markdown_table(results, details))):
        path = osp.join(out_dir, name)
        with open(path + '.tmp', 'w') as f:
            f.write(text)
        os.replace(path + '.tmp', path)  # a killed run never leaves a half-written file


class OODSuite:
    """The OOD benchmarks of a test loop: every input checked at construction, evaluated by :meth:`run`.

    Built by :class:`~mmdat.robustness.loops.RobustnessTestLoop` (``test_cfg=dict(type='OODTestLoop',
    benchmarks=[...])``) before the runner sets its hooks up and loads the checkpoint: an unknown
    benchmark, a missing folder, wrong class folders, a detector / segmentor or a head without 1000
    classes raises ``ValueError`` before anything is evaluated. Each benchmark's dataset is built
    (scanned) here.

    Args:
        runner (Runner): the runner of the loop (a classification runner).
        loader_cfg (dict, optional): the config's test dataloader; its batch size, workers and
            sampler are used, its dataset is not. Defaults to None (batch 32, 2 workers).
        benchmarks (Sequence[str]): benchmark names, keys of :data:`OOD_BENCHMARKS`.
        data_roots (Mapping[str, str], optional): root folder per benchmark name; the others use
            their default (``OOD_BENCHMARKS[name].data_root``). Defaults to None.
        out_dir (str, optional): where rank 0 writes ``ood.json`` and ``ood.md`` (rewritten after
            each benchmark). Defaults to the runner's work dir; ``False`` writes nothing.
    """

    def __init__(self, runner: Runner, loader_cfg: Optional[Mapping], benchmarks: Sequence[str],
                 data_roots: Optional[Mapping[str, str]] = None, out_dir: Optional[str] = None) -> None:
        self.runner = runner
        self.names = _check_names(benchmarks)
        _check_model(runner)
        self.roots = _resolve_roots(self.names, data_roots)
        self.out_dir = runner.work_dir if out_dir is None else out_dir
        loader_cfg = _loader_settings(loader_cfg, runner)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            self.datasets = {n: DATASETS.build(OOD_BENCHMARKS[n].dataset_cfg(self.roots[n])) for n in self.names}
        self.loader_cfgs = {n: dict(loader_cfg, dataset=self.datasets[n]) for n in self.names}

    def run(self, loop) -> dict[str, dict[str, float]]:
        """Evaluate every benchmark through ``loop.evaluate``.

        Returns:
            dict[str, dict[str, float]]: per benchmark name, ``{'accuracy/top1': .., 'accuracy/top5': ..}``
            in percent.
        """
        results: dict[str, dict[str, float]] = {}
        details: dict[str, dict[str, Any]] = {}
        for name in self.names:
            bench, dataset = OOD_BENCHMARKS[name], self.datasets[name]
            self.runner.logger.info(f'OOD benchmark {bench.title}: {len(dataset)} images from {self.roots[name]} '
                                    f'({OOD_PREPROCESSING})')
            start = time.perf_counter()
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                loader = self.runner.build_dataloader(self.loader_cfgs[name], seed=self.runner.seed)
                evaluator = self.runner.build_evaluator(bench.evaluator_cfg())
            with keep_classifier_logits(self.runner.model) if bench.subset else contextlib.nullcontext():
                metrics = {k: float(v) for k, v in loop.evaluate(loader, evaluator).items()}
            results[name] = metrics
            details[name] = dict(data_root=self.roots[name], num_images=len(dataset), num_labels=bench.num_labels,
                                 subset=bench.subset, preprocessing=OOD_PREPROCESSING,
                                 seconds=round(time.perf_counter() - start, 2))
            self.runner.logger.info(f'OOD benchmark {bench.title}: ' +
                                    ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()))
            if self.out_dir is not False and is_main_process():
                _write_outputs(self.out_dir, results, details)
        if is_main_process():
            self.runner.logger.info('OOD benchmarks:\n' + ood_markdown_table(results, details))
        return results
