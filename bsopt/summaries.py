"""Read-only views of the studies in a storage: lists, best trials, an existing study."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from bsopt import records
from bsopt.errors import UsageError
from bsopt.storage import make_storage
from bsopt.study import best_trials, state_counts

COUNT_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass(frozen=True)
class StudyListing:
    """One line of ``bsopt studies``."""

    name: str
    sampler: str | None
    dataset: str | None
    model: str | None
    budget: int | None
    counts: dict[str, int]
    best_value: float | None

    def counts_row(self) -> list[int]:
        return [self.counts.get(state, 0) for state in COUNT_STATES]


def open_existing_storage(storage_url: str | None) -> optuna.storages.BaseStorage:
    """The storage at ``storage_url``, opened without writing anything to it.

    Reading commands must not leave an empty database behind a mistyped path, nor
    Optuna's tables in a file that holds something else.

    Raises:
        UsageError: no database there, or one without Optuna's tables.
    """
    return make_storage(storage_url, heartbeat=False, create=False)


def open_existing(storage_url: str | None, name: str) -> optuna.Study:
    """Load study ``name`` without changing it (no sampler state, no heartbeat)."""
    storage = open_existing_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise UsageError(f"no study named {name!r} in this storage (studies: {names})") from None


def list_studies(storage_url: str | None) -> list[StudyListing]:
    """Every study in the storage with its definition summary and counts by state."""
    storage = open_existing_storage(storage_url)
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        definition: dict[str, Any] = summary.user_attrs.get(records.CONFIG_ATTR) or {}
        best = best_trials(study, 1)
        out.append(StudyListing(
            name=summary.study_name, sampler=definition.get("sampler"),
            dataset=definition.get("dataset"), model=definition.get("model"),
            budget=definition.get("n_trials"), counts=state_counts(study),
            best_value=best[0].values[0] if best else None,
        ))
    return out


@dataclass(frozen=True)
class BestTrials:
    """The best trial(s) of a study (the Pareto front when there are two objectives)."""

    study_name: str
    objectives: tuple[str, ...]
    trials: list[optuna.trial.FrozenTrial]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: one entry per trial with batch size, lr, values and final metrics."""
        entries = []
        for t in self.trials:
            entries.append({
                "number": t.number, "batch_size": t.params.get("batch_size"),
                "lr": records.effective_lr(t), "params": t.params,
                "values": dict(zip(self.objectives, t.values)),
                "val_accuracy": (t.user_attrs.get(records.VAL_ACCURACY) or [None])[-1],
                "epochs": len(t.user_attrs.get(records.VAL_LOSS, [])),
                "train_seconds": t.user_attrs.get(records.TRAIN_SECONDS),
            })
        key = "best_trials" if len(self.objectives) > 1 else "best_trial"
        return {"study_name": self.study_name, "objectives": list(self.objectives),
                key: entries if len(self.objectives) > 1 else (entries[0] if entries else None)}


def best_trial_summary(storage_url: str | None, name: str) -> BestTrials:
    """The best complete trial of study ``name``.

    Raises:
        UsageError: no such study, or no complete trial yet.
    """
    study = open_existing(storage_url, name)
    definition = study.user_attrs.get(records.CONFIG_ATTR) or {}
    objectives = tuple(definition.get("objectives", ["loss"]))
    trials = best_trials(study, 0 if len(objectives) > 1 else 1)
    if not trials:
        raise UsageError(f"study {name!r} has no complete trial yet: run `bsopt search "
                         f"--study-name {name}` first")
    return BestTrials(name, objectives, trials)
