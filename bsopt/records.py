"""What bsopt stores on each trial, and the one way to read it back.

Every trial of a bsopt study has the parameters ``batch_size`` and ``lr`` (or ``base_lr``
when the search space follows a scaling rule; the effective ``lr`` is then a user attribute),
reports the validation loss with the epoch (1, 2, ...) as step, and stores its learning
curves as user attributes: lists with one entry per finished epoch. Plots, analysis and
export read trials through :func:`trial_records` so they all agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bsopt.internals import study_id

# Study user attributes: the study definition (``StudyConfig.definition()``), written last
# when a study is created, and the study's unique id (checkpoints are keyed by it).
CONFIG_ATTR = "bsopt_config"
UID_ATTR = "bsopt_uid"
# Scores on the test split by `bsopt evaluate`: {"<trial number>": {"test_loss": ..., ...}}. On
# the study, since Optuna lets no one change a finished trial.
TEST_SCORES_ATTR = "bsopt_test_scores"
# Trial system attribute: the budget slot (0..n_trials-1) a trial fills; its retries keep it.
SLOT_ATTR = "bsopt:slot"
TEST_LOSS, TEST_ACCURACY, TEST_EXAMPLES = "test_loss", "test_accuracy", "test_examples"

# Trial user attributes: per-epoch lists ...
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
EPOCH_SECONDS = "epoch_seconds"
SAMPLES_PER_SECOND = "samples_per_second"
STEPS = "steps"  # optimizer steps taken by the end of each epoch (cumulative)
NOISE_SCALE = "noise_scale"  # B_simple estimate per epoch (only with --noise-scale)
GRAD_SQ_NORM = "grad_sq_norm"  # |G|^2 estimate per epoch (only with --noise-scale)
GRAD_TRACE = "grad_trace"  # tr(Sigma) estimate per epoch (only with --noise-scale)
CURVES = (TRAIN_LOSS, VAL_LOSS, VAL_ACCURACY, EPOCH_SECONDS, SAMPLES_PER_SECOND, STEPS,
          NOISE_SCALE, GRAD_SQ_NORM, GRAD_TRACE)
# ... and scalars.
LR = "lr"  # the effective learning rate the trial trained with
MICRO_BATCH = "micro_batch"  # micro-batch size (== batch_size unless accumulating)
TRAIN_SECONDS = "train_seconds"  # total training seconds (second objective with time)
PEAK_MEMORY_MB = "peak_memory_mb"  # of one step (one micro-batch when accumulating)
PRUNED_REASON = "pruned_reason"
FAIL_REASON = "fail_reason"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
WORKER = "worker"
DEVICE = "device"  # where the trial trained: cpu, cuda:0, ...
PRECISION = "precision"  # fp32, bf16 or fp16
SERIES = "series"  # number of the first trial of a retry series (retries inherit it)
CHECKPOINT = "checkpoint"  # {"artifact_id": str, "epoch": int} of the latest checkpoint
WEIGHTS = "weights"  # artifact id of a complete trial's final weights (the best K are kept)
TORCH_THREADS = "torch_threads"  # a resume is bit-exact only at the same thread count
CHANCE_LOSS = "chance_loss"  # the loss of guessing on the trial's data: ln(classes)
# The trial's own attributes, one value each: never a metric's name (a script's "lr" curve
# must not overwrite the effective learning rate).
SCALARS = (LR, MICRO_BATCH, TRAIN_SECONDS, PEAK_MEMORY_MB, PRUNED_REASON, FAIL_REASON,
           RESUMED_FROM_EPOCH, WORKER, DEVICE, PRECISION, SERIES, CHECKPOINT, WEIGHTS,
           TORCH_THREADS, CHANCE_LOSS)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as bsopt sees it: parameters, outcome and per-epoch curves."""

    number: int
    state: str
    batch_size: int
    lr: float
    value: float | None  # final validation loss (first objective), None if unfinished
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    noise_scale: list[float] = field(default_factory=list)
    train_seconds: float | None = None
    pruned_reason: str | None = None

    @property
    def epochs(self) -> int:
        """Epochs the trial finished."""
        return len(self.val_loss)

    @property
    def final_accuracy(self) -> float | None:
        """The last epoch's validation accuracy (None if not finite or not recorded)."""
        return finite_or_none(self.val_accuracy[-1] if self.val_accuracy else None)

    @property
    def final_loss(self) -> float | None:
        """The final validation loss: the curve's last epoch, else the objective value.

        None when the trial has neither, or when its last epoch's loss is not finite: a
        trial that ended diverged has no final loss to rank it by.
        """
        return finite_or_none(self.val_loss[-1] if self.val_loss else self.value)

    @property
    def total_seconds(self) -> float | None:
        """Seconds the trial trained: the recorded total, else the sum of its epoch times."""
        if self.train_seconds is not None:
            return float(self.train_seconds)
        times = [s for s in self.epoch_seconds if math.isfinite(s)]
        return sum(times) if times else None


def finite_or_none(value: float | None) -> float | None:
    """``value`` if it is a finite number, else None."""
    return value if value is not None and math.isfinite(value) else None


def json_ready(value: Any) -> Any:
    """``value`` as standard JSON values: NaN and infinities become None, dataclasses dicts.

    A dataclass's ``_derived`` class attribute names properties to include as well.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out.update({name: json_ready(getattr(value, name))
                    for name in getattr(value, "_derived", ())})
        return out
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def study_uid(study: optuna.Study) -> str:
    """The study's unique id: ``bsopt_uid``, or ``study<id>`` for a study made before uids."""
    return study.user_attrs.get(UID_ATTR) or f"study{study_id(study)}"


def effective_lr(trial: FrozenTrial) -> float | None:
    """The learning rate the trial trained with (``lr`` attribute, else the ``lr`` param)."""
    value = trial.user_attrs.get(LR, trial.params.get(LR))
    return float(value) if value is not None else None


def _floats(values: Sequence[float] | None) -> list[float]:
    return [float(v) if v is not None else math.nan for v in (values or [])]


def trial_record(trial: FrozenTrial) -> TrialRecord | None:
    """The record of one trial, or None if it has no batch size or learning rate yet."""
    lr = effective_lr(trial)
    if "batch_size" not in trial.params or lr is None:
        return None
    attrs = trial.user_attrs
    value = trial.values[0] if trial.values else None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        batch_size=int(trial.params["batch_size"]),
        lr=lr,
        value=value,
        train_loss=_floats(attrs.get(TRAIN_LOSS)),
        val_loss=_floats(attrs.get(VAL_LOSS)),
        val_accuracy=_floats(attrs.get(VAL_ACCURACY)),
        epoch_seconds=_floats(attrs.get(EPOCH_SECONDS)),
        samples_per_second=_floats(attrs.get(SAMPLES_PER_SECOND)),
        steps=[int(s) for s in attrs.get(STEPS, [])],
        noise_scale=_floats(attrs.get(NOISE_SCALE)),
        train_seconds=attrs.get(TRAIN_SECONDS),
        pruned_reason=attrs.get(PRUNED_REASON),
    )


def trial_records(
    trials: Iterable[FrozenTrial],
    states: tuple[TrialState, ...] = (TrialState.COMPLETE, TrialState.PRUNED),
) -> list[TrialRecord]:
    """Records of the trials in ``states`` that have a batch size and learning rate."""
    records = (trial_record(t) for t in trials if t.state in states)
    return [r for r in records if r is not None]


def study_records(study: optuna.Study) -> list[TrialRecord]:
    """Records of a study's complete and pruned trials."""
    return trial_records(study.get_trials(deepcopy=False))


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def best_trials(study: optuna.Study, n: int = 5) -> list[FrozenTrial]:
    """The ``n`` complete trials with the lowest first objective (the Pareto front if several)."""
    if len(study.directions) > 1:
        return list(study.best_trials)[:n] if n else list(study.best_trials)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: t.values[0])[:n]


def study_config(study: optuna.Study) -> dict[str, Any] | None:
    """The definition stored in a study (what ``optuna.load_study`` users read too)."""
    return study.user_attrs.get(CONFIG_ATTR)


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """What the study minimizes (``loss``, ``time``), from its definition."""
    return tuple((study_config(study) or {}).get("objectives", ["loss"]))


def test_scores(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """The test-split scores ``bsopt evaluate`` stored, by trial number."""
    stored = study.user_attrs.get(TEST_SCORES_ATTR) or {}
    return {int(number): scores for number, scores in stored.items()}


def trial_summary(trial: FrozenTrial, objectives: Sequence[str],
                  scores: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """What bsopt shows of a best trial, wherever it shows it (table, JSON, report).

    ``values`` is keyed by objective (``loss``, ``time``); :data:`bsopt.config.OBJECTIVES`
    names the metric each one is. ``scores`` (:func:`test_scores`) adds the trial's
    ``test_loss`` and ``test_accuracy`` (None until ``bsopt evaluate`` scored it).
    """
    record = trial_record(trial)
    score = (scores or {}).get(trial.number, {})
    return {
        "number": trial.number, "batch_size": trial.params.get("batch_size"),
        "lr": effective_lr(trial), "params": dict(trial.params),
        "values": dict(zip(objectives, trial.values or [])),
        "val_accuracy": record.final_accuracy if record else None,
        "epochs": record.epochs if record else 0,
        "train_seconds": record.total_seconds if record else None,
        TEST_LOSS: score.get(TEST_LOSS), TEST_ACCURACY: score.get(TEST_ACCURACY),
    }
