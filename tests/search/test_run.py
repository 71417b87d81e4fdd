"""Real studies on digits in SQLite files: training, pruning, budget, resume, records."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from torch import nn

from bsopt import records
from bsopt.config import build_config
from bsopt.records import study_config
from bsopt.search import search
from bsopt.search.worker import TooManyFailures
from tests.helpers import QUICK

# Three short epochs, so that pruners have rungs to judge at.
PRUNABLE = {"dataset": "digits", "max_train_samples": 256, "epochs": 3, "batch_size": "16:128"}


def run(tmp_path: Path, **flags):
    config, explicit = build_config(None, {"storage": f"sqlite:///{tmp_path}/s.db", **PRUNABLE,
                                           **flags})
    return search(config, explicit)


def load(tmp_path: Path, name: str = "digits-cnn") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/s.db")


@pytest.mark.slow
def test_a_study_trains_prunes_and_records_curves(tmp_path: Path) -> None:
    result = run(tmp_path, n_trials=10, sampler="random", pruner="median", lr="1e-4:1")
    study = load(tmp_path)
    trials = study.get_trials()
    assert len(trials) == 10
    assert result.counts.get("COMPLETE", 0) + result.counts.get("PRUNED", 0) == 10
    assert result.counts.get("PRUNED", 0) >= 1  # lr up to 1 with Adam: some runs are hopeless
    for t in trials:
        assert set(t.params) == {"batch_size", "lr"}
        epochs = len(t.user_attrs[records.VAL_LOSS])
        assert list(t.intermediate_values) == list(range(1, epochs + 1))
        assert t.intermediate_values[epochs] == pytest.approx(t.user_attrs[records.VAL_LOSS][-1])
        for key in (records.TRAIN_LOSS, records.VAL_ACCURACY, records.EPOCH_SECONDS,
                    records.SAMPLES_PER_SECOND, records.STEPS):
            assert len(t.user_attrs[key]) == epochs
        if t.state == TrialState.COMPLETE:
            assert epochs == 3 and t.value == pytest.approx(t.user_attrs[records.VAL_LOSS][-1])
        else:
            assert epochs < 3 and records.PRUNED_REASON in t.user_attrs
    best = result.best[0]
    assert best.value == min(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert best.value < 1.0  # the best of 10 trials learns the digits
    assert study_config(study)["n_trials"] == 10


@pytest.mark.slow
def test_a_second_run_adds_only_the_missing_trials(tmp_path: Path) -> None:
    # No pruner: lr 1 would be stopped at chance level, and this test counts completions.
    grid = {"n_trials": 4, "sampler": "grid", "grid_lr_points": 2, "pruner": "none"}
    first = run(tmp_path, **grid, timeout=0.001)
    assert first.budget_left >= 3  # the timeout stopped it after at most one trial
    second = run(tmp_path, **grid)
    assert second.budget_left == 0
    third = run(tmp_path, **grid)
    study = load(tmp_path)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(study.trials) == len(finished) == 4  # the third run added nothing
    assert third.counts == {"COMPLETE": 4}
    points = {(t.params["batch_size"], t.params["lr"]) for t in finished}
    assert len(points) == 4  # four different grid points, none twice


@pytest.mark.slow
def test_a_scaling_rule_samples_base_lr_and_records_the_effective_lr(tmp_path: Path) -> None:
    run(tmp_path, n_trials=3, sampler="random", lr_scaling="linear", reference_batch=32,
        lr="1e-3:1e-2", epochs=1, warmup_epochs=0.5)
    for t in load(tmp_path).trials:
        expected = t.params["base_lr"] * t.params["batch_size"] / 32
        assert t.user_attrs[records.LR] == pytest.approx(expected)
        assert records.effective_lr(t) == pytest.approx(expected)


@pytest.mark.slow
def test_two_objectives_make_a_pareto_study(tmp_path: Path) -> None:
    result = run(tmp_path, n_trials=3, sampler="random", objectives="loss,time", epochs=1)
    study = load(tmp_path)
    assert len(study.directions) == 2
    assert all(len(t.values) == 2 and t.values[1] > 0 for t in study.trials)
    assert 1 <= len(result.best) <= 3  # the Pareto front


@pytest.mark.slow
def test_accumulation_records_the_micro_batch_and_its_smaller_memory(tmp_path: Path) -> None:
    run(tmp_path, n_trials=4, sampler="grid", grid_lr_points=1, batch_size="16:128",
        max_micro_batch=32, epochs=1, lr="1e-3:1e-3")
    trials = {t.params["batch_size"]: t for t in load(tmp_path).trials}
    assert {b: t.user_attrs[records.MICRO_BATCH] for b, t in trials.items()} == {
        16: 16, 32: 32, 64: 32, 128: 32}
    memory = {b: t.user_attrs[records.PEAK_MEMORY_MB] for b, t in trials.items()}
    assert memory[16] < memory[32] == pytest.approx(memory[64]) == pytest.approx(memory[128])
    assert all(t.user_attrs[records.SAMPLES_PER_SECOND][0] > 0 for t in trials.values())


@pytest.mark.slow
def test_a_diverging_trial_is_pruned_with_its_reason(tmp_path: Path) -> None:
    run(tmp_path, n_trials=1, sampler="random", optimizer="sgd", lr="1e5:1e6", epochs=2)
    (trial,) = load(tmp_path).trials
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs[records.PRUNED_REASON].startswith("diverged")


class Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        raise RuntimeError("out of memory (pretend)")


def test_failing_trials_stop_the_run_and_do_not_use_the_budget(tmp_path: Path) -> None:
    config, explicit = build_config(None, {"storage": f"sqlite:///{tmp_path}/s.db", **PRUNABLE,
                                           "n_trials": 5})
    with pytest.raises(TooManyFailures, match="3 trials failed in a row.*out of memory"):
        search(config, explicit, model_factory=lambda shape, k: Broken())
    study = load(tmp_path)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 3
    assert states.count(TrialState.WAITING) == 5  # each failure was re-enqueued
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all("out of memory" in t.user_attrs[records.FAIL_REASON] for t in failed)


@pytest.mark.slow
def test_the_default_pruner_judges_each_trial_within_its_batch_size(tmp_path: Path) -> None:
    run(tmp_path, sampler="grid", grid_lr_points=4, batch_size="16:32", lr="1e-3:1")
    study = load(tmp_path)
    assert study_config(study)["pruner"] == "batch-asha"
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 8  # 2 batch sizes x 4 lrs
    # lr 1 with Adam leaves the CNN no better than guessing: stopped by the guard.
    assert all(t.state == TrialState.PRUNED for t in trials if t.params["lr"] == 1.0)
    assert any(t.state == TrialState.COMPLETE for t in trials)
    # Successive halving recorded each reported trial at its first rung (epoch 1).
    assert all("completed_rung_0" in t.system_attrs for t in trials if t.intermediate_values)


def test_the_data_line_comes_before_the_study_and_with_the_result(tmp_path: Path) -> None:
    config, explicit = build_config(None, {"storage": f"sqlite:///{tmp_path}/s.db", **QUICK,
                                           "n_trials": 1, "sampler": "random",
                                           "data_mode": "stream", "loader_workers": 0})
    lines = []

    def on_data(line: str) -> None:
        assert not (tmp_path / "s.db").exists()  # said before anything is stored
        lines.append(line)

    result = search(config, explicit, on_data=on_data)
    assert lines == [result.data]
    assert result.data.startswith("data: digits, 128 train / 26 val / 300 test examples "
                                  "(1x8x8, 10 classes) streamed to cpu by a DataLoader with "
                                  "0 loader workers (")
    assert result.data.endswith("; --data-mode stream)")
    assert result.counts == {"COMPLETE": 1}
