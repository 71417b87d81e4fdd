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
from typing import TYPE_CHECKING, Any

import optuna

from bsopt import records
from bsopt.config import StudyConfig
from bsopt.errors import DiskFull
from bsopt.interrupts import stop_on_signals
from bsopt.records import best_trials, state_counts
from bsopt.search.budget import budget_left
from bsopt.search.progress import Failure, ProgressCallback, TrialProgress, WorkerExit
from bsopt.search.study import load_study, open_study, plan_study
from bsopt.search.worker import StorageFull, TooManyFailures, WorkerResult, run_worker
from bsopt.storage import (
    holds_optuna_tables,
    make_storage,
    mask_url,
    resolve_url,
    retry_failed_trial,
)
from bsopt.storage.checkpoints import make_artifact_store
from bsopt.storage.weights import follow_best, sweep

if TYPE_CHECKING:  # torch is imported where trials train, not where studies are opened
    from bsopt.search.objective import ModelFactory
    from bsopt.training import TrialData

BEST_SHOWN = 5  # best trials in a search's result


@dataclass
class SearchResult:
    """What a search run did and where its study stands."""

    study: optuna.Study
    study_name: str
    storage: str  # password masked
    config: StudyConfig
    counts: dict[str, int]  # trials by state, whole study
    budget_left: int
    best: list[optuna.trial.FrozenTrial]
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)  # workers that stopped early, and why
    data: str = ""  # the data line: splits, in memory or streamed, and why


def _load_data(config: StudyConfig) -> TrialData:
    from bsopt.training import load_dataset, resolve_device

    return load_dataset(config.dataset, data_dir=config.data_dir,
                        max_train_samples=config.max_train_samples,
                        device=resolve_device(config.device), image_size=config.image_size,
                        mode=config.data_mode, loader_workers=config.loader_workers,
                        workers=config.workers)


def _check_training(config: StudyConfig, model_factory: ModelFactory | None, *,
                    devices_here: bool = True) -> TrialData | None:
    """Load what trials will train on and check it, before the study is written.

    ``devices_here`` False: the workers train elsewhere (``bsopt launch``): their GPUs and
    precision are theirs to check.

    Returns:
        The data bsopt's trainer trains on; None when the user's function or command trains.

    Raises:
        UsageError: an unknown or missing dataset, model, optimizer, device or function;
            GPUs that cannot be shared out; fp16 without CUDA.
    """
    from bsopt.training import resolve_device
    from bsopt.training.device import config_devices

    resolve_device(config.device)
    if devices_here:
        config_devices(config)
    if config.command is not None:
        from bsopt.search.command import check_command

        check_command(config)
        return None
    if config.train is not None:
        from bsopt.search.train_function import load_train_function

        load_train_function(config.train)
        return None
    from bsopt.search.objective import check_trainable

    data = _load_data(config)
    check_trainable(config, data, model_factory)
    return data


def _make_objective(config: StudyConfig, *, stop: Any, progress: ProgressCallback | None,
                    model_factory: ModelFactory | None, data: TrialData | None,
                    artifact_store: Any) -> Callable[[optuna.Trial], Any]:
    """What one trial runs: the user's command or training function, or bsopt's trainer."""
    from bsopt.training import resolve_device

    device = resolve_device(config.device)
    if config.command is not None:
        from bsopt.search.command import CommandObjective

        return CommandObjective(config, str(device), artifact_store=artifact_store,
                                stop=stop, progress=progress)
    if config.train is not None:
        from bsopt.search.train_function import TrainFunctionObjective

        return TrainFunctionObjective(config, str(device), artifact_store=artifact_store,
                                      stop=stop, progress=progress)
    from bsopt.search.objective import Objective

    return Objective(config, data if data is not None else _load_data(config), device,
                     artifact_store=artifact_store, stop=stop, model_factory=model_factory,
                     progress=progress)


def _run_one_worker(config: StudyConfig, *, stop: Any, progress: ProgressCallback | None,
                    model_factory: ModelFactory | None, worker_name: str,
                    study: optuna.Study | None = None,
                    data: TrialData | None = None) -> WorkerResult:
    """Load the study and data in this process (unless given) and run one worker on it."""
    if study is None:
        study = load_study(make_storage(config.storage, stale_trial_callback=retry_failed_trial),
                           config)
    from bsopt.training import resolve_device

    store = make_artifact_store(resolve_url(config.storage), config.artifact_dir)
    # Where each trial trained and in which precision, on the trial (``--gpus`` gives each
    # worker process its own device).
    trial_attrs = {records.DEVICE: str(resolve_device(config.device)),
                   records.PRECISION: config.precision}
    objective = _make_objective(config, stop=stop, progress=progress,
                                model_factory=model_factory, data=data, artifact_store=store)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        follow_best(study, store, trial, config.keep_best)

    return run_worker(study, objective, timeout=config.timeout, stop=stop,
                      worker_name=worker_name, on_trial_end=progress, after_trial=after_trial,
                      trial_attrs=trial_attrs)


def _child_worker(config: StudyConfig, stop: Any, events: Any, index: int,
                  threads: int) -> None:
    """Entry point of a worker process started by ``--workers N``."""
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def progress(event: TrialProgress) -> None:
        events.put(event.from_worker(index))

    with stop_on_signals(stop, worker_process=True):
        try:
            result = _run_one_worker(config, stop=stop, progress=progress, model_factory=None,
                                     worker_name=worker_name(index))
            events.put(WorkerExit(index, interrupted=result.interrupted_trial is not None))
        except TooManyFailures as exc:
            events.put(WorkerExit(index, failure=Failure.TOO_MANY_FAILURES, message=str(exc)))
        except (StorageFull, DiskFull) as exc:
            events.put(WorkerExit(index, failure=Failure.DISK_FULL, message=str(exc)))
        except KeyboardInterrupt:
            events.put(WorkerExit(index, failure=Failure.ABORTED, message="aborted"))
        except BaseException as exc:  # a bug: say so, and keep the traceback (re-raised)
            events.put(WorkerExit(index, failure=Failure.BUG,
                                  message=f"{type(exc).__name__}: {exc}"))
            raise


def _devices(config: StudyConfig) -> list[str]:
    from bsopt.training.device import config_devices

    return config_devices(config)


def worker_name(index: int) -> str:
    """``w<index>@<host>:<pid>``: which worker ran a trial, across machines."""
    return f"w{index}@{os.uname().nodename}:{os.getpid()}"


def _run_worker_processes(config: StudyConfig, stop: Any,
                          progress: ProgressCallback | None) -> list[WorkerExit]:
    """Run ``config.workers`` worker processes until each has ended; how each ended."""
    from bsopt.training import threads_per_worker

    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    events = context.Queue()
    threads = threads_per_worker(config.workers)
    devices = _devices(config)
    processes = [context.Process(target=_child_worker,
                                 args=(config.replace(device=devices[i], gpus=None,
                                                      trials_per_gpu=1), stop, events, i,
                                       threads),
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
    exits: dict[int, WorkerExit] = {}
    while len(exits) < len(processes):
        try:
            event = events.get(timeout=1.0)
        except queue.Empty:  # check for workers that died without a word
            if all(not p.is_alive() for p in processes) and events.empty():
                break
            continue
        if isinstance(event, WorkerExit):
            exits[event.worker] = event
        elif progress is not None:
            progress(event)
    for index, process in enumerate(processes):
        process.join()
        if index not in exits:  # killed (OOM, kill -9): the others retried its trial
            exits[index] = WorkerExit(index, failure=Failure.DIED,
                                      message=f"died with exit code {process.exitcode}")
    return [exits[i] for i in sorted(exits)]


def search(config: StudyConfig, explicit: dict[str, Any] | None = None, *,
           progress: ProgressCallback | None = None,
           model_factory: ModelFactory | None = None,
           on_data: Callable[[str], None] | None = None) -> SearchResult:
    """Create or join the study described by ``config`` and run its remaining budget.

    Args:
        config: The study definition and this run's settings.
        explicit: The fields the user set (TOML or flags); a join refuses to contradict them.
        progress: Called with a :class:`~bsopt.search.progress.TrialProgress` for every
            finished epoch and trial.
        model_factory: Builds the user's network from (input shape, number of classes)
            instead of the reference CNN/MLP (one worker only: it must be importable to be
            sent to worker processes).
        on_data: Called once the data are loaded, before any trial, with one line saying
            what they are and whether they are held in memory or streamed, and why.

    Raises:
        UsageError: bad input (see ``bsopt.config`` and ``bsopt.search.study``); ``DiskFull``
            when the storage's disk is full before any trial ran.
        TooManyFailures: trials keep failing.
        StorageFull: the disk filled up while trials ran.

    Example::

        config, explicit = build_config("studies/digits_cnn.toml", {"n_trials": 8})
        result = search(config, explicit)
        attach_figures(result.study)  # bsopt.visualization: what `bsopt search` then does
    """
    # Check everything, and load the data the study will train on, before anything is
    # written: bad input, an absent dataset or a missing device leave the storage as it
    # was. So the checks read the storage opened as the reading commands open it (a
    # database without Optuna's tables holds no study to join, and is not opened at all).
    reader = (make_storage(config.storage, heartbeat=False, create=False)
              if holds_optuna_tables(config.storage) else None)
    plan = plan_study(config, reader, explicit)
    data = _check_training(plan.config, model_factory)
    data_line = ""  # the user's function or script loads its own data
    if data is not None:
        from bsopt.training import describe

        data_line = describe(data)
        if on_data is not None:
            on_data(data_line)
    study = open_study(plan, make_storage(config.storage, stale_trial_callback=retry_failed_trial))
    config = plan.config
    if config.workers == 1:
        stop: Any = threading.Event()
        with stop_on_signals(stop):
            result = _run_one_worker(config.replace(device=_devices(config)[0], gpus=None,
                                                    trials_per_gpu=1), stop=stop, progress=progress,
                                     model_factory=model_factory,
                                     worker_name=worker_name(0), study=study, data=data)
        exits = [WorkerExit(0, interrupted=result.interrupted_trial is not None)]
    else:
        data = None  # each worker process loads its own copy: do not hold one more here
        stop = multiprocessing.get_context("spawn").Event()
        with stop_on_signals(stop):
            exits = _run_worker_processes(config, stop, progress)
    interrupted = stop.is_set() or any(e.interrupted for e in exits)
    failed = [e for e in exits if e.failure is not None]
    if full := [e for e in failed if e.failure == Failure.DISK_FULL]:
        raise StorageFull(full[0].message)
    if not interrupted:  # weights a worker left behind, two finishing at once
        sweep(study, make_artifact_store(resolve_url(config.storage), config.artifact_dir),
              config.keep_best)
    errors = [f"worker {e.worker}: {e.message}" for e in failed]
    if failed and not interrupted and all(e.failure == Failure.TOO_MANY_FAILURES
                                          for e in failed):
        raise TooManyFailures("; ".join(errors))
    return SearchResult(
        study=study, study_name=study.study_name, storage=mask_url(resolve_url(config.storage)),
        config=config, counts=state_counts(study), budget_left=budget_left(study),
        best=best_trials(study, BEST_SHOWN), interrupted=interrupted, errors=errors,
        data=data_line,
    )


def prepare_study(config: StudyConfig,
                  explicit: dict[str, Any] | None = None) -> tuple[optuna.Study, StudyConfig]:
    """Check a study as :func:`search` does, then create or join it; no trial runs.

    What ``bsopt launch`` does before it hands workers to a cluster: bad input leaves the
    storage as it was. The workers run elsewhere, so the data, the network (or the user's
    training function) are checked here on the CPU, and the device each worker trains on
    is checked by that worker, where it runs.

    Returns:
        The study and the config in force (the stored definition with this run's fields).

    Raises:
        UsageError: bad input; the study another process created contradicts it.
    """
    reader = (make_storage(config.storage, heartbeat=False, create=False)
              if holds_optuna_tables(config.storage) else None)
    plan = plan_study(config, reader, explicit)
    # This machine's devices are not the workers': check the training on its CPU.
    _check_training(plan.config.replace(device="cpu", gpus=None, trials_per_gpu=1), None,
                    devices_here=False)
    return (open_study(plan, make_storage(config.storage, stale_trial_callback=retry_failed_trial)),
            plan.config)
