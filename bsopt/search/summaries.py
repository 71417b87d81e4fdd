"""Read-only views of the studies in a storage: lists, best trials, an existing study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from bsopt import records
from bsopt.errors import UsageError
from bsopt.records import best_trials, state_counts
from bsopt.storage import open_existing, open_existing_storage, resolve_url
from bsopt.storage.checkpoints import make_artifact_store
from bsopt.storage.weights import load_weights

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
        entries = [records.trial_summary(t, self.objectives) for t in self.trials]
        key = "best_trials" if len(self.objectives) > 1 else "best_trial"
        return {"study_name": self.study_name, "objectives": list(self.objectives),
                key: entries if len(self.objectives) > 1 else (entries[0] if entries else None)}


def best_trial_summary(storage_url: str | None, name: str) -> BestTrials:
    """The best complete trial of study ``name``.

    Raises:
        UsageError: no such study, or no complete trial yet.
    """
    study = open_existing(storage_url, name)
    objectives = records.study_objectives(study)
    trials = best_trials(study, 0 if len(objectives) > 1 else 1)
    if not trials:
        raise UsageError(f"study {name!r} has no complete trial yet: run `bsopt search "
                         f"--study-name {name}` first")
    return BestTrials(name, objectives, trials)


def save_best_model(storage_url: str | None, name: str, path: str | Path, *,
                    artifact_dir: str | None = None) -> FrozenTrial:
    """Write the best trial's final weights (its ``state_dict``) to ``path``; that trial.

    The file loads with ``torch.load(path, weights_only=True)`` into the network the study's
    model factory builds.

    Raises:
        UsageError: no such study, no complete trial, or its weights were not kept.
    """
    best = best_trial_summary(storage_url, name).trials[0]
    store = make_artifact_store(resolve_url(storage_url), artifact_dir)
    data = load_weights(store, best)
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return best
