"""Waiting out a lost database connection: :func:`call_with_retry` and the retrying storage.

A call that fails because the connection was lost or refused (a server restart, a network
blip, an SQLite file another process holds locked) is repeated with jittered exponential
back-off for up to ``$BSOPT_STORAGE_RETRY_SECONDS``. Every other failure is raised at once,
as the one-line error of :func:`bsopt.storage.failures.permanent_error` where it is one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from bsopt.internals import RDB_PRIVATE_CALLS, RETRY_HISTORY
from bsopt.records import SLOT_ATTR
from bsopt.storage.failures import is_connection_error, permanent_error
from bsopt.storage.settings import RETRY_ENV, RETRY_SECONDS, env_seconds

MAX_BACKOFF_SECONDS = 5.0
T = TypeVar("T")
logger = logging.getLogger("bsopt.storage")


def call_with_retry(call: Callable[[], T], *, what: str = "storage call",
                    seconds: float | None = None, url: str | None = None) -> T:
    """``call()``, repeated with exponential back-off while it fails on a lost connection.

    Other errors, and a connection still lost after ``seconds`` (default
    ``$BSOPT_STORAGE_RETRY_SECONDS``), are raised; with the storage's ``url`` given, those
    that no wait can heal are raised as the one-line ``UsageError`` of
    :func:`permanent_error`.
    """
    deadline = time.monotonic() + (seconds if seconds is not None
                                   else env_seconds(RETRY_ENV, RETRY_SECONDS))
    delay, failures = 0.2, 0
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_connection_error(exc) or time.monotonic() + delay > deadline:
                if url is not None and (error := permanent_error(exc, url)) is not None:
                    raise error from exc
                raise
            failures += 1
            if failures == 1:
                reason = str(getattr(exc, "orig", None) or exc.__cause__ or exc).strip()
                logger.warning("bsopt: %s lost the database connection (%s); retrying",
                               what, (reason.splitlines() or [type(exc).__name__])[0])
            time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: workers do not stampede
            delay = min(2 * delay, MAX_BACKOFF_SECONDS)
            continue
        if failures:
            logger.warning("bsopt: %s succeeded after %d retries", what, failures)
        return result


def _retried(method: Callable[..., T]) -> Callable[..., T]:
    def wrapper(self: RDBStorage, *args: Any, **kwargs: Any) -> T:
        return call_with_retry(lambda: method(self, *args, **kwargs), what=method.__name__,
                               url=self.url)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _explained(method: Callable[..., T]) -> Callable[..., T]:
    """``method`` raising the one-line error for what waiting cannot heal; not repeated."""
    def wrapper(self: RDBStorage, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if (error := permanent_error(exc, self.url)) is not None:
                raise error from exc
            raise

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class ResilientRDBStorage(RDBStorage):
    """Optuna's ``RDBStorage`` whose calls wait out a lost database connection.

    Reads and upserts (attributes, intermediate values, parameters) are simply repeated.
    Two calls change something once, so a repeat first looks at what the failed attempt
    left, in case it committed and only the answer was lost:

    - ``set_trial_state_values``: a trial already in the requested finished state with the
      requested values was finished by the first attempt (True). A claim (WAITING ->
      RUNNING) finding the trial RUNNING answers False: another worker may hold it. If
      it was ours after all, the heartbeat the worker records before claiming makes it
      stale, so it is failed and retried rather than stuck.
    - trial creation: a trial with the same budget slot and retry history (system
      attributes) as the one being created, already in the study, was added by the first
      attempt and is not added again. Without this, a slot re-added would run twice, and a
      refill token re-added would enqueue its chunk twice.

    Heartbeats are not repeated: the heartbeat thread simply beats again next interval.
    Every call, heartbeats included, raises what waiting cannot heal (a full disk, a damaged
    file) as the one-line error of :func:`permanent_error`.
    """

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                current = RDBStorage.get_trial(self, trial_id)
                if state == TrialState.RUNNING and current.state == TrialState.RUNNING:
                    return False
                if (state.is_finished() and current.state == state
                        and list(current.values or []) == list(values or [])):
                    return True
            return RDBStorage.set_trial_state_values(self, trial_id, state, values)

        return call_with_retry(attempt, what="set_trial_state_values", url=self.url)

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        attempts = 0

        attrs = template_trial.system_attrs if template_trial is not None else {}
        # What identifies the trial being made: its slot and its place in a retry series.
        identity = {key: attrs.get(key) for key in (SLOT_ATTR, RETRY_HISTORY)}

        def attempt() -> FrozenTrial:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and any(value is not None for value in identity.values()):
                # Every state: a quick trial may have been claimed and run meanwhile. A
                # whole-study read, but only after a lost connection.
                for trial in RDBStorage.get_all_trials(self, study_id, deepcopy=False):
                    if all(trial.system_attrs.get(k) == v for k, v in identity.items()):
                        return trial
            return RDBStorage._create_new_trial(self, study_id, template_trial)

        return call_with_retry(attempt, what="create_new_trial", url=self.url)


for _name in ("create_new_study", "delete_study", "set_study_user_attr",
              "set_study_system_attr", "get_study_id_from_name", "get_study_name_from_id",
              "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
              "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "set_trial_param", "get_trial_param",
              "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
              "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
              "get_best_trial", *(n for n in RDB_PRIVATE_CALLS if n != "_create_new_trial")):
    setattr(ResilientRDBStorage, _name, _retried(getattr(RDBStorage, _name)))
ResilientRDBStorage.record_heartbeat = _explained(RDBStorage.record_heartbeat)  # type: ignore
