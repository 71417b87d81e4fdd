"""A study's definition lives in the study: joins use it, contradicting joins are refused."""

from __future__ import annotations

import os
import signal
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from bsopt import records
from bsopt.cli import main
from bsopt.config import build_config
from bsopt.search.study import CREATING_ATTR, join_or_create
from bsopt.storage import make_storage
from tests.helpers import wait_for

DEFINITION = {"study_name": "shared", "sampler": "random", "pruner": "median", "n_trials": 2,
              "dataset": "digits", "model": "mlp", "epochs": 1, "batch_size": "32:64",
              "lr": "1e-3:1e-2", "seed": 7, "max_train_samples": 64}


def create(url: str) -> None:
    """Create the study as a first worker would, without running any trial."""
    config, explicit = build_config(None, {**DEFINITION, "storage": url})
    join_or_create(config, make_storage(url), explicit)


def snapshot(url: str) -> tuple[Any, ...]:
    study = optuna.load_study(study_name="shared", storage=url)
    return (study.user_attrs, study._storage.get_study_system_attrs(study._study_id),
            [(t.number, t.state, t.params, t.user_attrs, t.system_attrs) for t in study.trials])


def test_the_definition_is_stored_for_plain_optuna_users(storage_url: str) -> None:
    create(storage_url)
    study = optuna.load_study(study_name="shared", storage=storage_url)  # no bsopt involved
    definition = study.user_attrs[records.CONFIG_ATTR]
    assert {k: definition[k] for k in ("sampler", "pruner", "n_trials", "dataset", "model",
                                       "epochs", "seed", "max_train_samples")} == {
        "sampler": "random", "pruner": "median", "n_trials": 2, "dataset": "digits",
        "model": "mlp", "epochs": 1, "seed": 7, "max_train_samples": 64}
    assert (definition["batch_size_min"], definition["batch_size_max"]) == (32, 64)
    assert (definition["lr_min"], definition["lr_max"]) == (1e-3, 1e-2)
    assert [t.state for t in study.trials] == [TrialState.WAITING] * 2  # the whole budget
    assert study.metric_names == ["val_loss"]  # what optuna-dashboard labels the objective


def test_a_two_objective_study_names_both_metrics(sqlite_url: str) -> None:
    config, explicit = build_config(flags={"study_name": "two", "objectives": "loss,time",
                                           "n_trials": 1, "sampler": "random"})
    join_or_create(config, make_storage(sqlite_url), explicit)
    study = optuna.load_study(study_name="two", storage=sqlite_url)
    assert study.metric_names == ["val_loss", "seconds"]


@pytest.mark.slow
def test_a_join_with_only_storage_and_name_runs_the_stored_definition(
        storage_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    create(storage_url)
    assert main(["search", "--storage", storage_url, "--study-name", "shared"]) == 0
    assert "2 complete" in capsys.readouterr().out
    study = optuna.load_study(study_name="shared", storage=storage_url)
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert len(trial.user_attrs[records.VAL_LOSS]) == 1  # epochs = 1, as stored
        assert trial.params["batch_size"] in (32, 64)
        assert 1e-3 <= trial.params["lr"] <= 1e-2
    # Flags that agree with the definition are welcome; the budget is already spent.
    assert main(["search", "--storage", storage_url, "--study-name", "shared",
                 "--epochs", "1", "--model", "mlp"]) == 0
    assert len(optuna.load_study(study_name="shared", storage=storage_url).trials) == 2


def test_a_join_with_contradicting_flags_is_refused_and_changes_nothing(
        storage_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    create(storage_url)
    before = snapshot(storage_url)
    status = main(["search", "--storage", storage_url, "--study-name", "shared",
                   "--epochs", "3", "--sampler", "tpe", "--model", "mlp", "--lr", "1e-4:1"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bsopt: error:")
    for field in ("epochs", "sampler", "lr_min", "lr_max"):
        assert field in err
    assert "model" not in err  # it agrees with the stored definition
    assert snapshot(storage_url) == before


# --- creating a study is all or nothing ----------------------------------------------------

TINY = ["--study-name", "big", "--sampler", "random", "--dataset", "digits",
        "--max-train-samples", "64", "--epochs", "1", "--batch-size", "16:16"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_creation_stopped_half_way_leaves_no_study_and_blocks_no_name(
        sqlite_url: str, bsopt_process: Any, stop: signal.Signals) -> None:
    # Enqueueing 3000 trials takes seconds: stop it while the budget is half written (a
    # first chunk as large as the budget: by default a new study enqueues 128 at once).
    run = bsopt_process("search", "--storage", sqlite_url, *TINY, "--n-trials", "3000",
                        env={"BSOPT_ENQUEUE_CHUNK": "3000"})
    storage = make_storage(sqlite_url, heartbeat=False)

    def some_trials_enqueued() -> bool:
        try:
            study_id = storage.get_study_id_from_name("big")
        except KeyError:
            return False
        return len(storage.get_all_trials(study_id, deepcopy=False)) >= 50

    wait_for(some_trials_enqueued, "the budget to be half written")
    os.killpg(run.pid, stop)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, f"{out}\n{err}"
    assert "Traceback" not in err
    assert optuna.get_all_study_names(storage) == []  # all or nothing: nothing
    # The name is free: the same name works at once (no wait, no "no bsopt definition").
    assert main(["search", "--storage", sqlite_url, *TINY, "--n-trials", "2"]) == 0


def plant_half_made_study(url: str, counter: int | None) -> None:
    """What a creator killed with -9 while enqueueing leaves: marks, some WAITING trials."""
    study = optuna.create_study(storage=url, study_name="shared")
    if counter is not None:
        study.set_user_attr(CREATING_ATTR, counter)
        study.set_user_attr(records.UID_ATTR, "uid-of-the-dead-creator")
    for _ in range(5):
        study.enqueue_trial({}, skip_if_exists=False)


def test_a_study_whose_creator_died_is_created_afresh_by_the_same_command(
        storage_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("bsopt.search.study.CREATION_STALL_SECONDS", 0.5)
    plant_half_made_study(storage_url, counter=7)
    with caplog.at_level("WARNING", logger="bsopt.search.study"):
        create(storage_url)
    assert "half-made" in caplog.text
    study = optuna.load_study(study_name="shared", storage=storage_url)
    assert study.user_attrs[records.CONFIG_ATTR]["n_trials"] == 2
    assert study.user_attrs[records.UID_ATTR] != "uid-of-the-dead-creator"
    assert [t.state for t in study.trials] == [TrialState.WAITING] * 2  # its own budget only


def test_a_study_of_another_tool_is_refused_and_left_alone(
        storage_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    other = optuna.create_study(storage=storage_url, study_name="shared")
    other.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    before = snapshot(storage_url)
    assert main(["search", "--storage", storage_url, "--study-name", "shared"]) == 2
    assert "no bsopt definition" in capsys.readouterr().err
    assert snapshot(storage_url) == before


def test_a_one_point_grid_runs_its_point(sqlite_url: str) -> None:
    # Optuna's GridSampler failed here (KeyError 'grid_id') after storing the trial.
    assert main(["search", "--storage", sqlite_url, "--study-name", "one", "--sampler", "grid",
                 "--batch-size", "32:32", "--grid-lr-points", "1", "--lr", "1e-3:1e-3",
                 "--dataset", "digits", "--max-train-samples", "64", "--epochs", "1"]) == 0
    (trial,) = optuna.load_study(study_name="one", storage=sqlite_url).trials
    assert (trial.state, trial.params) == (TrialState.COMPLETE, {"batch_size": 32, "lr": 1e-3})
