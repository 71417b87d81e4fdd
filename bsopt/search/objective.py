"""The objective: trial -> (batch size, lr) -> train -> validation loss.

``Objective`` trains the reference CNN or MLP (or the network a user's ``model_factory``
builds) with the sampled batch size and learning rate. After every epoch it stores the
curves on the trial, reports the validation loss with the epoch as step (so pruners compare
trials after equal data), writes a checkpoint and asks the pruner.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import optuna
import torch
from torch import nn

from bsopt import records
from bsopt.config import StudyConfig
from bsopt.errors import UsageError
from bsopt.internals import storage_of, trial_id
from bsopt.search.progress import Kind, ProgressCallback, TrialProgress
from bsopt.search.space import suggest
from bsopt.search.worker import Interrupted
from bsopt.storage.checkpoints import (
    CheckpointOwner,
    load_checkpoint,
    remove_series_checkpoints,
    save_checkpoint,
)
from bsopt.training.data import TrialData
from bsopt.training.models import build_model
from bsopt.training.trainer import (
    Diverged,
    EpochResult,
    Trainer,
    TrainSettings,
    make_optimizer,
)

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]
logger = logging.getLogger("bsopt.search.objective")


def _report_missing_epochs(trial: optuna.Trial, trainer: Trainer) -> None:
    """Report the checkpointed epochs the trial has no value for.

    A retry starts with no intermediate values (``bsopt.search.worker.retry_failed_trial``), so its
    curve is the checkpoint's, including an epoch that the dead worker checkpointed but was
    killed before reporting.
    """
    reported = storage_of(trial.study).get_trial(trial_id(trial)).intermediate_values
    for epoch in trainer.history.epochs:
        if epoch.epoch not in reported:
            trial.report(epoch.val_loss, epoch.epoch)


class StopFlagTrainer(Trainer):
    """A trainer that stops between optimizer steps once ``stop`` is set."""

    def __init__(self, *args: Any, stop: threading.Event | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop = stop

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if self._stop is not None and self._stop.is_set():
            raise Interrupted(f"interrupted during epoch {self.epoch + 1}")
        return super()._step(x, y)


def retry_series(trial: optuna.Trial) -> int:
    """The number of the first trial of this trial's retry series (itself if not a retry).

    Retries copy the user attributes of the trial they retry, so the series is inherited.
    """
    series = int(trial.user_attrs.get(records.SERIES, trial.number))
    trial.set_user_attr(records.SERIES, series)
    return series


def check_trainable(config: StudyConfig, data: TrialData,
                    model_factory: ModelFactory | None = None) -> None:
    """Build the network and optimizer a trial would, so that bad names fail before a study.

    Raises:
        UsageError: an unknown model or optimizer, a factory that raises or does not return
            a ``torch.nn.Module``.
    """
    factory = model_factory or (lambda shape, k: build_model(config.model, shape, k))
    model = factory(data.input_shape, data.num_classes)
    if not isinstance(model, nn.Module):
        raise UsageError(f"the model factory returned a {type(model).__name__}, not a "
                         "torch.nn.Module")
    make_optimizer(config.optimizer, model.parameters(), 1e-3, config.momentum)


class Objective:
    """Train one network per trial and return its validation loss (and seconds).

    Args:
        config: The study definition.
        data: The dataset, in memory on ``device`` or streamed to it.
        device: Where to train.
        artifact_store: Optuna artifact store for checkpoints; None disables them.
        model_factory: Builds the network from (input shape, number of classes); the
            default builds ``config.model`` (the reference CNN or MLP).
        stop: When set, the running trial stops at the next optimizer step.
        progress: Called with a :class:`TrialProgress` after every epoch.
    """

    def __init__(self, config: StudyConfig, data: TrialData, device: torch.device, *,
                 artifact_store: Any = None, model_factory: ModelFactory | None = None,
                 stop: threading.Event | None = None,
                 progress: ProgressCallback | None = None) -> None:
        self.config = config
        self.data = data
        self.device = device
        self.artifact_store = artifact_store
        self.model_factory = model_factory or (lambda shape, k: build_model(config.model, shape, k))
        self.stop = stop
        self.progress = progress
        self._uid: str | None = None

    def settings(self, batch_size: int, lr: float) -> TrainSettings:
        """How a trial with this batch size and lr trains."""
        c = self.config
        return TrainSettings(batch_size=batch_size, lr=lr, epochs=c.epochs, optimizer=c.optimizer,
                             momentum=c.momentum, warmup_epochs=c.warmup_epochs,
                             max_micro_batch=c.max_micro_batch, noise_scale=c.noise_scale,
                             seed=c.seed)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        batch_size, lr = suggest(trial, self.config)
        settings = self.settings(batch_size, lr)
        trial.set_user_attr(records.LR, lr)
        trial.set_user_attr(records.MICRO_BATCH, settings.micro_batch)
        trial.set_user_attr(records.TORCH_THREADS, torch.get_num_threads())
        trial.set_user_attr(records.CHANCE_LOSS, math.log(self.data.num_classes))
        trainer = self._new_trainer(settings)
        trial.set_user_attr(records.PEAK_MEMORY_MB, self._memory_mb(trainer.model, settings))
        owner = CheckpointOwner(self._study_uid(trial), retry_series(trial))
        single = len(self.config.objectives) == 1
        if self.artifact_store is not None:
            trainer = self._resume(trial, trainer, owner, settings, single)
        while trainer.epoch < settings.epochs:
            try:
                result = trainer.run_epoch()
            except Diverged as exc:
                trial.set_user_attr(records.PRUNED_REASON, f"diverged: {exc}")
                self._notify(trial, batch_size, lr, None, Kind.DIVERGED)
                self._clear_checkpoints(owner)
                raise optuna.TrialPruned(f"diverged: {exc}") from None
            self._record(trial, trainer)
            if self.artifact_store is not None:
                save_checkpoint(self.artifact_store, trial, owner, trainer.state_dict(),
                                result.epoch)
            if single:
                trial.report(result.val_loss, result.epoch)
            self._notify(trial, batch_size, lr, result, Kind.EPOCH)
            if single and trainer.epoch < settings.epochs and trial.should_prune():
                trial.set_user_attr(records.PRUNED_REASON,
                                    f"pruned by {self.config.pruner} after epoch {result.epoch}")
                self._clear_checkpoints(owner)
                raise optuna.TrialPruned(f"pruned after epoch {result.epoch}")
        self._clear_checkpoints(owner)
        final = trainer.history.epochs[-1]
        seconds = sum(e.seconds for e in trainer.history.epochs)
        values = {"loss": final.val_loss, "time": seconds}
        if single:
            return values[self.config.objectives[0]]
        return tuple(values[name] for name in self.config.objectives)  # type: ignore[return-value]

    def _new_trainer(self, settings: TrainSettings) -> StopFlagTrainer:
        torch.manual_seed(settings.seed)  # the same initialisation in every trial and process
        model = self.model_factory(self.data.input_shape, self.data.num_classes).to(self.device)
        return StopFlagTrainer(model, self.data, settings, stop=self.stop)

    def _study_uid(self, trial: optuna.Trial) -> str:
        if self._uid is None:  # one study per objective: read it once
            self._uid = records.study_uid(trial.study)
        return self._uid

    def _resume(self, trial: optuna.Trial, trainer: StopFlagTrainer, owner: CheckpointOwner,
                settings: TrainSettings, single: bool) -> StopFlagTrainer:
        """Continue from the series' checkpoint, or train from the start if it is unusable."""
        state = load_checkpoint(self.artifact_store, trial, owner)
        if state is None:
            return trainer
        try:
            trainer.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            # It loaded safely but is not this trainer's state (an older bsopt, another
            # model): say so once and start over on a fresh trainer, since the failed load
            # may have changed the model or optimizer half-way.
            logger.warning("bsopt: trial %d: checkpoint %s does not fit this trial (%s: %s); "
                           "training from the start", trial.number,
                           trial.user_attrs.get(records.CHECKPOINT, {}).get("artifact_id"),
                           type(exc).__name__, exc)
            return self._new_trainer(settings)
        trial.set_user_attr(records.RESUMED_FROM_EPOCH, trainer.epoch)
        self._record(trial, trainer)
        if single:
            _report_missing_epochs(trial, trainer)
        return trainer

    def _memory_mb(self, model: nn.Module, settings: TrainSettings) -> float:
        """Peak memory of a step: what one micro-batch needs (accumulation's point).

        On CUDA the allocator's peak is recorded after each epoch instead (``_record``).
        """
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return 0.0
        from bsopt.training.memory import estimate_memory_mb

        return round(estimate_memory_mb(model, self.data.input_shape, settings.micro_batch,
                                        settings.optimizer), 2)

    def _record(self, trial: optuna.Trial, trainer: Trainer) -> None:
        if self.device.type == "cuda":
            trial.set_user_attr(records.PEAK_MEMORY_MB,
                                torch.cuda.max_memory_allocated(self.device) / 2**20)
        curves = trainer.history.as_lists()
        for key in (records.TRAIN_LOSS, records.VAL_LOSS, records.VAL_ACCURACY, records.STEPS):
            trial.set_user_attr(key, curves[key])
        trial.set_user_attr(records.EPOCH_SECONDS, curves["seconds"])
        trial.set_user_attr(records.SAMPLES_PER_SECOND, curves["samples_per_second"])
        trial.set_user_attr(records.TRAIN_SECONDS, sum(curves["seconds"]))
        if trainer.settings.noise_scale:
            for key in (records.NOISE_SCALE, records.GRAD_SQ_NORM, records.GRAD_TRACE):
                trial.set_user_attr(key, curves[key])

    def _clear_checkpoints(self, owner: CheckpointOwner) -> None:
        if self.artifact_store is not None:
            remove_series_checkpoints(self.artifact_store, owner, self.config.epochs)

    def _notify(self, trial: optuna.Trial, batch_size: int, lr: float,
                result: EpochResult | None, kind: Kind) -> None:
        if self.progress is None:
            return
        self.progress(TrialProgress(
            kind, trial.number, batch_size, lr, epoch=result.epoch if result else None,
            epochs=self.config.epochs, val_loss=result.val_loss if result else None,
            val_accuracy=result.val_accuracy if result else None,
        ))
