"""Storage URL in, configured Optuna storage out; URL masking for output.

- ``sqlite:///path.db`` (the embedded default): WAL journal, a long busy timeout and
  ``BEGIN IMMEDIATE`` transactions, so several local processes can write one file without
  "database is locked" errors.
- ``postgresql://user:pw@host/db``: psycopg 3 without the user naming a driver, pooled
  connections checked before use (``pool_pre_ping``) so a restarted server is survived.
- ``grpc://host:port``: Optuna's gRPC storage proxy (``bsopt storage-proxy``).

Both RDB storages are a :class:`ResilientRDBStorage`: a call that fails because the
database connection was lost or refused (a server restart, a network blip, a lock held too
long) is repeated with back-off for up to ``$BSOPT_STORAGE_RETRY_SECONDS`` (120 s).

RDB storages record heartbeats every ``$BSOPT_HEARTBEAT_SECONDS`` (10 s); a trial whose
worker died is failed after ``$BSOPT_GRACE_SECONDS`` (30 s) without one and retried
(``bsopt.worker``). Optuna's heartbeats do not pass through the gRPC proxy; bsopt relays
its own instead (``bsopt.proxy``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from bsopt.errors import UsageError

DEFAULT_STORAGE = "sqlite:///bsopt.db"
STORAGE_ENV = "BSOPT_STORAGE"
HEARTBEAT_ENV, HEARTBEAT_SECONDS = "BSOPT_HEARTBEAT_SECONDS", 10
GRACE_ENV, GRACE_SECONDS = "BSOPT_GRACE_SECONDS", 30
RETRY_ENV, RETRY_SECONDS = "BSOPT_STORAGE_RETRY_SECONDS", 120.0
MAX_BACKOFF_SECONDS = 5.0

StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]
T = TypeVar("T")
logger = logging.getLogger("bsopt.storage")


def resolve_url(url: str | None) -> str:
    """``--storage``, else ``$BSOPT_STORAGE``, else ``sqlite:///bsopt.db``."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for output and logs)."""
    try:
        parsed = make_url(url)
    except Exception:  # not an SQLAlchemy URL (e.g. grpc://): mask by hand
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":***@", 1)
        return url
    return parsed.render_as_string(hide_password=True)


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy should use: psycopg 3 for plain ``postgresql://``."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_database_path(url: str) -> Path | None:
    """The database file of an ``sqlite:///`` URL, or None for other storages."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return None if database in (None, "", ":memory:") else Path(database)


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``name``, else ``default``.

    Raises:
        UsageError: the variable is set but is not a positive number.
    """
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"${name} must be a positive number of seconds, got {text!r}")
    return value


# --- retrying on a lost connection ---------------------------------------------------------

def is_connection_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a lost, refused or busy connection.

    Optuna turns SQLAlchemy errors into ``StorageInternalError`` raised from them; psycopg's
    and sqlite3's connection, shutdown and lock errors are DBAPI ``OperationalError``s. A
    session whose connection died mid-transaction fails its next statement with
    ``PendingRollbackError`` (Optuna's ``_get_trials`` falls back to a second query on the
    same session): that is the lost connection too, and Optuna rolls the session back.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlalchemy.exc.PendingRollbackError):
            return True
        if isinstance(exc, sqlalchemy.exc.DBAPIError):
            return bool(exc.connection_invalidated) or isinstance(
                exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
        exc = exc.__cause__ or exc.__context__
    return False


def call_with_retry(call: Callable[[], T], *, what: str = "storage call",
                    seconds: float | None = None) -> T:
    """``call()``, repeated with exponential back-off while it fails on a lost connection.

    Other errors, and a connection still lost after ``seconds`` (default
    ``$BSOPT_STORAGE_RETRY_SECONDS``), are raised.
    """
    deadline = time.monotonic() + (seconds if seconds is not None
                                   else env_seconds(RETRY_ENV, RETRY_SECONDS))
    delay, failures = 0.2, 0
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_connection_error(exc) or time.monotonic() + delay > deadline:
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
        return call_with_retry(lambda: method(self, *args, **kwargs), what=method.__name__)

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
    - trial creation: a retry of a failed trial (``retry_history`` in its system
      attributes) already present in the study is not added again.

    Heartbeats are not repeated: the heartbeat thread simply beats again next interval.
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

        return call_with_retry(attempt, what="set_trial_state_values")

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        attempts = 0

        def attempt() -> FrozenTrial:
            nonlocal attempts
            attempts += 1
            history = template_trial.system_attrs.get("retry_history") if template_trial else None
            if attempts > 1 and history:
                for trial in RDBStorage.get_all_trials(self, study_id, deepcopy=False):
                    if trial.system_attrs.get("retry_history") == history:
                        return trial
            return RDBStorage._create_new_trial(self, study_id, template_trial)

        return call_with_retry(attempt, what="create_new_trial")


for _name in ("create_new_study", "delete_study", "set_study_user_attr",
              "set_study_system_attr", "get_study_id_from_name", "get_study_name_from_id",
              "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
              "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "set_trial_param", "_set_trial_param", "get_trial_param",
              "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
              "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
              "_get_trials", "get_best_trial", "_get_best_trial_id", "_get_stale_trial_ids"):
    setattr(ResilientRDBStorage, _name, _retried(getattr(RDBStorage, _name)))


# --- building storages ----------------------------------------------------------------------

def _on_sqlite_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Let SQLAlchemy emit BEGIN itself (pysqlite's own handling defers it), and make
    # writers wait for each other instead of failing with "database is locked".
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA busy_timeout = 60000")
    dbapi_connection.execute("PRAGMA synchronous = NORMAL")


def _on_sqlite_begin(connection: sqlalchemy.engine.Connection) -> None:
    # A deferred transaction that reads and then writes can deadlock with another writer
    # (SQLITE_BUSY at once, whatever the timeout); taking the write lock up front cannot.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine settings for a storage (or artifact store) URL."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {
            "pool_pre_ping": True,  # a server restart leaves dead pooled connections
            "pool_size": 2,  # the worker's thread and its heartbeat thread
            "max_overflow": 4,
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": 10},
        }
    return {}


def configure_sqlite_engine(engine: sqlalchemy.engine.Engine) -> None:
    """Busy timeout and ``BEGIN IMMEDIATE`` on every connection of an SQLite engine."""
    sqlalchemy.event.listen(engine, "connect", _on_sqlite_connect)
    sqlalchemy.event.listen(engine, "begin", _on_sqlite_begin)
    engine.dispose()  # reconnect with the listeners in place


def _prepare_sqlite_file(path: Path) -> None:
    if not path.parent.exists():
        raise UsageError(f"storage directory {path.parent} does not exist: create it first")
    # WAL is a property of the file: readers no longer block the writer. Switching a new
    # file to it needs the file to itself, which processes started together contend for
    # (SQLite answers "locked" at once rather than waiting), so try again for a while.
    deadline = time.monotonic() + 60
    while True:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.05, 0.2))


def make_storage(
    url: str | None = None,
    *,
    heartbeat: bool = True,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: StaleTrialCallback | None = None,
) -> optuna.storages.BaseStorage:
    """Build the Optuna storage for ``url`` (see the module docstring).

    Args:
        url: The storage URL; None means ``$BSOPT_STORAGE`` or ``sqlite:///bsopt.db``.
        heartbeat: Record heartbeats so trials of dead workers are failed and retried.
        heartbeat_interval: Seconds between heartbeats (default ``$BSOPT_HEARTBEAT_SECONDS``
            or 10).
        grace_period: Seconds without a heartbeat before a running trial is failed (default
            ``$BSOPT_GRACE_SECONDS`` or 30).
        stale_trial_callback: Called with each trial failed for a stale heartbeat.

    Raises:
        UsageError: the URL is malformed or the storage cannot be reached.
    """
    given = resolve_url(url)
    scheme = given.split("://", 1)[0] if "://" in given else ""
    if scheme == "grpc":
        return _grpc_storage(given)
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise UsageError(
            f"unsupported storage URL {mask_url(given)!r}: use sqlite:///FILE.db, "
            "postgresql://USER:PASSWORD@HOST/DB or grpc://HOST:PORT"
        )
    url = sqlalchemy_url(given)
    try:
        make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UsageError(f"malformed storage URL {mask_url(given)!r}") from None
    if scheme == "sqlite" and (path := sqlite_database_path(url)) is not None:
        _prepare_sqlite_file(path)
    heartbeat_kwargs: dict[str, Any] = {}
    if heartbeat:
        interval = heartbeat_interval or int(env_seconds(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
        heartbeat_kwargs = {
            "heartbeat_interval": max(1, interval),
            "grace_period": max(1, grace_period or int(env_seconds(GRACE_ENV, GRACE_SECONDS))),
            "heartbeat_stale_trial_callback": stale_trial_callback,
        }
    try:
        storage = _create_rdb_storage(url, heartbeat_kwargs)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError) as exc:
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise UsageError(
            f"cannot reach storage {mask_url(given)}: {reason}; check the URL, or start the "
            "server (see storage/README.md)"
        ) from None
    if scheme == "sqlite":
        configure_sqlite_engine(storage.engine)
    return storage


_CREATION_RACE = ("already exists", "alembic_version", "database is locked")


def _create_rdb_storage(url: str, heartbeat_kwargs: dict[str, Any]) -> ResilientRDBStorage:
    # Workers started together on a new database all create Optuna's tables and stamp its
    # schema version at once; the losers of that race fail on a duplicate table, type or
    # version row (or a locked SQLite file), and find the winner's work when they try again.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # "heartbeat_interval is experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return ResilientRDBStorage(url, engine_kwargs=engine_kwargs(url),
                                           **heartbeat_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as exc:
            if attempt == 4 or not any(sign in str(exc) for sign in _CREATION_RACE):
                raise
            time.sleep(random.uniform(0.1, 0.5))
    raise AssertionError("unreachable")


def _grpc_storage(url: str) -> optuna.storages.BaseStorage:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise UsageError(f"malformed storage URL {url!r}: use grpc://HOST:PORT")
    from optuna.storages import GrpcStorageProxy

    storage = GrpcStorageProxy(host=parts.hostname, port=parts.port)
    try:
        storage.wait_server_ready(timeout=10)
        storage.get_all_studies()
    except Exception as exc:  # grpc raises its own RpcError types
        raise UsageError(
            f"cannot reach storage proxy {url}: {type(exc).__name__}; start it with "
            "`bsopt storage-proxy`"
        ) from None
    return storage
