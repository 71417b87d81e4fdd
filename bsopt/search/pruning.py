"""Batch-size-aware pruning: compare a trial with the trials of its own batch size.

Pruners compare trials after the same number of epochs (equal data). Across batch sizes that
comparison misleads early on: a batch-512 trial takes 32x fewer optimizer steps per epoch than
a batch-16 trial, so its first epochs look worse even when it ends best. Within one batch size
the early epochs rank learning rates well. On the digits grid table (``benchmarks/``) the best
lr of every batch size ranked 1st-3rd among that batch size's lrs from the first epoch on,
while the best cell overall ranked 12th of 70 cells after one epoch and 6th after five.

:class:`BatchSizePruner` therefore runs one of Optuna's pruners on a view of the study that
holds only the trials with the same ``batch_size``, and adds a guard that stops hopeless
runs (an lr so far off that the network is no better than guessing) before their batch size
has a reference. The guard is absolute on purpose: a guard relative to the finished trials
(say their 90th percentile) would again compare a slow-starting large batch with fast small
ones. Optuna does the pruning; bsopt only chooses which trials it compares.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from bsopt.records import CHANCE_LOSS

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
            ``SuccessiveHalvingPruner``). Not ``HyperbandPruner``, which reads the storage
            itself, nor pruners that read ``study.best_trial`` (``WilcoxonPruner``): they
            would see every batch size.
        guard: Applied over all trials, whatever their batch size; None for no guard.

    Example::

        pruner = BatchSizePruner(
            optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
            guard=ChanceLevelGuard(),
        )
        study = optuna.create_study(pruner=pruner)
    """

    def __init__(self, inner: BasePruner, *, guard: BasePruner | None = None) -> None:
        if isinstance(inner, optuna.pruners.HyperbandPruner):
            raise TypeError("HyperbandPruner reads the storage itself and would compare "
                            "every batch size; use SuccessiveHalvingPruner within batch sizes")
        self.inner = inner
        self.guard = guard

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:  # noqa: D102
        view = (_SameBatchSize(study, trial.params[BATCH_SIZE]) if BATCH_SIZE in trial.params
                else study)
        # The inner pruner first: successive halving records the trial's rung value even
        # when the guard stops it, so hopeless trials count among their batch size's rivals.
        pruned = self.inner.prune(view, trial)
        return (self.guard is not None and self.guard.prune(study, trial)) or pruned


class ChanceLevelGuard(BasePruner):
    """Stop a trial whose validation loss is no better than guessing.

    The objective states the loss of guessing on its data on each trial (the trial user
    attribute ``chance_loss``: ln(classes) for cross-entropy); a trial without one is never
    stopped by the guard. So the pruner needs to know nothing of datasets, and a user's own
    data with any number of classes is guarded alike.
    """

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:  # noqa: D102
        limit = trial.user_attrs.get(CHANCE_LOSS)
        if limit is None:
            return False
        return optuna.pruners.ThresholdPruner(upper=float(limit)).prune(study, trial)


def batch_asha() -> BatchSizePruner:
    """Successive halving within each batch size (rungs at 1, 3, 9 epochs) and the guard."""
    inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return BatchSizePruner(inner, guard=ChanceLevelGuard())


def batch_median() -> BatchSizePruner:
    """The median of finished trials of the same batch size at each epoch, and the guard."""
    return BatchSizePruner(optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
                           guard=ChanceLevelGuard())
