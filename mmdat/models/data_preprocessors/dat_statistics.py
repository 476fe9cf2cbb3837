"""DAT statistics and decisions, published through mmengine's MessageHub (``train/dat_*``)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from mmengine.logging import MessageHub, print_log
from torch import Tensor

from mmdat.dat import DATIterationSettings, DATResult

if TYPE_CHECKING:
    from .adversarial_step import StepOutcome


@dataclass
class DATCounters:
    """Run totals of a DAT preprocessor. ``DATHook`` keeps them in the runner's ``MessageHub``
    runtime information, which mmengine saves in checkpoints, so they survive ``--resume``.

    Args:
        skipped: iterations whose adversarial half was dropped (a non-finite attack loss, gradient
            or adversarial loss on any rank; equal on every rank).
        zero_gradient_images: images of this rank that the attack could not move because their input
            gradient was exactly zero (they were trained on ``Q(x_rec)``, or ``Q`` of the random
            start, instead of an adversarial example).
    """

    skipped: int = 0
    zero_gradient_images: int = 0


@dataclass(frozen=True)
class DATIterationReport:
    """What DAT did in one training iteration; read by ``DATHook`` after the iteration.

    Args:
        iteration: the iteration the random decisions were drawn for (None outside a runner).
        applied: whether DAT ran (``apply_prob``).
        random_start: whether the attack started from a random point (None if not applied).
        skipped: whether the adversarial half was dropped (non-finite values on any rank).
        skipped_total: iterations skipped so far.
        zero_gradient_images: images of this batch the attack could not move (zero input gradient).
        zero_gradient_total: such images so far (this rank).
        examples: clean / reconstruction / adversarial RGB [0, 1] images and valid ``sizes``, when the
            iteration's settings asked to keep them.
    """

    iteration: Optional[int] = None
    applied: bool = False
    random_start: Optional[bool] = None
    skipped: bool = False
    skipped_total: int = 0
    zero_gradient_images: int = 0
    zero_gradient_total: int = 0
    examples: Optional[dict] = field(default=None, repr=False)

    def decision(self) -> dict:
        """The rank-identical decisions of the iteration (what SyncBN needs to agree on)."""
        return dict(step=self.iteration, applied=self.applied, random_start=self.random_start,
                    skipped=self.skipped)


def record_dat_step(out: 'StepOutcome', iteration: Optional[int], settings: DATIterationSettings,
                    counters: DATCounters, clean: Callable[[], Tensor]) -> DATIterationReport:
    """Count and log what one applied DAT step did (a skip, images it could not move, its statistics
    when asked) and report it. ``clean`` returns the clean batch as RGB [0, 1]; it is called only
    when examples are kept.
    """
    skipped = out.skipped_reason is not None
    zero_gradient = 0 if skipped else out.result.zero_gradient_images
    if skipped:
        counters.skipped += 1
        print_log(f'DAT: {out.skipped_reason}; every rank skips the adversarial half of this batch '
                  f'({counters.skipped} skipped so far)', logger='current', level=logging.WARNING)
        log_scalars({'dat_skipped': counters.skipped})
    if zero_gradient:
        if counters.zero_gradient_images == 0:
            print_log(f"DAT: the attack's input gradient is exactly zero for {zero_gradient} image(s) of "
                      'this batch, so they get no adversarial step (counted in '
                      'dat_zero_gradient_images; warned once)', logger='current', level=logging.WARNING)
        counters.zero_gradient_images += zero_gradient
        log_scalars({'dat_zero_gradient_images': counters.zero_gradient_images})
    if settings.collect_stats and not skipped:
        log_dat_statistics(out.result, counters)
    examples = None
    if settings.keep_examples and not skipped:
        examples = dict(clean=clean(), reconstruction=out.result.reconstruction,
                        adversarial=out.result.adversarial, sizes=out.sizes)
    return DATIterationReport(iteration, True, out.result.random_start, skipped, counters.skipped,
                              zero_gradient, counters.zero_gradient_images, examples)


def log_dat_statistics(result: DATResult, counters: DATCounters) -> None:
    """Publish one DAT call's statistics (``collect_stats`` iterations)."""
    log_scalars({**{'dat_' + k: v for k, v in result.stats.items()},
                 'dat_attack_start_loss': result.start_loss,
                 'dat_random_start': float(result.random_start),
                 'dat_eps': result.eps, 'dat_skipped': counters.skipped,
                 'dat_zero_gradient_images': counters.zero_gradient_images})


def log_scalars(values: dict) -> None:
    """``train/<name>`` scalars for the logger hooks; non-finite values are left out."""
    hub = MessageHub.get_current_instance()
    for name, value in values.items():
        if value is not None and math.isfinite(float(value)):
            hub.update_scalar(f'train/{name}', float(value))
