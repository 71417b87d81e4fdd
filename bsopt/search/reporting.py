"""One epoch of a trial, as bsopt records it: the contract between training and the study.

Whatever trains a trial (bsopt's trainer, the user's ``--train`` function, the user's
``--command`` script) reports each finished epoch to a :class:`TrialReporter`. It stores the
epoch's metrics as per-epoch lists on the trial (:mod:`bsopt.records`), reports the
validation loss with the epoch as step (pruners compare trials after equal data), tells the
progress display, and asks the pruner, raising ``optuna.TrialPruned`` when it says stop.
A resumed trial replays the epochs of its checkpoint first (:meth:`TrialReporter.replay`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import optuna

from bsopt import records
from bsopt.internals import storage_of, trial_id
from bsopt.search.progress import Kind, ProgressCallback, TrialProgress

# Metrics the trainer reports under other names than the records' curves.
_ALIASES = {"seconds": records.EPOCH_SECONDS}


class TrialReporter:
    """Records a trial's epochs and asks the pruner after each.

    Args:
        trial: The running trial.
        epochs: The epochs a complete trial trains (no pruning after the last).
        batch_size: The trial's batch size (for progress and ``steps`` from ``examples``).
        lr: The learning rate it trains with (for progress).
        pruner_name: Named in the pruned reason.
        prune: Ask the pruner (single-objective studies; Optuna prunes no others).
        progress: Called with a :class:`TrialProgress` after each epoch.
    """

    def __init__(self, trial: optuna.Trial, *, epochs: int, batch_size: int, lr: float,
                 pruner_name: str, prune: bool = True,
                 progress: ProgressCallback | None = None) -> None:
        self.trial = trial
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.pruner_name = pruner_name
        self.prune = prune
        self.progress = progress
        self.curves: dict[str, list[Any]] = {}
        self._last = time.monotonic()

    @property
    def epochs_done(self) -> int:
        """Epochs recorded so far."""
        return len(self.curves.get(records.VAL_LOSS, []))

    @property
    def last_val_loss(self) -> float | None:
        """The latest validation loss (None before the first epoch)."""
        losses = self.curves.get(records.VAL_LOSS)
        return losses[-1] if losses else None

    def report(self, epoch: int, val_loss: float, **metrics: Any) -> None:
        """Record epoch ``epoch`` (1-based, the next one) and ask the pruner.

        ``metrics`` are numbers per epoch (``train_loss``, ``val_accuracy``, ``examples``,
        ``steps``, ... any name); each becomes a curve on the trial. ``epoch_seconds`` is the
        time since the last report unless given; ``steps`` follows from ``examples``
        (cumulative examples seen) when only those are given.

        Raises:
            optuna.TrialPruned: the pruner stops the trial, or the loss is not finite
                (diverged); the trial's ``pruned_reason`` says which.
            ValueError: an epoch out of order, or a metric that is not a number.
        """
        if epoch != self.epochs_done + 1:
            raise ValueError(f"epoch {epoch} reported after epoch {self.epochs_done}: report "
                             "each epoch once, in order, starting at 1 (a resumed loop goes on "
                             "from the epoch of the state it saved after that epoch's report)")
        now = time.monotonic()
        values = {_ALIASES.get(k, k): v for k, v in metrics.items()}
        values.setdefault(records.EPOCH_SECONDS, now - self._last)
        self._last = now
        if records.STEPS not in values and "examples" in values:
            values[records.STEPS] = math.ceil(float(values["examples"]) / self.batch_size)
        values[records.VAL_LOSS] = val_loss
        for name, value in values.items():
            if value is not None and not isinstance(value, int | float):
                raise ValueError(f"metric {name!r} of epoch {epoch} is {value!r}, not a number")
            self.curves.setdefault(name, [None] * (epoch - 1)).append(
                None if value is None else float(value) if name != records.STEPS else int(value))
        self._store()
        if not math.isfinite(float(val_loss)):
            reason = f"diverged: validation loss is {val_loss} at epoch {epoch}"
            self.trial.set_user_attr(records.PRUNED_REASON, reason)
            self._notify(Kind.DIVERGED, epoch)
            raise optuna.TrialPruned(reason)
        if self.prune:
            self.trial.report(float(val_loss), epoch)
        self._notify(Kind.EPOCH, epoch)
        if self.prune and epoch < self.epochs and self.trial.should_prune():
            reason = f"pruned by {self.pruner_name} after epoch {epoch}"
            self.trial.set_user_attr(records.PRUNED_REASON, reason)
            raise optuna.TrialPruned(reason)

    def diverged(self, reason: str) -> optuna.TrialPruned:
        """Mark the trial pruned as diverged (the loss became NaN or infinite); raise it."""
        self.trial.set_user_attr(records.PRUNED_REASON, f"diverged: {reason}")
        self._notify(Kind.DIVERGED, None)
        return optuna.TrialPruned(f"diverged: {reason}")

    def replay(self, curves: Mapping[str, list[Any]]) -> None:
        """Take the curves of a checkpoint as this trial's, reporting their epochs again.

        A retry starts with no intermediate values (``bsopt.storage.heartbeats``), so its
        curve is the checkpoint's, including an epoch that the dead worker checkpointed but
        was killed before reporting. No pruning: the dead worker already judged them.
        """
        self.curves = {name: list(values) for name, values in curves.items()}
        self._store()
        if not self.prune:
            return
        reported = storage_of(self.trial.study).get_trial(trial_id(self.trial)).intermediate_values
        for epoch, loss in enumerate(self.curves.get(records.VAL_LOSS, []), start=1):
            if epoch not in reported and loss is not None and math.isfinite(loss):
                self.trial.report(float(loss), epoch)

    def _store(self) -> None:
        for name, values in self.curves.items():
            self.trial.set_user_attr(name, values)
        seconds = [s for s in self.curves.get(records.EPOCH_SECONDS, []) if s is not None]
        self.trial.set_user_attr(records.TRAIN_SECONDS, sum(seconds))

    def _notify(self, kind: Kind, epoch: int | None) -> None:
        if self.progress is None:
            return
        accuracy = self.curves.get(records.VAL_ACCURACY)
        self.progress(TrialProgress(
            kind, self.trial.number, self.batch_size, self.lr, epoch=epoch, epochs=self.epochs,
            val_loss=self.last_val_loss if epoch else None,
            val_accuracy=accuracy[-1] if accuracy and epoch else None,
        ))
