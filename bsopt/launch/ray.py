"""``bsopt launch ray``: the workers of one study as Ray tasks on an existing Ray cluster.

The driver (this process) creates or joins the study, connects to the cluster, and submits
one Ray task per worker with ``num_cpus``/``num_gpus``, so Ray places each on a node that has
them (spread over the nodes). A task runs one ``bsopt search --study-name NAME`` process on
its node, which claims trials until the budget is done, and returns its exit status; the
driver waits for them all and reports. Ray schedules; the study in the storage is the one
account of the work.

Tasks rather than actors, with ``max_retries``: when a node dies, Ray resubmits its tasks
on the nodes that remain, and the dead worker's trial goes stale (heartbeats) and is
retried by another worker from its last checkpoint. Nothing is lost and the budget stays
exact, because trials are claimed in the storage, not handed out by Ray. The worker
process is tied to its task's process: if that dies, or the task is cancelled (Ctrl-C on
the driver), the worker gets SIGTERM and gives its trial back with its checkpoint.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bsopt.config import StudyConfig
from bsopt.errors import UsageError
from bsopt.interrupts import sigterm_as_keyboard_interrupt
from bsopt.launch.workers import WorkerSpec, plan_workers
from bsopt.records import state_counts
from bsopt.search.budget import budget_left
from bsopt.storage import mask_url, open_existing

# The worker process: dies (SIGTERM, so it gives its trial back) with the Ray worker
# process that started it, even one killed outright; then runs `python -m bsopt ARGS`.
_WORKER_PROCESS = """\
import ctypes, os, runpy, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        sys.exit(143)  # the task's process died while this one started
sys.argv = ["bsopt", *sys.argv[2:]]
runpy.run_module("bsopt", run_name="__main__", alter_sys=True)
"""
GIVE_BACK_SECONDS = 120  # a cancelled task's worker: time to give its trial back


@dataclass(frozen=True)
class RayOptions:
    """Where and how the workers run.

    Args:
        address: The cluster (``auto``: ``$RAY_ADDRESS``, else the one on this machine;
            ``HOST:PORT`` or ``ray://HOST:PORT``).
        workers: Ray tasks, one ``bsopt search`` worker each.
        gpus_per_worker: GPUs each worker needs (Ray sets ``$CUDA_VISIBLE_DEVICES``).
        cpus_per_worker: CPUs each worker needs.
        max_retries: How often Ray runs a task again after its node or process died.
    """

    address: str = "auto"
    workers: int = 1
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1
    max_retries: int = 3


@dataclass
class RayLaunch:
    """How each worker ended and where the study stands."""

    study_name: str
    storage: str  # the workers' storage URL, password masked
    workers: list[str] = field(default_factory=list)  # one line per worker, in finish order
    failed: int = 0  # workers lost (retries used up) or that exited with an error
    counts: dict[str, int] = field(default_factory=dict)
    budget_left: int = 0


def start_worker_process(argv: list[str], env: dict[str, str],
                         directory: str) -> subprocess.Popen:
    """``python -m bsopt ARGV`` as a child that gets SIGTERM when this process dies.

    It runs in ``directory`` where this node has it (a shared filesystem), else here.
    """
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER_PROCESS, str(os.getpid()), *argv],
        env={**os.environ, **env}, cwd=directory if os.path.isdir(directory) else None)


def run_worker_process(argv: list[str], env: dict[str, str], directory: str) -> dict[str, Any]:
    """A Ray task: one ``bsopt search`` process on this node; its exit status and node.

    Its output goes to Ray's log of this task, which the driver shows.
    """
    import ray

    process = start_worker_process(argv, env, directory)
    try:
        while True:  # wait in Python, where Ray's cancel (a KeyboardInterrupt) can reach
            try:
                status = process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if process.poll() is None:  # cancelled: the worker gives its trial back first
            process.terminate()
            try:
                process.wait(GIVE_BACK_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return {"node": ray.util.get_node_ip_address(), "status": status}


def _check_reachable(address: str) -> None:
    """Refuse at once a cluster address nothing answers at (Ray would wait a minute)."""
    target = os.environ.get("RAY_ADDRESS") if address == "auto" else address
    if not target or target == "auto":
        return  # Ray looks for a cluster on this machine, and says at once if none
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {target!r}: use HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {target}: {exc.strerror or exc}; "
                         "start one with `ray start --head`, or give --address") from None


def _connect(options: RayOptions) -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("Ray is not installed here: pip install 'bsopt[ray]'") from None
    _check_reachable(options.address)
    previous = os.environ.get("RAY_ADDRESS")
    if options.address != "auto":  # Ray would let $RAY_ADDRESS win over the argument
        os.environ["RAY_ADDRESS"] = options.address
    try:
        ray.init(address="auto", logging_level="WARNING", log_to_driver=True)
    except ConnectionError as exc:
        raise UsageError(f"no Ray cluster to join ({exc}): start one with `ray start "
                         "--head`, or give --address") from None
    finally:
        if previous is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = previous
    return ray


def _placement_warning(ray: Any, options: RayOptions) -> str | None:
    """A note if no node could take a worker now (Ray waits; an autoscaler may add one)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= options.cpus_per_worker
           and n.get("GPU", 0) >= options.gpus_per_worker for n in nodes):
        return None
    return (f"no node of the Ray cluster has {options.cpus_per_worker:g} CPUs and "
            f"{options.gpus_per_worker:g} GPUs for a worker now: the workers wait until "
            "one joins (Ctrl-C stops)")


def launch_ray(config: StudyConfig, explicit: dict[str, Any], options: RayOptions, *,
               say: Callable[[str], None] = print) -> RayLaunch:
    """Create or join the study of ``config`` and run ``options.workers`` workers on Ray.

    Returns when every worker has ended. Ctrl-C cancels the tasks: their workers give
    their trials back (with checkpoints), and ``KeyboardInterrupt`` is raised.

    Raises:
        UsageError: bad input, Ray missing, or no cluster at the address.

    Example::

        config, explicit = build_config(None, {"study_name": "bs-lr", "storage": url})
        result = launch_ray(config, explicit, RayOptions(workers=8, gpus_per_worker=1))
    """
    plan_workers(config, explicit, create=False)  # bad input refused before Ray is asked
    ray = _connect(options)
    try:
        if (warning := _placement_warning(ray, options)) is not None:
            say(f"warning: {warning}")
        spec = plan_workers(config, explicit, create=True)
        return _run_tasks(ray, spec, options, say)
    finally:
        ray.shutdown()


def _run_tasks(ray: Any, spec: WorkerSpec, options: RayOptions,
               say: Callable[[str], None]) -> RayLaunch:
    task = ray.remote(run_worker_process).options(
        num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker,
        max_retries=options.max_retries, retry_exceptions=False, scheduling_strategy="SPREAD")
    pending = {task.remote(spec.argv(), spec.environment(), spec.directory): index
               for index in range(options.workers)}
    say(f"{options.workers} workers of study {spec.study_name!r} submitted to Ray")
    result = RayLaunch(spec.study_name, mask_url(spec.storage))
    try:
        with sigterm_as_keyboard_interrupt():  # SIGTERM (a scheduler's, `kill`) as Ctrl-C
            _wait_for_workers(ray, pending, result, say)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # the task's worker gives its trial back
        ray.wait(list(pending), num_returns=len(pending), timeout=GIVE_BACK_SECONDS)
        raise
    study = open_existing(spec.storage, spec.study_name)  # read afresh, as an onlooker
    result.counts, result.budget_left = state_counts(study), budget_left(study)
    return result


def _wait_for_workers(ray: Any, pending: dict[Any, int], result: RayLaunch,
                      say: Callable[[str], None]) -> None:
    """Report each worker as it ends, until none is left (``pending`` empties)."""
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(done[0])
        try:
            ended = ray.get(done[0])
        except ray.exceptions.RayError as exc:  # lost with every retry used
            line = f"worker {index}: lost ({type(exc).__name__})"
            result.failed += 1
        else:
            line = f"worker {index}: exit {ended['status']} on {ended['node']}"
            result.failed += ended["status"] != 0
        result.workers.append(line)
        say(line)
