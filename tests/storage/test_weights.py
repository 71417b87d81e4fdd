"""The final weights of the best K trials are kept as the study goes; the others' removed."""

from __future__ import annotations

import io

import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from bsopt import records
from bsopt.config import build_config
from bsopt.errors import UsageError
from bsopt.search import search
from bsopt.storage.weights import follow_best, load_weights, save_weights, sweep, weights_id
from tests.helpers import QUICK, stored_artifacts


def finish_trial(study: optuna.Study, store, value: float) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    save_weights(store, trial, "uid", {"w": torch.full((2,), value)})
    return study.tell(trial, value)


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_the_best_k_keep_their_weights_as_the_study_goes(tmp_path, keep: int) -> None:
    store = FileSystemArtifactStore(str(tmp_path))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    study.set_user_attr(records.UID_ATTR, "uid")
    for value in (0.5, 0.3, 0.9, 0.1, 0.4):
        follow_best(study, store, finish_trial(study, store, value), keep)
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("weights-"))
    best = sorted(study.trials, key=lambda t: t.value)[:keep]
    assert kept == sorted(weights_id("uid", t.number) for t in best)
    if keep:
        state = torch.load(io.BytesIO(load_weights(store, best[0])), weights_only=True)
        assert state["w"].tolist() == pytest.approx([0.1, 0.1])


def test_a_sweep_removes_what_two_workers_finishing_at_once_left(tmp_path) -> None:
    store = FileSystemArtifactStore(str(tmp_path))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    for value in (0.5, 0.3, 0.9):  # no follow_best: as if every update had been lost
        finish_trial(study, store, value)
    sweep(study, store, 1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("weights-")] == [
        weights_id("uid", 1)]
    with pytest.raises(UsageError, match="kept no weights|are gone"):
        load_weights(store, study.trials[0])


@pytest.mark.slow
def test_a_search_keeps_the_weights_of_its_best_trials_only(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    config, explicit = build_config(None, {**QUICK, "storage": url, "n_trials": 4,
                                           "keep_best": 2, "sampler": "random",
                                           "pruner": "none"})
    search(config, explicit)
    study = optuna.load_study(study_name=config.name, storage=url)
    best = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)[:2]
    assert [a for a in stored_artifacts(url) if a.startswith("weights-")] == sorted(
        weights_id(records.study_uid(study), t.number) for t in best)
