"""The best learning rate of each batch size: the selection every answer and figure builds on."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from bsopt.analysis.scaling import BestLr, best_lr
from bsopt.records import TrialRecord


@dataclass(frozen=True)
class BestRun:
    """The COMPLETE trial with the lowest final validation loss at one batch size."""

    # Properties that the JSON of an analysis includes (bsopt.records.json_ready).
    _derived: ClassVar[tuple[str, ...]] = ("generalization_gap",)
    batch_size: int
    lr: float
    val_loss: float
    train_loss: float | None
    val_accuracy: float | None
    train_seconds: float | None
    trial: int
    complete_trials: int
    lrs_tried: int  # distinct learning rates among the complete trials at this batch size
    lr_at_edge: bool  # the best lr is the smallest or largest tried: the optimum may lie beyond

    @property
    def generalization_gap(self) -> float | None:
        """Final val loss minus final train loss (train loss as the training loop recorded it)."""
        return None if self.train_loss is None else self.val_loss - self.train_loss


def best_by_batch(trials: Iterable[TrialRecord]) -> list[BestRun]:
    """Per batch size, the COMPLETE trial with the lowest final validation loss (sorted by B).

    Args:
        trials: Trial trials; pruned ones are ignored (their last loss is not final), and so
            are trials without a finite ``final_loss``.
    """
    groups: dict[int, list[tuple[float, TrialRecord]]] = defaultdict(list)
    for r in trials:
        loss = r.final_loss
        if r.state == "COMPLETE" and loss is not None:
            groups[r.batch_size].append((loss, r))
    out = []
    for batch_size in sorted(groups):
        runs = groups[batch_size]
        loss, best = min(runs, key=lambda pair: pair[0])
        lrs = sorted({r.lr for _, r in runs})
        train = [v for v in best.train_loss if math.isfinite(v)]
        out.append(BestRun(
            batch_size=batch_size, lr=best.lr, val_loss=loss,
            train_loss=train[-1] if train else None, val_accuracy=best.final_accuracy,
            train_seconds=best.total_seconds, trial=best.number, complete_trials=len(runs),
            lrs_tried=len(lrs), lr_at_edge=len(lrs) > 1 and best.lr in (lrs[0], lrs[-1]),
        ))
    return out


LR_LOSSES = ("final", "best-epoch")


def trial_loss(record: TrialRecord, which: str = "final") -> float | None:
    """The loss that ranks a trial's lr: its final val loss, or its lowest over the epochs
    (``best-epoch``: the loss with early stopping, robust to a last-epoch spike)."""
    if which == "best-epoch":
        finite = [v for v in record.val_loss if math.isfinite(v)]
        return min(finite) if finite else record.final_loss
    return record.final_loss


def best_lrs(trials: Iterable[TrialRecord], loss: str = "final") -> list[BestLr]:
    """Per batch size, the best lr with its bracket and standard error (sorted by B).

    From the COMPLETE trials' ``loss`` (:func:`trial_loss`) by
    :func:`bsopt.analysis.scaling.best_lr`.
    """
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in trials:
        value = trial_loss(r, loss)
        if r.state == "COMPLETE" and value is not None and r.lr > 0:
            points[r.batch_size].append((r.lr, value))
    found = (best_lr(b, points[b]) for b in sorted(points))
    return [b for b in found if b is not None]
