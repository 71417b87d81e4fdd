"""``bsopt launch slurm`` on a real single-node Slurm cluster: a job array finishes a study."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import sqlalchemy
from optuna.trial import TrialState

from bsopt import records
from bsopt.cli import build_parser, main
from bsopt.storage import sqlalchemy_url
from tests.helpers import (
    QUICK_FLAGS,
    STOPPABLE_TRIALS,
    TIMEOUT,
    Reader,
    StartBsopt,
    finish,
    wait_for,
)
from tests.launch.slurm_cluster import SlurmCluster
from tests.search.test_worker import assert_each_grid_point_once

# Nine grid points of one quick epoch each.
GRID = [*QUICK_FLAGS, "--sampler", "grid", "--batch-size", "16:64", "--lr", "1e-3:1e-1",
        "--grid-lr-points", "3", "--pruner", "none"]


def directives(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines()
            if line.startswith("#SBATCH ")]


def test_a_dry_run_prints_the_job_array_script_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["launch", "slurm", "--storage", "sqlite:///s.db", "--study-name", "bs lr",
                 "--array", "3", "--gpus-per-task", "1", "--cpus-per-task", "2",
                 "--partition", "gpu", "--time", "4:00:00", "--sbatch-option=--account=ml",
                 "--dry-run", "--", "--device", "cpu", "--data-dir", "data",
                 "--epochs", "2"]) == 0
    script = capsys.readouterr().out
    assert directives(script) == [
        "--job-name=bsopt-bs-lr", "--array=0-2", "--ntasks=1", "--cpus-per-task=2",
        "--gpus-per-task=1", "--partition=gpu", "--time=4:00:00", f"--chdir={tmp_path}",
        f"--output={tmp_path}/bsopt-slurm/bs-lr-%A_%a.out", "--account=ml"]
    command = shlex.split(script.splitlines()[-1])
    assert command[0] == "exec" and command[2:4] == ["-m", "bsopt"]
    # One worker joining by name; this run's own flags (paths made absolute), not the
    # definition's (--epochs is in the study); the storage only in $BSOPT_STORAGE.
    assert command[4:] == ["search", "--study-name", "bs lr", "--data-dir",
                           str(tmp_path / "data"), "--device", "cpu"]
    build_parser().parse_args(command[4:])  # a command bsopt search takes
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no database, no script


def test_without_gpus_the_script_asks_for_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["launch", "slurm", "--array", "2", "--dry-run"]) == 0
    found = directives(capsys.readouterr().out)
    assert "--array=0-1" in found and not any(d.startswith("--gpu") for d in found)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.postgres
def test_a_job_array_of_three_workers_finishes_a_postgresql_study(
        slurm: SlurmCluster, postgres_url: str, tmp_path: Path,
        bsopt_process: StartBsopt) -> None:
    # The server trusts local connections: it accepts (and ignores) this password.
    url = postgres_url.replace("postgres@", "postgres:s3cret@")
    launch = bsopt_process("launch", "slurm", "--storage", url, "--study-name", "slurm",
                           "--array", "3", "--gpus-per-task", "1", "--script-dir", "jobs",
                           "--", *GRID, env={"SLURM_CONF": slurm.env["SLURM_CONF"]})
    out, _ = finish(launch)
    job = re.search(r"^submitted Slurm job (\d+): 3 workers of study 'slurm'", out, re.M)
    assert job, out
    tasks = slurm.wait(job[1], timeout=TIMEOUT)
    assert sorted(tasks) == [f"{job[1]}_{i}" for i in range(3)]
    assert set(tasks.values()) == {("COMPLETED", "0:0")}, tasks

    assert_each_grid_point_once(url, "slurm")  # 9 trials between them, each point once
    (script,) = (tmp_path / "jobs").glob("*.sbatch")
    logs = sorted((tmp_path / "jobs").glob(f"slurm-{job[1]}_*.out"))
    assert len(logs) == 3 and "s3cret" not in script.read_text() + out
    for task, log in enumerate(logs):
        text = log.read_text()
        # Each task was a worker with a GPU of its own (fake ones: symlinks to /dev/null) ...
        assert re.search(rf"^bsopt worker: task {task} of job {job[1]} on .+, GPUs [01]$",
                         text, re.M), text
        # ... and ended as `bsopt search` does, its storage's password masked.
        assert "study 'slurm' in postgresql://postgres:***@" in text and "s3cret" not in text


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.postgres
def test_a_job_slurm_refuses_leaves_the_storage_as_it_was(
        slurm: SlurmCluster, postgres_url: str, tmp_path: Path,
        bsopt_process: StartBsopt) -> None:
    launch = bsopt_process("launch", "slurm", "--storage", postgres_url, "--study-name", "x",
                           "--array", "2", "--partition", "nope", "--script-dir", "jobs",
                           env={"SLURM_CONF": slurm.env["SLURM_CONF"]})
    _, err = finish(launch, 2)
    assert err.count("\n") == 1 and "invalid partition specified: nope" in err, err
    assert "Traceback" not in err
    engine = sqlalchemy.create_engine(sqlalchemy_url(postgres_url))
    assert sqlalchemy.inspect(engine).get_table_names() == []  # not even Optuna's tables
    engine.dispose()
    assert list((tmp_path / "jobs").iterdir()) == []  # the refused script is not kept
    assert slurm.run("squeue", "-h").stdout.strip() == ""


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.postgres
def test_a_cancelled_task_gives_its_trial_back_with_its_checkpoint(
        slurm: SlurmCluster, postgres_url: str, bsopt_process: StartBsopt) -> None:
    # scancel, like the time limit, sends the task SIGTERM (then SIGKILL after KillWait):
    # the worker stops at its next step and re-enqueues its trial, checkpoint and all.
    launch = bsopt_process("launch", "slurm", "--storage", postgres_url, "--study-name",
                           "cancel", "--array", "1", "--", "--n-trials", "1", *STOPPABLE_TRIALS,
                           env={"SLURM_CONF": slurm.env["SLURM_CONF"]})
    out, _ = finish(launch)
    job = re.search(r"^submitted Slurm job (\d+)", out, re.M)
    assert job, out
    reader = Reader(postgres_url, "cancel")
    wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    slurm.run("scancel", job[1])
    slurm.wait(job[1], timeout=TIMEOUT)
    stopped, retry = reader.trials()
    assert stopped.state == TrialState.FAIL, stopped  # given back, not left to go stale
    assert stopped.user_attrs[records.FAIL_REASON].startswith("interrupted")
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs[records.CHECKPOINT]["epoch"] >= 1  # the next worker resumes it
