"""Storage URLs: which storage a command means, its SQLAlchemy form, and how to print it.

- ``sqlite:///path.db`` (the embedded default), ``postgresql://user:pw@host/db`` (psycopg 3
  without naming a driver), ``grpc://host:port`` (Optuna's gRPC storage proxy) and
  ``journal:///ABSOLUTE/PATH.log`` (Optuna's journal file, for a shared filesystem without a
  database; absolute only, since workers on other machines start in other directories).
- ``--storage``, else ``$BSOPT_STORAGE``, else ``sqlite:///bsopt.db``.
- Every URL printed anywhere goes through :func:`mask_url`: its password is never shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

from bsopt.errors import UsageError

DEFAULT_STORAGE = "sqlite:///bsopt.db"
STORAGE_ENV = "BSOPT_STORAGE"
MEMORY_SQLITE = ("in-memory SQLite cannot be shared by workers or kept: "
                 "use sqlite:///FILE.db")
JOURNAL_SCHEME = "journal://"
URL_FORMS = ("sqlite:///FILE.db, postgresql://USER:PASSWORD@HOST/DB, grpc://HOST:PORT or "
             "journal:///ABSOLUTE/PATH.log")


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


def journal_path(url: str) -> Path | None:
    """The log file of a ``journal:///ABSOLUTE/PATH`` URL, or None for other storages.

    Raises:
        UsageError: the path is relative (``journal://study.log``) or missing.
    """
    if not url.startswith(JOURNAL_SCHEME):
        return None
    path = url[len(JOURNAL_SCHEME):]
    if not path.startswith("/"):
        raise UsageError(f"the journal storage {url!r} needs an absolute path, as in "
                         f"journal:///shared/bsopt/study.log (three slashes)")
    return Path(path)


def storage_file(url: str) -> Path | None:
    """The file that holds a storage (an SQLite database or a journal); None for servers."""
    return sqlite_database_path(url) or journal_path(url)


def parse_url(given: str) -> str:
    """The SQLAlchemy URL of an ``sqlite`` or ``postgresql`` storage URL, checked.

    Raises:
        UsageError: another scheme, or a URL SQLAlchemy cannot parse (a port not a number).
    """
    scheme = given.split("://", 1)[0] if "://" in given else ""
    if scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise UsageError(f"unsupported storage URL {mask_url(given)!r}: use {URL_FORMS}")
    url = sqlalchemy_url(given)
    try:
        make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UsageError(f"malformed storage URL {mask_url(given)!r}") from None
    except ValueError:  # SQLAlchemy's int(port)
        raise UsageError(f"malformed storage URL {mask_url(given)!r}: the port must be a "
                         "number") from None
    return url
