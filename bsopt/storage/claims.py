"""Reading the few trials a worker needs, at a cost that does not grow with the study.

A worker needs the next WAITING trials (to claim one) and the RUNNING ones (other workers,
stale trials); never the whole history. Optuna's ``get_all_trials(states=...)`` behind its
cache re-reads every unfinished trial of the study on each call, so on a database bsopt
asks the database itself:

- :func:`waiting_trial_ids`: ``SELECT trial_id FROM trials WHERE study_id = ? AND state =
  'WAITING' AND trial_id >= ? ORDER BY trial_id LIMIT ?``, a range of the primary key from
  the worker's cursor (:class:`Cursor`), so a claim reads a handful of rows however long
  the study is. The claim itself stays Optuna's ``set_trial_state_values(RUNNING)``, which
  is what makes it exclusive in every storage.
- :func:`trials_in_states`: the RDB storage's own ``get_all_trials`` (one query filtered
  by state), not the cache's.
- :func:`is_retried`: whether a trial's retry exists, finished or not: one query for its
  retry series (the trials whose ``failed_trial`` is the series' first).

Other storages (the journal file, the gRPC proxy) answer from their own in-memory replay
or server, filtered by state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.orm import aliased

from bsopt.internals import (
    FAILED_TRIAL,
    RETRY_HISTORY,
    rdb_backend,
    trial_id,
    trial_model,
    trial_system_attribute_model,
)
from bsopt.storage.retries import call_with_retry

CANDIDATES = 8  # WAITING trials read per claim: enough for the losers of a race to go on


@dataclass
class Cursor:
    """The lowest trial id a worker may still find WAITING (ids below it were all claimed).

    Trials only ever become WAITING when they are created, with a larger id than any
    before, so the lowest WAITING id only grows. On PostgreSQL two trials created at once
    may commit out of id order, so a worker that finds nothing past its cursor looks once
    from the start before it concludes that nothing is WAITING.
    """

    lowest: int = 0


def waiting_trial_ids(storage: BaseStorage, study_id: int, cursor: Cursor,
                      limit: int = CANDIDATES) -> list[int]:
    """Ids of the first WAITING trials of the study, lowest first: at most ``limit``."""
    rdb = rdb_backend(storage)
    if rdb is None:
        waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        return [trial_id(t) for t in waiting[:limit]]
    trials = trial_model()

    def query(lowest: int) -> list[int]:
        statement = (sqlalchemy.select(trials.trial_id)
                     .where(trials.study_id == study_id, trials.state == TrialState.WAITING,
                            trials.trial_id >= lowest)
                     .order_by(trials.trial_id).limit(limit))
        with rdb.engine.connect() as connection:
            return list(connection.execute(statement).scalars())

    ids = call_with_retry(lambda: query(cursor.lowest), what="waiting trials", url=rdb.url)
    if not ids and cursor.lowest > 0:  # one look from the start: a late commit below it
        ids = call_with_retry(lambda: query(0), what="waiting trials", url=rdb.url)
    if ids:
        cursor.lowest = ids[0]
    return ids


def trials_in_states(storage: BaseStorage, study_id: int,
                     states: Sequence[TrialState]) -> list[FrozenTrial]:
    """The study's trials in ``states`` (e.g. RUNNING), read without the rest of the study."""
    rdb = rdb_backend(storage)
    source = storage if rdb is None else rdb
    return source.get_all_trials(study_id, deepcopy=False, states=tuple(states))


def running_count(storage: BaseStorage, study_id: int) -> int:
    """How many trials of the study are RUNNING: one ``COUNT`` on a database."""
    rdb = rdb_backend(storage)
    if rdb is None:
        return len(storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)))
    trials = trial_model()
    statement = (sqlalchemy.select(sqlalchemy.func.count()).select_from(trials)
                 .where(trials.study_id == study_id, trials.state == TrialState.RUNNING))

    def query() -> int:
        with rdb.engine.connect() as connection:
            return int(connection.execute(statement).scalar_one())

    return call_with_retry(query, what="running trials", url=rdb.url)


def is_retried(storage: BaseStorage, study_id: int, trial: FrozenTrial) -> bool:
    """Whether the study holds a retry of ``trial``, in any state.

    In any state: a trial whose failure could not be written (a full disk) stays RUNNING
    while its retry runs and finishes; when it is failed as stale later, it must not be
    retried again. As Optuna's retry callbacks write them, every retry in a series has
    ``failed_trial`` = the series' first trial and ``retry_history`` ending with the trial
    it retries; a database is asked for the series only.
    """
    def retries_this(history: list[int] | None) -> bool:
        return bool(history) and history[-1] == trial.number

    rdb = rdb_backend(storage)
    if rdb is None:
        return any(retries_this(t.system_attrs.get(RETRY_HISTORY))
                   for t in storage.get_all_trials(study_id, deepcopy=False))
    root = trial.system_attrs.get(FAILED_TRIAL, trial.number)
    trials = trial_model()
    series, history = aliased(trial_system_attribute_model()), aliased(
        trial_system_attribute_model())
    statement = (sqlalchemy.select(history.value_json).select_from(trials)
                 .join(series, series.trial_id == trials.trial_id)
                 .join(history, history.trial_id == trials.trial_id)
                 .where(trials.study_id == study_id, series.key == FAILED_TRIAL,
                        series.value_json == json.dumps(root), history.key == RETRY_HISTORY))

    def query() -> list[str]:
        with rdb.engine.connect() as connection:
            return list(connection.execute(statement).scalars())

    found = call_with_retry(query, what="retries of a trial", url=rdb.url)
    return any(retries_this(json.loads(value)) for value in found)
