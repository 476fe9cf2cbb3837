"""Keep a classifier's logits in its predictions during validation and test (for SubsetAccuracy)."""
from __future__ import annotations

import contextlib
from typing import Optional

from mmengine.hooks import Hook

from mmdat.evaluation.metrics.logits import keep_classifier_logits
from mmdat.registry import HOOKS

__all__ = ['KeepLogitsHook']


@HOOKS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class KeepLogitsHook(Hook):
    """Attach each prediction's logits (``pred_logits``) during ``runner.val()`` / ``runner.test()``.

    ``SubsetAccuracy`` (ImageNet-R / -A) takes the arg-max over the subset's logits, as the
    references do; mmpretrain's ``pred_score`` is a softmax that can underflow to 0 there.
    ``configs/_base_/datasets/imagenet_{r,a}.py`` add this hook.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._active: Optional[contextlib.ExitStack] = None

    def _start(self, runner) -> None:
        self._stop()
        self._active = contextlib.ExitStack()
        self._active.enter_context(keep_classifier_logits(runner.model))

    def _stop(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None

    def before_val(self, runner) -> None:
        self._start(runner)

    def after_val(self, runner) -> None:
        self._stop()

    def before_test(self, runner) -> None:
        self._start(runner)

    def after_test(self, runner) -> None:
        self._stop()
