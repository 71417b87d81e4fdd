"""The storage layer: URL in, Optuna storage out, and what keeps a shared study whole.

- :mod:`~bsopt.storage.urls`: which storage a URL means, its password masked in output;
- :mod:`~bsopt.storage.factory`: :func:`make_storage` (SQLite, PostgreSQL, the gRPC proxy,
  a journal file);
- :mod:`~bsopt.storage.journal`: Optuna's journal file, with heartbeats, for shared
  filesystems without a database;
- :mod:`~bsopt.storage.retries`: lost connections waited out, one place for retries;
- :mod:`~bsopt.storage.failures`: which failures heal, the one line for those that do not;
- :mod:`~bsopt.storage.settings`: the environment variables for heartbeats and retries;
- :mod:`~bsopt.storage.heartbeats`: heartbeats of running trials, retries of dead ones;
- :mod:`~bsopt.storage.artifacts`, :mod:`~bsopt.storage.checkpoints`: trial checkpoints in
  the study's database (or beside its file), so a retry resumes on any machine;
- :mod:`~bsopt.storage.reading`: opening a storage or study to read it, writing nothing;
- :mod:`~bsopt.storage.proxy`: ``bsopt storage-proxy``, Optuna's gRPC proxy with heartbeats.

It may import optuna, SQLAlchemy, psycopg, grpc and bsopt's leaf modules (torch only lazily,
to read and write checkpoints); never the search, training or analysis layers.
"""

from bsopt.storage.factory import holds_optuna_tables, make_storage
from bsopt.storage.failures import is_connection_error, permanent_error
from bsopt.storage.heartbeats import heartbeat, heartbeat_interval, retry_failed_trial
from bsopt.storage.reading import open_existing, open_existing_storage
from bsopt.storage.retries import ResilientRDBStorage, call_with_retry
from bsopt.storage.settings import env_seconds
from bsopt.storage.urls import (
    mask_url,
    resolve_url,
    sqlalchemy_url,
    sqlite_database_path,
    storage_file,
)

__all__ = [
    "ResilientRDBStorage", "call_with_retry", "env_seconds", "heartbeat", "heartbeat_interval",
    "holds_optuna_tables", "is_connection_error", "make_storage", "mask_url", "open_existing",
    "open_existing_storage", "permanent_error", "resolve_url", "retry_failed_trial",
    "sqlalchemy_url", "sqlite_database_path", "storage_file",
]
