"""What every launched worker runs, and the study made sure of before any is launched."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from bsopt.cli import build_parser
from bsopt.config import build_config
from bsopt.errors import UsageError
from bsopt.launch.workers import RUN_FIELDS, plan_workers
from bsopt.records import CONFIG_ATTR
from tests.helpers import QUICK


def test_workers_join_by_name_with_this_runs_fields_and_the_storage_in_their_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BSOPT_GRACE_SECONDS", "7")
    # `--device cuda` is the workers' (their nodes have GPUs), not this machine's: the
    # study is still made, its training checked here on the CPU.
    config, explicit = build_config(None, {**QUICK, "study_name": "s", "n_trials": 2,
                                           "storage": "sqlite:///s.db", "device": "cuda",
                                           "data_dir": "data", "timeout": 600.0})
    spec = plan_workers(config, explicit, create=True)
    assert spec.storage == f"sqlite:///{tmp_path / 's.db'}"  # absolute: workers start elsewhere
    study = optuna.load_study(study_name="s", storage=spec.storage)
    assert study.user_attrs[CONFIG_ATTR]["epochs"] == 1 and len(study.trials) == 2
    assert spec.argv() == ["search", "--study-name", "s", "--timeout", "600.0", "--data-dir",
                           str(tmp_path / "data"), "--device", "cuda"]
    assert spec.environment()["BSOPT_STORAGE"] == spec.storage
    assert spec.environment()["BSOPT_GRACE_SECONDS"] == "7"  # the settings travel along
    assert spec.directory == str(tmp_path)


@pytest.mark.parametrize("name", RUN_FIELDS)
def test_every_run_field_is_a_search_flag_of_its_name(name: str) -> None:
    # The workers get this run's fields as flags named after them: each must exist (an
    # unknown flag is a UsageError). "1" is a value every one of them parses.
    args = build_parser().parse_args(["search", f"--{name.replace('_', '-')}", "1"])
    assert getattr(args, name) in ("1", 1, 1.0)


def test_a_study_that_cannot_train_is_refused_before_it_is_created(
        tmp_path: Path) -> None:
    config, explicit = build_config(None, {**QUICK, "dataset": "imagenet",
                                           "storage": f"sqlite:///{tmp_path}/s.db"})
    with pytest.raises(UsageError, match="unknown dataset"):
        plan_workers(config, explicit, create=True)
    assert list(tmp_path.iterdir()) == []  # no database made
