"""What DAT does at one iteration: the eps/step-size warm-up and the per-iteration settings."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DATIterationSettings:
    """Handed to the DAT data preprocessor before each training iteration (by ``DATHook``).

    Args:
        strength: factor on eps and step size (the warm-up; 1.0 = the configured values).
        collect_stats: compute the DAT statistics (norms, visual words changed, PSNR) and log them.
        keep_examples: keep x / x_rec / x_adv of this batch for the visualizer.
    """

    strength: float = 1.0
    collect_stats: bool = False
    keep_examples: bool = False


@dataclass(frozen=True)
class DATSchedule:
    """When DAT ramps up and what it records, as a function of the iteration only.

    Args:
        warmup_iters: eps and step size rise linearly from 0 to their configured values over this many
            iterations (0 = off, the paper's setting); iteration ``i`` uses ``min(1, (i + 1) / warmup_iters)``.
        stats_interval: collect statistics every this many iterations (0 = never).
        vis_interval: keep example triplets every this many iterations (0 = never).
        max_iters: the run's last iteration (1-based; 0 = unknown). With ``vis_interval`` > 0 the
            examples of the last iteration are always kept, so a run shorter than ``vis_interval``
            still has its pictures.
    """

    warmup_iters: int = 0
    stats_interval: int = 0
    vis_interval: int = 0
    max_iters: int = 0

    def __post_init__(self) -> None:
        for name in ('warmup_iters', 'stats_interval', 'vis_interval', 'max_iters'):
            if int(getattr(self, name)) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')

    def strength(self, iteration: int) -> float:
        if self.warmup_iters <= 0:
            return 1.0
        return min(1.0, (iteration + 1) / self.warmup_iters)

    def settings(self, iteration: int) -> DATIterationSettings:
        def every(interval: int) -> bool:
            return interval > 0 and (iteration + 1) % interval == 0

        return DATIterationSettings(strength=self.strength(iteration),
                                    collect_stats=every(self.stats_interval),
                                    keep_examples=every(self.vis_interval) or (
                                        self.vis_interval > 0 and iteration + 1 == self.max_iters))
