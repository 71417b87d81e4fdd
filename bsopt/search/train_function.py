"""``--train package.module:function``: the user's own training loop, called once per trial.

bsopt calls ``function(run)`` with a :class:`Run`: the trial's ``batch_size``, ``lr``,
``epochs``, ``device`` and other parameters, and the calls that give the loop everything
bsopt adds to its own trainer::

    def train(run):
        model, optimizer = build(run.lr), ...
        start = 0
        if (state := run.load_state()) is not None:      # a retry of a killed worker's trial
            model.load_state_dict(state["model"]); optimizer.load_state_dict(state["optim"])
            start = state["epoch"]
        for epoch in range(start + 1, run.epochs + 1):
            ...train one epoch with run.batch_size...
            run.report(epoch, val_loss, train_loss=..., val_accuracy=...)  # may prune
            run.save_state({"model": model.state_dict(), "optim": optimizer.state_dict(),
                            "epoch": epoch})
        run.save_weights(model.state_dict())           # kept for the best trials
        return val_loss                                # or nothing: the last reported one

``run.report`` stores the curve, asks the pruner and raises ``optuna.TrialPruned`` when the
trial should stop (let it propagate). ``run.save_state`` keeps tensors and plain values only
(loaded back without unpickling code), in the study's artifact store, so a retry on another
machine resumes from the last saved epoch. Call it after ``run.report``: the state belongs to
the epoch last reported, whose curve the retry shows up to that epoch.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

import optuna
import torch

from bsopt import records
from bsopt.config import StudyConfig
from bsopt.errors import UsageError
from bsopt.import_path import load_object
from bsopt.search.progress import ProgressCallback
from bsopt.search.reporting import TrialReporter
from bsopt.search.space import suggest
from bsopt.search.worker import Interrupted
from bsopt.storage.checkpoints import (
    CheckpointOwner,
    load_checkpoint,
    remove_series_checkpoints,
    save_checkpoint,
)
from bsopt.storage.heartbeats import retry_series
from bsopt.storage.weights import save_weights


def load_train_function(path: str) -> Callable[[Run], Any]:
    """The user's training function named by ``path`` (``package.module:function``).

    Raises:
        UsageError: the module or name is missing, or it is not callable.
    """
    function = load_object(path, "--train")
    if not callable(function):
        raise UsageError(f"--train {path} is a {type(function).__name__}, not a function")
    return function


class Run:
    """One trial, as the user's training function sees it (see the module docstring)."""

    def __init__(self, trial: optuna.Trial, config: StudyConfig, reporter: TrialReporter, *,
                 device: str, artifact_store: Any, owner: CheckpointOwner,
                 stop: threading.Event | None) -> None:
        self._trial = trial
        self._config = config
        self._reporter = reporter
        self._store = artifact_store
        self._owner = owner
        self._stop = stop
        self._state: dict[str, Any] | None = None
        #: Examples per optimizer step.
        self.batch_size: int = reporter.batch_size
        #: The learning rate to train with (after the study's scaling rule, if any).
        self.lr: float = reporter.lr
        #: Epochs a complete trial trains.
        self.epochs: int = config.epochs
        #: Where to train: ``cpu`` or ``cuda`` (``--device``; auto is CUDA when there is one).
        self.device: str = device
        #: Every parameter of the trial (``batch_size``, ``lr`` or ``base_lr``, ...).
        self.params: dict[str, Any] = dict(trial.params)
        #: The study's seed: the same initialisation and data order in every trial.
        self.seed: int = config.seed
        #: The trial's number in the study.
        self.trial_number: int = trial.number
        #: ``--data-dir``, where the function may find its data (None if not given).
        self.data_dir: str | None = config.data_dir

    @property
    def stopping(self) -> bool:
        """True once Ctrl-C or SIGTERM asked the trial to stop (``report`` then raises)."""
        return self._stop is not None and self._stop.is_set()

    def report(self, epoch: int, val_loss: float, **metrics: Any) -> None:
        """Record epoch ``epoch`` (1, 2, ...) with its validation loss and other metrics.

        Raises:
            optuna.TrialPruned: the pruner stops the trial (let it propagate).
        """
        self._reporter.report(epoch, val_loss, **metrics)
        if self.stopping:
            raise Interrupted(f"interrupted after epoch {epoch}")

    def save_state(self, state: dict[str, Any]) -> None:
        """Checkpoint ``state`` (tensors and plain values) as that of the epoch last reported.

        A retry of this trial (its worker died) gets it from :meth:`load_state` and goes on
        from the epoch after that one.

        Raises:
            ValueError: ``state`` holds something that would need unpickling code to load.
        """
        check_plain(state, "save_state")
        save_checkpoint(self._store, self._trial, self._owner,
                        {"user": state, "curves": self._reporter.curves},
                        self._reporter.epochs_done)

    def load_state(self) -> dict[str, Any] | None:
        """The state of this trial's last ``save_state`` (by a dead worker), or None."""
        return self._state

    def save_weights(self, state_dict: dict[str, Any]) -> None:
        """Keep the final weights (a ``state_dict``) in case this trial is among the best.

        ``bsopt best --save-model FILE`` writes those of the best trial.
        """
        check_plain(state_dict, "save_weights")
        if self._config.keep_best > 0:
            save_weights(self._store, self._trial, self._owner.study, state_dict)

    def _resume(self) -> None:
        payload = load_checkpoint(self._store, self._trial, self._owner)
        if payload is None or not isinstance(payload.get("curves"), dict):
            return
        self._state = payload.get("user")
        self._reporter.replay(payload["curves"])
        self._trial.set_user_attr(records.RESUMED_FROM_EPOCH, self._reporter.epochs_done)


def check_plain(value: Any, what: str) -> None:
    """Raise ``ValueError`` unless ``value`` loads back with ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{what} keeps tensors and plain values (dicts, lists, numbers, "
                         f"strings) only: {reason}") from None


class TrainFunctionObjective:
    """Call the user's training function once per trial (``--train``).

    Args:
        config: The study definition (``config.train`` names the function).
        device: Where the function should train.
        artifact_store: Where checkpoints and weights go.
        stop: When set, ``run.report`` raises at the next epoch.
        progress: Called after every reported epoch.
    """

    def __init__(self, config: StudyConfig, device: str, *, artifact_store: Any,
                 stop: threading.Event | None = None,
                 progress: ProgressCallback | None = None) -> None:
        assert config.train is not None
        self.function = load_train_function(config.train)
        self.config = config
        self.device = device
        self.artifact_store = artifact_store
        self.stop = stop
        self.progress = progress

    def __call__(self, trial: optuna.Trial) -> float:
        batch_size, lr = suggest(trial, self.config)
        trial.set_user_attr(records.LR, lr)
        trial.set_user_attr(records.TORCH_THREADS, torch.get_num_threads())
        owner = CheckpointOwner(records.study_uid(trial.study), retry_series(trial))
        reporter = TrialReporter(trial, epochs=self.config.epochs, batch_size=batch_size, lr=lr,
                                 pruner_name=self.config.pruner,
                                 prune=len(self.config.objectives) == 1, progress=self.progress)
        run = Run(trial, self.config, reporter, device=self.device,
                  artifact_store=self.artifact_store, owner=owner, stop=self.stop)
        run._resume()
        try:
            returned = self.function(run)
        except optuna.TrialPruned:
            remove_series_checkpoints(self.artifact_store, owner, self.config.epochs)
            raise
        remove_series_checkpoints(self.artifact_store, owner, self.config.epochs)
        value = returned if returned is not None else reporter.last_val_loss
        if value is None:
            raise RuntimeError("the training function reported no epoch and returned nothing: "
                               "call run.report(epoch, val_loss) after each epoch")
        return float(value)
