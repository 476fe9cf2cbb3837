"""Robustness benchmarks as mmengine loops: ``runner.test()`` and ``runner.train()`` run them.

Test loops (``test_cfg``), for ``runner.test()`` / ``tools/test.py``::

    test_cfg = dict(type='CorruptionTestLoop', corruptions='benchmark', severities=[1, 2, 3, 4, 5])
    test_cfg = dict(type='OODTestLoop', benchmarks=['imagenet-r', 'imagenet-a'])
    test_cfg = dict(type='RobustnessTestLoop', ood=dict(benchmarks=['imagenet-r']),
                    corruptions=dict(corruptions='benchmark', imagenet_c_protocol=True))

The runner owns the lifecycle as for its own ``TestLoop``: it builds the loop (which checks every
input then, before hooks run or the checkpoint is read), calls ``before_run``, loads the checkpoint
once, runs the loop, calls ``after_run``. Inside :meth:`RobustnessTestLoop.run` ``before_test`` and
``after_test`` fire once, and each evaluated set (the clean test set, a corruption cell, an OOD
benchmark) is one test epoch: ``before_test_epoch``, the iteration hooks, ``after_test_epoch`` with
that set's metrics. The loop's ``dataloader`` and ``evaluator`` are the evaluated set's while it
runs (hooks read them through ``runner.test_dataloader``) and are restored afterwards.

Validation loop (``val_cfg``), robustness while training::

    val_cfg = dict(type='RobustnessValLoop', corruptions=['gaussian_noise', 'defocus_blur', 'snow',
                   'contrast', 'jpeg_compression'], severities=[3])
    default_hooks = dict(checkpoint=dict(type='CheckpointHook', save_best='robustness/mPC', rule='greater'))

evaluates the validation set clean and under those corruption cells at every validation, and
reports the clean metrics with ``robustness/mPC``, ``robustness/rPC`` and one
``robustness/<corruption>_<severity>`` scalar per cell in the same ``after_val_epoch``: the logger
and the visualizer backends (e.g. TensorBoard) get them side by side, and ``CheckpointHook`` can
keep the best checkpoint by mPC.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Optional, Sequence, Union

from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.runner import TestLoop, ValLoop
from torch.utils.data import DataLoader

from mmdat.datasets.transforms.corruption import resolve_corruptions
from mmdat.evaluation.robustness import headline_metrics, performance_under_corruption
from mmdat.registry import LOOPS
from .corruption import (CheckpointFitCheck, CorruptionBenchmark, _check_images, _loader_cfg, insert_corruption,
                         resolve_severities)
from .ood import OODSuite

__all__ = ['RobustnessTestLoop', 'CorruptionTestLoop', 'OODTestLoop', 'RobustnessValLoop',
           'VAL_CORRUPTIONS']

#: the default cells of :class:`RobustnessValLoop`: one or two corruptions of each ImageNet-C group
VAL_CORRUPTIONS = ('gaussian_noise', 'defocus_blur', 'snow', 'contrast', 'jpeg_compression')


def _as_dict(cfg) -> Optional[dict]:
    if cfg is None or isinstance(cfg, DataLoader):
        return None
    return copy.deepcopy(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))


@contextlib.contextmanager
def _evaluating(loop, dataloader: DataLoader, evaluator: Evaluator) -> Iterator[None]:
    """``loop.dataloader``/``loop.evaluator`` and the visualizer's dataset meta set to one evaluated set,
    restored afterwards whatever happens."""
    runner = loop.runner
    saved = loop.dataloader, loop.evaluator, runner.visualizer.dataset_meta
    meta = getattr(dataloader.dataset, 'metainfo', None)
    loop.dataloader, loop.evaluator = dataloader, evaluator
    if meta is not None:
        evaluator.dataset_meta = meta
        runner.visualizer.dataset_meta = meta
    try:
        yield
    finally:
        loop.dataloader, loop.evaluator, runner.visualizer.dataset_meta = saved


@LOOPS.register_module(force=True)
class RobustnessTestLoop(TestLoop):
    """A test loop that runs corruption and/or out-of-distribution benchmarks.

    Args:
        runner (Runner): the runner.
        dataloader (dict | DataLoader): the config's test dataloader (a config dict: each
            corruption cell's loader is made from it). Not built for OOD benchmarks alone.
        evaluator (dict | list | Evaluator): the config's test evaluator (the corruption cells').
        corruptions (dict, optional): keyword arguments of
            :class:`~mmdat.robustness.corruption.CorruptionBenchmark` (``corruptions``,
            ``severities``, ``source``, ``seed``, ``legacy_bgr``, ``imagenet_c_resize``,
            ``imagenet_c_protocol``, ``out``, ``work_dir``). Defaults to None.
        ood (dict, optional): keyword arguments of :class:`~mmdat.robustness.ood.OODSuite`
            (``benchmarks``, ``data_roots``, ``out_dir``). Defaults to None.
        fp16 (bool): autocast the forward passes. Defaults to False.

    After :meth:`run`, :attr:`results` holds ``ood`` (per benchmark metrics) and ``corruptions``
    (the ``robustness.json`` record), for those that ran. OOD benchmarks run first (they are short),
    then the corruption cells; every input of both is checked before either runs.
    """

    def __init__(self, runner, dataloader: Union[DataLoader, dict], evaluator: Union[Evaluator, dict, list],
                 corruptions: Optional[dict] = None, ood: Optional[dict] = None, fp16: bool = False) -> None:
        if not corruptions and not ood:
            raise ValueError(f'{type(self).__name__} needs corruptions=dict(...) and/or ood=dict(benchmarks=[...])')
        loader_cfg = _as_dict(dataloader)
        self.ood = OODSuite(runner, loader_cfg, **dict(ood)) if ood else None
        if self.ood and not corruptions:  # the config's own test set is neither built nor needed
            dataloader = runner.build_dataloader(self.ood.loader_cfgs[self.ood.names[0]], seed=runner.seed)
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        self.corruptions = None
        if corruptions:
            if loader_cfg is None:
                raise ValueError('corruption benchmarks derive each cell from the test dataloader config; got a '
                                 'built DataLoader')
            self.corruptions = CorruptionBenchmark(runner, loader_cfg, self.dataloader, **dict(corruptions))
            runner.register_hook(CheckpointFitCheck(self.corruptions.classes))
        self.results: dict = {}

    def run(self) -> dict:
        """Run the benchmarks; returns their headline numbers (flat, for ``runner.test()``)."""
        self.runner.call_hook('before_test')
        self.results = {}
        if self.ood:
            self.results['ood'] = self.ood.run(self)
        if self.corruptions:
            self.results['corruptions'] = self.corruptions.run(self)
        self.runner.call_hook('after_test')
        return self.headline()

    def evaluate(self, dataloader: DataLoader, evaluator: Optional[Evaluator] = None) -> dict:
        """One test epoch over ``dataloader`` scored by ``evaluator`` (default: the loop's own)."""
        with _evaluating(self, dataloader, evaluator or self.evaluator):
            self.runner.call_hook('before_test_epoch')
            self.runner.model.eval()
            self.test_loss.clear()
            for idx, data_batch in enumerate(self.dataloader):
                self.run_iter(idx, data_batch)
            metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
            if self.test_loss:
                metrics.update({k: v.mean() for k, v in self.test_loss.items()})
            self.runner.call_hook('after_test_epoch', metrics=metrics)
        return metrics

    def headline(self) -> dict:
        """Flat numbers of :attr:`results`: ``ood/<benchmark>/<metric>`` and, per headline metric of the
        corruption benchmark, ``corruptions/<metric>/<P | mPC | rPC | mCE | relative_mCE | mean_CE>`` (in %)."""
        out = {}
        for name, metrics in (self.results.get('ood') or {}).items():
            out.update({f'ood/{name}/{k}': v for k, v in metrics.items()})
        summary = (self.results.get('corruptions') or {}).get('summary') or {}
        for metric, aggregates in summary.items():
            pc = aggregates.get('pc') or {}
            values = dict(P=aggregates.get('clean'), mPC=pc.get('mPC'), rPC=pc.get('rPC'),
                          mCE=aggregates.get('mCE'), relative_mCE=aggregates.get('relative_mCE'),
                          mean_CE=aggregates.get('mean_CE'))
            out.update({f'corruptions/{metric}/{k}': v for k, v in values.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return out


@LOOPS.register_module(force=True)
class CorruptionTestLoop(RobustnessTestLoop):
    """``RobustnessTestLoop`` with a corruption benchmark only; the keyword arguments are those of
    :class:`~mmdat.robustness.corruption.CorruptionBenchmark` (e.g. ``corruptions='benchmark'``,
    ``severities=[1, 2, 3, 4, 5]``, ``source=None``, ``imagenet_c_protocol=False``)."""

    def __init__(self, runner, dataloader: Union[DataLoader, dict], evaluator: Union[Evaluator, dict, list],
                 fp16: bool = False, **corruptions) -> None:
        super().__init__(runner, dataloader, evaluator, corruptions=corruptions or dict(corruptions='benchmark'),
                         fp16=fp16)


@LOOPS.register_module(force=True)
class OODTestLoop(RobustnessTestLoop):
    """``RobustnessTestLoop`` with OOD benchmarks only: ``benchmarks`` (names of
    :data:`~mmdat.robustness.ood.OOD_BENCHMARKS`), ``data_roots`` and ``out_dir`` as in
    :class:`~mmdat.robustness.ood.OODSuite`."""

    def __init__(self, runner, dataloader: Union[DataLoader, dict], evaluator: Union[Evaluator, dict, list],
                 benchmarks: Sequence[str], data_roots: Optional[dict] = None, out_dir: Optional[str] = None,
                 fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator,
                         ood=dict(benchmarks=benchmarks, data_roots=data_roots, out_dir=out_dir), fp16=fp16)


@LOOPS.register_module(force=True)
class RobustnessValLoop(ValLoop):
    """Validation on the clean validation set and on a few corruption cells of it, at every validation.

    The cells are corrupted on the fly right after the image-loading transform of the validation
    pipeline (seeded per image, so every validation and every model sees the same images). The
    metrics reported to ``after_val_epoch`` are the clean ones plus, for the headline metric
    (``metric``), ``robustness/mPC`` (mean over the cells), ``robustness/rPC`` (mPC / clean, in %)
    and ``robustness/<corruption>_<severity>`` per cell.

    Args:
        runner (Runner): the runner.
        dataloader (dict): the config's validation dataloader (config dict).
        evaluator (dict | list | Evaluator): the validation evaluator (used for every cell).
        corruptions (Sequence[str]): corruption names or groups. Defaults to :data:`VAL_CORRUPTIONS`.
        severities (Sequence[int]): severities 1..5 of every corruption. Defaults to (3,).
        seed (int): corruption seed. Defaults to 0.
        legacy_bgr (bool): corrupt the BGR array as mmdet's tool does. Defaults to False.
        metric (str, optional): the metric mPC averages. Defaults to the evaluator's headline metric
            (top-1, box/mask AP or mIoU; see :func:`mmdat.evaluation.robustness.headline_metrics`).
        prefix (str): prefix of the robustness scalars. Defaults to ``'robustness'``.
        fp16 (bool): autocast the forward passes. Defaults to False.
    """

    def __init__(self, runner, dataloader: dict, evaluator: Union[Evaluator, dict, list],
                 corruptions: Sequence[str] = VAL_CORRUPTIONS, severities: Sequence[int] = (3,), seed: int = 0,
                 legacy_bgr: bool = False, metric: Optional[str] = None, prefix: str = 'robustness',
                 fp16: bool = False) -> None:
        loader_cfg = _as_dict(dataloader)
        if loader_cfg is None:
            raise ValueError('RobustnessValLoop derives its corruption cells from the val_dataloader config; '
                             'got a built DataLoader')
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        names = resolve_corruptions([corruptions] if isinstance(corruptions, str) else corruptions)
        levels = [s for s in resolve_severities(severities) if s > 0]
        if not levels:
            raise ValueError('RobustnessValLoop needs at least one severity in 1..5')
        self.metric, self.prefix = metric, prefix
        loader_cfg['persistent_workers'] = False
        _check_images(self.dataloader.dataset, _loader_cfg(loader_cfg['dataset']), 'at their original resolution')
        self.cell_loaders = {}
        for name in names:
            for severity in levels:
                cfg = dict(loader_cfg, dataset=insert_corruption(loader_cfg['dataset'], name, severity, seed,
                                                                 legacy_bgr))
                self.cell_loaders[name, severity] = runner.build_dataloader(cfg, seed=runner.seed)

    def run(self) -> dict:
        """Validate clean and corrupted; returns (and hands ``after_val_epoch``) the combined metrics."""
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        self.val_loss.clear()
        metrics = self._evaluate(self.dataloader)
        metrics.update({k: v.mean() for k, v in self.val_loss.items()})
        metric = self.metric or headline_metrics([k for k, v in metrics.items() if isinstance(v, (int, float))])[0]
        if metric not in metrics:
            raise KeyError(f'RobustnessValLoop: the evaluator reported no {metric!r}; it reported {sorted(metrics)}')
        cells: dict[str, dict[int, float]] = {}
        for (name, severity), loader in self.cell_loaders.items():
            value = float(self._evaluate(loader).get(metric, 0.0))  # nothing predicted: scores 0
            cells.setdefault(name, {})[severity] = value
            metrics[f'{self.prefix}/{name}_{severity}'] = value
        perf = performance_under_corruption(cells, float(metrics[metric]), corruptions=list(cells))
        metrics[f'{self.prefix}/mPC'] = perf['mPC']
        metrics[f'{self.prefix}/rPC'] = perf['rPC'] if perf['rPC'] is not None else 0.0
        print_log(f'robustness validation: {metric} clean {float(metrics[metric]):.4g}, mPC {perf["mPC"]:.4g} '
                  f'over {perf["cells"]} cells', logger='current')
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    def _evaluate(self, dataloader: DataLoader) -> dict:
        """One pass over ``dataloader`` (iteration hooks fire; the epoch hooks fire once in :meth:`run`)."""
        with _evaluating(self, dataloader, self.evaluator):
            for idx, data_batch in enumerate(self.dataloader):
                self.run_iter(idx, data_batch)
            return self.evaluator.evaluate(len(self.dataloader.dataset))
