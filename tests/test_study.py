"""A study's definition lives in the study: joins use it, contradicting joins are refused."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from bsopt import records
from bsopt.cli import main
from bsopt.config import build_config
from bsopt.storage import make_storage
from bsopt.study import open_study

DEFINITION = {"study_name": "shared", "sampler": "random", "pruner": "median", "n_trials": 2,
              "dataset": "digits", "model": "mlp", "epochs": 1, "batch_size": "32:64",
              "lr": "1e-3:1e-2", "seed": 7, "max_train_samples": 64}


def create(url: str) -> None:
    """Create the study as a first worker would, without running any trial."""
    config, explicit = build_config(None, {**DEFINITION, "storage": url})
    open_study(config, make_storage(url), explicit)


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
