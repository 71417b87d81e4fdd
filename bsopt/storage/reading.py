"""Opening a storage or a study only to read it: nothing is created, changed or locked."""

from __future__ import annotations

import optuna

from bsopt.errors import UsageError
from bsopt.storage.factory import make_storage


def open_existing_storage(storage_url: str | None) -> optuna.storages.BaseStorage:
    """The storage at ``storage_url``, opened without writing anything to it.

    Reading commands must not leave an empty database behind a mistyped path, nor
    Optuna's tables in a file that holds something else.

    Raises:
        UsageError: no database there, or one without Optuna's tables.
    """
    return make_storage(storage_url, heartbeat=False, create=False)


def open_existing(storage_url: str | None, name: str) -> optuna.Study:
    """Load study ``name`` without changing it (no sampler state, no heartbeat)."""
    storage = open_existing_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise UsageError(f"no study named {name!r} in this storage (studies: {names})") from None
