"""Many real worker processes on one study: the budget holds, grid points run once, no locks."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable

import optuna
import pytest
from optuna.trial import TrialState

from bsopt import records
from bsopt.config import powers_of_two
from bsopt.search.space import grid_lrs
from bsopt.search.worker import run_worker
from bsopt.storage import make_storage
from bsopt.training.device import threads_per_worker
from tests.helpers import QUICK_FLAGS, SHARED_EPOCHS

TIMEOUT = 300  # seconds: only against a hang, never an assertion about speed
StartBsopt = Callable[..., subprocess.Popen]


def finish(process: subprocess.Popen) -> tuple[str, str]:
    """Wait for a bsopt process; its output, after checking it succeeded."""
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err}"
    return out, err


def test_torch_threads_are_shared_out_between_worker_processes() -> None:
    cores = threads_per_worker(1)
    assert cores >= 1
    assert threads_per_worker(cores) == 1
    assert threads_per_worker(2 * cores) == 1  # never zero
    assert threads_per_worker(2) == max(1, cores // 2)


def grid_command(url: str, name: str) -> list[str]:
    return ["search", *QUICK_FLAGS, "--storage", url, "--study-name", name, "--sampler", "grid",
            "--batch-size", "16:64", "--lr", "1e-3:1e-1", "--grid-lr-points", "3",
            "--pruner", "none"]


def assert_each_grid_point_once(url: str | optuna.storages.BaseStorage, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=url)
    points = [(t.params["batch_size"], t.params["lr"]) for t in study.trials]
    grid = [(b, lr) for b in powers_of_two(16, 64) for lr in grid_lrs(1e-3, 1e-1, 3)]
    assert sorted(points) == sorted(grid)  # every point, none twice, nothing else
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_worker_that_joins_or_resumes_a_study_does_not_repeat_the_seeds_points(
        sqlite_url: str) -> None:
    storage = make_storage(sqlite_url)
    optuna.create_study(storage=storage, study_name="s")
    for _ in range(4):
        optuna.load_study(study_name="s", storage=storage).enqueue_trial({})

    def run(trials: int) -> None:  # a new process: a new sampler from the same seed
        study = optuna.load_study(study_name="s", storage=storage,
                                  sampler=optuna.samplers.RandomSampler(seed=0))
        stop, done = threading.Event(), []

        def objective(trial: optuna.Trial) -> float:
            done.append(trial.number)
            if len(done) == trials:
                stop.set()  # this run ends after this trial
            return trial.suggest_float("lr", 1e-4, 1, log=True)

        run_worker(study, objective, stop=stop)

    run(2)  # the first run has the new study to itself: the seed's first two points
    first = [t.params["lr"] for t in optuna.load_study(study_name="s", storage=storage).trials
             if t.state == TrialState.COMPLETE]
    expected = optuna.samplers.RandomSampler(seed=0)
    assert len(first) == 2 and first[0] == pytest.approx(
        expected.sample_independent(None, None, "lr", optuna.distributions.FloatDistribution(
            1e-4, 1, log=True)))  # type: ignore[arg-type]
    run(2)  # the second run resumes it: it must not draw the same two points again
    values = [t.params["lr"] for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert len(values) == 4 and len(set(values)) == 4


@pytest.mark.slow
@pytest.mark.postgres
def test_three_machines_share_a_grid_on_postgresql(postgres_url: str,
                                                   bsopt_process: StartBsopt) -> None:
    # Three `bsopt search` processes started together, as on three machines: one creates
    # the study, the others join it, and the nine grid points are shared out.
    processes = [bsopt_process(*grid_command(postgres_url, "grid")) for _ in range(3)]
    outputs = [finish(p) for p in processes]
    assert_each_grid_point_once(postgres_url, "grid")
    assert all("study 'grid'" in out for out, _ in outputs)


@pytest.mark.slow
def test_two_machines_of_two_workers_share_a_grid_in_one_sqlite_file(
        sqlite_url: str, bsopt_process: StartBsopt) -> None:
    # Four worker processes write one SQLite file: two commands of `--workers 2` each, as
    # two users on one machine would start them.
    processes = [bsopt_process(*grid_command(sqlite_url, "grid"), *SHARED_EPOCHS,
                               "--workers", "2") for _ in range(2)]
    outputs = [finish(p) for p in processes]
    assert_each_grid_point_once(sqlite_url, "grid")
    study = optuna.load_study(study_name="grid", storage=sqlite_url)
    assert len({t.user_attrs[records.WORKER] for t in study.trials}) >= 2
    shown: list[int] = []
    for out, err in outputs:
        assert "locked" not in out + err and "Traceback" not in err
        assert "lost the database connection" not in err  # not even a retried lock error
        # Each command shows one combined display of its two workers' trials.
        shown += [int(n) for n in re.findall(r"^\[w[01]\] trial +(\d+) ", out, flags=re.M)]
    assert sorted(shown) == list(range(9))  # every trial shown once, by the command that ran it


@pytest.mark.slow
def test_three_machines_share_a_grid_in_one_journal_file(
        tmp_path, bsopt_process: StartBsopt) -> None:
    # A shared filesystem without a database: four worker processes (two of them in one
    # command) append to one journal file; claims are lines, the first one wins.
    url = f"journal://{tmp_path}/grid.log"
    processes = [bsopt_process(*grid_command(url, "grid"), *SHARED_EPOCHS, *workers)
                 for workers in ([], [], ["--workers", "2"])]
    outputs = [finish(p) for p in processes]
    assert_each_grid_point_once(make_storage(url, heartbeat=False), "grid")
    assert all("Traceback" not in err for _, err in outputs)
    study = optuna.load_study(study_name="grid", storage=make_storage(url, heartbeat=False))
    assert len({t.user_attrs[records.WORKER] for t in study.trials}) >= 2


def test_the_worker_loop_does_not_import_torch(tmp_path) -> None:
    # A worker whose objective does not train (and the storage proxy) should not wait
    # seconds for torch to import.
    code = (
        "import sys, optuna\n"
        "from bsopt.storage import make_storage\n"
        "from bsopt.search.worker import run_worker\n"
        f"storage = make_storage('sqlite:///{tmp_path}/s.db', heartbeat=False)\n"
        "study = optuna.create_study(storage=storage, study_name='s')\n"
        "study.enqueue_trial({})\n"
        "assert run_worker(study, lambda trial: 1.0).finished == {'COMPLETE': 1}\n"
        "sys.exit(3 if 'torch' in sys.modules else 0)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
