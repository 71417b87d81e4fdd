"""What the learning curves say: steps to a target loss, and the gradient noise scale.

The loss is known only at epoch ends; steps to a target are interpolated within the epoch
where a curve crosses it. The noise scale B_simple = tr(Sigma) / |G|^2 is what the training
loop measured with ``--noise-scale`` (:mod:`bsopt.training.noise_scale`), which McCandlish et
al. 2018 find to track the critical batch size (roughly, and growing as the loss falls).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from bsopt.records import TrialRecord

TARGET_SLACK = 1.05  # default target: this times the worst per-batch-size best val loss


@dataclass(frozen=True)
class StepsToTarget:
    """Fewest optimizer steps any trial at one batch size needed to reach the target loss."""

    _derived: ClassVar[tuple[str, ...]] = ("examples",)
    batch_size: int
    steps: float
    trial: int
    upper_bound: bool  # reached at its first recorded epoch: no interpolation possible

    @property
    def examples(self) -> float:
        """Examples seen: ``E = B * S``."""
        return self.batch_size * self.steps


@dataclass(frozen=True)
class NoiseScaleSeries:
    """Median B_simple over the trials at one batch size, per epoch (None: not measured)."""

    batch_size: int
    trials: int
    medians: tuple[float | None, ...]


def steps_to_reach(record: TrialRecord, target: float) -> tuple[float, bool] | None:
    """Optimizer steps at which a trial's val loss curve first reaches ``target``.

    The loss is known only at epoch ends; within the epoch where it crosses, steps are
    interpolated linearly between the two epoch ends (loss linear in steps). A curve that is
    already at or below the target at its first recorded point gives that point's steps,
    an upper bound.

    Args:
        record: The trial; uses its ``val_loss`` and ``steps`` lists.
        target: The validation loss to reach.

    Returns:
        ``(steps, upper_bound)``, or None if the curve never reaches the target.
    """
    previous: tuple[float, float] | None = None
    for loss, steps in zip(record.val_loss, record.steps):
        if not math.isfinite(loss):
            previous = None
            continue
        if loss <= target:
            if previous is None:
                return float(steps), True
            s0, v0 = previous
            return s0 + (steps - s0) * (v0 - target) / (v0 - loss), False
        previous = (float(steps), loss)
    return None


def default_target(trials: Iterable[TrialRecord]) -> float | None:
    """``TARGET_SLACK`` x the worst of the per-batch-size best val losses (any epoch, any trial).

    Every batch size with a curve reaches it, and the 5% slack makes the batch size that
    sets it reach it before its very last point.
    """
    best: dict[int, float] = {}
    for r in trials:
        finite = [v for v in r.val_loss if math.isfinite(v)]
        if finite and r.steps:
            best[r.batch_size] = min(best.get(r.batch_size, math.inf), min(finite))
    if not best:
        return None
    worst = max(best.values())
    return worst + (TARGET_SLACK - 1.0) * abs(worst)


def steps_to_target(
    trials: Iterable[TrialRecord], target: float
) -> tuple[list[StepsToTarget], list[int]]:
    """Fewest steps to ``target`` per batch size over complete AND pruned trials.

    Returns:
        The rows of batch sizes that reached it, and the batch sizes whose curves never did.
    """
    reached: dict[int, StepsToTarget] = {}
    seen: set[int] = set()
    for r in trials:
        if not r.steps:
            continue
        seen.add(r.batch_size)
        hit = steps_to_reach(r, target)
        if hit is not None and (r.batch_size not in reached
                                or hit[0] < reached[r.batch_size].steps):
            reached[r.batch_size] = StepsToTarget(r.batch_size, hit[0], r.number, hit[1])
    return [reached[b] for b in sorted(reached)], sorted(seen - set(reached))


def noise_scale_by_batch(trials: Iterable[TrialRecord]) -> list[NoiseScaleSeries]:
    """Median of the ``noise_scale`` attribute over trials, per batch size and epoch."""
    values: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    measured: dict[int, int] = defaultdict(int)
    for r in trials:
        finite = [(e, v) for e, v in enumerate(r.noise_scale) if math.isfinite(v)]
        if finite:
            measured[r.batch_size] += 1
        for epoch, v in finite:
            values[r.batch_size][epoch].append(v)
    out = []
    for batch_size in sorted(values):
        by_epoch = values[batch_size]
        medians = tuple(float(statistics.median(by_epoch[e])) if by_epoch.get(e) else None
                        for e in range(max(by_epoch) + 1))
        out.append(NoiseScaleSeries(batch_size, measured[batch_size], medians))
    return out
