"""Keep a classifier's logits in its predictions (for :class:`~mmdat.evaluation.metrics.SubsetAccuracy`).

torch and mmengine only: ``KeepLogitsHook`` and the OOD benchmark use it without importing mmpretrain.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from mmengine.model import is_model_wrapper

__all__ = ['keep_classifier_logits', 'LOGITS_FIELD']

LOGITS_FIELD = 'pred_logits'


@contextlib.contextmanager
def keep_classifier_logits(model: torch.nn.Module) -> Iterator[None]:
    """While active, every data sample the classifier predicts carries its logits as ``pred_logits``.

    mmpretrain heads keep only ``softmax(logits)`` (``pred_score``), which underflows to 0 for
    classes far below the top one; :class:`SubsetAccuracy` needs the logits to take the arg-max
    over a class subset as the references do. Two forward hooks: one on the network that outputs
    the logits (``model.head``, or ``model.model`` for timm / Hugging Face wrappers) records them,
    one on the classifier attaches them to the data samples its ``predict`` returns.
    """
    model = model.module if is_model_wrapper(model) else model
    scorer = next((m for m in (getattr(model, 'head', None), getattr(model, 'model', None))
                   if isinstance(m, torch.nn.Module)), None)
    if scorer is None:
        raise ValueError(f'cannot find the layer that outputs the logits of {type(model).__name__} '
                         '(no head or model submodule)')
    captured: list[torch.Tensor] = []

    def record(module, args, output) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 2:
            captured.append(output.detach())

    def attach(module, args, output) -> None:
        if not isinstance(output, (list, tuple)) or not output or not captured:
            return
        logits = captured[-1]
        captured.clear()
        if logits.shape[0] == len(output) and all(hasattr(sample, 'set_field') for sample in output):
            for sample, row in zip(output, logits):
                sample.set_field(row, LOGITS_FIELD)

    handles = [scorer.register_forward_hook(record), model.register_forward_hook(attach)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
