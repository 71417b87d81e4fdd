"""The budget enqueued a chunk at a time: claims that cost the same at any study size, the
exact budget and grid points once across chunk boundaries, with real worker processes."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from bsopt.config import StudyConfig
from bsopt.internals import rdb_backend, storage_of, trial_id
from bsopt.search import budget, worker
from bsopt.search.budget import ENQUEUED_ATTR, REFILL_ATTR, SLOT_ATTR, budget_left
from bsopt.search.study import open_study, plan_study
from bsopt.search.worker import _not_alone, claim_trial, run_worker, running_elsewhere
from bsopt.storage import make_storage, retry_failed_trial
from bsopt.storage.claims import Cursor
from tests.helpers import (
    FAST_HEARTBEATS,
    LONG_TRIALS,
    QUICK_FLAGS,
    SHARED_EPOCHS,
    Reader,
    wait_for,
)
from tests.search.test_worker import assert_each_grid_point_once, finish, grid_command

CHUNK = {"BSOPT_ENQUEUE_CHUNK": "4"}  # small chunks: a few trials cross several boundaries


def new_study(url: str, n_trials: int, **fields: Any) -> tuple[optuna.Study, StudyConfig]:
    plan = plan_study(StudyConfig(**{"study_name": "s", "sampler": "random",
                                     "n_trials": n_trials, **fields}), None)
    return open_study(plan, make_storage(url, stale_trial_callback=retry_failed_trial)), plan.config


def slots(trials: list[FrozenTrial], states: tuple[TrialState, ...] = (
        TrialState.COMPLETE, TrialState.PRUNED)) -> list[int]:
    return sorted(t.system_attrs[SLOT_ATTR] for t in trials if t.state in states)


def test_a_new_study_enqueues_one_chunk_and_the_token_the_next(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSOPT_ENQUEUE_CHUNK", "4")
    study, _ = new_study(sqlite_url, 10)
    trials = study.get_trials()
    assert [t.system_attrs[SLOT_ATTR] for t in trials] == [0, 1, 2, 3]
    assert [t.system_attrs.get(REFILL_ATTR) for t in trials] == [None, None, None, [4, 8]]
    assert study.user_attrs[ENQUEUED_ATTR] == 4
    assert budget_left(study) == 10
    run_worker(study, lambda trial: trial.suggest_float("x", 0, 1))
    trials = study.get_trials()
    assert slots(trials) == list(range(10)) and len(trials) == 10  # each slot once, no more
    assert [t.system_attrs.get(REFILL_ATTR) for t in trials if REFILL_ATTR in t.system_attrs] \
        == [[4, 8], [8, 10]]
    assert study.user_attrs[ENQUEUED_ATTR] == 10 and budget_left(study) == 0


def test_a_grid_larger_than_a_chunk_runs_each_point_once(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSOPT_ENQUEUE_CHUNK", "3")
    study, config = new_study(sqlite_url, 14, sampler="grid", grid_lr_points=3,
                              batch_size_min=16, batch_size_max=256)  # 5 x 3 points
    run_worker(study, lambda trial: trial.suggest_float("lr", 1e-5, 1, log=True)
               + trial.suggest_int("batch_size", 1, 1024))
    points = [(t.params["batch_size"], t.params["lr"]) for t in study.trials]
    assert len(points) == 14 and len(set(points)) == 14  # 14 of the 15 points, none twice
    order = budget.budget_params(config)
    assert [t.system_attrs["fixed_params"] for t in study.trials] == [order(i) for i in range(14)]


def test_the_retry_of_a_token_whose_holder_died_half_way_enqueues_only_the_rest(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSOPT_ENQUEUE_CHUNK", "4")
    study, _ = new_study(sqlite_url, 10)
    storage = storage_of(study)
    token = study.get_trials()[3]
    # What a holder killed in the middle of its refill leaves: its trial RUNNING (then failed
    # as stale), two of the four slots of the next chunk, no count of them.
    assert storage.set_trial_state_values(trial_id(token), TrialState.RUNNING)
    for slot in (4, 5):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, system_attrs={"fixed_params": {}, SLOT_ATTR: slot}))
    assert storage.set_trial_state_values(trial_id(token), TrialState.FAIL)
    retry_failed_trial(study, storage.get_trial(trial_id(token)))
    run_worker(study, lambda trial: trial.suggest_float("x", 0, 1))
    trials = study.get_trials()
    assert slots(trials) == list(range(10))  # the budget exactly: 6 and 7 made once, by the retry
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 10, TrialState.FAIL: 1}


class RowCounter:
    """Counts the SQL statements an engine runs and the ORM rows (trials, attributes) loaded."""

    def __init__(self, engine: sqlalchemy.engine.Engine) -> None:
        self.statements = self.rows = 0
        self.engine = engine

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _row(self, *_: Any) -> None:
        self.rows += 1

    @contextmanager
    def counting(self) -> Iterator[RowCounter]:
        self.statements = self.rows = 0
        sqlalchemy.event.listen(self.engine, "after_cursor_execute", self._statement)
        sqlalchemy.event.listen(sqlalchemy.orm.Mapper, "load", self._row)
        try:
            yield self
        finally:
            sqlalchemy.event.remove(self.engine, "after_cursor_execute", self._statement)
            sqlalchemy.event.remove(sqlalchemy.orm.Mapper, "load", self._row)


def worker_round(study: optuna.Study, cursor: Cursor) -> tuple[int, int]:
    """What the worker loop asks of the storage around one trial, bar the trial itself."""
    counter = RowCounter(rdb_backend(storage_of(study)).engine)
    with counter.counting():
        optuna.storages.fail_stale_trials(study)
        trial = claim_trial(study, cursor)
        assert trial is not None
        _not_alone(study, trial, first_claim=False)
        running_elsewhere(study)
        storage_of(study).set_trial_state_values(trial_id(trial), TrialState.FAIL)
        retry_failed_trial(study, storage_of(study).get_trial(trial_id(trial)))
        budget_left(study)
    return counter.statements, counter.rows


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_claim_reads_as_many_rows_at_10_trials_as_at_1500(
        kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSOPT_ENQUEUE_CHUNK", "16")
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")
    costs = []
    for name, finished in (("small", 10), ("large", 1500)):
        plan = plan_study(StudyConfig(study_name=name, sampler="random",
                                      n_trials=finished + 64), None)
        study = open_study(plan, make_storage(url, stale_trial_callback=retry_failed_trial))
        # A long finished history (after the first chunk here; a claim reads neither).
        study.add_trials([optuna.trial.create_trial(
            value=1.0, params={"x": 0.5}, user_attrs={"worker": "w"},
            distributions={"x": optuna.distributions.FloatDistribution(0, 1)})
            for _ in range(finished)])
        cursor = Cursor()
        worker_round(study, cursor)  # the first claim moves the cursor past the history
        costs.append([worker_round(study, cursor) for _ in range(3)])
    small, large = costs
    assert large == small  # the same statements and rows, whatever the history's length
    # A chunk's WAITING trials with their attributes at most (budget_left counts them),
    # never the 1500 finished ones.
    assert all(rows < 10 * 16 for _, rows in large)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                                  "journal"])
def test_three_processes_finish_a_budget_across_chunk_boundaries_exactly(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, bsopt_process: Any) -> None:
    url = {"sqlite": f"sqlite:///{tmp_path}/s.db", "journal": f"journal://{tmp_path}/s.log",
           "postgresql": None}[kind] or request.getfixturevalue("postgres_url")
    command = ["search", *QUICK_FLAGS, "--storage", url, "--study-name", "s",
               "--sampler", "random", "--pruner", "none", "--n-trials", "11", *SHARED_EPOCHS]
    for process in [bsopt_process(*command, env=CHUNK) for _ in range(3)]:
        finish(process)
    trials = Reader(url, "s").trials()
    assert slots(trials) == list(range(11))  # 11 is no multiple of the chunk of 4
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 11}
    assert len({t.user_attrs["worker"] for t in trials}) >= 2


@pytest.mark.slow
def test_a_grid_larger_than_a_chunk_is_shared_by_processes_each_point_once(
        sqlite_url: str, bsopt_process: Any) -> None:
    for process in [bsopt_process(*grid_command(sqlite_url, "grid"), env={
            "BSOPT_ENQUEUE_CHUNK": "2"}) for _ in range(3)]:
        finish(process)  # nine points in chunks of two
    assert_each_grid_point_once(sqlite_url, "grid")


@pytest.mark.slow
def test_a_run_killed_at_a_chunk_boundary_resumes_to_the_exact_budget(
        sqlite_url: str, bsopt_process: Any) -> None:
    env = {**FAST_HEARTBEATS, "BSOPT_ENQUEUE_CHUNK": "2"}
    reader = Reader(sqlite_url, "kill")
    args = ["search", "--storage", sqlite_url, "--study-name", "kill", "--n-trials", "5",
            *LONG_TRIALS]
    victim = bsopt_process(*args, env=env)

    def token_running() -> FrozenTrial | None:  # the holder of the second chunk's token
        return next((t for t in reader.trials() if t.state == TrialState.RUNNING
                     and REFILL_ATTR in t.system_attrs
                     and t.system_attrs[SLOT_ATTR] == 3), None)

    wait_for(token_running, "the trial that enqueued the last chunk to run")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.communicate()
    finish(bsopt_process("search", "--storage", sqlite_url, "--study-name", "kill", env=env))
    trials = reader.trials()
    assert slots(trials) == [0, 1, 2, 3, 4]
    states = Counter(t.state for t in trials)
    assert states == {TrialState.COMPLETE: 5, TrialState.FAIL: 1}  # the killed one, retried
    study = optuna.load_study(study_name="kill", storage=make_storage(sqlite_url))
    assert budget_left(study) == 0 and study.user_attrs[ENQUEUED_ATTR] == 5


@pytest.mark.postgres
def test_a_claim_that_refilled_returns_its_trial_just_beaten(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker counts the claim's heartbeat as just recorded and beats next one interval
    # later; after a long refill the claim must beat again, or a heartbeat interval close to
    # the grace period lets the healthy token trial go stale.
    monkeypatch.setenv("BSOPT_ENQUEUE_CHUNK", "4")
    monkeypatch.setenv("BSOPT_HEARTBEAT_SECONDS", "600")  # no beat of its own meanwhile
    study, _ = new_study(postgres_url, 8)
    storage = storage_of(study)
    for _ in range(3):  # the first chunk, but its token
        trial = claim_trial(study)
        assert trial is not None
        study.tell(trial, 0.0)
    real = worker.refill

    def slow_refill(*args: Any) -> None:  # a loaded database: the refill takes 2 s
        real(*args)
        time.sleep(2)

    monkeypatch.setattr(worker, "refill", slow_refill)
    token = claim_trial(study)  # enqueues the 4 slots of the next chunk first
    assert token is not None and REFILL_ATTR in storage.get_trial(trial_id(token)).system_attrs
    with rdb_backend(storage).engine.connect() as connection:
        age = connection.execute(sqlalchemy.text(
            "SELECT extract(epoch FROM now() - heartbeat) FROM trial_heartbeats "
            "WHERE trial_id = :id"), {"id": trial_id(token)}).scalar_one()
    assert budget_left(study) == 4
    assert float(age) < 1  # beaten after the refill (2 s), not only before it


def test_workers_waiting_for_a_dead_token_holder_back_off(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A holder that died before enqueueing the next chunk leaves its token trial RUNNING
    # until it goes stale (the grace period). The workers waiting for that chunk look often
    # at first, then less, not 20 times a second for the whole grace period.
    monkeypatch.setenv("BSOPT_ENQUEUE_CHUNK", "4")
    for key, value in FAST_HEARTBEATS.items():  # beat every 1 s, stale after 2 s
        monkeypatch.setenv(key, value)
    study, _ = new_study(sqlite_url, 8)
    storage = storage_of(study)
    token = study.get_trials()[3]
    storage.record_heartbeat(trial_id(token))
    assert storage.set_trial_state_values(trial_id(token), TrialState.RUNNING)  # then died
    looks = []
    real = worker._refilling
    monkeypatch.setattr(worker, "_refilling", lambda s: looks.append(1) or real(s))
    run_worker(study, lambda trial: trial.suggest_float("x", 0, 1))
    trials = study.get_trials()
    assert slots(trials) == list(range(8))  # the retry of the token enqueued the chunk
    assert len(looks) <= 12, len(looks)  # about 2 s of waiting: 20 Hz would be 40 looks
