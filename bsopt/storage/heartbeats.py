"""Heartbeats of running trials, and the retry of a trial whose worker died.

A running trial records Optuna heartbeats in the background (:func:`heartbeat`); a trial
without one for the grace period is failed by the next worker that looks
(``optuna.storages.fail_stale_trials``) and retried by :func:`retry_failed_trial`, the
storage's stale-trial callback, which is also what a worker calls after a trial of its own
fails. The retry resumes from the dead trial's last checkpoint.

Optuna's heartbeats do not pass through the gRPC proxy: behind it, a worker counts up the
trial's system attribute ``bsopt:beat`` instead, which ``bsopt storage-proxy`` turns into
heartbeats (:mod:`bsopt.storage.proxy`). A journal file has no Optuna heartbeats either: its
storage counts up the same attribute itself (:mod:`bsopt.storage.journal`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.storages import BaseStorage, GrpcStorageProxy
from optuna.trial import FrozenTrial, TrialState

from bsopt import records
from bsopt.internals import FAILED_TRIAL, RETRY_HISTORY, storage_of, study_id
from bsopt.storage.claims import is_retried
from bsopt.storage.settings import HEARTBEAT_ENV, HEARTBEAT_SECONDS, env_seconds

PROXY_BEAT_ATTR = "bsopt:beat"  # trial system attribute: a worker's beats through the proxy

# What a retry keeps of the trial it retries: which series it continues and where that
# series' checkpoint is. Curves, reasons and the rest are the new attempt's to write: a
# retry that restarts from scratch must not show the old attempt's fail_reason or curve.
INHERITED_USER_ATTRS = (records.SERIES, records.CHECKPOINT)


def retry_failed_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Re-enqueue a failed trial (once) so it runs again and resumes from its checkpoint.

    Failures do not use the budget. Used as the storage's stale-trial callback and after a
    trial fails in this worker; a trial already retried (two workers both saw it fail)
    is not enqueued twice. The retry has the same parameters, and Optuna's retry
    bookkeeping (``failed_trial``, ``retry_history`` system attributes, as
    ``RetryHeartbeatStaleTrialCallback`` writes them), but no intermediate values: the
    objective reports the checkpointed epochs again, and none if it starts over.

    The check for a retry already made looks at retries in every state (one query on a
    database): a trial whose failure could not be written stays RUNNING while its retry
    runs, and is failed as stale only after that retry has finished.
    """
    if is_retried(storage_of(study), study_id(study), trial):
        return
    system_attrs = {FAILED_TRIAL: trial.number, RETRY_HISTORY: [],
                    **{k: v for k, v in trial.system_attrs.items() if k != PROXY_BEAT_ATTR}}
    system_attrs[RETRY_HISTORY] = [*system_attrs[RETRY_HISTORY], trial.number]
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: trial.user_attrs[k] for k in INHERITED_USER_ATTRS
                    if k in trial.user_attrs},
        system_attrs=system_attrs,
    ))


def retry_series(trial: optuna.Trial) -> int:
    """The number of the first trial of this trial's retry series (itself if not a retry).

    A retry inherits the attribute from the trial it retries (:func:`retry_failed_trial`).
    """
    series = int(trial.user_attrs.get(records.SERIES, trial.number))
    trial.set_user_attr(records.SERIES, series)
    return series


def heartbeat_interval(storage: BaseStorage) -> float | None:
    """Seconds between the storage's Optuna heartbeats; None if it records none.

    (The RDB storage, Optuna's cache in front of it and bsopt's journal storage have
    heartbeats; the gRPC proxy not.)
    """
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    return None if interval is None else float(interval)


@contextmanager
def heartbeat(storage: BaseStorage, trial_id: int, *, beaten: bool = False) -> Iterator[None]:
    """Record the trial's heartbeat in the background while the block runs.

    ``beaten``: an Optuna heartbeat was just recorded (a claim records one before it takes
    the trial), so the first is due one interval from now.

    Optuna's heartbeats do not pass through the gRPC proxy: behind it, the worker counts
    up the trial's system attribute ``bsopt:beat`` instead, which ``bsopt storage-proxy``
    turns into heartbeats (``bsopt.storage.proxy``).
    """
    if (beat_every := heartbeat_interval(storage)) is not None:
        interval = beat_every

        def record(_count: int) -> None:
            storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
    elif isinstance(storage, GrpcStorageProxy):
        interval = env_seconds(HEARTBEAT_ENV, HEARTBEAT_SECONDS)

        def record(count: int) -> None:
            storage.set_trial_system_attr(trial_id, PROXY_BEAT_ATTR, count)
    else:
        yield
        return
    done = threading.Event()

    skip_first = beaten and heartbeat_interval(storage) is not None

    def beat() -> None:
        count = 0
        if skip_first and done.wait(interval):
            return
        while True:
            count += 1
            try:
                record(count)
            except Exception:  # a lost connection: the next beat tries again
                pass
            if done.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
