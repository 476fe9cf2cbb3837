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


@dataclass(frozen=True)
class DATIterationReport:
    """What DAT did in one training iteration; read by ``DATHook`` after the iteration.

    Args:
        iteration: the iteration the random decisions were drawn for (None outside a runner).
        applied: whether DAT ran (``apply_prob``).
        random_start: whether the attack started from a random point (None if not applied).
        skipped: whether the adversarial half was dropped (non-finite loss or gradient).
        skipped_total: iterations skipped so far.
        examples: clean / reconstruction / adversarial RGB [0, 1] images and valid ``sizes``, when the
            iteration's settings asked to keep them.
    """

    iteration: Optional[int] = None
    applied: bool = False
    random_start: Optional[bool] = None
    skipped: bool = False
    skipped_total: int = 0
    examples: Optional[dict] = field(default=None, repr=False)

    def decision(self) -> dict:
        """The rank-identical random decisions of the iteration (what SyncBN needs to agree on)."""
        return dict(step=self.iteration, applied=self.applied, random_start=self.random_start,
                    skipped=self.skipped)


def record_dat_step(out: 'StepOutcome', iteration: Optional[int], settings: DATIterationSettings,
                    skipped_total: int, clean: Callable[[], Tensor]) -> DATIterationReport:
    """Log what one applied DAT step did (a skip, or its statistics when asked) and report it.

    ``clean`` returns the clean batch as RGB [0, 1]; it is called only when examples are kept.
    """
    skipped = out.skipped_reason is not None
    if skipped:
        print_log(f'DAT: {out.skipped_reason}; skipping the adversarial half of this batch '
                  f'({skipped_total} skipped so far)', logger='current', level=logging.WARNING)
        log_scalars({'dat_skipped': skipped_total})
    elif settings.collect_stats:
        log_dat_statistics(out.result, skipped_total)
    examples = None
    if settings.keep_examples and not skipped:
        examples = dict(clean=clean(), reconstruction=out.result.reconstruction,
                        adversarial=out.result.adversarial, sizes=out.sizes)
    return DATIterationReport(iteration, True, out.result.random_start, skipped, skipped_total, examples)


def log_dat_statistics(result: DATResult, skipped_total: int) -> None:
    """Publish one DAT call's statistics (``collect_stats`` iterations)."""
    log_scalars({**{'dat_' + k: v for k, v in result.stats.items()},
                 'dat_attack_start_loss': result.start_loss,
                 'dat_random_start': float(result.random_start),
                 'dat_eps': result.eps, 'dat_skipped': skipped_total})


def log_scalars(values: dict) -> None:
    """``train/<name>`` scalars for the logger hooks; non-finite values are left out."""
    hub = MessageHub.get_current_instance()
    for name, value in values.items():
        if value is not None and math.isfinite(float(value)):
            hub.update_scalar(f'train/{name}', float(value))
