"""``bsopt search`` as a library call: open the study, run workers, summarise.

``search(config)`` creates or joins the study, runs ``config.workers`` workers (in this
process for one, in child processes for more), attaches the figures for optuna-dashboard,
and returns a :class:`SearchResult`. Ctrl-C or SIGTERM stops the running trials at their
next optimizer step; they are failed, re-enqueued with their checkpoints, and resume when
the same command runs again.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from bsopt.checkpoints import make_artifact_store
from bsopt.config import StudyConfig
from bsopt.errors import DiskFull
from bsopt.interrupts import stop_on_signals
from bsopt.objective import ModelFactory, Objective
from bsopt.storage import holds_optuna_tables, make_storage, mask_url, resolve_url
from bsopt.study import budget_left, config_in_force, open_study, state_counts
from bsopt.training.data import TensorData, load_dataset
from bsopt.training.device import resolve_device, threads_per_worker
from bsopt.worker import (
    StorageFull,
    TooManyFailures,
    WorkerResult,
    retry_failed_trial,
    run_worker,
)

ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class SearchResult:
    """What a search run did and where its study stands."""

    study_name: str
    storage: str  # password masked
    config: StudyConfig
    counts: dict[str, int]  # trials by state, whole study
    budget_left: int
    best: list[optuna.trial.FrozenTrial]
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


def _run_one_worker(config: StudyConfig, *, stop: Any, progress: ProgressCallback | None,
                    model_factory: ModelFactory | None, worker_name: str,
                    study: optuna.Study | None = None,
                    data: TensorData | None = None) -> WorkerResult:
    """Load the study and data in this process (unless given) and run one worker on it."""
    from bsopt.study import load_study

    if study is None:
        storage = make_storage(config.storage, stale_trial_callback=retry_failed_trial)
        study, _ = load_study(storage, config.name)
    device = resolve_device(config.device)
    if data is None:
        data = load_dataset(config.dataset, data_dir=config.data_dir,
                            max_train_samples=config.max_train_samples, device=device)
    store = make_artifact_store(resolve_url(config.storage), config.artifact_dir)
    objective = Objective(config, data, device, artifact_store=store, stop=stop,
                          model_factory=model_factory, progress=progress)
    return run_worker(study, objective, timeout=config.timeout, stop=stop,
                      worker_name=worker_name, on_trial_end=progress)


def _child_worker(config: StudyConfig, stop: Any, events: Any, index: int,
                  threads: int) -> None:
    """Entry point of a worker process started by ``--workers N``."""
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    name = worker_name(index)

    def progress(event: dict[str, Any]) -> None:
        events.put({**event, "worker": index})

    with stop_on_signals(stop, worker_process=True):
        try:
            result = _run_one_worker(config, stop=stop, progress=progress, model_factory=None,
                                     worker_name=name)
            events.put({"event": "worker_done", "worker": index,
                        "interrupted_trial": result.interrupted_trial})
        except (TooManyFailures, StorageFull, DiskFull) as exc:
            events.put({"event": "worker_error", "worker": index, "error": str(exc),
                        "disk_full": isinstance(exc, StorageFull | DiskFull)})
        except KeyboardInterrupt:
            events.put({"event": "worker_error", "worker": index, "error": "aborted"})
        except BaseException as exc:  # a bug: say so, and keep the traceback (re-raised)
            events.put({"event": "worker_error", "worker": index,
                        "error": f"{type(exc).__name__}: {exc}"})
            raise


def worker_name(index: int) -> str:
    """``w<index>@<host>:<pid>``: which worker ran a trial, across machines."""
    return f"w{index}@{os.uname().nodename}:{os.getpid()}"


def _run_worker_processes(config: StudyConfig, stop: Any, progress: ProgressCallback | None,
                          errors: list[str]) -> bool:
    """Run ``config.workers`` worker processes; returns True if any was interrupted.

    Raises:
        StorageFull: a worker found the disk full (after the others have stopped).
    """
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    events = context.Queue()
    threads = threads_per_worker(config.workers)
    processes = [context.Process(target=_child_worker, args=(config, stop, events, i, threads),
                                 name=f"bsopt-worker-{i}")
                 for i in range(config.workers)]
    # Started with Ctrl-C ignored (inherited through exec), so that one arriving before a
    # worker has set up its handlers does not kill it half-way through starting.
    previous = (signal.signal(signal.SIGINT, signal.SIG_IGN)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        for process in processes:
            process.start()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    interrupted, reported, full = False, set(), None
    while len(reported) < len(processes):
        try:
            event = events.get(timeout=1.0)
        except queue.Empty:  # check for workers that died without a word
            if all(not p.is_alive() for p in processes) and events.empty():
                break
            continue
        if event["event"] in ("worker_done", "worker_error"):
            reported.add(event["worker"])
            if event.get("interrupted_trial") is not None:
                interrupted = True
            if event["event"] == "worker_error":
                errors.append(f"worker {event['worker']}: {event['error']}")
            if event.get("disk_full"):
                full = full or event["error"]
        elif progress is not None:
            progress(event)
    for index, process in enumerate(processes):
        process.join()
        if index not in reported:  # killed (OOM, kill -9): the others retried its trial
            errors.append(f"worker {index}: died with exit code {process.exitcode}")
    if full is not None:
        raise StorageFull(full)
    return interrupted or stop.is_set()


def search(config: StudyConfig, explicit: dict[str, Any] | None = None, *,
           progress: ProgressCallback | None = None,
           model_factory: ModelFactory | None = None,
           attach_figures: bool = True) -> SearchResult:
    """Create or join the study described by ``config`` and run its remaining budget.

    Args:
        config: The study definition and this run's settings.
        explicit: The fields the user set (TOML or flags); a join refuses to contradict them.
        progress: Called with a dict for every finished epoch and trial.
        model_factory: Builds the user's network from (input shape, number of classes)
            instead of the reference CNN/MLP (one worker only: it must be importable to be
            sent to worker processes).
        attach_figures: Attach bsopt's figures to the study for optuna-dashboard at the end
            (not after Ctrl-C or SIGTERM).

    Raises:
        UsageError: bad input (see ``bsopt.config`` and ``bsopt.study``); ``DiskFull``
            when the storage's disk is full before any trial ran.
        TooManyFailures: trials keep failing.
        StorageFull: the disk filled up while trials ran.
    """
    # Check everything, and load the data the study will train on, before anything is
    # written: bad input, an absent dataset or a missing device leave the storage as it
    # was. So the checks read the storage opened as the reading commands open it (a
    # database without Optuna's tables holds no study to join, and is not opened at all).
    reader = (make_storage(config.storage, heartbeat=False, create=False)
              if holds_optuna_tables(config.storage) else None)
    in_force = config_in_force(config, reader, explicit)
    data = load_dataset(in_force.dataset, data_dir=in_force.data_dir,
                        max_train_samples=in_force.max_train_samples,
                        device=resolve_device(in_force.device))
    storage = make_storage(config.storage, stale_trial_callback=retry_failed_trial)
    study, config = open_study(config, storage, explicit)
    errors: list[str] = []
    if config.workers == 1:
        stop = threading.Event()
        with stop_on_signals(stop):
            result = _run_one_worker(config, stop=stop, progress=progress,
                                     model_factory=model_factory,
                                     worker_name=worker_name(0), study=study, data=data)
        interrupted = result.interrupted_trial is not None or stop.is_set()
    else:
        stop = multiprocessing.get_context("spawn").Event()
        with stop_on_signals(stop):
            interrupted = _run_worker_processes(config, stop, progress, errors)
    if attach_figures and not interrupted:  # stopping should be prompt; the next run attaches
        from bsopt.dashboard import attach_figures as attach

        attach(study)
    if errors and not interrupted and all("failed in a row" in e for e in errors):
        raise TooManyFailures("; ".join(errors))
    return SearchResult(
        study_name=study.study_name, storage=mask_url(resolve_url(config.storage)),
        config=config, counts=state_counts(study), budget_left=budget_left(study),
        best=_best(study), interrupted=interrupted, errors=errors,
    )


def _best(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    from bsopt.study import best_trials

    return best_trials(study, 5)
