"""``--command``: real scripts in real processes, on real SQLite files (and PostgreSQL).

The script is ``tests/search/fake_script.py`` (no torch: a trial takes a fraction of a
second); ``tests/test_examples.py`` runs the examples, which train real networks.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from bsopt import records
from bsopt.config import StudyConfig, build_config
from bsopt.search import search
from bsopt.search.command import command_argv
from bsopt.search.worker import TooManyFailures
from bsopt.storage.checkpoints import make_artifact_store
from bsopt.storage.weights import load_weights
from tests.helpers import (
    FAST_HEARTBEATS,
    Reader,
    StartBsopt,
    finish,
    stored_artifacts,
    stored_checkpoints,
    wait_for,
)

SCRIPT = Path(__file__).with_name("fake_script.py")
SPACE = {"sampler": "random", "pruner": "none", "batch_size": "16:32", "lr": "1e-3:1e-2",
         "study_name": "cmd"}


def command(*flags: Any) -> str:
    """The fake script's command line, its placeholders unfilled."""
    return shlex.join([sys.executable, str(SCRIPT), "--bs", "{batch_size}", "--lr", "{lr}",
                       "--epochs", "{epochs}", *map(str, flags)])


def run(tmp_path: Path, script: str, **fields: Any):
    config, explicit = build_config(None, {"storage": f"sqlite:///{tmp_path}/s.db", **SPACE,
                                           "command": script, "epochs": 3, "n_trials": 2,
                                           **fields})
    return search(config, explicit)


def trials(tmp_path: Path) -> list[FrozenTrial]:
    return optuna.load_study(study_name="cmd", storage=f"sqlite:///{tmp_path}/s.db").trials


def logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaped has ended too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_placeholders_fill_each_word_and_values_never_split_one() -> None:
    config = StudyConfig(command="train --dir {checkpoint_dir} --lr={lr:.2g} {trial}{{x}}")
    values = {"batch_size": 16, "lr": 0.00123, "epochs": 3, "trial": 7, "seed": 0,
              "device": "cpu", "checkpoint_dir": "/a dir/with; $(touch x)"}
    assert command_argv(config, values) == [
        "train", "--dir", "/a dir/with; $(touch x)", "--lr=0.0012", "7{x}"]
    shell = config.replace(shell=True)
    assert command_argv(shell, values) == [
        "/bin/sh", "-c", "train --dir '/a dir/with; $(touch x)' --lr=0.0012 7{x}"]


def test_a_study_runs_the_script_once_per_trial_and_records_what_it_reports(
        tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    result = run(tmp_path, command("--log", log, "--garbage"), n_trials=3)
    assert result.counts == {"COMPLETE": 3}
    done = trials(tmp_path)
    runs = {entry["trial"]: entry for entry in logged(log)}
    assert sorted(runs) == [0, 1, 2]
    for trial in done:
        lr, seen = trial.user_attrs[records.LR], runs[trial.number]
        assert seen["argv"][:6] == ["--bs", str(trial.params["batch_size"]), "--lr", repr(lr),
                                    "--epochs", "3"]
        assert seen["env"]["BSOPT_TRIAL"] == str(trial.number)
        assert seen["env"]["BSOPT_BATCH_SIZE"] == str(trial.params["batch_size"])
        assert float(seen["env"]["BSOPT_LR"]) == lr
        assert json.loads(seen["env"]["BSOPT_PARAMS"]) == trial.params
        assert seen["resumed_from"] == 0 and seen["files"] == []
        # Every epoch once, in order, whatever junk came between the lines.
        expected = [lr + 1 / e for e in (1, 2, 3)]
        assert trial.user_attrs[records.VAL_LOSS] == pytest.approx(expected)
        assert list(trial.intermediate_values) == [1, 2, 3]
        assert trial.value == pytest.approx(expected[-1])
        assert trial.user_attrs[records.TRAIN_LOSS] == pytest.approx([2 * v for v in expected])
        assert trial.user_attrs[records.STEPS] == [
            -(-100 * e // trial.params["batch_size"]) for e in (1, 2, 3)]  # from "examples"
        assert len(trial.user_attrs[records.EPOCH_SECONDS]) == 3
        assert "phase" not in trial.user_attrs and "ok" not in trial.user_attrs
        assert trial.user_attrs[records.LR] == lr  # the script's own "lr" curve is not taken
    assert stored_checkpoints(f"sqlite:///{tmp_path}/s.db") == []
    assert not list((tmp_path / "s.db.artifacts").glob("command-*"))  # directories removed


def test_plain_json_lines_work_without_bsopt_report(tmp_path: Path) -> None:
    run(tmp_path, command("--plain"), n_trials=1)
    (trial,) = trials(tmp_path)
    assert trial.state == TrialState.COMPLETE and len(trial.user_attrs[records.VAL_LOSS]) == 3


def test_a_pruned_trial_s_processes_are_all_gone(tmp_path: Path) -> None:
    # The median pruner (4 trials to start with) stops trial 4, whose loss is 10x theirs,
    # after epoch 1. The script ignores SIGTERM and lingers, with a process of its own.
    pids = tmp_path / "pids"
    pids.mkdir()
    script = command("--pids", pids, "--loss", 10, "--loss-trials", 4, "--hang-after", 1,
                     "--ignore-term", "--grandchild")
    os.environ["BSOPT_COMMAND_GRACE_SECONDS"] = "1"
    try:
        result = run(tmp_path, script, n_trials=5, epochs=4, pruner="median")
    finally:
        del os.environ["BSOPT_COMMAND_GRACE_SECONDS"]
    assert result.counts == {"COMPLETE": 4, "PRUNED": 1}
    pruned = trials(tmp_path)[4]
    assert pruned.state == TrialState.PRUNED
    assert pruned.user_attrs[records.PRUNED_REASON] == "pruned by median after epoch 1"
    assert list(pruned.intermediate_values) == [1]
    for name in ("4.pid", "4.child.pid", "0.child.pid"):  # SIGKILLed, the group with it
        pid = int((pids / name).read_text())
        wait_for(lambda pid=pid: gone(pid), f"{name} to be gone")  # reaped by now or soon
    assert stored_checkpoints(f"sqlite:///{tmp_path}/s.db") == []


def test_a_crashing_script_fails_with_its_stderr_and_its_retry_resumes(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    run(tmp_path, command("--crash-unless", tmp_path / "crashed", "--log", log), n_trials=1,
        epochs=4)
    crashed, retry = trials(tmp_path)  # the budget of 1 holds: the failure used none
    assert (crashed.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    reason = crashed.user_attrs[records.FAIL_REASON]
    first, *rest = reason.splitlines()
    assert first == ("CommandFailed: the command exited with status 1: ZeroDivisionError: "
                     "division by zero")
    assert rest[:3] == ["the last lines of its stderr:", "  about to divide",
                        "  Traceback (most recent call last):"]
    # It crashed in epoch 2: the retry got the directory as it was after epoch 1.
    assert [entry["resumed_from"] for entry in logged(log)] == [0, 1]
    assert retry.user_attrs[records.RESUMED_FROM_EPOCH] == 1
    assert list(retry.intermediate_values) == [1, 2, 3, 4]
    assert retry.user_attrs[records.VAL_LOSS][0] == crashed.user_attrs[records.VAL_LOSS][0]


@pytest.mark.parametrize("flags, reason", [
    (["--no-reports"], "the command exited without reporting an epoch: print lines such as "
                       '{"epoch": 1, "val_loss": 0.5} (or call bsopt.report) after each epoch; '
                       "the last lines of its stdout:\n  epoch 1: loss"),
    (["--bad-report"], "the command broke the report contract: it printed '{\"epoch\": "
                       "\"one\", \"val_loss\": 1.0"),
    (["--bad-report"], "epoch must be a whole number from 1, got 'one'"),
    (["--skip-epoch", "2"], "epoch 3 reported after epoch 1"),
])
def test_a_script_that_breaks_the_contract_fails_and_says_how(
        tmp_path: Path, flags: list[str], reason: str) -> None:
    with pytest.raises(TooManyFailures):
        run(tmp_path, command(*flags), n_trials=1)
    failed = trials(tmp_path)
    assert [t.state for t in failed] == [TrialState.FAIL] * 3 + [TrialState.WAITING]
    for trial in failed[:3]:
        assert reason in trial.user_attrs[records.FAIL_REASON]
        assert not trial.user_attrs.get(records.CHECKPOINT)  # so each retry starts over


def test_a_script_killed_by_a_signal_fails_saying_which(tmp_path: Path) -> None:
    with pytest.raises(TooManyFailures, match="killed by SIGKILL"):
        run(tmp_path, command("--kill-self"), n_trials=1)
    reason = trials(tmp_path)[0].user_attrs[records.FAIL_REASON]
    assert reason.splitlines()[0] == ("CommandFailed: the command was killed by SIGKILL: "
                                      "about to die")


def test_a_two_objective_study_gets_the_loss_and_the_seconds(tmp_path: Path) -> None:
    run(tmp_path, command(), n_trials=1, objectives="loss,time")
    (trial,) = trials(tmp_path)
    assert trial.values[0] == pytest.approx(trial.user_attrs[records.VAL_LOSS][-1])
    assert trial.values[1] == pytest.approx(sum(trial.user_attrs[records.EPOCH_SECONDS]))
    assert trial.values[1] > 0


def test_the_weights_a_script_leaves_are_kept_for_the_best_trial(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({"layer.weight": torch.arange(6.0).reshape(2, 3)}, weights)
    run(tmp_path, command("--weights-from", weights), n_trials=3)
    best = min(trials(tmp_path), key=lambda t: t.value)
    store = make_artifact_store(f"sqlite:///{tmp_path}/s.db")
    loaded = torch.load(io.BytesIO(load_weights(store, best)), weights_only=True)
    assert torch.equal(loaded["layer.weight"], torch.arange(6.0).reshape(2, 3))
    kept = [a for a in stored_artifacts(f"sqlite:///{tmp_path}/s.db") if a.startswith("weights")]
    assert kept == [best.user_attrs[records.WEIGHTS]]  # --keep-best 1: the others removed


def test_weights_that_would_run_code_when_loaded_are_not_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unsafe = tmp_path / "w.pt"
    torch.save({"layer": torch.nn.Linear(2, 2)}, unsafe)  # a module: pickled code, not tensors
    run(tmp_path, command("--weights-from", unsafe), n_trials=1)
    (trial,) = trials(tmp_path)
    assert trial.state == TrialState.COMPLETE and records.WEIGHTS not in trial.user_attrs
    assert "weights.pt is not kept: it does not load with torch.load(weights_only=True)" in (
        caplog.text)


def test_a_shell_command_expands_variables_and_gets_each_value_quoted(tmp_path: Path) -> None:
    artifacts = tmp_path / "a dir; with $(spaces)"
    out = tmp_path / "out.txt"
    # Placeholders are not quoted in the command: bsopt quotes each value for the shell.
    script = (f"echo $BSOPT_TRIAL {{checkpoint_dir}} > {shlex.quote(str(out))} && "
              f"{command()} 2>&1 | cat")
    run(tmp_path, script, n_trials=1, shell=True, artifact_dir=str(artifacts))
    (trial,) = trials(tmp_path)
    assert trial.state == TrialState.COMPLETE
    trial_number, path = out.read_text().strip().split(" ", 1)
    assert trial_number == "0" and Path(path).parent == artifacts.absolute()
    assert Path(path).name.startswith("command-") and Path(path).name.endswith("-0")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_no_process_and_its_retry_resumes(
        tmp_path: Path, bsopt_process: StartBsopt) -> None:
    url, log, pids = f"sqlite:///{tmp_path}/s.db", tmp_path / "log.jsonl", tmp_path / "pids"
    pids.mkdir()
    script = command("--log", log, "--pids", pids, "--grandchild", "--sleep", "0.5")
    flags = ["search", "--storage", url, "--study-name", "cmd", "--n-trials", "1",
             "--epochs", "8", "--sampler", "random", "--pruner", "none", "--command", script]
    victim = bsopt_process(*flags, env=FAST_HEARTBEATS)
    reader = Reader(url, "cmd")
    wait_for(lambda: (t := reader.running_with_checkpoint()) and
             t.user_attrs[records.CHECKPOINT]["epoch"] >= 2, "a trial past its second epoch")
    os.killpg(victim.pid, signal.SIGKILL)  # the worker only: the script is in its own session
    victim.communicate()
    for name in ("0.pid", "0.child.pid"):
        wait_for(lambda: gone(int((pids / name).read_text())), f"process {name} to end")
    (killed,) = reader.trials()
    epoch = killed.user_attrs[records.CHECKPOINT]["epoch"]
    assert killed.state == TrialState.RUNNING and 2 <= epoch < 8

    finish(bsopt_process("search", "--storage", url, "--study-name", "cmd",
                         env=FAST_HEARTBEATS))
    dead, retry = reader.trials()
    assert (dead.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    first, second = logged(log)
    assert (first["resumed_from"], second["resumed_from"]) == (0, epoch)
    assert second["files"] == ["state.json"]  # its own checkpoint, as it wrote it
    assert retry.user_attrs[records.RESUMED_FROM_EPOCH] == epoch
    assert list(retry.intermediate_values) == list(range(1, 9))  # the whole curve
    assert (retry.user_attrs[records.EPOCH_SECONDS][:epoch]
            == dead.user_attrs[records.EPOCH_SECONDS][:epoch])  # the dead run's own epochs
    assert stored_checkpoints(url) == []


@pytest.mark.slow
def test_sigterm_stops_the_script_and_the_resumed_study_finishes(
        tmp_path: Path, bsopt_process: StartBsopt) -> None:
    url, pids = f"sqlite:///{tmp_path}/s.db", tmp_path / "pids"
    pids.mkdir()
    flags = ["search", "--storage", url, "--study-name", "cmd", "--n-trials", "2",
             "--epochs", "12", "--sampler", "random", "--pruner", "none",
             "--command", command("--pids", pids, "--sleep", "0.3")]
    run_ = bsopt_process(*flags)
    reader = Reader(url, "cmd")
    wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    os.kill(run_.pid, signal.SIGTERM)
    out, err = finish(run_, 130)
    assert "interrupted: " in out and "Traceback" not in err
    stopped = [t for t in reader.trials() if t.state == TrialState.FAIL]
    assert len(stopped) == 1
    assert stopped[0].user_attrs[records.FAIL_REASON].startswith("interrupted after epoch")
    script = int((pids / f"{stopped[0].number}.pid").read_text())
    wait_for(lambda: gone(script), "the stopped script to be gone")
    finish(bsopt_process("search", "--storage", url, "--study-name", "cmd"))
    states = Counter(t.state for t in reader.trials())
    assert states == {TrialState.COMPLETE: 2, TrialState.FAIL: 1}


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_a_command_study_on_postgresql(
        postgres_url: str, bsopt_process: StartBsopt) -> None:
    out, _ = finish(bsopt_process("search", "--storage", postgres_url, "--study-name", "cmd",
                                  "--n-trials", "6", "--epochs", "3", "--workers", "2",
                                  "--sampler", "random", "--command", command()))
    done = Reader(postgres_url, "cmd").trials()
    states = Counter(t.state for t in done)  # the default pruner may stop some
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == len(done) == 6
    for trial in done:
        epochs = 3 if trial.state == TrialState.COMPLETE else len(trial.intermediate_values)
        assert list(trial.intermediate_values) == list(range(1, epochs + 1))
    assert stored_checkpoints(postgres_url) == []  # in the database, all removed
