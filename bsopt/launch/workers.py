"""What every launched worker runs: ``bsopt search`` joining one study by its name.

A launcher first makes sure the study exists, exactly as ``bsopt search`` would make it
(:func:`bsopt.search.prepare_study`: every check, then create or join), so each worker needs
only the storage and the study's name; the definition and the budget are in the study. The
storage URL reaches the workers in ``$BSOPT_STORAGE``, never on a command line or in a file
(it may hold a password), with the launching environment's other ``$BSOPT_*`` settings
(heartbeats, grace period, retries). This run's own fields (device, data directory, ...,
which the study does not store) become the workers' flags.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bsopt.config import StudyConfig
from bsopt.search import plan_study, prepare_study
from bsopt.storage import holds_optuna_tables, make_storage, resolve_url, sqlite_database_path
from bsopt.storage.urls import STORAGE_ENV

# This invocation's fields, which the study does not store: each worker is given them.
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(StudyConfig)
                   if not f.compare and f.name != "storage")
PATH_FIELDS = ("data_dir", "artifact_dir")  # relative to the launching directory


@dataclass(frozen=True)
class WorkerSpec:
    """One worker's command and environment, the same for every worker of a launch."""

    study_name: str
    storage: str  # the URL, password included: only ever in the environment, never printed
    flags: tuple[str, ...]  # this run's fields as ``bsopt search`` flags
    directory: str  # where the launch ran: relative paths in the study mean this one

    def argv(self) -> list[str]:
        """``bsopt`` arguments: ``search --study-name NAME`` and this run's flags."""
        return ["search", "--study-name", self.study_name, *self.flags]

    def environment(self) -> dict[str, str]:
        """``$BSOPT_STORAGE`` and the launching environment's other ``$BSOPT_*`` settings."""
        settings = {k: v for k, v in os.environ.items() if k.startswith("BSOPT_")}
        return {**settings, STORAGE_ENV: self.storage}


def location_independent(url: str | None) -> str:
    """The storage URL with a relative SQLite path made absolute (workers start elsewhere)."""
    url = resolve_url(url)
    path = sqlite_database_path(url)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{path.absolute()}"
    return url


def worker_flags(config: StudyConfig, explicit: dict[str, Any]) -> tuple[str, ...]:
    """The run fields the user set, as flags (``--device cuda``), paths made absolute.

    Every search flag is named after the field it sets, so the flags follow from the names.
    """
    flags: list[str] = []
    for name in RUN_FIELDS:
        if name not in explicit or getattr(config, name) is None:
            continue
        value = str(getattr(config, name))
        if name in PATH_FIELDS and not value.startswith("~"):
            value = str(Path(value).absolute())
        flags += [f"--{name.replace('_', '-')}", value]
    return tuple(flags)


def plan_workers(config: StudyConfig, explicit: dict[str, Any], *,
                 create: bool) -> WorkerSpec:
    """Check the study of ``config`` and (with ``create``) create or join it; the workers' spec.

    Without ``create`` (a dry run) the storage is only read: the definition is checked
    against a stored one, and the registries check their names, but nothing is written.

    Raises:
        UsageError: what ``bsopt search`` would refuse.
    """
    config = config.replace(storage=location_independent(config.storage))
    if create:
        _, config = prepare_study(config, explicit)
    else:
        reader = (make_storage(config.storage, heartbeat=False, create=False)
                  if holds_optuna_tables(config.storage) else None)
        config = plan_study(config, reader, explicit).config
    assert config.storage is not None
    return WorkerSpec(study_name=config.name, storage=config.storage,
                      flags=worker_flags(config, explicit), directory=os.getcwd())


def file_name(study_name: str) -> str:
    """A file-name-safe short form of a study name (``bs lr/v1`` -> ``bs-lr-v1``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", study_name).strip("-.")[:60] or "study"
