"""Storage URL in, configured Optuna storage out; URL masking for output.

- ``sqlite:///path.db`` (the embedded default): WAL journal, a long busy timeout and
  ``BEGIN IMMEDIATE`` transactions, so several local processes can write one file without
  "database is locked" errors.
- ``postgresql://user:pw@host/db``: psycopg 3 without the user naming a driver, pooled
  connections checked before use (``pool_pre_ping``) so a restarted server is survived.
- ``grpc://host:port``: Optuna's gRPC storage proxy (``bsopt storage-proxy``).

Both RDB storages are a :class:`ResilientRDBStorage`: a call that fails because the
database connection was lost or refused (a server restart, a network blip, a lock held too
long) is repeated with back-off for up to ``$BSOPT_STORAGE_RETRY_SECONDS`` (120 s). What
waiting cannot heal (a full disk, a file that is not a database or is damaged) is said at
once in one line naming the file (``UsageError``; ``DiskFull`` for the disk).

Reading commands open a storage with ``create=False``: nothing is written to it, not even
Optuna's tables, so a mistyped path or a file that holds something else stays as it was.

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
import re
import socket
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
from bsopt.storage_errors import is_connection_error, permanent_error, sqlite_code

DEFAULT_STORAGE = "sqlite:///bsopt.db"
STORAGE_ENV = "BSOPT_STORAGE"
HEARTBEAT_ENV, HEARTBEAT_SECONDS = "BSOPT_HEARTBEAT_SECONDS", 10
GRACE_ENV, GRACE_SECONDS = "BSOPT_GRACE_SECONDS", 30
RETRY_ENV, RETRY_SECONDS = "BSOPT_STORAGE_RETRY_SECONDS", 120.0
MAX_BACKOFF_SECONDS = 5.0
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})  # present in every version
MEMORY_SQLITE = ("in-memory SQLite cannot be shared by workers or kept: "
                 "use sqlite:///FILE.db")

StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]
T = TypeVar("T")
logger = logging.getLogger("bsopt.storage")


def resolve_url(url: str | None) -> str:
    """``--storage``, else ``$BSOPT_STORAGE``, else ``sqlite:///bsopt.db``."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for output and logs).

    Any scheme (sqlite, postgresql+driver, grpc). The credentials end at the *last* ``@``,
    as for ``urllib``: a password holding an unescaped ``@``, ``:`` or ``/`` is hidden
    whole (SQLAlchemy's parser would show what follows its first ``@``). A
    ``password=`` query parameter is hidden too.
    """
    scheme, separator, rest = url.partition("://")
    userinfo, at, host_and_path = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if separator and at and colon and "/" not in user:
        url = f"{scheme}://{user}:***@{host_and_path}"
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy should use: psycopg 3 for plain ``postgresql://``."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_database_path(url: str) -> Path | None:
    """The database file of an ``sqlite:///`` URL, or None for other storages (and memory)."""
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
    - trial creation: a retry of a failed trial (``retry_history`` in its system
      attributes) already present in the study is not added again.

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

        def attempt() -> FrozenTrial:
            nonlocal attempts
            attempts += 1
            history = template_trial.system_attrs.get("retry_history") if template_trial else None
            if attempts > 1 and history:
                for trial in RDBStorage.get_all_trials(self, study_id, deepcopy=False):
                    if trial.system_attrs.get("retry_history") == history:
                        return trial
            return RDBStorage._create_new_trial(self, study_id, template_trial)

        return call_with_retry(attempt, what="create_new_trial", url=self.url)


for _name in ("create_new_study", "delete_study", "set_study_user_attr",
              "set_study_system_attr", "get_study_id_from_name", "get_study_name_from_id",
              "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
              "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "set_trial_param", "_set_trial_param", "get_trial_param",
              "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
              "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
              "_get_trials", "get_best_trial", "_get_best_trial_id", "_get_stale_trial_ids"):
    setattr(ResilientRDBStorage, _name, _retried(getattr(RDBStorage, _name)))
ResilientRDBStorage.record_heartbeat = _explained(RDBStorage.record_heartbeat)  # type: ignore


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


def _sqlite_path(url: str, *, create: bool) -> Path:
    """The database file of an SQLite URL, refused if none can be made (or read) there."""
    path = sqlite_database_path(url)
    if path is None:
        raise UsageError(MEMORY_SQLITE)
    if path.is_dir():
        raise UsageError(f"storage {path} is a directory: give a database file such as "
                         f"sqlite:///{path / 'bsopt.db'}")
    if not path.parent.is_dir():
        raise UsageError(f"storage directory {path.parent} does not exist: create it first")
    if not create and not path.is_file():
        raise UsageError(f"no study database at {path}: give the --storage your search used")
    return path


def _prepare_sqlite_file(path: Path, url: str) -> None:
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
        except sqlite3.Error as exc:
            if sqlite_code(exc) in ("BUSY", "LOCKED") and time.monotonic() < deadline:
                time.sleep(random.uniform(0.05, 0.2))
                continue
            raise permanent_error(exc, url) or exc from None


def _open_error(exc: BaseException, url: str, given: str) -> BaseException:
    """What to raise for ``exc`` met while opening ``url``: a one-line error if it is one."""
    if (error := permanent_error(exc, url)) is not None:
        return error
    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                        optuna.exceptions.StorageInternalError)):
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        return UsageError(
            f"cannot reach storage {mask_url(given)}: {reason}; check the URL, or start the "
            "server (see storage/README.md)"
        )
    return exc


def _parse_url(given: str) -> str:
    """The SQLAlchemy URL of an ``sqlite`` or ``postgresql`` storage URL, checked.

    Raises:
        UsageError: another scheme, or a URL SQLAlchemy cannot parse (a port not a number).
    """
    scheme = given.split("://", 1)[0] if "://" in given else ""
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
    except ValueError:  # SQLAlchemy's int(port)
        raise UsageError(f"malformed storage URL {mask_url(given)!r}: the port must be a "
                         "number") from None
    return url


def holds_optuna_tables(url: str | None) -> bool:
    """Whether the storage at ``url`` has Optuna's tables already; writes nothing.

    False for an SQLite file that does not exist yet (it is not created) and for an empty
    database. A gRPC proxy always serves a database that has them.

    Raises:
        UsageError: the URL is malformed, or the database cannot be reached or read.
    """
    given = resolve_url(url)
    if given.startswith("grpc://"):
        return True
    url = _parse_url(given)
    if url.startswith("sqlite") and not _sqlite_path(url, create=True).exists():
        return False
    engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as connection:
            tables = set(sqlalchemy.inspect(connection).get_table_names())
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise _open_error(exc, url, given) from None
    finally:
        engine.dispose()
    return OPTUNA_TABLES <= tables


def make_storage(
    url: str | None = None,
    *,
    heartbeat: bool = True,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: StaleTrialCallback | None = None,
    create: bool = True,
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
        create: Create the SQLite file and Optuna's tables if they are not there yet, and
            switch the file to WAL. False (reading commands): open only a database that has
            Optuna's tables, and write nothing while opening it.

    Raises:
        UsageError: the URL is malformed, the storage cannot be reached, is not an Optuna
            database (``create=False``), or is damaged; ``DiskFull`` when its disk is.
    """
    given = resolve_url(url)
    if given.startswith("grpc://"):
        return _grpc_storage(given)
    url = _parse_url(given)
    if url.startswith("sqlite"):
        path = _sqlite_path(url, create=create)
        if create:
            _prepare_sqlite_file(path, url)
    if not create and not holds_optuna_tables(given):
        raise UsageError(f"{mask_url(given)} is not a bsopt/Optuna database (it has no "
                         "Optuna tables): give the --storage your search used")
    heartbeat_kwargs: dict[str, Any] = {}
    if heartbeat:
        interval = heartbeat_interval or int(env_seconds(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
        heartbeat_kwargs = {
            "heartbeat_interval": max(1, interval),
            "grace_period": max(1, grace_period or int(env_seconds(GRACE_ENV, GRACE_SECONDS))),
            "heartbeat_stale_trial_callback": stale_trial_callback,
        }
    try:
        storage = _create_rdb_storage(url, heartbeat_kwargs, create=create)
    except (sqlalchemy.exc.DatabaseError, sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError) as exc:
        raise _open_error(exc, url, given) from None
    if url.startswith("sqlite"):
        configure_sqlite_engine(storage.engine)
    return storage


_CREATION_RACE = ("already exists", "alembic_version", "database is locked")


def _create_rdb_storage(url: str, heartbeat_kwargs: dict[str, Any], *,
                        create: bool) -> ResilientRDBStorage:
    # Workers started together on a new database all create Optuna's tables and stamp its
    # schema version at once; the losers of that race fail on a duplicate table, type or
    # version row (or a locked SQLite file), and find the winner's work when they try again.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # "heartbeat_interval is experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return ResilientRDBStorage(url, engine_kwargs=engine_kwargs(url),
                                           skip_table_creation=not create, **heartbeat_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as exc:
            if attempt == 4 or not any(sign in str(exc) for sign in _CREATION_RACE):
                raise
            time.sleep(random.uniform(0.1, 0.5))
    raise AssertionError("unreachable")


def _grpc_storage(url: str) -> optuna.storages.BaseStorage:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535
        port = None
    if not parts.hostname or not port:
        raise UsageError(f"malformed storage URL {mask_url(url)!r}: use grpc://HOST:PORT")
    unreachable = f"cannot reach storage proxy {mask_url(url)}"
    hint = "start it with `bsopt storage-proxy`"
    try:  # a refused connection is said at once, not after gRPC's wait for the server
        socket.create_connection((parts.hostname, port), timeout=10).close()
    except OSError as exc:
        raise UsageError(f"{unreachable}: {exc.strerror or exc}; {hint}") from None
    from optuna.storages import GrpcStorageProxy

    storage = GrpcStorageProxy(host=parts.hostname, port=port)
    try:
        storage.wait_server_ready(timeout=10)
        storage.get_all_studies()
    except Exception as exc:  # grpc raises its own RpcError types
        raise UsageError(f"{unreachable}: {type(exc).__name__}; {hint}") from None
    return storage
