"""The device flags reach every worker: each trial records where and in what precision it ran."""

from __future__ import annotations

import optuna
import pytest

from bsopt import records
from bsopt.cli import main
from tests.helpers import QUICK_FLAGS


@pytest.mark.slow
def test_each_workers_device_and_the_precision_are_recorded_on_its_trials(
        sqlite_url: str) -> None:
    assert main(["search", *QUICK_FLAGS, "--storage", sqlite_url, "--study-name", "d",
                 "--sampler", "random", "--pruner", "none", "--n-trials", "4", "--workers", "2",
                 "--device", "cpu", "--precision", "bf16"]) == 0
    study = optuna.load_study(study_name="d", storage=sqlite_url)
    assert len(study.trials) == 4
    assert {t.user_attrs[records.DEVICE] for t in study.trials} == {"cpu"}
    assert {t.user_attrs[records.PRECISION] for t in study.trials} == {"bf16"}
    assert study.user_attrs[records.CONFIG_ATTR]["precision"] == "bf16"  # the definition
    # A join with another precision is another study: refused.
    assert main(["search", "--storage", sqlite_url, "--study-name", "d",
                 "--precision", "fp32"]) == 2
