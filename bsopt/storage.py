"""Storage URL in, configured Optuna storage out; URL masking for output.

- ``sqlite:///path.db`` (the embedded default): WAL journal, a long busy timeout and
  ``BEGIN IMMEDIATE`` transactions, so several local processes can write one file without
  "database is locked" errors.
- ``postgresql://user:pw@host/db``: psycopg 3 without the user naming a driver, pooled
  connections checked before use (``pool_pre_ping``) so a restarted server is survived.
- ``grpc://host:port``: Optuna's gRPC storage proxy (``bsopt storage-proxy``).

RDB storages record heartbeats; a trial whose worker died is failed after the grace period
and retried (``bsopt.worker``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from bsopt.errors import UsageError

DEFAULT_STORAGE = "sqlite:///bsopt.db"
STORAGE_ENV = "BSOPT_STORAGE"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30

StaleTrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


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


def _engine_kwargs(url: str) -> dict[str, object]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {
            "pool_pre_ping": True,  # a server restart leaves dead pooled connections
            "pool_size": 2,
            "max_overflow": 4,
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": 10},
        }
    return {}


def _prepare_sqlite_file(path: Path) -> None:
    if not path.parent.exists():
        raise UsageError(f"storage directory {path.parent} does not exist: create it first")
    with sqlite3.connect(path, timeout=60) as connection:
        # WAL is a property of the file: readers no longer block the writer.
        connection.execute("PRAGMA journal_mode = WAL")


def make_storage(
    url: str | None = None,
    *,
    heartbeat: bool = True,
    stale_trial_callback: StaleTrialCallback | None = None,
) -> optuna.storages.BaseStorage:
    """Build the Optuna storage for ``url`` (see the module docstring).

    Args:
        url: The storage URL; None means ``$BSOPT_STORAGE`` or ``sqlite:///bsopt.db``.
        heartbeat: Record heartbeats so trials of dead workers are failed and retried.
        stale_trial_callback: Called with each trial failed for a stale heartbeat.

    Raises:
        UsageError: the URL is malformed or the storage cannot be reached.
    """
    url = resolve_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "grpc":
        return _grpc_storage(url)
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise UsageError(
            f"unsupported storage URL {mask_url(url)!r}: use sqlite:///FILE.db, "
            "postgresql://USER:PASSWORD@HOST/DB or grpc://HOST:PORT"
        )
    url = sqlalchemy_url(url)
    try:
        make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UsageError(f"malformed storage URL {mask_url(url)!r}") from None
    if scheme == "sqlite" and (path := sqlite_database_path(url)) is not None:
        _prepare_sqlite_file(path)
    heartbeat_kwargs: dict[str, object] = {}
    if heartbeat:
        heartbeat_kwargs = {
            "heartbeat_interval": HEARTBEAT_SECONDS,
            "grace_period": GRACE_SECONDS,
            "heartbeat_stale_trial_callback": stale_trial_callback,
        }
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url),
                                             **heartbeat_kwargs)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError) as exc:
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise UsageError(
            f"cannot reach storage {mask_url(url)}: {reason}; check the URL, or start the "
            "server (see storage/README.md)"
        ) from None
    if scheme == "sqlite":
        sqlalchemy.event.listen(storage.engine, "connect", _on_sqlite_connect)
        sqlalchemy.event.listen(storage.engine, "begin", _on_sqlite_begin)
        storage.engine.dispose()  # reconnect with the listeners in place
    return storage


def _grpc_storage(url: str) -> optuna.storages.BaseStorage:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise UsageError(f"malformed storage URL {url!r}: use grpc://HOST:PORT")
    from optuna.storages import GrpcStorageProxy

    storage = GrpcStorageProxy(host=parts.hostname, port=parts.port)
    try:
        storage.get_all_studies()
    except Exception as exc:  # grpc raises its own RpcError types
        raise UsageError(
            f"cannot reach storage proxy {url}: {type(exc).__name__}; start it with "
            "`bsopt storage-proxy`"
        ) from None
    return storage
