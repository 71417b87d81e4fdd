"""Storage URL in, configured Optuna storage out: :func:`make_storage`.

- SQLite: WAL journal, a long busy timeout and ``BEGIN IMMEDIATE`` transactions, so several
  local processes can write one file without "database is locked" errors.
- PostgreSQL: pooled connections checked before use (``pool_pre_ping``), so a restarted
  server is survived.
- Both are a :class:`~bsopt.storage.retries.ResilientRDBStorage` that waits out a lost
  connection, with Optuna's heartbeats (``bsopt.storage.settings``).
- ``grpc://``: Optuna's gRPC storage proxy (``bsopt storage-proxy``).
- ``journal:///ABSOLUTE/PATH``: Optuna's journal file on a shared filesystem, with bsopt's
  heartbeats (``bsopt.storage.journal``).

Reading commands open a storage with ``create=False``: nothing is written to it, not even
Optuna's tables, so a mistyped path or a file that holds something else stays as it was.
"""

from __future__ import annotations

import contextlib
import random
import socket
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial

from bsopt.errors import UsageError
from bsopt.storage.failures import permanent_error, sqlite_code
from bsopt.storage.journal import journal_file, make_journal_storage
from bsopt.storage.retries import ResilientRDBStorage
from bsopt.storage.settings import (
    GRACE_ENV,
    GRACE_SECONDS,
    HEARTBEAT_ENV,
    HEARTBEAT_SECONDS,
    env_seconds,
)
from bsopt.storage.urls import (
    JOURNAL_SCHEME,
    MEMORY_SQLITE,
    mask_url,
    parse_url,
    resolve_url,
    sqlite_database_path,
)

OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})  # present in every version
StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]


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
            # One connection kept per process, so that 64 workers fit PostgreSQL's default
            # 100 connections; the heartbeat thread's, while the worker's is busy, is an
            # overflow one, opened and closed.
            "pool_size": 1,
            "max_overflow": 5,
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
    if given.startswith(JOURNAL_SCHEME):  # a journal that exists holds Optuna's log
        return journal_file(given, create=True).exists()
    url = parse_url(given)
    if url.startswith("sqlite") and not _sqlite_path(url, create=True).exists():
        return False
    engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
    deadline = time.monotonic() + SERVER_FULL_SECONDS
    try:
        while True:
            try:
                with engine.connect() as connection:
                    tables = set(sqlalchemy.inspect(connection).get_table_names())
                break
            except sqlalchemy.exc.SQLAlchemyError as exc:
                if _server_full(exc) and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.5, 2.0))  # many workers starting at once
                    continue
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
            ``journal:///PATH`` is Optuna's journal file (``bsopt.storage.journal``).
        heartbeat: Record heartbeats so trials of dead workers are failed and retried.
        heartbeat_interval: Seconds between heartbeats (default ``$BSOPT_HEARTBEAT_SECONDS``
            or 10).
        grace_period: Seconds without a heartbeat before a running trial is failed (default
            ``$BSOPT_GRACE_SECONDS`` or 30).
        stale_trial_callback: Called with each trial failed for a stale heartbeat.
        create: Create the SQLite file (or journal file) and Optuna's tables if they are
            not there yet, and switch an SQLite file to WAL. False (reading commands): open
            only a database that has Optuna's tables (a journal file that exists), and
            write nothing while opening it.

    Raises:
        UsageError: the URL is malformed, the storage cannot be reached, is not an Optuna
            database (``create=False``), or is damaged; ``DiskFull`` when its disk is.
    """
    given = resolve_url(url)
    if given.startswith("grpc://"):
        return _grpc_storage(given)
    heartbeat_kwargs: dict[str, Any] = {}
    if heartbeat:
        interval = heartbeat_interval or int(env_seconds(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
        heartbeat_kwargs = {
            "heartbeat_interval": max(1, interval),
            "grace_period": max(1, grace_period or int(env_seconds(GRACE_ENV, GRACE_SECONDS))),
            "heartbeat_stale_trial_callback": stale_trial_callback,
        }
    if given.startswith(JOURNAL_SCHEME):
        return make_journal_storage(given, heartbeat_kwargs=heartbeat_kwargs, create=create)
    url = parse_url(given)
    if url.startswith("sqlite"):
        path = _sqlite_path(url, create=create)
        if create:
            _prepare_sqlite_file(path, url)
    if not create and not holds_optuna_tables(given):
        raise UsageError(f"{mask_url(given)} is not a bsopt/Optuna database (it has no "
                         "Optuna tables): give the --storage your search used")
    try:
        storage = _create_rdb_storage(url, heartbeat_kwargs, create=create)
    except (sqlalchemy.exc.DatabaseError, sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError) as exc:
        raise _open_error(exc, url, given) from None
    if url.startswith("sqlite"):
        configure_sqlite_engine(storage.engine)
    return storage


_CREATION_RACE = ("already exists", "alembic_version", "database is locked")
_SERVER_FULL = "too many clients"  # PostgreSQL at max_connections: others will hang up
SERVER_FULL_SECONDS = 120.0


def _server_full(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _SERVER_FULL in str(exc) or getattr(exc, "sqlstate", None) == "53300":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _create_rdb_storage(url: str, heartbeat_kwargs: dict[str, Any], *,
                        create: bool) -> ResilientRDBStorage:
    # Workers started together on a new database all create Optuna's tables and stamp its
    # schema version at once; the losers of that race fail on a duplicate table, type or
    # version row (or a locked SQLite file), and find the winner's work when they try again.
    # Many workers starting at once can also find the server at its connection limit for a
    # moment: they wait for a free connection, not fail (a server that is down still fails
    # at once).
    deadline = time.monotonic() + SERVER_FULL_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            with warnings.catch_warnings():  # "heartbeat_interval is experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return ResilientRDBStorage(url, engine_kwargs=engine_kwargs(url),
                                           skip_table_creation=not create, **heartbeat_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as exc:
            if _server_full(exc) and time.monotonic() < deadline:
                time.sleep(random.uniform(0.5, 2.0))
                continue
            if attempt >= 5 or not any(sign in str(exc) for sign in _CREATION_RACE):
                raise
            time.sleep(random.uniform(0.1, 0.5))


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
