"""Faults with real processes: kill -9, SIGTERM and Ctrl-C, a PostgreSQL restart, a cut-off
worker, and checkpoints that must not run code when loaded."""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from bsopt import records
from bsopt.config import build_config
from bsopt.search.objective import Objective
from bsopt.search.worker import retry_failed_trial, run_worker
from bsopt.storage import make_storage
from bsopt.storage.artifacts import DatabaseArtifactStore
from bsopt.storage.checkpoints import (
    CheckpointOwner,
    load_checkpoint,
    make_artifact_store,
    save_checkpoint,
)
from bsopt.training.data import load_dataset
from bsopt.training.models import build_model
from bsopt.training.trainer import Trainer
from tests.helpers import (
    EPOCHS,
    FAST_HEARTBEATS,
    LONG_TRIALS,
    SHARED_EPOCHS,
    TRAIN_SAMPLES,
    Reader,
    StartBsopt,
    finish,
    stored_checkpoints,
    wait_for,
)


def replay(state: dict[str, Any]) -> list[float]:
    """The validation losses of a trial continued here from checkpoint ``state``."""
    config, _ = build_config(None, {"dataset": "digits", "max_train_samples": TRAIN_SAMPLES,
                                    "epochs": EPOCHS, "device": "cpu"})
    data = load_dataset("digits", max_train_samples=TRAIN_SAMPLES)
    trainer = Trainer(build_model("cnn", data.input_shape, data.num_classes), data,
                      Objective(config, data, torch.device("cpu")).settings(16, 1e-3))
    trainer.load_state_dict(state)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker (tests/conftest.py): the same arithmetic
    try:
        while trainer.epoch < EPOCHS:
            trainer.run_epoch()
    finally:
        torch.set_num_threads(threads)
    return [e.val_loss for e in trainer.history.epochs]


@pytest.mark.slow
@pytest.mark.parametrize("kind", [pytest.param("postgresql", marks=pytest.mark.postgres),
                                  "journal"])
def test_a_killed_workers_trial_is_retried_and_resumes_from_its_checkpoint(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path,
        bsopt_process: StartBsopt) -> None:
    # Checkpoints of a PostgreSQL study are in the database, those of a journal beside its
    # file on the shared filesystem: the retry could run on any machine. The journal has no
    # Optuna heartbeats: bsopt's beat in a trial attribute makes the dead trial stale.
    storage_url = (request.getfixturevalue("postgres_url") if kind == "postgresql"
                   else f"journal://{tmp_path}/study.log")
    victim = bsopt_process("search", "--storage", storage_url, "--study-name", "kill",
                           "--n-trials", "1", *LONG_TRIALS, env=FAST_HEARTBEATS)
    reader = Reader(storage_url, "kill")
    wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    os.killpg(victim.pid, signal.SIGKILL)  # kill -9: no handler, no cleanup, no last words
    victim.communicate()
    (killed,) = reader.trials()
    assert killed.state == TrialState.RUNNING  # killed in the middle of the trial
    epoch = killed.user_attrs[records.CHECKPOINT]["epoch"]
    assert 1 <= epoch < EPOCHS
    checkpoint = load_checkpoint(make_artifact_store(storage_url), killed, reader.owner(killed))
    assert checkpoint is not None and len(checkpoint["history"]) == epoch

    # A live worker joins with nothing but the storage and the study's name.
    finish(bsopt_process("search", "--storage", storage_url, "--study-name", "kill",
                         env=FAST_HEARTBEATS))
    dead, retry = reader.trials()  # the budget of 1 holds: no other trial
    assert (dead.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.system_attrs["failed_trial"] == dead.number
    assert retry.user_attrs[records.WORKER] != dead.user_attrs[records.WORKER]
    assert retry.user_attrs[records.RESUMED_FROM_EPOCH] == epoch
    assert list(retry.intermediate_values) == list(range(1, EPOCHS + 1))
    # The epochs before the kill are the dead worker's own measurements, not a rerun ...
    assert (retry.user_attrs[records.EPOCH_SECONDS][:epoch]
            == dead.user_attrs[records.EPOCH_SECONDS][:epoch])
    # ... and the epochs after it continue exactly from the checkpoint: model, optimizer
    # and random number generators all restored (a fresh start would differ at once).
    assert retry.user_attrs[records.VAL_LOSS] == pytest.approx(replay(checkpoint), rel=1e-4)
    assert stored_checkpoints(storage_url) == []  # a finished trial leaves none behind


def stop_a_run(sqlite_url: str, bsopt_process: StartBsopt,
               send: Callable[[subprocess.Popen], None]) -> tuple[list[str], FrozenTrial]:
    """Start `bsopt search --workers 2`, stop it mid-trial with ``send``, check how it ended.

    Returns the resume command it printed and the trial that was stopped past epoch 1.
    """
    run = bsopt_process("search", "--storage", sqlite_url, "--study-name", "stop",
                        "--n-trials", "3", "--workers", "2", *LONG_TRIALS)
    reader = Reader(sqlite_url, "stop")
    seen = wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    send(run)
    out, err = finish(run, 130)
    assert "Traceback" not in err
    match = re.search(r"^interrupted: (\d+) trials left; resume with: (.+)$", out, flags=re.M)
    assert match, out
    left, command = int(match[1]), shlex.split(match[2])
    assert command[:2] == ["bsopt", "search"]

    trials = reader.trials()
    states = Counter(t.state for t in trials)
    assert states[TrialState.RUNNING] == 0  # every trial was ended, none left hanging
    assert states[TrialState.WAITING] == left
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs[records.FAIL_REASON].startswith("interrupted")
                           for t in stopped)
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == sorted(
        t.number for t in stopped)  # each stopped trial re-enqueued, once
    (retry,) = [t for t in retries if t.system_attrs["failed_trial"] == seen.number]
    assert retry.user_attrs[records.CHECKPOINT]["epoch"] >= 1
    return command, seen


@pytest.mark.slow
def test_sigterm_ends_the_trials_cleanly_and_the_printed_command_resumes_them(
        sqlite_url: str, bsopt_process: StartBsopt) -> None:
    # SIGTERM to the command only (as `kill` or a scheduler sends it): it stops its workers.
    command, seen = stop_a_run(sqlite_url, bsopt_process,
                               lambda run: os.kill(run.pid, signal.SIGTERM))
    finish(bsopt_process(*command[1:]))  # the command it printed
    trials = Reader(sqlite_url, "stop").trials()
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == 3 and set(states) == {TrialState.COMPLETE,
                                                                TrialState.FAIL}
    resumed = next(t for t in trials if t.system_attrs.get("failed_trial") == seen.number)
    assert resumed.user_attrs[records.RESUMED_FROM_EPOCH] >= 1
    assert list(resumed.intermediate_values) == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_ctrl_c_ends_the_trials_cleanly(sqlite_url: str, bsopt_process: StartBsopt) -> None:
    # A terminal sends Ctrl-C to the command and its worker processes alike.
    stop_a_run(sqlite_url, bsopt_process, lambda run: os.killpg(run.pid, signal.SIGINT))


def postgres_cluster() -> tuple[str, str]:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return version, "main"


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_finish_the_budget_across_a_postgresql_restart(
        postgres_url: str, bsopt_process: StartBsopt) -> None:
    run = bsopt_process("search", "--storage", postgres_url, "--study-name", "restart",
                        "--sampler", "tpe", "--pruner", "none", "--n-trials", "12",
                        "--workers", "3", "--dataset", "digits", "--max-train-samples", "400",
                        *SHARED_EPOCHS)  # trials left to run when the server goes down
    reader = Reader(postgres_url, "restart")
    wait_for(lambda: any(t.state == TrialState.COMPLETE for t in reader.trials()),
             "a finished trial")
    control = ["pg_ctlcluster", "--skip-systemctl-redirect", *postgres_cluster()]
    try:
        subprocess.run([*control, "stop"], check=True, timeout=120)
        time.sleep(2)  # the outage: every worker call now fails to connect
    finally:
        subprocess.run([*control, "start"], check=True, timeout=120)
    out, err = finish(run)
    trials = reader.trials()
    # The trials' states and the workers' log say what went wrong if this fails.
    states = [(t.number, t.state.name, t.user_attrs.get(records.FAIL_REASON)) for t in trials]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == 12, f"{states}\n{err[-3000:]}"  # the whole budget, not one more
    # A storage call that fails mid-restart may fail its trial (rarely: 1 run in ~10; the
    # reason is recorded): the trial is then retried, not lost, and uses no budget.
    retried = {t.system_attrs.get("failed_trial") for t in finished}
    assert all(t.number in retried for t in failed), states
    assert len(failed) <= 1, f"{states}\n{err[-3000:]}"
    points = {(t.params["batch_size"], t.params["lr"]) for t in finished}
    assert len(points) == 12  # three samplers from one seed, yet no point proposed twice
    assert "lost the database connection" in err  # the workers did meet the outage
    assert "study 'restart'" in out


def test_a_worker_cut_off_past_the_grace_period_leaves_its_trial_to_the_retry(
        sqlite_url: str) -> None:
    def storage() -> optuna.storages.BaseStorage:  # beats once a minute, stale after 1 s
        return make_storage(sqlite_url, heartbeat_interval=60, grace_period=1,
                            stale_trial_callback=retry_failed_trial)

    study = optuna.create_study(storage=storage(), study_name="s")
    study.enqueue_trial({"x": 1.0})
    elsewhere = optuna.load_study(study_name="s", storage=storage())  # another worker

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 2)
        if trial.number == 0:  # this worker is cut off until the other one fails its trial
            def failed_elsewhere() -> bool:
                optuna.storages.fail_stale_trials(elsewhere)
                return elsewhere.trials[0].state == TrialState.FAIL
            wait_for(failed_elsewhere, "the other worker to fail the stale trial")
            trial.report(x, 1)  # this worker comes back: its trial is not its own any more
        return x

    result = run_worker(study, objective, worker_name="cut-off")
    assert result.taken_over == 1 and result.finished == {"FAIL": 1, "COMPLETE": 1}
    first, retry = optuna.load_study(study_name="s", storage=sqlite_url).trials
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == 0 and retry.value == 1.0


def test_a_failed_trial_is_re_enqueued_once_even_if_two_workers_retry_it(
        sqlite_url: str) -> None:
    study = optuna.create_study(storage=make_storage(sqlite_url, heartbeat=False),
                                study_name="s")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(trial, state=TrialState.FAIL)
    failed = study.trials[0]
    retry_failed_trial(study, failed)
    retry_failed_trial(study, failed)  # a second worker saw the same failure
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]


@pytest.mark.parametrize("kind", ["sqlite", "journal",
                                  pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_trial_is_retried_once_even_when_its_retry_finished_before_it_failed(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # A worker enqueues its trial's retry, then cannot write the failure (a full disk): the
    # trial stays RUNNING while the retry runs and completes. When the trial is failed as
    # stale at last, no second retry may be made: the budget would grow by one.
    url = (request.getfixturevalue("postgres_url") if kind == "postgresql" else
           {"sqlite": f"sqlite:///{tmp_path}/s.db", "journal": f"journal://{tmp_path}/s.log"}[kind])
    study = optuna.create_study(storage=make_storage(url, heartbeat=False), study_name="s")
    x = {"x": optuna.distributions.FloatDistribution(0, 1)}
    first = study.ask(x)
    retry_failed_trial(study, study.trials[0])  # the give-back's first step
    retry = study.ask()  # another worker claims the retry ...
    study.tell(retry, state=TrialState.FAIL)  # ... which fails too, and is retried in turn
    retry_failed_trial(study, study.trials[1])
    second = study.ask()
    study.tell(second, 0.5)  # the retry's retry completes
    study.tell(first, state=TrialState.FAIL)  # the first trial, failed as stale at last
    for number in (0, 1, 0, 1):
        retry_failed_trial(study, study.trials[number])
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert [t.system_attrs.get("retry_history") for t in trials] == [None, [0], [0, 1]]


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_not_loaded(
        tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"model": {"weight": torch.zeros(2)}, "extra": Payload(marker)}, buffer)
    store = DatabaseArtifactStore(sqlite_url)
    store.write("evil.pt", io.BytesIO(buffer.getvalue()))
    study = optuna.create_study(storage=make_storage(sqlite_url, heartbeat=False))
    trial = study.ask()
    trial.set_user_attr(records.CHECKPOINT, {"artifact_id": "evil.pt", "epoch": 3})
    with caplog.at_level(logging.WARNING, logger="bsopt.storage.checkpoints"):
        assert load_checkpoint(store, trial, CheckpointOwner("study1", 0)) is None
    assert "cannot be loaded safely" in caplog.text
    assert not marker.exists()
    # The payload is real: a full unpickling would have run it.
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert marker.exists()


def test_a_checkpoint_ahead_of_the_reported_curve_is_reported_on_resume(
        sqlite_url: str) -> None:
    # A worker saves an epoch's checkpoint, then reports the epoch: one killed in between
    # leaves epoch 2 checkpointed but only epoch 1 reported. The retry reports both.
    config, _ = build_config(None, {"dataset": "digits", "max_train_samples": 120,
                                    "epochs": 3, "device": "cpu", "storage": sqlite_url,
                                    "pruner": "none"})
    data = load_dataset("digits", max_train_samples=120)
    store = make_artifact_store(sqlite_url)
    study = optuna.create_study(storage=make_storage(sqlite_url, heartbeat=False),
                                study_name="ahead")
    study.enqueue_trial({"batch_size": 16, "lr": 1e-3})
    trial = study.ask()
    objective = Objective(config, data, torch.device("cpu"), artifact_store=store)
    trainer = Trainer(build_model("cnn", data.input_shape, data.num_classes), data,
                      objective.settings(16, 1e-3))
    first, second = trainer.run_epoch(), trainer.run_epoch()
    trial.set_user_attr(records.SERIES, trial.number)  # as the objective records it
    trial.report(first.val_loss, 1)
    owner = CheckpointOwner(records.study_uid(study), trial.number)
    # Epoch 1's checkpoint was written but never recorded on the trial: an orphan.
    store.write(owner.artifact_id(1), io.BytesIO(b"orphan"))
    save_checkpoint(store, trial, owner, trainer.state_dict(), 2)
    study.tell(trial, state=TrialState.FAIL)  # the dead worker's trial, as the stale check ends it
    retry_failed_trial(study, study.trials[0])

    retry = study.ask()
    objective(retry)
    frozen = study._storage.get_trial(retry._trial_id)
    assert frozen.params == {"batch_size": 16, "lr": 1e-3}
    assert list(frozen.intermediate_values) == [1, 2, 3]
    assert frozen.intermediate_values[2] == pytest.approx(second.val_loss)
    assert frozen.user_attrs[records.RESUMED_FROM_EPOCH] == 2
    assert stored_checkpoints(sqlite_url) == []  # the finished series leaves none, orphans too


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_study_stops_the_worker_and_the_budget_survives(
        small_disk: Any, bsopt_process: StartBsopt) -> None:
    url = f"sqlite:///{small_disk.path}/s.db"  # the database and its checkpoints both there
    run = bsopt_process("search", "--storage", url, "--study-name", "full", "--n-trials", "2",
                        *LONG_TRIALS, env=FAST_HEARTBEATS)
    reader = Reader(url, "full")  # opened now: later it reads a full disk
    wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    small_disk.fill()
    out, err = finish(run, 1)  # at once: a full disk is not waited out as a lost connection
    assert "Traceback" not in err
    (line,) = [e for e in err.splitlines() if e.startswith("bsopt:")]
    assert line.startswith("bsopt: error: the disk holding ") and "is full: free space" in line
    assert "is retried when the study runs again" in line
    # The trial it ran is given back as far as the full disk let it: failed and re-enqueued,
    # or left RUNNING with its heartbeat stopped for the next run to fail and retry.
    stopped = [t for t in reader.trials() if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    assert len(stopped) == 1

    small_disk.free()
    finish(bsopt_process("search", "--storage", url, "--study-name", "full",
                         env=FAST_HEARTBEATS))
    trials = reader.trials()
    states = Counter(t.state for t in trials)
    assert states == {TrialState.COMPLETE: 2, TrialState.FAIL: 1}  # the budget, exactly
    (retry,) = [t for t in trials if "failed_trial" in t.system_attrs]  # retried once
    assert retry.system_attrs["failed_trial"] == stopped[0].number
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[records.RESUMED_FROM_EPOCH]
