"""Trial checkpoints through Optuna's artifact store, so a retried trial resumes.

After every epoch the objective writes the trainer's state (model, optimizer, RNG states,
curves) as a new artifact, records its id on the trial (user attribute ``checkpoint``), and
only then removes the previous one: a worker killed mid-write leaves the last complete
checkpoint in place. A retry of a failed trial (Optuna's ``RetryHeartbeatStaleTrialCallback``
copies the user attributes) finds the id there and continues from that epoch.

Where they are stored (:func:`make_artifact_store`): for a PostgreSQL study, in a table of
the same database (``bsopt.artifacts``), so a retry on any machine resumes; for an SQLite
study, in a directory beside the database file; through the gRPC proxy, in
``./bsopt-artifacts`` (give ``--artifact-dir`` on a shared filesystem to resume across
machines); ``--artifact-dir`` always wins.

Checkpoints hold only tensors and plain values and are read with
``torch.load(weights_only=True)``: loading one cannot run arbitrary code. One that cannot
be read that way is ignored (with a warning) and the trial starts over.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from bsopt.storage import sqlite_database_path

logger = logging.getLogger("bsopt.checkpoints")
CHECKPOINT_ATTR = "checkpoint"  # trial user attribute: {"artifact_id": str, "epoch": int}


def default_artifact_dir(storage_url: str) -> Path:
    """Where checkpoints go by default: beside an SQLite file, else ``./bsopt-artifacts``."""
    path = sqlite_database_path(storage_url)
    return path.with_name(path.name + ".artifacts") if path else Path("bsopt-artifacts")


def make_artifact_store(storage_url: str, artifact_dir: str | Path | None = None) -> Any:
    """The store for a storage's checkpoints: ``artifact_dir``, else see the module docstring."""
    if not artifact_dir and storage_url.startswith(("postgresql", "postgres:")):
        from bsopt.artifacts import DatabaseArtifactStore

        return DatabaseArtifactStore(storage_url)
    base = Path(artifact_dir) if artifact_dir else default_artifact_dir(storage_url)
    base.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base)


def checkpoint_id(trial: optuna.Trial, series: int, epoch: int) -> str:
    """The artifact id of the checkpoint of retry series ``series`` after ``epoch``."""
    study = re.sub(r"[^A-Za-z0-9_.-]", "_", trial.study.study_name)
    return f"checkpoint-{study}-{series}-epoch{epoch}.pt"


def remove_series_checkpoints(store: Any, trial: optuna.Trial, series: int,
                              epochs: int) -> None:
    """Delete every checkpoint of the series, including any a killed worker orphaned.

    A worker killed between writing a checkpoint and recording it on the trial leaves an
    artifact no trial points to; the ids are known, so the finished series removes them all.
    """
    for epoch in range(1, epochs + 1):
        remove_checkpoint(store, {"artifact_id": checkpoint_id(trial, series, epoch)})


def save_checkpoint(store: Any, trial: optuna.Trial, state: dict[str, Any], epoch: int,
                    series: int) -> None:
    """Write ``state`` as the checkpoint of ``trial`` after ``epoch`` and drop the older one."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    artifact_id = checkpoint_id(trial, series, epoch)
    store.write(artifact_id, buffer)
    previous = trial.user_attrs.get(CHECKPOINT_ATTR)
    trial.set_user_attr(CHECKPOINT_ATTR, {"artifact_id": artifact_id, "epoch": epoch})
    if previous and previous["artifact_id"] != artifact_id:
        remove_checkpoint(store, previous)


def load_checkpoint(store: Any, trial: optuna.Trial) -> dict[str, Any] | None:
    """The checkpoint recorded on ``trial`` (inherited from the trial it retries), or None."""
    meta = trial.user_attrs.get(CHECKPOINT_ATTR)
    if not meta:
        return None
    try:
        with store.open_reader(meta["artifact_id"]) as reader:
            data = reader.read()
    except ArtifactNotFound:
        # e.g. written to another machine's local disk (gRPC proxy without --artifact-dir)
        logger.warning("bsopt: trial %d: checkpoint %s is not in this worker's artifact "
                       "store; training from the start", trial.number, meta["artifact_id"])
        return None
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        # Truncated, or holding objects that only a full (unsafe) unpickling would build.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        logger.warning("bsopt: trial %d: checkpoint %s cannot be loaded safely (%s); "
                       "training from the start", trial.number, meta["artifact_id"], reason)
        return None


def remove_checkpoint(store: Any, meta: dict[str, Any] | None) -> None:
    """Delete a checkpoint artifact if it is still there."""
    if not meta:
        return
    try:
        store.remove(meta["artifact_id"])
    except ArtifactNotFound:
        pass
