"""Optuna's journal file as a storage, for clusters with a shared filesystem but no database.

``journal:///shared/bsopt/study.log`` is Optuna's ``JournalStorage`` on a
``JournalFileBackend``: every change is one JSON line appended under a lock file (a
symlink, which works on NFS), and every process replays the lines in the same order. That
order makes a claim atomic: when two workers both ask to move a WAITING trial to RUNNING,
the first line wins in every replay, and Optuna answers False to the other.

Optuna's journal has no heartbeats (``JournalStorage`` does not implement
``BaseHeartbeat``). :class:`HeartbeatJournalStorage` adds them the way bsopt does behind the
gRPC proxy: a running trial counts up its system attribute ``bsopt:beat`` every interval,
and a trial whose count has not moved for the grace period, as seen by another worker's own
clock, is stale. No two machines' clocks are compared, so skew between them cannot fail a
live trial. Optuna's ``fail_stale_trials`` and bsopt's retries then work as with a database.

Checkpoints go beside the file (``study.log.artifacts``), as for SQLite. A worker killed
while it holds the lock leaves the lock file behind; the others break it after 30 s
(Optuna's grace period for the lock).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from bsopt.errors import UsageError
from bsopt.internals import heartbeat_base, trial_id
from bsopt.storage.heartbeats import PROXY_BEAT_ATTR
from bsopt.storage.urls import journal_path

StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]
_SNIFF_BYTES = 65536  # enough for the first line of any journal (a study's creation)


class HeartbeatJournalStorage(JournalStorage, heartbeat_base()):  # type: ignore[misc]
    """A journal storage whose running trials beat, so dead workers' trials go stale.

    Args:
        path: The journal file (created if missing).
        heartbeat_interval: Seconds between a running trial's beats.
        grace_period: Seconds a trial's count may stand still before it is stale.
        stale_trial_callback: Called with each trial failed for a stale heartbeat.
    """

    def __init__(self, path: Path, *, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: StaleTrialCallback | None = None) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self._interval = heartbeat_interval
        self._grace = grace_period
        self._callback = stale_trial_callback
        self._counts: dict[int, int] = {}  # trial id -> beats this process recorded
        self._seen: dict[int, dict[int, tuple[Any, float]]] = {}  # study -> trial -> last

    def record_heartbeat(self, trial_id: int) -> None:
        """Count up the trial's beat while it runs; nothing before its claim or after its end.

        (Unlike a database, the journal needs no beat before a claim: a claimed trial whose
        count never moves goes stale all the same, and no line is written for nothing.)
        """
        if self.get_trial(trial_id).state != TrialState.RUNNING:
            return
        count = self._counts.get(trial_id, 0) + 1
        self._counts[trial_id] = count
        try:
            # The attribute workers behind the gRPC proxy count up too: a running trial's
            # beats, wherever Optuna's heartbeats do not reach.
            self.set_trial_system_attr(trial_id, PROXY_BEAT_ATTR, count)
        except UpdateFinishedTrialError:
            pass  # another worker finished or failed it meanwhile: nothing to keep alive

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """The running trials whose beat has not moved for the grace period, seen from here.

        A trial seen for the first time counts from now: a worker that joins waits one
        grace period before it fails anything.
        """
        now = time.monotonic()
        before = self._seen.get(study_id, {})
        seen: dict[int, tuple[Any, float]] = {}
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(PROXY_BEAT_ATTR)
            last = before.get(trial_id(trial))
            seen[trial_id(trial)] = last if last is not None and last[0] == beat else (beat, now)
            if now - seen[trial_id(trial)][1] > self._grace:
                stale.append(trial_id(trial))
        self._seen[study_id] = seen
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
        return self._callback


def journal_file(url: str, *, create: bool) -> Path:
    """The journal file of ``url``, refused if it cannot be one (or, to read, is not there).

    Raises:
        UsageError: a relative path, a directory, a missing directory, no file to read
            (``create=False``), or a file that is not an Optuna journal.
    """
    path = journal_path(url)
    assert path is not None, url
    if path.is_dir():
        raise UsageError(f"storage {path} is a directory: give a journal file such as "
                         f"journal://{path / 'study.log'}")
    if not path.parent.is_dir():
        raise UsageError(f"storage directory {path.parent} does not exist: create it first")
    if not path.exists():
        if not create:
            raise UsageError(f"no study journal at {path}: give the --storage your search "
                             "used")
        return path
    try:
        with open(path, "rb") as file:
            first = file.read(_SNIFF_BYTES).split(b"\n", 1)[0]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if first and not _is_journal_line(first):
        raise UsageError(f"{path} is not an Optuna journal file: give the --storage your "
                         "search used")
    return path


def _is_journal_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(record, dict) and {"op_code", "worker_id"} <= set(record)


def make_journal_storage(url: str, *, heartbeat_kwargs: dict[str, Any],
                         create: bool) -> JournalStorage:
    """The journal storage of ``url``: with heartbeats if ``heartbeat_kwargs`` has them.

    Reading (``create=False``, no heartbeats) opens only a file that exists and writes
    nothing to it: Optuna's file backend creates the file only when it is missing.

    Raises:
        UsageError: see :func:`journal_file`; a damaged file (a line that is not JSON).
    """
    path = journal_file(url, create=create)
    try:
        if heartbeat_kwargs:
            return HeartbeatJournalStorage(
                path, heartbeat_interval=heartbeat_kwargs["heartbeat_interval"],
                grace_period=heartbeat_kwargs["grace_period"],
                stale_trial_callback=heartbeat_kwargs["heartbeat_stale_trial_callback"])
        return JournalStorage(JournalFileBackend(str(path)))
    except ValueError as exc:  # JSONDecodeError, or Optuna's "Invalid log format."
        raise UsageError(f"{path} is damaged ({exc}): restore it from a backup, or give "
                         "another --storage") from None
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror or exc}") from None
