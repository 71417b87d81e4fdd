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
from typing import Any

import optuna
import torch
from torch import nn

from bsopt import records
from bsopt.config import StudyConfig
from bsopt.errors import UsageError
from bsopt.search.progress import ProgressCallback
from bsopt.search.reporting import TrialReporter
from bsopt.search.space import adam_scale, suggest
from bsopt.search.worker import Interrupted
from bsopt.storage.checkpoints import (
    CheckpointOwner,
    load_checkpoint,
    remove_series_checkpoints,
    save_checkpoint,
)
from bsopt.storage.heartbeats import retry_series
from bsopt.storage.weights import save_weights
from bsopt.training import models as training_models
from bsopt.training.data import TrialData
from bsopt.training.trainer import (
    Diverged,
    EpochResult,
    Trainer,
    TrainSettings,
    make_optimizer,
)

ModelFactory = training_models.ModelFactory
logger = logging.getLogger("bsopt.search.objective")


class StopFlagTrainer(Trainer):
    """A trainer that stops between optimizer steps once ``stop`` is set."""

    def __init__(self, *args: Any, stop: threading.Event | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop = stop

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if self._stop is not None and self._stop.is_set():
            raise Interrupted(f"interrupted during epoch {self.epoch + 1}")
        return super()._step(x, y)


def check_trainable(config: StudyConfig, data: TrialData,
                    model_factory: ModelFactory | None = None) -> None:
    """Build the network and optimizer a trial would, so that bad names fail before a study.

    Raises:
        UsageError: an unknown model or optimizer, a factory that raises or does not return
            a ``torch.nn.Module``.
    """
    factory = model_factory or training_models.model_factory(config.model, config.model_args)
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
        self.model_factory = model_factory or training_models.model_factory(config.model,
                                                                           config.model_args)
        self.stop = stop
        self.progress = progress
        self._uid: str | None = None

    def settings(self, batch_size: int, lr: float) -> TrainSettings:
        """How a trial with this batch size and lr trains."""
        c = self.config
        return TrainSettings(batch_size=batch_size, lr=lr, epochs=c.epochs, optimizer=c.optimizer,
                             momentum=c.momentum, warmup_epochs=c.warmup_epochs,
                             max_micro_batch=c.max_micro_batch, noise_scale=c.noise_scale,
                             seed=c.seed, adam_scale=adam_scale(c, batch_size),
                             precision=c.precision)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        batch_size, lr = suggest(trial, self.config)
        settings = self.settings(batch_size, lr)
        trial.set_user_attr(records.LR, lr)
        trial.set_user_attr(records.MICRO_BATCH, settings.micro_batch)
        for key, value in settings.optimizer_options.items():  # sqrt-adam's betas and eps
            trial.set_user_attr(f"adam_{key}", list(value) if isinstance(value, tuple) else value)
        trial.set_user_attr(records.TORCH_THREADS, torch.get_num_threads())
        trial.set_user_attr(records.CHANCE_LOSS, math.log(self.data.num_classes))
        trainer = self._new_trainer(settings)
        trial.set_user_attr(records.PEAK_MEMORY_MB, self._memory_mb(trainer.model, settings))
        owner = CheckpointOwner(self._study_uid(trial), retry_series(trial))
        single = len(self.config.objectives) == 1
        reporter = TrialReporter(trial, epochs=settings.epochs, batch_size=batch_size, lr=lr,
                                 pruner_name=self.config.pruner, prune=single,
                                 progress=self.progress)
        if self.artifact_store is not None:
            trainer = self._resume(trial, trainer, owner, settings, reporter)
        try:
            while trainer.epoch < settings.epochs:
                try:
                    result = trainer.run_epoch()
                except Diverged as exc:
                    raise reporter.diverged(str(exc)) from None
                if self.artifact_store is not None:  # before reporting: see replay()
                    save_checkpoint(self.artifact_store, trial, owner, trainer.state_dict(),
                                    result.epoch)
                self._record_memory(trial)
                reporter.report(result.epoch, result.val_loss, **_metrics(result))
        except optuna.TrialPruned:
            self._clear_checkpoints(owner)
            raise
        self._clear_checkpoints(owner)
        if self.artifact_store is not None and self.config.keep_best > 0:
            save_weights(self.artifact_store, trial, owner.study, trainer.model.state_dict())
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
                settings: TrainSettings, reporter: TrialReporter) -> StopFlagTrainer:
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
        reporter.replay(_curves(trainer.history.epochs))
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

    def _record_memory(self, trial: optuna.Trial) -> None:
        if self.device.type == "cuda":
            trial.set_user_attr(records.PEAK_MEMORY_MB,
                                torch.cuda.max_memory_allocated(self.device) / 2**20)

    def _clear_checkpoints(self, owner: CheckpointOwner) -> None:
        if self.artifact_store is not None:
            remove_series_checkpoints(self.artifact_store, owner, self.config.epochs)


def _metrics(result: EpochResult) -> dict[str, Any]:
    """An epoch of bsopt's trainer as the metrics it reports (bsopt.records names)."""
    metrics: dict[str, Any] = {
        records.TRAIN_LOSS: result.train_loss, records.VAL_ACCURACY: result.val_accuracy,
        records.EPOCH_SECONDS: result.seconds,
        records.SAMPLES_PER_SECOND: result.samples_per_second, records.STEPS: result.steps,
    }
    if result.noise_scale is not None or result.grad_trace is not None:
        metrics.update({records.NOISE_SCALE: result.noise_scale,
                        records.GRAD_SQ_NORM: result.grad_sq_norm,
                        records.GRAD_TRACE: result.grad_trace})
    return metrics


def _curves(epochs: list[EpochResult]) -> dict[str, list[Any]]:
    """The curves of a checkpointed history, as :func:`_metrics` reported each epoch."""
    curves: dict[str, list[Any]] = {records.VAL_LOSS: [e.val_loss for e in epochs]}
    for epoch in epochs:
        for name, value in _metrics(epoch).items():
            curves.setdefault(name, []).append(value)
    return curves
