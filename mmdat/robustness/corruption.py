"""Corruption benchmarks (ImageNet-C, COCO-C, ADE20K-C) inside an mmengine test loop.

:class:`CorruptionBenchmark` (run by ``test_cfg=dict(type='CorruptionTestLoop', ...)``, see
:mod:`mmdat.robustness.loops`) evaluates the runner's model on the clean test set
(severity 0, always) and on every (corruption, severity) cell, from one of four sources:

* on the fly at original resolution (``source=None``): :class:`~mmdat.datasets.transforms.ImageCorruption`
  is inserted right after the image-loading transform of the test pipeline (found by type), so
  images are corrupted at their original resolution and ground truth is untouched (all task
  families; COCO-C's protocol, but not ImageNet-C's: its mCE is not comparable with published ones);
* the exact ImageNet-C protocol on the fly (``imagenet_c_protocol=True``, classification):
  :class:`~mmdat.datasets.transforms.ImageNetCCorruption` after the loader (decoding with PIL, no
  EXIF rotation, as Hendrycks' loader) does Resize(256) -> CenterCrop(224) -> corrupt -> JPEG 85,
  and the pipeline's own Resize/CenterCrop are dropped;
* released ImageNet-C folders (``<source>/<corruption>/<severity>/<wnid>/*.JPEG``, already
  224x224): evaluated without the pipeline's Resize/CenterCrop unless ``imagenet_c_resize``
  asks for easyrobust's Resize(256, bicubic) + CenterCrop(224) (classification);
* copies written by ``tools/dataset_converters/make_corrupted.py``
  (``<source>/<corruption>/<severity>/`` mirrors the data root, annotation files included).

Every finished cell is written at once to ``<work_dir>/robustness.json`` (atomically, by rank 0);
running the same benchmark again skips the cells found there. At the end the aggregates (P, mPC,
rPC; CE, mCE and relative mCE for classification), a Markdown table and a plot are written next to
it (see :mod:`mmdat.robustness.report`).
"""
from __future__ import annotations

import copy
import datetime
import logging
import numbers
import os
import os.path as osp
import time
from pathlib import Path
from typing import Optional, Sequence, Union

from mmengine.dist import barrier, broadcast_object_list, is_main_process
from mmengine.logging import print_log
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdat.datasets.transforms.corruption import MIN_SIDE, resolve_corruptions
from .report import (RESULT_FILE, atomic_write_json, load_record, source_description, summarize_record,
                     write_report)

__all__ = ['CorruptionBenchmark', 'CheckpointFitCheck', 'resolve_severities', 'task_family', 'insert_corruption',
           'find_unfit_images', 'no_prediction_metrics', 'RESULT_FILE']

# Transforms that change the geometry of classification inputs: dropped for the released
# ImageNet-C images, which are already 224x224 (Hendrycks' test.py applies no Resize).
GEOMETRIC_TRANSFORMS = ('Resize', 'ResizeEdge', 'RandomResize', 'RandomResizedCrop', 'CenterCrop',
                        'RandomCrop', 'EfficientNetCenterCrop', 'EfficientNetRandomCrop',
                        'RandomChoiceResize', 'FixScaleResize', 'ResizeShortestEdge')
# easyrobust's benchmark.py: Resize(int(224 / 0.875) = 256, bicubic) + CenterCrop(224), in PIL.
EASYROBUST_RESIZE = [dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
                     dict(type='CenterCrop', crop_size=224)]
# Loaders that stack several files or bands into one array: no (H, W, 1 | 3 | 4) image to corrupt.
MULTI_CHANNEL_LOADER_MARKS = ('MultiChannel', 'Multiple', 'MultiImage', 'MultiView', 'RSImage', 'Biomedical')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
CLEAN = 'clean'
FAMILIES = {'mmpretrain': 'classification', 'mmdet': 'detection', 'mmseg': 'segmentation'}


def resolve_severities(severities: Sequence[int]) -> list[int]:
    """Check severities (integers 0..5) and add the clean pass (0); sorted, no duplicates."""
    out = {0}
    for s in severities:
        if isinstance(s, bool) or not (isinstance(s, numbers.Integral) or isinstance(s, str) and s.isdigit()):
            raise ValueError(f'severities must be integers 0..5, got {s!r}')
        if not 0 <= int(s) <= 5:
            raise ValueError(f'severity {s} is outside 0..5 (0 is the clean pass)')
        out.add(int(s))
    return sorted(out)


def task_family(runner) -> str:
    """``'classification'``, ``'detection'`` or ``'segmentation'``, from the model's classes."""
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    for cls in type(model).__mro__:
        family = FAMILIES.get(cls.__module__.split('.')[0])
        if family:
            return family
    family = FAMILIES.get(str(runner.cfg.get('default_scope')))
    if family is None:
        raise ValueError(f'cannot tell the task family of {type(model).__name__} (neither an mmpretrain, '
                         'mmdet nor mmseg model, and default_scope is none of theirs)')
    return family


# ----------------------------------------------------------------------------- dataset configs
def _type_name(transform: dict) -> str:
    t = transform.get('type', '')
    return (t if isinstance(t, str) else getattr(t, '__name__', str(t))).split('.')[-1]


def _is_loader(transform: dict) -> bool:
    name = _type_name(transform)
    return name.startswith('Load') and 'Image' in name


def _datasets(dataset_cfg: dict) -> list[dict]:
    """The innermost dataset configs (those with the pipeline), through dataset wrappers."""
    if 'pipeline' in dataset_cfg or not ('dataset' in dataset_cfg or 'datasets' in dataset_cfg):
        return [dataset_cfg]
    inner = dataset_cfg.get('datasets') or [dataset_cfg['dataset']]
    return [d for sub in inner for d in _datasets(sub)]


def _is_multi_channel(transform: dict) -> bool:
    return any(mark in _type_name(transform) for mark in MULTI_CHANNEL_LOADER_MARKS)


def _without_geometry(pipeline: list) -> list:
    return [t for t in pipeline if _type_name(t) not in GEOMETRIC_TRANSFORMS]


def insert_corruption(dataset_cfg: dict, corruption: str, severity: int, seed: int = 0,
                      legacy_bgr: bool = False, imagenet_c_protocol: bool = False) -> dict:
    """A copy of ``dataset_cfg`` whose pipelines corrupt images right after loading them.

    The loading transform is found by type (``Load*Image*``, e.g. ``LoadImageFromFile``), not by
    position; a pipeline without one, or whose loader stacks several files or bands (e.g.
    ``LoadMultiChannelImageFromFiles``), is an error. With ``imagenet_c_protocol`` the loader
    decodes with PIL without EXIF rotation (when it is a ``LoadImageFromFile``), the corruption is
    :class:`~mmdat.datasets.transforms.ImageNetCCorruption` and the pipeline's own geometric
    transforms (Resize, CenterCrop, ...) are dropped.
    """
    if imagenet_c_protocol and legacy_bgr:
        raise ValueError('the ImageNet-C protocol corrupts RGB images: legacy_bgr (--legacy-bgr) does not apply')
    dataset_cfg = copy.deepcopy(dataset_cfg)
    for ds in _datasets(dataset_cfg):
        pipeline = list(ds.get('pipeline') or [])
        loaders = [i for i, t in enumerate(pipeline) if _is_loader(t)]
        if not loaders:
            raise ValueError('cannot corrupt on the fly: the test pipeline has no image-loading transform '
                             f'(Load*Image*); its transforms are {[_type_name(t) for t in pipeline]}')
        at = loaders[0]
        if _is_multi_channel(pipeline[at]):
            raise ValueError(f'cannot corrupt on the fly: {_type_name(pipeline[at])} loads several images or '
                             'bands into one array, and the corruptions work on grey, colour or colour + alpha '
                             'images only')
        if imagenet_c_protocol:
            if _type_name(pipeline[at]) == 'LoadImageFromFile':
                pipeline[at] = dict(pipeline[at], imdecode_backend='pillow', color_type='color_ignore_orientation')
            corrupt = dict(type='ImageNetCCorruption', corruption=corruption, severity=severity, seed=seed)
            pipeline = pipeline[:at + 1] + [corrupt] + _without_geometry(pipeline[at + 1:])
        else:
            pipeline.insert(at + 1, dict(type='ImageCorruption', corruption=corruption, severity=severity,
                                         seed=seed, legacy_bgr=legacy_bgr))
        ds['pipeline'] = pipeline
    return dataset_cfg


def _loader_cfg(dataset_cfg: dict) -> dict:
    """The image-loading transform of the first pipeline (an empty dict when there is none)."""
    for ds in _datasets(dataset_cfg):
        for t in ds.get('pipeline') or []:
            if _is_loader(t):
                return dict(t)
    return {}


def _not_8_bit(mode: str) -> bool:
    """PIL modes with more than 8 bits per channel (16-bit integer, 32-bit integer or float)."""
    return mode.startswith('I') or mode.startswith('F') or ';16' in mode


def find_unfit_images(dataset, loader_cfg: dict, min_side: int = MIN_SIDE) -> tuple[list[str], int]:
    """Images of ``dataset`` that corruption at original resolution would fail on, found before evaluation.

    Reads image sizes from the data info (``height``/``width``, e.g. COCO) or the file header (PIL
    opens it lazily, without decoding): a side under ``min_side`` (imagecorruptions refuses it);
    with ``color_type='unchanged'``, also images of more than 8 bits per channel.

    Returns:
        tuple: (problems, one line each; how many images could not be checked, e.g. on a remote
        storage backend or in a format PIL cannot open).
    """
    from PIL import Image
    unchanged = loader_cfg.get('color_type', 'color') == 'unchanged'
    problems, unchecked = [], 0
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        path = info.get('img_path')
        h, w, mode = info.get('height'), info.get('width'), None
        if (h is None or w is None or unchanged) and isinstance(path, str) and osp.isfile(path):
            try:
                with Image.open(path) as image:
                    (w, h), mode = image.size, image.mode
            except OSError:  # a format PIL cannot open (the loader may): checked when it is corrupted
                unchecked += 1
                continue
        elif h is None or w is None:
            unchecked += 1
            continue
        if min(int(h), int(w)) < min_side:
            problems.append(f'{path} ({w}x{h} px, under {min_side}x{min_side})')
        if unchanged and mode and _not_8_bit(mode):
            problems.append(f"{path} (PIL mode {mode}: more than 8 bits per channel, read with color_type='unchanged')")
    return problems, unchecked


def _check_images(dataset, loader_cfg: dict, what: str) -> None:
    """Raise before any evaluation when images of the test set cannot be corrupted (rank 0 scans)."""
    holder = [None]
    if is_main_process():
        start = time.perf_counter()
        holder[0] = find_unfit_images(dataset, loader_cfg)
        print_log(f'robustness: checked the sizes of {len(dataset)} test images ({time.perf_counter() - start:.1f} s)',
                  logger='current')
    broadcast_object_list(holder)
    problems, unchecked = holder[0]
    if unchecked:
        print_log(f'robustness: {unchecked} image(s) are not local files PIL can open; their size is checked '
                  'only when they are corrupted', logger='current', level=30)
    if problems:
        raise ValueError(f'{len(problems)} image(s) of the test set cannot be corrupted {what}: '
                         + '; '.join(problems[:10]) + (' ...' if len(problems) > 10 else '')
                         + '. Remove them from the test set (or, for classification, use the ImageNet-C '
                         'protocol, which corrupts the 224x224 centre crop)')


def _relative(path, root) -> Optional[str]:
    """``path`` relative to ``root`` when it is a relative path or lies inside root, else None."""
    if not path or not isinstance(path, str):
        return None
    if not osp.isabs(path):
        return path
    if root and osp.abspath(path).startswith(osp.abspath(root) + os.sep):
        return osp.relpath(path, root)
    return None


def _scan_class_folders(folder: Path, classes: Sequence[str]) -> list[tuple[str, int]]:
    """(relative image path, label) of an ImageNet-C ``<class folder>/<image>`` directory.

    Class folders named after the dataset's classes get those labels; otherwise (ImageNet wnids)
    the label is the position in the sorted folder list, as ImageNet's own labels are.
    """
    subdirs = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not subdirs:
        raise ValueError(f'{folder} holds no class folders (expected <class>/<image> files)')
    if classes and set(subdirs) <= set(classes):
        labels = {name: list(classes).index(name) for name in subdirs}
    elif not classes or len(subdirs) == len(classes):
        labels = {name: i for i, name in enumerate(subdirs)}
    else:
        raise ValueError(f'{folder} has {len(subdirs)} class folders but the test set has {len(classes)} '
                         'classes (and the folders are not named after them)')
    samples = []
    for name in subdirs:
        files = sorted(e.name for e in os.scandir(folder / name)
                       if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        samples += [(f'{name}/{f}', labels[name]) for f in files]
    if not samples:
        raise ValueError(f'{folder} holds no images')
    return samples


class _CellSource:
    """How the dataset config of one (corruption, severity) cell is made."""

    def __init__(self, loader_cfg: dict, task: str, classes: Sequence[str], work_dir: Path,
                 source: Optional[str], seed: int, legacy_bgr: bool, imagenet_c_resize: bool,
                 imagenet_c_protocol: bool = False) -> None:
        self.loader_cfg, self.task, self.classes = loader_cfg, task, tuple(classes or ())
        self.seed, self.legacy_bgr, self.resize = seed, legacy_bgr, imagenet_c_resize
        self.protocol = imagenet_c_protocol
        self.source = None if source is None else Path(source).resolve()
        self.ann_dir = work_dir / 'imagenet_c_annotations'
        self._annotations: dict[tuple[str, int], str] = {}
        datasets = _datasets(loader_cfg['dataset'])
        self.loader_name = next((_type_name(t) for t in datasets[0].get('pipeline') or [] if _is_loader(t)), None)
        if imagenet_c_protocol and source is not None:
            raise ValueError('imagenet_c_protocol (--imagenet-c-protocol) corrupts the test set on the fly; it '
                             f'does not apply to the corruption source {source}')
        if imagenet_c_protocol and task != 'classification':
            raise ValueError(f'imagenet_c_protocol (--imagenet-c-protocol) is the ImageNet-C protocol of '
                             f'classifiers (Resize 256, CenterCrop 224); this is a {task} test set')
        if self.source is None:
            self.kind = 'imagenet-c-protocol' if imagenet_c_protocol else 'on-the-fly'
            if imagenet_c_resize:
                raise ValueError('imagenet_c_resize (--imagenet-c-resize) applies to ImageNet-C folders '
                                 '(a corruption source), not to on-the-fly corruption')
            # no loader, or a multi-channel one: a clear error now
            insert_corruption(loader_cfg['dataset'], 'gaussian_noise', 1, legacy_bgr=legacy_bgr,
                              imagenet_c_protocol=imagenet_c_protocol)
            return
        if legacy_bgr:
            raise ValueError('legacy_bgr (--legacy-bgr) applies to on-the-fly corruption only: the images '
                             f'in {self.source} are already corrupted')
        if not self.source.is_dir():
            raise FileNotFoundError(f'corruption source {self.source} is not a directory')
        if len(datasets) != 1:
            raise ValueError('a corruption source needs a test set of one dataset (no dataset wrappers)')
        self.dataset = datasets[0]
        ann = _relative(self.dataset.get('ann_file'), self.dataset.get('data_root'))
        self.ann_rel = ann
        # released ImageNet-C: class folders, no annotation file; make_corrupted copies keep theirs
        self.kind = 'copy'
        if task == 'classification' and not (ann and any(self.source.glob(f'*/[1-5]/{ann}'))):
            self.kind = 'imagenet-c'
        if imagenet_c_resize and self.kind != 'imagenet-c':
            raise ValueError('imagenet_c_resize (--imagenet-c-resize) applies to released ImageNet-C '
                             f'folders (<class>/<image> without annotation file); {self.source} holds copies')

    def describe(self) -> str:
        if self.kind == 'imagenet-c-protocol':
            decode = ('decoded with PIL without EXIF rotation' if self.loader_name == 'LoadImageFromFile'
                      else f'decoded by {self.loader_name}')
            return (f'exact ImageNet-C protocol on the fly: config test set {decode}, Resize(256, bilinear) -> '
                    f'CenterCrop(224) -> corrupt (RGB, seed {self.seed}) -> JPEG quality 85, then the config test '
                    'pipeline without its Resize/CenterCrop')
        if self.kind == 'on-the-fly':
            order = 'the BGR array as loaded (mmdet legacy)' if self.legacy_bgr else 'RGB'
            return (f'on-the-fly corruption of the config test set right after {self.loader_name} '
                    f'(original resolution, {order}, seed {self.seed}), then the config test pipeline')
        if self.kind == 'imagenet-c':
            how = ('easyrobust preprocessing: Resize(256, bicubic) + CenterCrop(224) of the stored images'
                   if self.resize else 'images as stored (no Resize/CenterCrop)')
            return f'ImageNet-C folders {self.source}/<corruption>/<severity>/<class>/*, {how}'
        return f'pre-generated copies {self.source}/<corruption>/<severity>/ with the config test pipeline'

    def check(self, corruption: str, severity: int) -> Optional[str]:
        """Why the cell cannot run (a missing folder or annotation file), or None."""
        if self.source is None:
            return None
        folder = self.source / corruption / str(severity)
        if not folder.is_dir():
            return f'missing folder {folder}'
        if self.kind == 'copy':
            if self.ann_rel and not (folder / self.ann_rel).is_file():
                return f'missing annotation file {folder / self.ann_rel}'
            prefix = self.dataset.get('data_prefix') or {}
            for rel in ([prefix] if isinstance(prefix, str) else list(prefix.values())):
                rel = _relative(rel, self.dataset.get('data_root'))
                if rel and not (folder / rel).is_dir():
                    return f'missing folder {folder / rel}'
        return None

    def loader(self, corruption: str, severity: int) -> dict:
        """The test dataloader config of one cell (severity 0: the config's own)."""
        cfg = copy.deepcopy(self.loader_cfg)
        cfg['persistent_workers'] = False  # each cell's loader is used once
        if severity == 0:
            return cfg
        if self.source is None:
            cfg['dataset'] = insert_corruption(cfg['dataset'], corruption, severity, self.seed, self.legacy_bgr,
                                               imagenet_c_protocol=self.protocol)
            return cfg
        folder = self.source / corruption / str(severity)
        ds = cfg['dataset']
        ds['data_root'] = str(folder)
        if self.kind == 'imagenet-c':
            ds['ann_file'] = self._annotation(folder, corruption, severity)
            ds['data_prefix'] = '' if isinstance(ds.get('data_prefix', ''), str) else dict(img_path='')
            if 'split' in ds:
                ds['split'] = ''
            pipeline = _without_geometry(ds.get('pipeline') or [])
            if self.resize:
                at = next(i for i, t in enumerate(pipeline) if _is_loader(t)) + 1
                pipeline[at:at] = copy.deepcopy(EASYROBUST_RESIZE)
            ds['pipeline'] = pipeline
        return cfg

    def _annotation(self, folder: Path, corruption: str, severity: int) -> str:
        """Write (atomically, identical on every rank) the label file of an ImageNet-C folder."""
        if (corruption, severity) in self._annotations:
            return self._annotations[corruption, severity]
        samples = _scan_class_folders(folder, self.classes)
        path = self.ann_dir / f'{corruption}_{severity}.txt'
        path.parent.mkdir(parents=True, exist_ok=True)
        text = ''.join(f'{name} {label}\n' for name, label in samples)
        if not path.is_file() or path.read_text() != text:
            tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
            tmp.write_text(text)
            os.replace(tmp, path)
        self._annotations[corruption, severity] = str(path.resolve())
        return self._annotations[corruption, severity]


# ----------------------------------------------------------------------------- checkpoint checks
def _head_num_classes(model) -> Optional[int]:
    for path in ('head', 'roi_head.bbox_head', 'bbox_head', 'decode_head'):
        obj = model
        for part in path.split('.'):
            obj = getattr(obj, part, None)
        n = getattr(obj, 'num_classes', None)
        if isinstance(n, int):
            return n
    return None


def _check_classes(model, checkpoint: dict, classes: Sequence[str], checkpoint_path: str) -> None:
    """Refuse a checkpoint whose head does not fit the model or whose classes differ from the test set."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    own = model.state_dict()
    mismatched = []
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key in own and hasattr(value, 'shape') and tuple(value.shape) != tuple(own[key].shape):
            mismatched.append(f'{key}: {tuple(value.shape)} in the checkpoint, {tuple(own[key].shape)} in the model')
    if mismatched:
        raise ValueError(f'the checkpoint {checkpoint_path} does not fit the model of the config (does '
                         'num_classes match?):\n  ' + '\n  '.join(mismatched[:8]))
    meta_classes = ((checkpoint.get('meta') or {}).get('dataset_meta') or {}).get('classes')
    if meta_classes and classes and tuple(meta_classes) != tuple(classes):
        raise ValueError(f'the checkpoint {checkpoint_path} was trained on the classes {tuple(meta_classes)}, '
                         f'the test set has {tuple(classes)}')
    n = _head_num_classes(model)
    if n is not None and classes and n != len(classes):
        raise ValueError(f"the model's head predicts {n} classes, the test set has {len(classes)}: "
                         f'{tuple(classes)}')


# ----------------------------------------------------------------------------- the benchmark
def _settings(runner, task: str, source: _CellSource, seed: int, legacy_bgr: bool, imagenet_c_resize: bool) -> dict:
    checkpoint = runner.cfg.get('load_from')
    checkpoint = osp.abspath(checkpoint) if checkpoint and osp.exists(checkpoint) else checkpoint
    settings = dict(task=task, config=getattr(runner.cfg, 'filename', None), checkpoint=checkpoint,
                    source=source.kind, source_root=None if source.source is None else str(source.source),
                    preprocessing=source.describe(), seed=seed, legacy_bgr=legacy_bgr,
                    imagenet_c_resize=imagenet_c_resize)
    settings['source_description'] = source_description(settings)['description']
    return settings


_RESUME_KEYS = ('task', 'checkpoint', 'source', 'source_root', 'seed', 'legacy_bgr', 'imagenet_c_resize')


def _load_previous(path: Path, settings: dict) -> dict:
    """The results of an earlier run of the same benchmark (rank 0 reads, every rank gets them)."""
    holder = [None]
    if is_main_process() and path.is_file():
        holder[0] = load_record(path)
    broadcast_object_list(holder)
    record = holder[0]
    if record is None:
        return dict(format=1, settings=settings, results={}, seconds={})
    differ = [k for k in _RESUME_KEYS if record['settings'].get(k) != settings.get(k)]
    if differ:
        diff = ', '.join(f'{k}: {record["settings"].get(k)!r} there, {settings.get(k)!r} now' for k in differ)
        raise ValueError(f'{path} holds results of another benchmark ({diff}); use another work dir '
                         'or remove that file')
    record['settings'] = settings
    return record


class CorruptionBenchmark:
    """One corruption benchmark of a test loop: every input checked at construction, cells run by :meth:`run`.

    Built by :class:`~mmdat.robustness.loops.RobustnessTestLoop` (``test_cfg=dict(type=
    'CorruptionTestLoop', ...)``) before the runner sets its hooks up and loads the checkpoint, so
    bad input (names, severities, source folders, image sizes and bit depths, a head that does not
    fit the test set, an earlier record of another benchmark) fails before any evaluation. The
    checkpoint itself is checked against the model and the test set's classes by
    :class:`CheckpointFitCheck` when the runner loads it.

    Args:
        runner (Runner): the runner of the loop.
        loader_cfg (dict): the config of the test dataloader (each cell's loader is made from it).
        clean_loader (DataLoader): the loop's own test dataloader (the clean pass).
        corruptions (str | Sequence[str]): names or groups (``benchmark``, ``all``, ``noise``,
            ``blur``, ``weather``, ``digital``, ``holdout``). Defaults to ``'benchmark'``.
        severities (Sequence[int]): severities in 0..5; 0 (the clean pass) is always added.
            Defaults to (1, 2, 3, 4, 5).
        work_dir (str, optional): where ``robustness.json``, ``.md`` and ``.png`` go. Defaults to
            the runner's work dir.
        seed (int): corruption seed (on-the-fly source). Defaults to 0.
        source (str, optional): root of pre-generated ``<corruption>/<severity>/`` folders
            (released ImageNet-C or make_corrupted.py copies). Defaults to None (on the fly).
        legacy_bgr (bool): corrupt the BGR array as mmdet does (on the fly only). Defaults to False.
        imagenet_c_resize (bool): easyrobust's Resize(256) + CenterCrop(224) for released ImageNet-C
            folders. Defaults to False (images as stored, the ImageNet-C protocol).
        imagenet_c_protocol (bool): corrupt on the fly as ImageNet-C was made (Resize 256,
            CenterCrop 224, corrupt, JPEG 85; classification). Defaults to False (original resolution).
        out (str, optional): dump each cell's predictions to ``<out stem>_<cell><ext>`` (a
            ``DumpResults`` metric is added to the evaluator). Defaults to None.
    """

    def __init__(self, runner, loader_cfg: dict, clean_loader, corruptions: Union[str, Sequence[str]] = 'benchmark',
                 severities: Sequence[int] = (1, 2, 3, 4, 5), work_dir: Optional[str] = None, seed: int = 0,
                 source: Optional[str] = None, legacy_bgr: bool = False, imagenet_c_resize: bool = False,
                 imagenet_c_protocol: bool = False, out: Optional[str] = None) -> None:
        self.runner, self.clean_loader, self.out = runner, clean_loader, out
        self.corruptions = resolve_corruptions([corruptions] if isinstance(corruptions, str) else corruptions)
        severities = resolve_severities(severities)
        self.positive = [s for s in severities if s > 0]
        self.work_dir = Path(work_dir if work_dir is not None else runner.work_dir)
        self.json_path = self.work_dir / RESULT_FILE
        self.task = task_family(runner)
        loader_cfg = copy.deepcopy(loader_cfg)
        loader_cfg = loader_cfg.to_dict() if hasattr(loader_cfg, 'to_dict') else dict(loader_cfg)
        self.classes = tuple((getattr(clean_loader.dataset, 'metainfo', None) or {}).get('classes') or ())
        self.source = _CellSource(loader_cfg, self.task, self.classes, self.work_dir, source, seed, legacy_bgr,
                                  imagenet_c_resize, imagenet_c_protocol)
        self.cells = [(CLEAN, 0)] + [(c, s) for c in self.corruptions for s in self.positive]
        problems = [p for p in (self.source.check(c, s) for c, s in self.cells[1:]) if p]
        if problems:
            raise FileNotFoundError(f'the corruption source {source} lacks {len(problems)} cell(s): '
                                    + '; '.join(problems[:10]))
        if self.source.kind == 'imagenet-c':  # scan every folder now: bad layouts fail before evaluation
            for c, s in self.cells[1:]:
                self.source.loader(c, s)
        if self.source.kind == 'on-the-fly' and self.positive:  # too small or 16-bit images fail now
            _check_images(clean_loader.dataset, _loader_cfg(loader_cfg['dataset']), 'at their original resolution')
        if not runner.cfg.get('load_from'):  # else CheckpointFitCheck checks the checkpoint when it is loaded
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            _check_classes(model, {}, self.classes, 'of the runner')  # the head against the test set
        self.settings = _settings(runner, self.task, self.source, seed, legacy_bgr, imagenet_c_resize)
        self.settings['imagenet_c_protocol'] = imagenet_c_protocol
        self.record = _load_previous(self.json_path, self.settings)

    def run(self, loop) -> dict:
        """Evaluate every cell not in the earlier record through ``loop.evaluate``; returns the record."""
        record = self.record
        done = {(c, s) for c, s in self.cells if str(s) in record['results'].get(c, {})}
        todo = [cell for cell in self.cells if cell not in done]
        if not self.runner.cfg.get('load_from'):
            print_log("robustness: no cfg.load_from, evaluating the runner's model as it is", logger='current')
        print_log(f'robustness: {self.task}, {len(self.cells)} cells ({len(self.corruptions)} corruptions x '
                  f'severities {self.positive} + clean); {self.settings["preprocessing"]}', logger='current')
        if done:
            names = ', '.join(CLEAN if c == CLEAN else f'{c}/{s}' for c, s in self.cells if (c, s) in done)
            print_log(f'robustness: resuming from {self.json_path}: {len(done)} finished cell(s) skipped ({names})',
                      logger='current')
        dump = self._dump_metric(loop.evaluator)
        spent = []
        try:
            for k, (corruption, severity) in enumerate(todo, 1):
                start = time.perf_counter()
                cell = CLEAN if severity == 0 else f'{corruption}_{severity}'
                loader = (self.clean_loader if severity == 0 else
                          self.runner.build_dataloader(self.source.loader(corruption, severity), seed=self.runner.seed))
                if dump is not None:
                    stem, ext = osp.splitext(self.out)
                    dump.out_file_path = f'{stem}_{cell}{ext or ".pkl"}'
                metrics = loop.evaluate(loader)
                spent.append(time.perf_counter() - start)
                if not metrics and severity != 0:
                    metrics = no_prediction_metrics(record['results'].get(CLEAN, {}).get('0', {}), cell)
                record['results'].setdefault(corruption, {})[str(severity)] = _plain(metrics)
                record['seconds'].setdefault(corruption, {})[str(severity)] = round(spent[-1], 3)
                if is_main_process():
                    self.work_dir.mkdir(parents=True, exist_ok=True)
                    atomic_write_json(self.json_path, record)
                eta = datetime.timedelta(seconds=round(sum(spent) / len(spent) * (len(todo) - k)))
                shown = ', '.join(f'{key}={value:.4g}' for key, value in metrics.items()
                                  if isinstance(value, (int, float)))
                print_log(f'robustness [{k + len(done)}/{len(self.cells)}] {cell}: {shown} ({spent[-1]:.1f} s, '
                          f'ETA {eta})', logger='current')
        finally:
            if dump is not None:
                loop.evaluator.metrics.remove(dump)
        record['summary'] = summarize_record(record)
        if is_main_process():
            atomic_write_json(self.json_path, record)
            table = write_report(record, self.json_path)
            print_log(f'robustness results ({self.json_path}):\n{table}', logger='current')
        barrier()
        return record

    def _dump_metric(self, evaluator):
        """A ``DumpResults`` metric added to ``evaluator`` for ``out`` (removed again by :meth:`run`)."""
        if not self.out:
            return None
        from mmengine.registry import METRICS
        dump = METRICS.build(dict(type='DumpResults', out_file_path=self.out))
        dump.dataset_meta = evaluator.dataset_meta
        evaluator.metrics.append(dump)
        return dump


class CheckpointFitCheck(Hook):
    """Refuses, when the runner loads it, a checkpoint that does not fit the model or the test set's classes.

    mmengine loads a checkpoint whose head has another shape with a warning only, leaving the head
    as initialised: a robustness table would then score a random head. Registered by
    :class:`~mmdat.robustness.loops.RobustnessTestLoop` at the lowest priority, so it sees the
    checkpoint as the other hooks leave it (e.g. ``EMAHook`` swaps in the averaged weights).
    """

    priority = 'LOWEST'

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        _check_classes(model, checkpoint, self.classes, str(runner.cfg.get('load_from') or 'loaded'))


def no_prediction_metrics(clean: dict, cell: str) -> dict:
    """The scores of a corrupted cell on which the model predicted nothing at all.

    mmdet's ``CocoMetric`` then reports no metric (an empty dict; "The testing results of the whole
    dataset is empty"): left as it is, the cell would be dropped from the averages (raising mPC)
    or break a reader that expects the metric. With no prediction every precision/recall score is 0;
    a score that is -1 on the clean images (COCO: no ground truth of that size) stays -1.
    """
    filled = {key: (-1.0 if value == -1 else 0.0) for key, value in clean.items()
              if isinstance(value, (int, float)) and not isinstance(value, bool)}
    print_log(f'robustness: {cell}: the evaluator reported no metric (the model predicted nothing); '
              f'scored 0 ({len(filled)} metrics of the clean pass)', logger='current', level=logging.WARNING)
    return filled


def _plain(metrics: dict) -> dict:
    """JSON-safe metrics (numpy/torch scalars to floats)."""
    out = {}
    for key, value in metrics.items():
        if hasattr(value, 'item'):
            value = value.item()
        if isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
    return out
