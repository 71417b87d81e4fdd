"""Batch-size-aware pruning: compare a trial with the trials of its own batch size.

Pruners compare trials after the same number of epochs (equal data). Across batch sizes that
comparison misleads early on: a batch-512 trial takes 32x fewer optimizer steps per epoch than
a batch-16 trial, so its first epochs look worse even when it ends best. Within one batch size
the early epochs rank learning rates well. On the digits grid table (``benchmarks/``) the best
lr of every batch size ranked 1st-3rd among that batch size's lrs from the first epoch on,
while the best cell overall ranked 12th of 70 cells after one epoch and 6th after five.

:class:`BatchSizePruner` therefore runs one of Optuna's pruners on a view of the study that
holds only the trials with the same ``batch_size``, and adds a guard pruner over all trials
that stops hopeless runs (lr far too high or too low) before their batch size has a
reference. Optuna does the pruning; bsopt only chooses which trials it compares.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

BATCH_SIZE = "batch_size"


class _SameBatchSize:
    """A study seen through one batch size: ``get_trials`` returns only its trials.

    Everything else (direction, storage, ...) is the study's own. Pruners that read the
    study through ``get_trials`` (median, percentile, successive halving) then compare a
    trial with its own batch size only.
    """

    def __init__(self, study: optuna.Study, batch_size: Any) -> None:
        self._study = study
        self._batch_size = batch_size

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.params.get(BATCH_SIZE) == self._batch_size]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class BatchSizePruner(BasePruner):
    """Prune with ``inner`` among trials of the same batch size, or when ``guard`` says so.

    Args:
        inner: The pruner applied within each batch size: an Optuna pruner that reads the
            study through ``study.get_trials`` (``MedianPruner``, ``PercentilePruner``,
            ``SuccessiveHalvingPruner``; not ``HyperbandPruner``, which builds studies of
            its own).
        guard: Applied over all trials, whatever their batch size; None for no guard.

    Example::

        pruner = BatchSizePruner(
            optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
            guard=optuna.pruners.PercentilePruner(90.0, n_startup_trials=4),
        )
        study = optuna.create_study(pruner=pruner)
    """

    def __init__(self, inner: BasePruner, *, guard: BasePruner | None = None) -> None:
        self.inner = inner
        self.guard = guard

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:  # noqa: D102
        if self.guard is not None and self.guard.prune(study, trial):
            return True
        if BATCH_SIZE not in trial.params:
            return self.inner.prune(study, trial)
        return self.inner.prune(_SameBatchSize(study, trial.params[BATCH_SIZE]), trial)


def hopeless_guard() -> BasePruner:
    """Stop a trial worse than 90% of the finished trials at the same epoch (after 4)."""
    return optuna.pruners.PercentilePruner(90.0, n_startup_trials=4)


def batch_asha() -> BatchSizePruner:
    """Successive halving within each batch size (rungs at 1, 3, 9 epochs) and the guard."""
    inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return BatchSizePruner(inner, guard=hopeless_guard())


def batch_median() -> BatchSizePruner:
    """The median of finished trials of the same batch size at each epoch, and the guard."""
    return BatchSizePruner(optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
                           guard=hopeless_guard())
