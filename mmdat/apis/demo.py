"""The embedded-default demo: plain vs DAT training on the built-in shapes data, then a robustness test.

For one task (``'cls'``, ``'det'`` or ``'seg'``) :func:`run_demo` writes the built-in dataset
(deterministic), trains the demo model several times with the same seed, data order and budget --
plainly (the DAT preprocessor with ``enabled=False``), with DAT, and optionally with the
reconstruction-only ablation (DAT with ``eps=0``: the model trains on ``Q(Q(x))`` without the attack)
--, evaluates each on the clean test split and under ImageNet-C-style corruptions, and writes into
its work dir:

* ``results.json`` (every number) and ``results.txt`` (the side-by-side table),
* ``dat_examples.png``: clean / VQGAN reconstruction / adversarial triplets of the DAT run,
* ``accuracy_vs_severity.png``: the metric of every model against the corruption severity,
* ``validation_mpc.png``: every model's clean validation metric and validation mPC over training,
  when the config validates with a ``RobustnessValLoop`` (the classification demo does),
* ``plain/``, ``recon/``, ``dat/``: the runs' logs, checkpoints, robustness results and training
  curves (``curves.json``: clean and adversarial loss, DAT statistics),
* ``pretrain/`` (detection): the classification pretraining of the detector's backbone, reused by
  later runs with the same config, data and seed.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import numbers
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.runner import IterBasedTrainLoop
import torch

from mmdat.datasets import make_shapes_ade20k, make_shapes_classification, make_shapes_coco
from mmdat.datasets.transforms.corruption import BENCHMARK_CORRUPTIONS, resolve_corruptions
from mmdat.robustness import RESULT_FILE
from mmdat.utils.configs import config_file
from .runner import build_runner

__all__ = ['DEMO_TASKS', 'DEMO_MODELS', 'BENCHMARK_CORRUPTIONS', 'DemoTask', 'PretrainStage', 'DemoProgressHook',
           'build_demo_data', 'demo_config', 'pretrain_backbone', 'evaluate_corruptions', 'summarize',
           'format_table', 'training_curves', 'run_demo']

Log = Callable[[str], None]

#: the scalars of a RobustnessValLoop (prefix 'robustness') that the demo shows
MPC_KEY, RPC_KEY = 'robustness/mPC', 'robustness/rPC'


def _print(message: str) -> None:
    print(message, flush=True)


class _LogLinesOnly(io.TextIOBase):
    """A stdout that forwards mmengine's log lines and the demo's own ``[...]`` lines only.

    Third-party prints during training and testing (pycocotools' evaluation report, mmengine's
    checkpoint loading notice) would otherwise bury the demo's progress.
    """

    def __init__(self, stream) -> None:
        super().__init__()
        self.stream = stream
        self._pending = ''

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split('\n')
        for line in lines:
            if line.startswith('[') or ' - mmengine - ' in line:
                self.stream.write(line + '\n')
        self.stream.flush()
        return len(text)


@dataclass(frozen=True)
class PretrainStage:
    """Classification pretraining of a demo model's backbone (the ImageNet stage before COCO).

    Args:
        config: a classification config whose ``model.backbone`` is the task model's backbone
            (same class and widths), as written in the repository (read through
            :func:`~mmdat.utils.configs.config_file`, installed or not).
        data_root: its dataset directory (shapes classification, written by
            :func:`~mmdat.datasets.make_shapes_classification`).
        sizes: (train, val) images per class.
        data: further keyword arguments of the dataset builder (e.g. the image ``size``).
    """

    config: str
    data_root: str
    sizes: tuple = (500, 25)
    data: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class DemoTask:
    """One task of the demo.

    Args:
        config: the demo config, as written in the repository (read through
            :func:`~mmdat.utils.configs.config_file`, installed or not).
        data_root: default dataset directory (relative to the current directory).
        metric: key of the metric in ``runner.test()``'s result.
        metric_name: how the table names it.
        metric_scale: factor that turns the metric into percent.
        sizes: default (train, val) sizes of the dataset, in units of ``size_key``.
        size_key: the builder's size argument ('num_per_class' or 'num_images').
        data: further keyword arguments of the dataset builder.
        pretrain: the backbone's classification pretraining, if the model is fine-tuned.
    """

    config: str
    data_root: str
    metric: str
    metric_name: str
    metric_scale: float = 1.0
    sizes: tuple = (0, 0)
    size_key: str = 'num_images'
    data: Mapping = field(default_factory=dict)
    pretrain: Optional[PretrainStage] = None


DEMO_TASKS: dict[str, DemoTask] = {
    'cls': DemoTask('configs/demo/resnet-tiny_dat_shapes.py', 'data/shapes_cls', 'accuracy/top1', 'top-1',
                    sizes=(1000, 50), size_key='num_per_class', data=dict(size=32)),
    'det': DemoTask('configs/demo/faster-rcnn-r18-pretrained_dat_shapes.py', 'data/shapes_coco', 'coco/bbox_mAP',
                    'box AP', metric_scale=100.0, sizes=(200, 50),
                    pretrain=PretrainStage('configs/demo/resnet18-det-backbone_shapes-pretrain.py',
                                           'data/shapes_cls48', sizes=(1000, 25), data=dict(size=48))),
    'seg': DemoTask('configs/demo/fcn-tiny_dat_shapes.py', 'data/shapes_ade20k', 'mIoU', 'mIoU',
                    sizes=(400, 50)),
}


#: the models a demo compares: name -> the DAT settings that differ from the config's
DEMO_MODELS: dict[str, dict] = {
    'plain': dict(enabled=False),             # the same preprocessor, DAT off
    'recon': dict(enabled=True, eps=0.0),     # ablation: trains on Q(Q(x)), no attack
    'DAT': dict(enabled=True),                # the paper's recipe (eps 0.1, one L2 step)
}
#: what ``tools/demo.py`` runs by default, and with ``--ablation``
DEFAULT_MODELS = ('plain', 'DAT')
ABLATION_MODELS = ('plain', 'recon', 'DAT')


def _model_name(dat: Union[bool, str]) -> str:
    if isinstance(dat, bool):
        return 'DAT' if dat else 'plain'
    if dat not in DEMO_MODELS:
        raise ValueError(f'unknown demo model {dat!r}; choose one of {list(DEMO_MODELS)}')
    return dat


def _task(task: str) -> DemoTask:
    if task not in DEMO_TASKS:
        raise ValueError(f'unknown demo task {task!r}; choose one of {sorted(DEMO_TASKS)}')
    return DEMO_TASKS[task]


def build_demo_data(task: str, data_root: Union[str, Path], seed: int = 0, num_train: Optional[int] = None,
                    num_val: Optional[int] = None) -> dict:
    """Write the built-in dataset of ``task`` (returns at once when it is already there).

    Args:
        task: 'cls', 'det' or 'seg'.
        data_root: where to write it.
        seed: dataset seed.
        num_train, num_val: split sizes (images per class for 'cls', images for 'det'/'seg').
            Default to the task's.

    Returns:
        the builder's description of the dataset.
    """
    spec = _task(task)
    sizes = dict(train=spec.sizes[0] if num_train is None else int(num_train),
                 val=spec.sizes[1] if num_val is None else int(num_val))
    if min(sizes.values()) < 1:
        raise ValueError(f'the demo needs at least one image per split (and class), got {sizes}')
    builder = dict(cls=make_shapes_classification, det=make_shapes_coco, seg=make_shapes_ade20k)[task]
    return builder(data_root, **{spec.size_key: sizes}, seed=seed, **spec.data)


def demo_config(task: str, work_dir: Union[str, Path], data_root: Union[str, Path], dat: Union[bool, str],
                cfg_options: Optional[dict] = None, seed: int = 0, verbose: bool = False,
                pretrained: Optional[Union[str, Path]] = None, corruptions: Optional[Sequence[str]] = None,
                severities: Sequence[int] = (1, 2, 3, 4, 5)) -> Config:
    """The demo config of ``task`` pointed at ``data_root``, for one of :data:`DEMO_MODELS`.

    Args:
        task: 'cls', 'det' or 'seg'.
        work_dir: the run's work dir.
        data_root: the dataset written by :func:`build_demo_data`.
        dat: the model: 'plain', 'recon' or 'DAT' (True = 'DAT', False = 'plain': the same
            preprocessor with ``dat.enabled=False``).
        cfg_options: overrides merged last (e.g. ``{'train_cfg.max_epochs': 1}``).
        seed: the run's seed (``randomness.seed``), the same for every model.
        verbose: keep mmengine's INFO logging (default: warnings only; the demo prints progress).
        pretrained: backbone weights (:func:`pretrain_backbone`) to initialise ``model.backbone``
            with; tasks with a pretraining stage need them unless ``cfg_options`` set an init.
        corruptions: when given, ``test_cfg`` becomes a ``CorruptionTestLoop`` over these corruptions
            and ``severities`` (seeded with ``seed``): ``runner.test()`` runs the robustness benchmark.
        severities: severities of that benchmark. Defaults to 1..5.
    """
    name = _model_name(dat)
    spec = _task(task)
    cfg = Config.fromfile(str(config_file(spec.config)))
    data_root = str(data_root)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    if task == 'det':
        ann = str(Path(data_root) / 'annotations' / 'instances_val.json')
        cfg.val_evaluator.ann_file = ann
        cfg.test_evaluator.ann_file = ann
    preprocessor = cfg.data_preprocessor if task == 'cls' else cfg.model.data_preprocessor
    preprocessor.dat.update(DEMO_MODELS[name])
    if pretrained is not None:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(pretrained), prefix='backbone.')
    cfg.work_dir = str(work_dir)
    if cfg.get('visualizer'):  # mmdet/mmseg name theirs 'visualizer': the second run would reuse the first's
        cfg.visualizer.name = f'mmdat_demo_{name.lower()}_{time.time_ns()}'
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'INFO' if verbose else 'WARNING'
    if corruptions:
        cfg.test_cfg = dict(type='CorruptionTestLoop', corruptions=list(corruptions),
                            severities=[int(v) for v in severities], seed=seed)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


class DemoProgressHook(Hook):
    """One line per epoch (or per ``interval`` iterations of iteration-based loops) with loss and ETA,
    and one per validation; :attr:`validations` keeps every validation's ``step`` (the epochs, or for
    an iteration-based loop the iterations, done), ``unit`` (``'epoch'`` / ``'iteration'``) and metrics.

    Args:
        label: name of the run in the lines.
        log: where the lines go. Defaults to ``print``.
        interval: iterations between lines of an iteration-based loop. Defaults to 50.
    """

    priority = 'VERY_LOW'

    def __init__(self, label: str, log: Log = _print, interval: int = 50) -> None:
        self.label = label
        self.log = log
        self.interval = int(interval)
        self._start = 0.0
        self._start_iter = 0
        self.validations: list[dict] = []

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()
        self._start_iter = runner.iter

    def _loss(self, runner) -> str:
        try:
            return f'loss {runner.message_hub.get_scalar("train/loss").mean(self.interval):.4f}'
        except KeyError:
            return 'loss n/a'

    def _report(self, runner, where: str, iters_done: int) -> None:
        done = iters_done - self._start_iter
        elapsed = time.perf_counter() - self._start
        left = max(runner.max_iters - iters_done, 0) * elapsed / max(done, 1)
        self.log(f'[{self.label}] {where}  {self._loss(runner)}  {elapsed:5.0f}s elapsed, '
                 f'ETA {_duration(left)} for this run')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1  # mmengine counts the iteration after the hooks
        if isinstance(runner.train_loop, IterBasedTrainLoop) and (done % self.interval == 0
                                                                  or done == runner.max_iters):
            self._report(runner, f'iter {done}/{runner.max_iters}', done)

    def after_train_epoch(self, runner) -> None:
        if not isinstance(runner.train_loop, IterBasedTrainLoop):  # epochs count up after the hooks, iterations before
            self._report(runner, f'epoch {runner.epoch + 1}/{runner.max_epochs}', runner.iter)

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if metrics:
            values = {k: v.item() if hasattr(v, 'item') else v for k, v in metrics.items()}  # numpy/torch scalars
            values = {k: float(v) for k, v in values.items() if isinstance(v, numbers.Real)}
            by_iter = isinstance(runner.train_loop, IterBasedTrainLoop)
            self.validations.append(dict(step=runner.iter if by_iter else runner.epoch,
                                         unit='iteration' if by_iter else 'epoch', metrics=values))
            # the per-cell scalars of a RobustnessValLoop stay in the log and curves.json, not in this line
            shown = ', '.join(f'{k} {v:.4g}' for k, v in values.items()
                              if not k.startswith('robustness/') or k in (MPC_KEY, RPC_KEY))
            self.log(f'[{self.label}] validation: {shown}')


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 60}m{seconds % 60:02d}s'


class _OnlyProgress(logging.Filter):
    """Lets through warnings and the robustness benchmark's per-cell progress lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or str(record.getMessage()).startswith('robustness [')


@contextlib.contextmanager
def _progress_logging(enabled: bool):
    """Show the benchmark's progress lines (INFO) even when the runner logs warnings only."""
    if not enabled:
        yield
        return
    logger = MMLogger.get_current_instance()
    levels = [(h, h.level) for h in logger.handlers]
    flt = _OnlyProgress()
    for handler, _ in levels:
        handler.setLevel(logging.INFO)
        handler.addFilter(flt)
    try:
        yield
    finally:
        for handler, level in levels:
            handler.setLevel(level)
            handler.removeFilter(flt)


def evaluate_corruptions(runner, metric: str, quiet: bool = True) -> dict:
    """Clean and corrupted test results of a trained runner whose ``test_cfg`` is a ``CorruptionTestLoop``.

    ``runner.test()`` runs the benchmark on the runner's model as training left it (the last
    checkpoint's weights; corruptions applied on the fly right after image loading, seeded per
    image: every demo model sees the same corrupted images) and writes ``robustness.json`` and its
    report into the runner's work dir.

    Args:
        runner: a trained runner built from :func:`demo_config` with ``corruptions``.
        metric: the metric to return (a key of the test evaluator's results).
        quiet: show only the benchmark's per-cell progress lines of its log. Defaults to True.

    Returns:
        dict(clean=value, corruptions={name: {severity: value}}).
    """
    with _progress_logging(quiet):
        runner.test()
    results = runner.test_loop.results['corruptions']['results']
    if metric not in results['clean']['0']:
        raise KeyError(f'the test evaluator reported no {metric!r}: {sorted(results["clean"]["0"])}')
    return dict(clean=float(results['clean']['0'][metric]),
                corruptions={c: {int(s): float(row[s][metric]) for s in row}
                             for c, row in results.items() if c != 'clean'})


def summarize(results: Mapping[str, dict], scale: float = 1.0) -> dict:
    """Per-model summary of :func:`evaluate_corruptions` results, in percent.

    ``results`` maps model name -> results; the first model is the reference of the relative mCE:
    ``CE_c = sum_s error(c, s) / sum_s error_ref(c, s)`` with ``error = 100 - metric``, mean over
    corruptions, x 100 (the reference model scores 100). A corruption on which the reference makes
    no error at all is left out of the mean (and listed under ``mce_excluded``).
    ``relative_robustness`` is mean corrupted / clean x 100 (COCO-C's rPC).
    """
    names = list(results)
    ref = results[names[0]]
    corruptions = list(ref['corruptions'])
    summary = {}
    for name in names:
        res = results[name]
        per = {c: {int(s): v * scale for s, v in res['corruptions'][c].items()} for c in corruptions}
        values = [v for row in per.values() for v in row.values()]
        severities = sorted({s for row in per.values() for s in row})
        ces, excluded = [], []
        for c in corruptions:
            ref_err = sum(100 - v * scale for v in ref['corruptions'][c].values())
            err = sum(100 - v for v in per[c].values())
            if ref_err <= 0:
                excluded.append(c)
                continue
            ces.append(100 * err / ref_err)
        summary[name] = dict(
            clean=res['clean'] * scale,
            mean_corrupted=float(np.mean(values)) if values else float('nan'),
            relative_robustness=(100 * float(np.mean(values)) / (res['clean'] * scale)
                                 if values and res['clean'] > 0 else float('nan')),
            relative_mce=float(np.mean(ces)) if ces else float('nan'),
            mce_excluded=excluded,
            per_corruption={c: float(np.mean(list(per[c].values()))) for c in corruptions},
            per_severity={s: float(np.mean([per[c][s] for c in corruptions if s in per[c]])) for s in severities},
            raw=per)
    return summary


def format_table(summary: Mapping[str, dict], metric_name: str) -> str:
    """Side-by-side table of :func:`summarize`'s output."""
    names = list(summary)
    first = summary[names[0]]
    width = max(20, *(len(c) + 2 for c in first['per_corruption']))

    def row(label: str, values: Sequence[float], fmt: str = '{:>9.2f}') -> str:
        return f'{label:<{width}}' + ''.join(fmt.format(v) for v in values)

    sev = ','.join(str(s) for s in first['per_severity'])
    lines = [f'{metric_name + " (%)":<{width}}' + ''.join(f'{n:>9}' for n in names),
             row('clean', [summary[n]['clean'] for n in names]),
             row('mean corrupted', [summary[n]['mean_corrupted'] for n in names]),
             row('corrupted / clean', [summary[n]['relative_robustness'] for n in names], '{:>9.1f}'),
             row(f'mCE vs {names[0]}', [summary[n]['relative_mce'] for n in names], '{:>9.1f}'),
             f'-- per corruption (mean over severities {sev}) --']
    lines += [row(c, [summary[n]['per_corruption'][c] for n in names]) for c in first['per_corruption']]
    lines.append('-- per severity (mean over corruptions) --')
    lines += [row(f'severity {s}', [summary[n]['per_severity'][s] for n in names]) for s in first['per_severity']]
    if first['mce_excluded']:
        lines.append(f'(mCE leaves out {", ".join(first["mce_excluded"])}: no error of {names[0]})')
    return '\n'.join(lines)


def plot_severity(summary: Mapping[str, dict], metric_name: str, path: Union[str, Path],
                  title: str = '') -> Path:
    """PNG of the metric against corruption severity (0 = clean) for every model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    for (name, s), colour in zip(summary.items(), ('tab:gray', 'tab:red', 'tab:blue', 'tab:green')):
        xs = [0, *s['per_severity']]
        ys = [s['clean'], *s['per_severity'].values()]
        ax.plot(xs, ys, 'o-', color=colour, lw=2, label=f'{name} (mean corrupted {s["mean_corrupted"]:.1f})')
        lows = [s['clean'], *(min(r[k] for r in s['raw'].values()) for k in s['per_severity'])]
        ax.fill_between(xs, lows, ys, color=colour, alpha=0.08)
    return _save_plot(fig, ax, 'corruption severity (0 = clean)', f'{metric_name} (%), mean over corruptions',
                      title or f'{metric_name} under corruptions (shaded: down to the worst corruption)', path)


def _save_plot(fig, ax, xlabel: str, ylabel: str, title: str, path: Union[str, Path]) -> Path:
    """Label, grid and legend ``ax``, write ``fig`` to ``path`` (PNG) and close it."""
    import matplotlib.pyplot as plt
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_validation_curves(validations: Mapping[str, Sequence[dict]], metric: str, metric_name: str,
                           path: Union[str, Path], scale: float = 1.0) -> Optional[Path]:
    """PNG of every model's clean validation metric and validation mPC (``RobustnessValLoop``) over training.

    ``validations`` maps model name -> the ``validation`` list of its ``curves.json`` (see
    :func:`train_model`). Returns None when no model's validations report ``robustness/mPC``.
    """
    runs = {name: [v for v in rows if MPC_KEY in v['metrics'] and metric in v['metrics']]
            for name, rows in validations.items()}
    runs = {name: rows for name, rows in runs.items() if rows}
    if not runs:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    for (name, rows), colour in zip(runs.items(), ('tab:gray', 'tab:red', 'tab:blue', 'tab:green')):
        xs = [v['step'] for v in rows]
        ax.plot(xs, [v['metrics'][metric] * scale for v in rows], 'o--', color=colour, lw=1.2, alpha=0.7,
                label=f'{name} clean')
        ax.plot(xs, [v['metrics'][MPC_KEY] * scale for v in rows], 'o-', color=colour, lw=2,
                label=f'{name} mPC')
    first = next(iter(runs.values()))[0]
    cells = [k for k in first['metrics'] if k.startswith('robustness/') and k not in (MPC_KEY, RPC_KEY)]
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save_plot(fig, ax, first['unit'], f'validation {metric_name} (%)',
                      f'validation: clean (dashed) and mPC over {len(cells)} corruption cells (solid)', path)


def save_dat_examples(run_dir: Union[str, Path], path: Union[str, Path], scale: int = 4) -> Optional[Path]:
    """The last clean / reconstruction / adversarial grid that DATHook sent to the visualizer, as a PNG.

    The grid (``vis_data/vis_image/dat_examples_<iter>.png`` of the run's log dir) is enlarged
    ``scale`` times (nearest neighbour) and titled. Returns None when the run wrote none.
    """
    found = sorted(Path(run_dir).glob('*/vis_data/vis_image/dat_examples_*.png'),
                   key=lambda p: (p.parent.parent.parent.name, int(p.stem.rsplit('_', 1)[1])))
    if not found:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from PIL import Image
    grid = np.asarray(Image.open(found[-1]).convert('RGB'))
    step = found[-1].stem.rsplit('_', 1)[1]
    h, w = grid.shape[:2]
    fig = plt.figure(figsize=(w * scale / 100, h * scale / 100 + 0.45), dpi=100)
    ax = fig.add_axes((0, 0, 1, h * scale / (h * scale + 45)))
    ax.imshow(grid, interpolation='nearest')
    ax.set_axis_off()
    fig.text(0.5, 1 - 0.2 / (h * scale / 100 + 0.45),
             f'clean | VQGAN reconstruction | DAT adversarial (iteration {step})', ha='center', va='center',
             fontsize=9)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def train_model(cfg: Config, label: str, log: Log = _print, progress_interval: int = 50):
    """Build the runner of ``cfg``, train it with a :class:`DemoProgressHook`; returns the runner.

    The training curves (:func:`training_curves`) and every validation's metrics (``validation``:
    a list of ``dict(step, unit, metrics)``, see :class:`DemoProgressHook`) are written to
    ``<work_dir>/curves.json``.
    """
    runner = build_runner(cfg)
    progress = DemoProgressHook(label, log, progress_interval)
    runner.register_hook(progress)
    runner.train()
    curves = training_curves(runner.message_hub)
    curves['validation'] = progress.validations
    (Path(runner.work_dir) / CURVES_FILE).write_text(json.dumps(curves))
    return runner


CURVES_FILE = 'curves.json'
#: DAT statistics (DATHook, every logging interval) kept in the training curves
DAT_CURVE_KEYS = ('dat_codes_changed', 'dat_reconstruction_psnr', 'dat_attack_start_loss', 'dat_adversarial_norm')


def training_curves(message_hub, parts: int = 4) -> dict:
    """Clean and adversarial training loss and the DAT statistics of a finished run.

    From the run's message hub (``train/*`` scalars): ``clean_loss`` is the optimised loss minus its
    adversarial terms (``adv_*``), ``adversarial_loss`` the sum of those terms (the loss on ``x_adv``,
    or on ``Q(Q(x))`` for the reconstruction-only model), one value per iteration; the DAT
    statistics have one value per logging interval.

    Returns:
        dict(series={name: [values]}, summary={name: [mean over each of ``parts`` equal parts of the
        run]}), with ``adversarial_loss`` only when every iteration has one.
    """
    scalars = message_hub.log_scalars

    def series(key: str) -> Optional[np.ndarray]:
        buffer = scalars.get(f'train/{key}')
        return None if buffer is None else np.asarray(buffer.data[0], dtype=np.float64)

    curves = {}
    logged = series('loss')
    if logged is not None and logged.size:
        adv_keys = [k[len('train/'):] for k in scalars if k.startswith('train/adv_') and 'loss' in k]
        parts_adv = [series(k) for k in adv_keys]
        if parts_adv and all(p.shape == logged.shape for p in parts_adv):
            adversarial = np.sum(parts_adv, axis=0)
            # a model whose own loss key is 'loss' (mmpretrain): parse_losses' total is then overwritten
            # by that key in the log, so train/loss is the clean loss; otherwise it is the total
            clean = logged if 'train/adv_loss' in scalars else logged - adversarial
            curves.update(clean_loss=clean, adversarial_loss=adversarial)
        else:
            curves['clean_loss'] = logged
    for key in DAT_CURVE_KEYS:
        values = series(key)
        if values is not None and values.size:
            curves[key] = values
    summary = {name: [float(chunk.mean()) for chunk in np.array_split(values, min(parts, values.size))]
               for name, values in curves.items()}
    return dict(series={name: [round(float(v), 5) for v in values] for name, values in curves.items()},
                summary=summary)


def _describe_curves(curves: dict) -> str:
    s = curves['summary']
    parts = []
    for key, label in (('clean_loss', 'clean loss'), ('adversarial_loss', 'adversarial loss')):
        if key in s:
            parts.append(f'{label} {s[key][0]:.3f} -> {s[key][-1]:.3f}')
    if 'dat_codes_changed' in s:
        parts.append(f'visual words changed {100 * float(np.mean(s["dat_codes_changed"])):.1f}%')
    if 'dat_reconstruction_psnr' in s:
        parts.append(f'reconstruction PSNR {float(np.mean(s["dat_reconstruction_psnr"])):.1f} dB')
    return ', '.join(parts) + ' (first -> last quarter of training)' if parts else 'no curves'


PRETRAIN_RECORD = 'pretrain.json'
BACKBONE_FILE = 'backbone.pth'


def pretrain_data_root(task: str, data_root: Optional[Union[str, Path]] = None) -> str:
    """Where ``task``'s pretraining data lives: next to a given ``data_root`` (so that runs with other
    data roots never share it), else the stage's default."""
    stage = _task(task).pretrain
    if stage is None:
        raise ValueError(f'the {task!r} demo has no pretraining stage')
    return stage.data_root if data_root is None else f'{data_root}-pretrain'


def build_pretrain_data(task: str, data_root: Union[str, Path], seed: int = 0, num_train: Optional[int] = None,
                        num_val: Optional[int] = None) -> dict:
    """Write the classification dataset of ``task``'s backbone pretraining (:class:`PretrainStage`);
    ``num_train``/``num_val`` are images per class (default: the stage's). Returns its description."""
    stage = _task(task).pretrain
    if stage is None:
        raise ValueError(f'the {task!r} demo has no pretraining stage')
    sizes = dict(train=stage.sizes[0] if num_train is None else int(num_train),
                 val=stage.sizes[1] if num_val is None else int(num_val))
    return make_shapes_classification(data_root, num_per_class=sizes, seed=seed, **stage.data)


def pretrain_backbone(task: str, work_dir: Union[str, Path], seed: int = 0, data_root: Optional[Union[str, Path]] = None,
                      num_train: Optional[int] = None, num_val: Optional[int] = None,
                      cfg_options: Optional[dict] = None, verbose: bool = False, log: Log = _print) -> dict:
    """The classification pretraining of ``task``'s backbone (:class:`PretrainStage`), done once.

    Writes its dataset, trains the classifier into ``<work_dir>`` and exports the backbone alone
    (``backbone.*`` tensors, weights-only loadable) to ``<work_dir>/backbone.pth``. A later call
    with the same config, overrides, data and seed reuses that file (``pretrain.json`` records a
    fingerprint of them) instead of training again.

    Args:
        task: a task of :data:`DEMO_TASKS` with a pretraining stage ('det').
        work_dir: where the classifier's run and the backbone file go.
        seed: seed of the data and of the run.
        data_root: the classification dataset's directory. Defaults to the stage's.
        num_train, num_val: images per class. Default to the stage's.
        cfg_options: overrides of the classification config.
        verbose: keep mmengine's INFO logging.
        log: where progress lines go.

    Returns:
        dict(checkpoint=path of the backbone file, top1=held-out top-1 (%), seconds, reused).
    """
    stage = _task(task).pretrain
    if stage is None:
        raise ValueError(f'the {task!r} demo has no pretraining stage')
    work_dir = Path(work_dir)
    data_root = Path(data_root or stage.data_root)
    t0 = time.perf_counter()
    info = build_pretrain_data(task, data_root, seed, num_train, num_val)
    cfg = Config.fromfile(str(config_file(stage.config)))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.randomness = dict(seed=seed)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    fingerprint = hashlib.sha256(json.dumps(dict(config=cfg.to_dict(), data={k: v for k, v in info.items() if k != 'root'}),
                                            sort_keys=True, default=str).encode()).hexdigest()
    record_file, backbone_file = work_dir / PRETRAIN_RECORD, work_dir / BACKBONE_FILE
    if record_file.is_file() and backbone_file.is_file():
        try:
            record = json.loads(record_file.read_text())
        except ValueError:
            record = {}
        if record.get('fingerprint') == fingerprint:
            log(f'[demo] reusing the pretrained backbone {backbone_file} (held-out top-1 {record["top1"]:.1f}%)')
            return dict(record, checkpoint=str(backbone_file), reused=True)
    record_file.unlink(missing_ok=True)
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'INFO' if verbose else 'WARNING'
    log(f'[demo] pretraining the backbone on shape classification ({stage.config}, '
        f'{_describe(info)} of {stage.data.get("size", 32)} px)')
    runner = train_model(cfg, 'pretrain', log)
    metrics = runner.test()
    top1 = float(metrics['accuracy/top1'])
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    backbone = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith('backbone.')}
    torch.save(dict(state_dict=backbone, meta=dict(config=stage.config, seed=seed, top1=top1)), backbone_file)
    seconds = time.perf_counter() - t0
    record = dict(fingerprint=fingerprint, top1=top1, seconds=seconds, config=stage.config, seed=seed)
    record_file.write_text(json.dumps(record, indent=1))
    log(f'[demo] pretrained backbone: held-out top-1 {top1:.1f}% in {seconds:.0f}s -> {backbone_file}')
    del runner
    return dict(record, checkpoint=str(backbone_file), reused=False)


def run_demo(task: str = 'cls', work_dir: Union[str, Path] = 'work_dirs/demo/cls',
             data_root: Optional[Union[str, Path]] = None,
             corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS, severities: Sequence[int] = (1, 2, 3, 4, 5),
             seed: int = 0, num_train: Optional[int] = None, num_val: Optional[int] = None,
             cfg_options: Optional[dict] = None, models: Sequence[str] = DEFAULT_MODELS,
             pretrain_options: Optional[dict] = None,
             verbose: bool = False, log: Optional[Log] = None) -> dict:
    """The whole demo for one task; returns the summary and writes the files listed in the module docstring.

    Args:
        task: 'cls', 'det' or 'seg'.
        work_dir: output directory.
        data_root: dataset directory. Defaults to the task's (``data/shapes_cls``, ...). The
            pretraining data (det) goes to ``<data_root>-pretrain`` (default: ``data/shapes_cls48``).
        corruptions: imagecorruptions names. Defaults to the 15 ImageNet-C benchmark corruptions.
        severities: severities in 1..5. Defaults to all five.
        seed: seed of the data and of every run.
        num_train, num_val: dataset sizes (see :func:`build_demo_data`). Default to the task's.
        cfg_options: config overrides for every compared run (e.g. a shorter schedule).
        models: which of :data:`DEMO_MODELS` to train, in table order (the first is the reference
            of the relative mCE). Defaults to ('plain', 'DAT'); ('plain', 'recon', 'DAT') adds the
            reconstruction-only ablation.
        pretrain_options: keyword arguments of :func:`pretrain_backbone` for tasks that have a
            pretraining stage (``data_root``, ``num_train``, ``num_val``, ``cfg_options``).
        verbose: keep mmengine's INFO logging.
        log: where progress lines go. Defaults to printing them (to the stdout of the call: unless
            ``verbose``, other prints during the runs are dropped, mmengine's log lines kept).

    Returns:
        dict(task, metric, summary={model: ...}, table, diagnostics={model: training curves summary},
        pretrain (tasks that have one), files, seconds).
    """
    spec = _task(task)
    if log is None:
        stdout = sys.stdout
        log = lambda message: print(message, file=stdout, flush=True)  # noqa: E731
    if not corruptions or not severities:
        raise ValueError('the demo needs at least one corruption and one severity')
    corruptions = resolve_corruptions(corruptions)  # checks the names before any training
    if any(isinstance(s, bool) or int(s) != s or not 1 <= int(s) <= 5 for s in severities):
        raise ValueError(f'severities must be integers in 1..5, got {list(severities)}')
    severities = sorted({int(s) for s in severities})
    models = [_model_name(m) for m in models]
    if not models or len(set(models)) != len(models):
        raise ValueError(f'models must name distinct demo models among {list(DEMO_MODELS)}, got {models}')
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    data_root_given = data_root is not None
    data_root = Path(data_root or spec.data_root)
    times = {}
    t0 = time.perf_counter()
    log(f'[demo] {task}: writing the built-in dataset to {data_root}')
    info = build_demo_data(task, data_root, seed, num_train, num_val)
    times['data'] = time.perf_counter() - t0
    log(f'[demo] dataset ready ({_describe(info)}) in {times["data"]:.1f}s')

    pretrained = None
    if spec.pretrain is not None:
        t = time.perf_counter()
        quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(_LogLinesOnly(sys.stdout))
        with quiet:
            options = dict(pretrain_options or {})
            if data_root_given:
                options.setdefault('data_root', pretrain_data_root(task, data_root))
            pretrained = pretrain_backbone(task, work_dir / 'pretrain', seed, verbose=verbose, log=log, **options)
        times['pretrain'] = time.perf_counter() - t

    raw, diagnostics, validations = {}, {}, {}
    for name in models:
        run_dir = work_dir / name.lower()
        quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(_LogLinesOnly(sys.stdout))
        with quiet:
            t = time.perf_counter()
            cfg = demo_config(task, run_dir, data_root, name, cfg_options, seed, verbose,
                              pretrained=pretrained['checkpoint'] if pretrained else None,
                              corruptions=corruptions, severities=severities)
            log(f'[demo] training the {name} model ({spec.config}, {_MODEL_DESCRIPTIONS[name]})')
            runner = train_model(cfg, name, log)
            times[f'train {name}'] = time.perf_counter() - t
            curves = json.loads((run_dir / CURVES_FILE).read_text())
            diagnostics[name], validations[name] = curves['summary'], curves['validation']
            t = time.perf_counter()
            # the benchmark resumes from a record of the same settings (here without a checkpoint path: the
            # model is evaluated as training left it), so a new model must not reuse the former one's
            (run_dir / RESULT_FILE).unlink(missing_ok=True)
            log(f'[demo] evaluating the {name} model: clean, then {len(corruptions)} corruptions x '
                f'severities {",".join(map(str, severities))}')
            raw[name] = evaluate_corruptions(runner, spec.metric, quiet=not verbose)
            times[f'evaluate {name}'] = time.perf_counter() - t
            del runner
        corrupted = np.mean([v for row in raw[name]['corruptions'].values() for v in row.values()])
        log(f'[demo] {name}: clean {spec.metric_name} {raw[name]["clean"] * spec.metric_scale:.2f}, '
            f'mean under corruptions {corrupted * spec.metric_scale:.2f}; '
            f'{_describe_curves(dict(summary=diagnostics[name]))}')

    summary = summarize(raw, spec.metric_scale)
    table = format_table(summary, spec.metric_name)
    files = dict(results=work_dir / 'results.json', table=work_dir / 'results.txt',
                 severity_plot=plot_severity(summary, spec.metric_name, work_dir / 'accuracy_vs_severity.png'),
                 mpc_curves=plot_validation_curves(validations, spec.metric, spec.metric_name,
                                                   work_dir / 'validation_mpc.png', spec.metric_scale),
                 dat_examples=save_dat_examples(work_dir / 'dat', work_dir / 'dat_examples.png')
                 if 'DAT' in models else None)
    times['total'] = time.perf_counter() - t0
    compared = ' vs '.join(models)
    header = (f'DAT demo ({task}, seed {seed}): {compared}, same seed, data order and budget'
              f'{"; recon = DAT with eps 0 (trains on Q(Q(x)), no attack)" if "recon" in models else ""}'
              f'{"; backbone pretrained on shape classification" if pretrained else ""}; {spec.metric_name} on '
              f'{_describe(info, "val")} held-out images, clean and under {len(corruptions)} corruptions')
    files['table'].write_text(header + '\n' + table + '\n')
    out = dict(task=task, metric=spec.metric, metric_name=spec.metric_name, seed=seed, models=models,
               corruptions=list(corruptions), severities=[int(s) for s in severities],
               summary=summary, table=table, diagnostics=diagnostics, validation=validations, seconds=times,
               files={k: (str(v) if v is not None else None) for k, v in files.items()})
    if pretrained is not None:
        out['pretrain'] = pretrained
    files['results'].write_text(json.dumps(out, indent=1))
    log(f'\n{header}\n{table}\n')
    for name, rows in validations.items():
        shown = [f'{v["step"]}: {v["metrics"][MPC_KEY] * spec.metric_scale:.1f}'
                 for v in rows if MPC_KEY in v['metrics']]
        if shown:
            log(f'[demo] {name}: validation mPC ({rows[0]["unit"]}: value) ' + ', '.join(shown))
    log('[demo] time: ' + ', '.join(f'{k} {v:.0f}s' for k, v in times.items()))
    for key in ('dat_examples', 'severity_plot', 'mpc_curves', 'table', 'results'):
        log(f'[demo] {key.replace("_", " ")}: {files[key] if files[key] is not None else "none written"}')
    return out


_MODEL_DESCRIPTIONS = {'plain': 'DAT off', 'recon': 'reconstruction only: DAT with eps 0', 'DAT': 'DAT on'}


def _describe(info: dict, split: Optional[str] = None) -> str:
    splits = info.get('splits', {})
    if split is not None:
        return str(splits.get(split, {}).get('num_images', '?'))
    return ', '.join(f'{k}: {v.get("num_images")} images' for k, v in splits.items())
