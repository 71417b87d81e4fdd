"""Storage failures: which ones waiting can heal, and the one line for those it cannot.

A lost or refused connection and an SQLite file another process holds locked heal by
themselves: ``bsopt.storage`` repeats the call (:func:`is_connection_error`). A full disk,
a file that is not a database or is damaged, a read-only file do not: they are said at
once, in one line naming the file (:func:`permanent_error`).
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

from bsopt.errors import DiskFull, UsageError


def is_connection_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a lost, refused or busy connection.

    Only what waiting can heal. Optuna turns SQLAlchemy errors into
    ``StorageInternalError`` raised from them. For SQLite that is a file another process
    holds locked (``SQLITE_BUSY``/``SQLITE_LOCKED``), not a full disk, an I/O error, a
    damaged or read-only file. For PostgreSQL, psycopg's connection and shutdown errors are
    DBAPI ``OperationalError``s, except a full disk on the server. A session whose
    connection died mid-transaction fails its next statement with ``PendingRollbackError``
    (Optuna's ``_get_trials`` falls back to a second query on the same session): that is the
    lost connection too, and Optuna rolls the session back.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlalchemy.exc.PendingRollbackError):
            return True
        if isinstance(exc, sqlalchemy.exc.DBAPIError):
            if isinstance(exc.orig, sqlite3.Error):
                return sqlite_code(exc.orig) in ("BUSY", "LOCKED")
            if getattr(exc.orig, "sqlstate", None) == "53100":  # disk_full
                return False
            return bool(exc.connection_invalidated) or isinstance(
                exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
        exc = exc.__cause__ or exc.__context__
    return False


def _nearly_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < 2**20
    except OSError:
        return False


def _driver_error(exc: BaseException | None) -> BaseException | None:
    """The database driver's exception (sqlite3, psycopg) behind ``exc``, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlalchemy.exc.DBAPIError):
            return exc.orig
        if isinstance(exc, sqlite3.Error) or hasattr(exc, "sqlstate"):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def sqlite_code(error: BaseException) -> str:
    """``FULL``, ``BUSY``, ``CORRUPT``, ...: the primary SQLite result code of an error."""
    name = getattr(error, "sqlite_errorname", None) or ""
    return name.removeprefix("SQLITE_").split("_")[0]


def permanent_error(exc: BaseException, url: str) -> UsageError | None:
    """The one-line error for a storage failure that waiting cannot heal, or None.

    Args:
        exc: What a storage call raised (Optuna's ``StorageInternalError``, SQLAlchemy's
            or the driver's own exception).
        url: The storage URL, to name the file or server in the message.
    """
    error = _driver_error(exc)
    if isinstance(error, sqlite3.Error):
        path = Path(make_url(url).database or ":memory:")
        code = sqlite_code(error)
        # A full disk often shows as an I/O error: SQLite cannot grow its shared-memory file.
        if code == "FULL" or (code == "IOERR" and _nearly_full(path.absolute().parent)):
            return DiskFull(f"the disk holding {path} is full: free space and run again")
        messages = {
            "NOTADB": f"{path} is not an SQLite database: give the --storage your search used",
            "CORRUPT": f"{path} is damaged ({error}): restore it from a backup, or give "
                       "another --storage",
            "READONLY": f"{path} cannot be written ({error}): make it writable, or give "
                        "another --storage",
            "CANTOPEN": f"cannot open {path} ({error}): check the path and its permissions",
            "IOERR": f"disk I/O error on {path}: check the disk",
        }
        return UsageError(messages[code]) if code in messages else None
    if getattr(error, "sqlstate", None) == "53100":  # PostgreSQL's disk_full
        host = make_url(url).host or "localhost"
        return DiskFull(f"the disk of the PostgreSQL server at {host} is full: free space "
                        "and run again")
    return None


def disk_full(exc: BaseException) -> DiskFull | None:
    """``exc`` as a ``DiskFull`` if a full disk caused it (a storage call, a checkpoint)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            where = Path(exc.filename).parent if exc.filename else "the checkpoints"
            return DiskFull(f"the disk holding {where} is full: free space and run again")
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None
