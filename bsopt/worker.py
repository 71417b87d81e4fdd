"""One worker: claim the study's WAITING trials one at a time and run them.

Optuna's ``Study.optimize`` creates a new trial whenever the queue is empty; with several
workers racing for the last queued trials that overshoots the budget. So a worker claims a
WAITING trial itself (the WAITING -> RUNNING transition is atomic in every storage, as in
``Study.ask``), runs the objective, and tells the result. It records heartbeats while a
trial runs and fails the stale trials of dead workers first; Optuna's
``RetryHeartbeatStaleTrialCallback`` re-enqueues those, and the retry resumes from the dead
trial's last checkpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from bsopt import records
from bsopt.objective import Interrupted

MAX_FAILURES_IN_A_ROW = 3

# Re-enqueue a failed trial with its parameters and user attributes (so its checkpoint).
retry_failed_trial = RetryHeartbeatStaleTrialCallback(max_retry=None,
                                                      inherit_intermediate_values=True)


class TooManyFailures(Exception):
    """Several trials in a row raised an exception: something is wrong, not just unlucky."""


@dataclass
class WorkerResult:
    """What one worker did."""

    finished: dict[str, int] = field(default_factory=dict)  # trials by final state
    interrupted_trial: int | None = None
    resumable_epoch: int | None = None
    last_error: str | None = None


@contextmanager
def heartbeat(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat in the background while the block runs."""
    if not isinstance(storage, BaseHeartbeat):
        yield
        return
    interval = storage.get_heartbeat_interval()
    if interval is None:
        yield
        return
    done = threading.Event()

    def beat() -> None:
        while not done.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a lost connection: the next beat retries
                pass

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def claim_trial(study: optuna.Study) -> optuna.Trial | None:
    """Atomically take one WAITING trial of ``study`` and return it RUNNING; None if none.

    This is ``Study.ask`` without its fallback of creating a new trial, and like it works on
    the study's own storage object (Optuna wraps an RDB storage in a cache that must see
    the state change).
    """
    storage, study_id = study._storage, study._study_id
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = waiting._trial_id
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it and finished it already
    return None


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], Any], *, timeout: float | None = None,
               stop: threading.Event | None = None, worker_name: str = "worker",
               on_trial_end: Callable[[dict[str, Any]], None] | None = None) -> WorkerResult:
    """Run queued trials of ``study`` until none is left, ``timeout`` or ``stop``.

    Raises:
        TooManyFailures: ``MAX_FAILURES_IN_A_ROW`` trials in a row raised an exception.
    """
    result = WorkerResult()
    started = time.monotonic()
    failures_in_a_row = 0
    while not (stop is not None and stop.is_set()):
        if timeout is not None and time.monotonic() - started >= timeout:
            break
        optuna.storages.fail_stale_trials(study)
        trial = claim_trial(study)
        if trial is None:
            break
        trial.set_user_attr(records.WORKER, worker_name)
        trial_started = time.monotonic()
        state, values, error = TrialState.COMPLETE, None, None
        with heartbeat(study._storage, trial._trial_id):
            try:
                values = objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except Interrupted as exc:
                state, error = TrialState.FAIL, str(exc)
                result.interrupted_trial = trial.number
                result.resumable_epoch = len(trial.user_attrs.get(records.VAL_LOSS, []))
            except Exception as exc:  # the objective's bug or a bad lr: record, retry later
                state, error = TrialState.FAIL, f"{type(exc).__name__}: {exc}"
        if error is not None:
            trial.set_user_attr(records.FAIL_REASON, error)
        frozen = study.tell(trial, values, state=state if values is None else None)
        if frozen.state == TrialState.FAIL:
            retry_failed_trial(study, frozen)  # failures do not use the budget
        result.finished[frozen.state.name] = result.finished.get(frozen.state.name, 0) + 1
        if on_trial_end is not None:
            on_trial_end({"event": "end", "trial": frozen.number, "state": frozen.state.name,
                          "values": frozen.values, "batch_size": frozen.params.get("batch_size"),
                          "lr": records.effective_lr(frozen),
                          "seconds": time.monotonic() - trial_started, "error": error})
        if result.interrupted_trial is not None:
            break
        if frozen.state == TrialState.FAIL:
            failures_in_a_row += 1
            result.last_error = error
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise TooManyFailures(
                    f"{failures_in_a_row} trials failed in a row; the last with {error}"
                )
        else:
            failures_in_a_row = 0
    return result
