"""Top-k accuracy of a 1000-way classifier on a class subset (ImageNet-R / ImageNet-A protocol).

Needs mmpretrain (its ``Accuracy`` is the base class): registered deferred by
:mod:`mmdat.evaluation.metrics`, so ``import mmdat`` does not import this module.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from mmpretrain.evaluation.metrics import Accuracy

from mmdat.datasets.imagenet_lists import SUBSETS, subset_indices
from mmdat.registry import METRICS
from .logits import LOGITS_FIELD, keep_classifier_logits

__all__ = ['SubsetAccuracy', 'keep_classifier_logits', 'LOGITS_FIELD']


@METRICS.register_module(force=True)  # replaces the deferred entry of mmdat.registry
class SubsetAccuracy(Accuracy):
    """Accuracy over a subset of the model's classes: the arg-max is taken over the subset's logits.

    ImageNet-R and ImageNet-A cover 200 of the 1000 ImageNet classes. Their official evaluation
    (hendrycks, easyrobust) keeps the 200 columns of the 1000-way logits, in ascending class-index
    order, and compares the arg-max over them with labels ``0..199`` (the position of the image's
    wnid among the 200 sorted wnids). An unrestricted arg-max would count every prediction of one of
    the 800 other classes as an error and understate accuracy.

    The scores ranked (and compared with ``thrs``) are the softmax over the subset's logits. The
    logits come from ``pred_logits``, which :func:`keep_classifier_logits` (or
    ``KeepLogitsHook``; ``tools/test.py --ood`` uses it) attaches; without them the 1000-way
    ``pred_score`` is restricted and renormalised, which is the same unless the softmax underflowed
    to 0 on all subset classes: such a sample has no arg-max and raises a ``ValueError`` instead of
    being scored at random.

    Args:
        subset (str | Sequence[int]): ``'imagenet-r'`` or ``'imagenet-a'`` (the index lists shipped
            in ``mmdat/datasets/imagenet_lists``), or the model class indices themselves, label
            ``i`` being ``subset[i]``. Defaults to ``'imagenet-r'``.
        num_classes (int): number of scores the model must output. Defaults to 1000.
        topk (int | Sequence[int]): as ``Accuracy``. Defaults to 1.
        thrs (float | Sequence[float | None] | None): as ``Accuracy``, applied to the softmax
            over the subset (at least ``1 / len(subset)`` for the arg-max). Defaults to 0.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): metric name prefix. Defaults to None (``'accuracy'``, so results
            read like plain ``Accuracy`` ones).
    """

    def __init__(self,
                 subset: Union[str, Sequence[int]] = 'imagenet-r',
                 num_classes: int = 1000,
                 topk: Union[int, Sequence[int]] = (1, ),
                 thrs: Union[float, Sequence[Union[float, None]], None] = 0.,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(topk=topk, thrs=thrs, collect_device=collect_device, prefix=prefix)
        if isinstance(subset, str):
            if subset not in SUBSETS:
                raise ValueError(f'SubsetAccuracy: unknown subset {subset!r}; give one of {", ".join(SUBSETS)} '
                                 'or a list of class indices')
            indices = list(subset_indices(subset))
        else:
            indices = [int(i) for i in subset]
        if not indices:
            raise ValueError('SubsetAccuracy: the class subset is empty')
        if len(set(indices)) != len(indices):
            raise ValueError('SubsetAccuracy: the class subset has repeated indices')
        if min(indices) < 0 or max(indices) >= num_classes:
            raise ValueError(f'SubsetAccuracy: subset indices must lie in [0, {num_classes}), got '
                             f'{min(indices)}..{max(indices)}')
        too_wide = [k for k in self.topk if k > len(indices)]
        if too_wide:
            raise ValueError(f'SubsetAccuracy: top-{too_wide[0]} is impossible with {len(indices)} classes')
        self.subset_name = subset if isinstance(subset, str) else None
        self.num_classes = num_classes
        self.indices = torch.tensor(indices, dtype=torch.long)

    def _subset_scores(self, sample: dict) -> torch.Tensor:
        """Softmax over the subset classes, from the logits when the sample has them."""
        logits = sample.get(LOGITS_FIELD)
        if logits is not None:
            values = logits.cpu()
        elif 'pred_score' in sample:
            values = sample['pred_score'].cpu()
        else:
            raise ValueError('SubsetAccuracy needs the model\'s class scores (pred_logits or pred_score); the '
                             'model gave only labels')
        if values.shape[-1] != self.num_classes:
            raise ValueError(f'SubsetAccuracy: the model outputs {values.shape[-1]} class scores, the '
                             f'{self.subset_name or "class subset"} protocol needs {self.num_classes} '
                             '(an ImageNet-1k head)')
        restricted = values[..., self.indices].double()
        if logits is not None:
            return torch.softmax(restricted, dim=-1).float()
        total = restricted.sum(dim=-1, keepdim=True)
        if not bool((total > 0).all()):
            raise ValueError('SubsetAccuracy: the softmax scores (pred_score) of all subset classes underflowed '
                             'to 0, so the arg-max over the subset is undefined; keep the logits with '
                             "custom_hooks=[dict(type='KeepLogitsHook')] (tools/test.py --ood does)")
        return (restricted / total).float()

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's scores of the subset classes and check its label."""
        for sample in data_samples:
            score = self._subset_scores(sample)
            label = sample['gt_label'].cpu()
            if label.numel() and int(label.max()) >= len(self.indices):
                raise ValueError(f'SubsetAccuracy: label {int(label.max())} is outside the {len(self.indices)} '
                                 'subset classes; labels must be positions in the subset (0..'
                                 f'{len(self.indices) - 1}), as the ImageNetR / ImageNetA datasets give')
            self.results.append(dict(pred_score=score, gt_label=label))
