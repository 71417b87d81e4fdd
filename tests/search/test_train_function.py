"""``--train package.module:function``: the user's loop, run by real ``bsopt search`` processes.

The loops are real PyTorch training (``examples/train_function.py``, on the bundled digits)
or small functions the tests write into their working directory.
"""

from __future__ import annotations

import os
import signal
import textwrap
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bsopt import records
from bsopt.config import StudyConfig
from bsopt.search import join_or_create, run_worker
from bsopt.search.train_function import TrainFunctionObjective, check_plain
from bsopt.storage import make_storage
from bsopt.storage.checkpoints import make_artifact_store
from tests.helpers import (
    FAST_HEARTBEATS,
    REPO,
    SHARED_EPOCHS,
    Reader,
    StartBsopt,
    finish,
    wait_for,
)

EXAMPLE = ["--train", "examples.train_function:train", "--epochs", "2", "--batch-size", "64:128",
           "--lr", "1e-2:0.5", "--sampler", "random", "--pruner", "none"]

# A loop of five slow epochs that says where it resumed: killable in the middle.
SLOW_LOOP = """
import json, os, time
import torch

def train(run):
    state = run.load_state()
    start = state["epoch"] if state else 0
    with open(os.path.join(os.path.dirname(__file__), f"started-{run.trial_number}"), "w") as f:
        json.dump({"start": start, "weight": state["weight"].tolist() if state else None}, f)
    weight = state["weight"] if state else torch.zeros(3)
    for epoch in range(start + 1, run.epochs + 1):
        time.sleep(1.5)  # a kill after epoch 2 lands well before the end
        weight = weight + epoch
        run.report(epoch, 1.0 / epoch, train_loss=2.0 / epoch, examples=epoch * 100)
        run.save_state({"epoch": epoch, "weight": weight})
    run.save_weights({"weight": weight})
"""


@pytest.mark.slow
def test_the_example_loop_runs_each_trial_and_its_best_weights_are_kept(
        sqlite_url: str, bsopt_process: StartBsopt, tmp_path: Path) -> None:
    finish(bsopt_process("search", "--storage", sqlite_url, "--study-name", "mine",
                         "--n-trials", "3", *EXAMPLE, cwd=REPO))
    trials = Reader(sqlite_url, "mine").trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        assert t.params["batch_size"] in (64, 128)
        assert list(t.intermediate_values) == [1, 2]
        assert len(t.user_attrs[records.TRAIN_LOSS]) == 2 == len(t.user_attrs[records.STEPS])
        assert t.user_attrs[records.STEPS][-1] == -(-2 * 1400 // t.params["batch_size"])
        assert t.value == pytest.approx(t.user_attrs[records.VAL_LOSS][-1])
    best = min(trials, key=lambda t: t.value)
    weights = tmp_path / "best.pt"
    finish(bsopt_process("best", "--storage", sqlite_url, "--study-name", "mine",
                         "--save-model", str(weights)))
    import torch

    state = torch.load(weights, weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # the example's MLP
    kept = [t.number for t in trials if records.WEIGHTS in t.user_attrs]
    assert best.number in kept


@pytest.mark.slow
def test_a_killed_workers_trial_resumes_from_the_state_the_loop_saved(
        sqlite_url: str, bsopt_process: StartBsopt, tmp_path: Path) -> None:
    (tmp_path / "slowloop.py").write_text(SLOW_LOOP)
    command = ["search", "--storage", sqlite_url, "--study-name", "slow", "--n-trials", "1",
               "--train", "slowloop:train", "--epochs", "5", "--pruner", "none"]
    victim = bsopt_process(*command, env=FAST_HEARTBEATS)
    reader = Reader(sqlite_url, "slow")
    wait_for(lambda: (t := reader.running_with_checkpoint())
             and t.user_attrs[records.CHECKPOINT]["epoch"] >= 2, "two epochs saved")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate()
    finish(bsopt_process(*command[:5], env=FAST_HEARTBEATS))  # joined by name alone
    dead, retry = reader.trials()
    assert (dead.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    resumed = retry.user_attrs[records.RESUMED_FROM_EPOCH]
    assert resumed >= 2
    import json

    started = json.loads((tmp_path / f"started-{retry.number}").read_text())
    assert started["start"] == resumed  # load_state gave the loop what it saved
    assert started["weight"] == [sum(range(1, resumed + 1))] * 3
    assert list(retry.intermediate_values) == [1, 2, 3, 4, 5]  # the whole curve
    assert retry.user_attrs[records.VAL_LOSS] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_a_study_of_the_example_loop_on_postgresql(
        postgres_url: str, bsopt_process: StartBsopt) -> None:
    finish(bsopt_process("search", "--storage", postgres_url, "--study-name", "pg",
                         "--n-trials", "4", "--workers", "2", *EXAMPLE, *SHARED_EPOCHS,
                         cwd=REPO))
    trials = Reader(postgres_url, "pg").trials()
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 4}
    assert len({t.user_attrs[records.WORKER].split("@")[0] for t in trials}) == 2


def test_the_loop_is_pruned_by_run_report(tmp_path: Path, make_trial, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "badloop.py").write_text(textwrap.dedent("""
        def train(run):
            for epoch in range(1, run.epochs + 1):
                run.report(epoch, 5.0)  # far worse than every finished trial
            raise AssertionError("run.report should have pruned this trial")
    """))
    url = f"sqlite:///{tmp_path}/s.db"
    config = StudyConfig(study_name="p", storage=url, train="badloop:train", epochs=4,
                         pruner="median", sampler="random", n_trials=1)  # make_trial's space
    study, config = join_or_create(config, make_storage(url))
    for value in (0.5, 0.4, 0.3, 0.6, 0.55):
        study.add_trial(make_trial(16, 1e-3, [value + 0.2, value + 0.1, value, value]))
    objective = TrainFunctionObjective(config, "cpu", artifact_store=make_artifact_store(url))
    run_worker(study, objective)
    (trial,) = study.get_trials(states=(TrialState.PRUNED,))
    assert "pruned by median after epoch" in trial.user_attrs[records.PRUNED_REASON]
    assert list(trial.intermediate_values) == [1]  # stopped at its first report


def test_save_state_refuses_what_would_need_unpickling() -> None:
    check_plain({"epoch": 3, "losses": [0.1, 0.2], "name": "x"}, "save_state")
    with pytest.raises(ValueError, match="tensors and plain values"):
        check_plain({"model": optuna.create_study()}, "save_state")
