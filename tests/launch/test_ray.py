"""``bsopt launch ray`` on a real two-node Ray cluster, one node killed in the middle."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState

from bsopt import records
from tests.helpers import (
    FAST_HEARTBEATS,
    ONE_POINT,
    STOPPABLE_TRIALS,
    Reader,
    StartBsopt,
    finish,
    wait_for,
)
from tests.launch.ray_cluster import HEAD_IP, RayCluster

# Trials of about 5 s: the head's two workers must not finish the budget before node 2's
# worker (started last, on a loaded machine) has claimed a trial and trained past epoch 1.
NODE_TRIALS = [*ONE_POINT, "--epochs", "60"]


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.postgres
def test_a_node_dies_mid_study_its_trial_is_retried_and_nothing_is_lost(
        ray_nodes: RayCluster, postgres_url: str, bsopt_process: StartBsopt) -> None:
    # Three workers need three CPUs: two on the head, so one runs on node 2.
    launch = bsopt_process("launch", "ray", "--address", "auto", "--storage", postgres_url,
                           "--study-name", "ray", "--workers", "3", "--cpus-per-worker", "1",
                           "--", "--n-trials", "4", *NODE_TRIALS,
                           env={**FAST_HEARTBEATS, "RAY_ADDRESS": ray_nodes.address})
    reader = Reader(postgres_url, "ray")

    def running_on_node2() -> FrozenTrial | None:
        """A trial past its first epoch whose worker process is one of node 2's."""
        node2 = {str(pid) for pid in ray_nodes.node_pids("node2")}
        return next((t for t in reader.trials() if t.state == TrialState.RUNNING
                     and records.CHECKPOINT in t.user_attrs
                     and t.user_attrs[records.WORKER].rpartition(":")[2] in node2), None)

    victim = wait_for(running_on_node2, "a trial past its first epoch on node 2")
    ray_nodes.kill_node2()  # the machine is gone: raylet, Ray worker and bsopt worker
    out, err = finish(launch)

    trials = {t.number: t for t in reader.trials()}
    states = [(t.number, t.state.name, t.user_attrs.get(records.WORKER)) for t in trials.values()]
    finished = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4, f"{states}\n{err[-3000:]}"  # the budget, exactly
    assert all(t.state.is_finished() for t in trials.values()), states
    # The dead worker's trial went stale and another worker retried it, from its checkpoint.
    assert trials[victim.number].state == TrialState.FAIL, states
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs[records.RESUMED_FROM_EPOCH] >= victim.user_attrs[
        records.CHECKPOINT]["epoch"] >= 1
    # Ray ran the lost task again on the head, so every worker ended well.
    ended = re.findall(r"^worker (\d): exit (-?\d+) on (\S+)$", out, flags=re.M)
    assert sorted(i for i, _, _ in ended) == ["0", "1", "2"], out
    assert all(status == "0" and node == HEAD_IP for _, status, node in ended), out
    assert "study 'ray' in postgresql://" in out and "4 complete" in out


def bsopt_workers(cluster: RayCluster) -> list[int]:
    """The ``bsopt search`` processes running on the cluster's nodes."""
    found = []
    for name in cluster.nodes:
        for pid in cluster.node_pids(name):
            with contextlib.suppress(OSError):
                if b"bsopt" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-3:]:
                    found.append(pid)
    return found


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.postgres
def test_ctrl_c_on_the_driver_gives_the_trials_back_and_leaves_no_worker(
        ray_nodes: RayCluster, postgres_url: str, bsopt_process: StartBsopt) -> None:
    launch = bsopt_process("launch", "ray", "--storage", postgres_url, "--study-name", "stop",
                           "--workers", "2", "--", "--n-trials", "2", *STOPPABLE_TRIALS,
                           env={**FAST_HEARTBEATS, "RAY_ADDRESS": ray_nodes.address})
    reader = Reader(postgres_url, "stop")
    wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    os.kill(launch.pid, signal.SIGINT)  # what a terminal sends the driver
    _, err = finish(launch, 130)
    assert "Traceback" not in err
    trials = reader.trials()
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    # Each running trial was given back at its next step, with its checkpoint ...
    assert stopped and not [t for t in trials if t.state == TrialState.RUNNING], trials
    assert all(t.user_attrs[records.FAIL_REASON].startswith("interrupted") for t in stopped)
    retries = [t for t in trials if t.state == TrialState.WAITING and "failed_trial" in
               t.system_attrs]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == sorted(
        t.number for t in stopped)
    assert bsopt_workers(ray_nodes) == []  # and its worker process is gone


@pytest.mark.slow
def test_a_worker_whose_parent_dies_gives_its_trial_back(
        sqlite_url: str, tmp_path: Path) -> None:
    # A Ray task's process killed outright (the OOM killer, a forced cancel) must not
    # leave its worker running on: the worker gets SIGTERM and gives its trial back.
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        "from bsopt.launch.ray import start_worker_process\n"
        "child = start_worker_process(sys.argv[1:], {'BSOPT_STORAGE': %r}, %r)\n"
        "print(child.pid, flush=True)\n"
        "child.wait()\n") % (sqlite_url, str(tmp_path)),
        "search", "--study-name", "orphan", "--n-trials", "1", *STOPPABLE_TRIALS],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    child = int(parent.stdout.readline())
    reader = Reader(sqlite_url, "orphan")
    wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    parent.kill()  # SIGKILL: no handler, no cleanup
    parent.wait()
    wait_for(lambda: not Path(f"/proc/{child}").exists()
             or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z", "the worker to end")
    stopped, retry = reader.trials()
    assert stopped.state == TrialState.FAIL  # given back at once, not left to go stale
    assert stopped.user_attrs[records.FAIL_REASON].startswith("interrupted")
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
