"""One worker: claim the study's WAITING trials one at a time and run them.

Optuna's ``Study.optimize`` creates a new trial whenever the queue is empty; with several
workers racing for the last queued trials that overshoots the budget. So a worker claims a
WAITING trial itself (the WAITING -> RUNNING transition is atomic in every storage, as in
``Study.ask``; it reads a few WAITING trials from its cursor, never the whole study), runs
the objective, and tells the result. It records heartbeats while a trial runs and fails the
stale trials of dead workers first; :func:`retry_failed_trial` re-enqueues those, and the
retry resumes from the dead trial's last checkpoint. A worker with nothing left to claim
waits while other workers' trials run, so that if one of them dies its trial is retried
here instead of waiting for the next ``bsopt search``.
"""

from __future__ import annotations

import math
import random
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from bsopt import records
from bsopt.errors import DiskFull, UsageError
from bsopt.internals import (
    claimed_trial,
    remember_claimed_trial,
    storage_of,
    study_id,
    trial_id,
)
from bsopt.search.budget import is_refilling, refill
from bsopt.search.progress import Kind, ProgressCallback, TrialProgress
from bsopt.storage import call_with_retry, heartbeat, heartbeat_interval, retry_failed_trial
from bsopt.storage.claims import Cursor, running_count, trials_in_states, waiting_trial_ids
from bsopt.storage.failures import disk_full

MAX_FAILURES_IN_A_ROW = 3
MAX_IDLE_POLL_SECONDS = 1.0
CLAIM_ROUNDS = 8  # rounds of candidates a claim tries before it says none is WAITING
REFILL_POLL_SECONDS = 0.05  # first wait while another worker enqueues the next chunk


class Interrupted(Exception):
    """The worker was asked to stop (Ctrl-C, SIGTERM) in the middle of a trial.

    Defined here, not beside the objective that raises it, so that the worker loop does not
    import torch: an objective that does not train (or a reading command) need not wait.
    """
class TooManyFailures(Exception):
    """Several trials in a row raised an exception: something is wrong, not just unlucky."""


class StorageFull(Exception):
    """The disk of the storage (or of the checkpoints) filled up while a trial ran.

    The worker stops. The trial it was running is re-enqueued and failed when the storage
    still takes those writes; where it does not, the trial is left RUNNING without a
    heartbeat, so that the next run fails it as stale and retries it (once): either way the
    budget is whole again once space is freed and the command runs again.
    """


@dataclass
class WorkerResult:
    """What one worker did."""

    finished: dict[str, int] = field(default_factory=dict)  # trials by final state
    interrupted_trial: int | None = None
    resumable_epoch: int | None = None
    last_error: str | None = None
    taken_over: int = 0  # trials failed as stale by another worker while this one ran them


def claim_trial(study: optuna.Study, cursor: Cursor | None = None) -> optuna.Trial | None:
    """Atomically take one WAITING trial of ``study`` and return it RUNNING; None if none.

    This is ``Study.ask`` without its fallback of creating a new trial, and like it works on
    the study's own storage object (Optuna wraps an RDB storage in a cache that must see
    the state change). It reads only the first few WAITING trials from the worker's
    ``cursor`` (``bsopt.storage.claims``), tries the lowest first and the others in a random
    order (so that many workers racing for the same trials spread out). A heartbeat is
    recorded before the claim, so that a worker dying right after claiming still leaves a
    trial that goes stale and is retried. A claimed refill token enqueues the next chunk
    of the budget (``bsopt.search.budget``) before the trial is returned.
    """
    storage = storage_of(study)
    beats = heartbeat_interval(storage) is not None
    cursor = cursor or Cursor()
    # Workers started together race for the same few candidates: a worker that lost them
    # all looks again past them (they are no longer WAITING) rather than idling or, seeing
    # no trial RUNNING yet, leaving while the budget waits. Bounded, for a stale reader.
    for _ in range(CLAIM_ROUNDS):
        candidates = waiting_trial_ids(storage, study_id(study), cursor)
        if not candidates:
            return None
        candidates[1:] = random.sample(candidates[1:], len(candidates) - 1)
        for tid in candidates:
            if beats:
                call_with_retry(lambda: storage.record_heartbeat(tid),  # type: ignore
                                what="record_heartbeat")
            try:
                if storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                    trial = optuna.Trial(study, tid)
                    frozen = claimed_trial(trial)
                    remember_claimed_trial(storage, study_id(study), frozen)
                    if is_refilling(frozen):
                        with heartbeat(storage, tid, beaten=True):  # the refill may take long
                            refill(study, frozen)
                        if beats:  # the caller counts the claim's beat as just recorded
                            call_with_retry(lambda: storage.record_heartbeat(tid),  # type: ignore
                                            what="record_heartbeat")
                    return trial
            except UpdateFinishedTrialError:
                continue  # another worker took it and finished it already
    return None


def _running(study: optuna.Study) -> list[FrozenTrial]:
    return trials_in_states(storage_of(study), study_id(study), (TrialState.RUNNING,))


def running_elsewhere(study: optuna.Study) -> int:
    """Trials that bsopt workers are running now (0 when the storage has no heartbeats).

    A trial whose worker is still enqueueing the next chunk of the budget counts too. Behind
    the gRPC proxy the worker cannot tell whether anything fails stale trials (only
    ``bsopt storage-proxy`` does), so it does not wait for them there.
    """
    if heartbeat_interval(storage_of(study)) is None:
        return 0
    return sum(records.WORKER in t.user_attrs or is_refilling(t) for t in _running(study))


def _refilling(study: optuna.Study) -> bool:
    """Whether a worker is enqueueing the next chunk now (its trial not yet started)."""
    return any(is_refilling(t) and records.WORKER not in t.user_attrs for t in _running(study))


def _not_alone(study: optuna.Study, trial: optuna.Trial, first_claim: bool) -> bool:
    """Whether other workers run this study now, or (at this worker's start) ran it before.

    Reads the RUNNING trials only: a worker claims the lowest WAITING trial first, so a
    first claim above trial 0 means that the trials below it were claimed before.
    """
    return ((first_claim and trial.number > 0)
            or running_count(storage_of(study), study_id(study)) > 1)


def _finish(study: optuna.Study, trial: optuna.Trial, values: Any, state: TrialState,
            error: str | None) -> FrozenTrial | None:
    """Tell the trial's outcome; None if another worker failed it as stale meanwhile."""
    try:
        if error is not None:
            trial.set_user_attr(records.FAIL_REASON, error)
        return study.tell(trial, values, state=state if values is None else None)
    except (ValueError, UpdateFinishedTrialError):
        # This worker was cut off from the database (or paused) for longer than the grace
        # period: another one failed the trial and enqueued its retry. Leave it to that.
        if storage_of(study).get_trial(trial_id(trial)).state.is_finished():
            return None
        raise


def _give_back(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Re-enqueue, then fail, a trial the worker cannot finish; as far as the storage lets.

    In that order: a retry enqueued while the failure cannot be written leaves the trial
    RUNNING, and the stale-trial check that fails it later finds the retry and adds none.
    """
    try:
        retry_failed_trial(study, storage_of(study).get_trial(trial_id(trial)))
        trial.set_user_attr(records.FAIL_REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
    except UsageError:  # the disk is still full: the next run's stale-trial check does it
        pass


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], Any], *,
               timeout: float | None = None, stop: threading.Event | None = None,
               worker_name: str = "worker",
               on_trial_end: ProgressCallback | None = None,
               after_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
               trial_attrs: dict[str, Any] | None = None) -> WorkerResult:
    """Run queued trials of ``study`` until none is left or running, ``timeout`` or ``stop``.

    ``trial_attrs`` are set on every trial this worker runs (its device, its precision).

    Raises:
        TooManyFailures: ``MAX_FAILURES_IN_A_ROW`` trials in a row raised an exception.
        StorageFull: the disk filled up while a trial ran (see the class).
        DiskFull: the disk is full before this worker has started a trial.
    """
    result = WorkerResult()
    started = time.monotonic()
    stop = stop or threading.Event()
    failures_in_a_row, reseeded, claimed = 0, False, 0
    storage = storage_of(study)
    cursor, checked = Cursor(), -math.inf
    poll = min(heartbeat_interval(storage) or MAX_IDLE_POLL_SECONDS, MAX_IDLE_POLL_SECONDS)
    refill_wait = REFILL_POLL_SECONDS
    while not stop.is_set():
        if timeout is not None and time.monotonic() - started >= timeout:
            break
        if time.monotonic() - checked >= poll:  # a trial goes stale in seconds, not sooner
            with warnings.catch_warnings():  # "fail_stale_trials is experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            checked = time.monotonic()
        trial = claim_trial(study, cursor)
        if trial is None:
            checked = -math.inf  # look for stale trials before concluding
            if not running_elsewhere(study):
                break
            # A stale one among them is failed and re-enqueued next round. The next chunk
            # of the budget, being enqueued now, comes sooner: looked for often at first,
            # then less (its holder may have died, and its trial takes the grace period
            # to go stale).
            if _refilling(study):
                stop.wait(refill_wait)
                refill_wait = min(2 * refill_wait, poll)
            else:
                stop.wait(poll)
            continue
        refill_wait = REFILL_POLL_SECONDS
        if not reseeded and _not_alone(study, trial, first_claim=not claimed):
            # Every worker, and every run, builds its sampler from the study's seed: left
            # alone they would propose the same points again. So only a worker that has a
            # new study to itself keeps the seed (a reproducible run); the others reseed.
            study.sampler.reseed_rng()
            reseeded = True
        claimed += 1
        trial_started = time.monotonic()
        state, values, error = TrialState.COMPLETE, None, None
        try:
            with heartbeat(storage, trial_id(trial), beaten=True):  # beaten by the claim
                try:
                    trial.set_user_attr(records.WORKER, worker_name)
                    for key, value in (trial_attrs or {}).items():
                        trial.set_user_attr(key, value)
                    values = objective(trial)
                except optuna.TrialPruned:
                    state = TrialState.PRUNED
                except Interrupted as exc:
                    state, error = TrialState.FAIL, str(exc)
                    result.interrupted_trial = trial.number
                    result.resumable_epoch = len(trial.user_attrs.get(records.VAL_LOSS, []))
                except Exception as exc:  # the objective's bug or a bad lr: record, retry
                    if (full := disk_full(exc)) is not None:
                        raise full from exc
                    state, error = TrialState.FAIL, f"{type(exc).__name__}: {exc}"
                frozen = _finish(study, trial, values, state, error)
        except DiskFull as exc:
            _give_back(study, trial, str(exc))
            raise StorageFull(f"{exc} (trial {trial.number} is retried when the study runs "
                              "again)") from exc
        if frozen is None:
            result.taken_over += 1
            final_state = "FAIL"
            error = "failed as stale by another worker, which retries it"
        else:
            final_state = frozen.state.name
            if frozen.state == TrialState.FAIL:
                retry_failed_trial(study, frozen)  # failures do not use the budget
            if after_trial is not None:
                after_trial(study, frozen)
        result.finished[final_state] = result.finished.get(final_state, 0) + 1
        if on_trial_end is not None:
            source = frozen or storage.get_trial(trial_id(trial))
            values = tuple(source.values) if frozen is not None and source.values else None
            on_trial_end(TrialProgress(
                Kind.END, source.number, source.params.get("batch_size"),
                records.effective_lr(source), state=final_state, values=values,
                seconds=time.monotonic() - trial_started, error=error))
        if result.interrupted_trial is not None:
            break
        if frozen is not None and frozen.state == TrialState.FAIL:
            failures_in_a_row += 1
            result.last_error = error
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise TooManyFailures(
                    f"{failures_in_a_row} trials failed in a row; the last with {error}"
                )
        elif frozen is not None:
            failures_in_a_row = 0
    return result
