"""Trial checkpoints through Optuna's artifact store, so a retried trial resumes.

After every epoch the objective writes the trainer's state (model, optimizer, RNG states,
curves) as a new artifact, records its id on the trial (user attribute ``checkpoint``), and
only then removes the previous one: a worker killed mid-write leaves the last complete
checkpoint in place. A retry of a failed trial (Optuna's ``RetryHeartbeatStaleTrialCallback``
copies the user attributes) finds the id there and continues from that epoch.

Checkpoints hold only tensors and plain values and are read with
``torch.load(weights_only=True)``: loading one cannot run arbitrary code.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from bsopt.storage import sqlite_database_path

CHECKPOINT_ATTR = "checkpoint"  # trial user attribute: {"artifact_id": str, "epoch": int}


def default_artifact_dir(storage_url: str) -> Path:
    """Where checkpoints go by default: beside an SQLite file, else ``./bsopt-artifacts``."""
    path = sqlite_database_path(storage_url)
    return path.with_name(path.name + ".artifacts") if path else Path("bsopt-artifacts")


def make_artifact_store(storage_url: str, artifact_dir: str | Path | None = None) -> Any:
    """The artifact store for a storage: a directory (``artifact_dir`` or the default)."""
    base = Path(artifact_dir) if artifact_dir else default_artifact_dir(storage_url)
    base.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base)


def save_checkpoint(store: Any, trial: optuna.Trial, state: dict[str, Any], epoch: int,
                    series: int) -> None:
    """Write ``state`` as the checkpoint of ``trial`` after ``epoch`` and drop the older one."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    study = re.sub(r"[^A-Za-z0-9_.-]", "_", trial.study.study_name)
    artifact_id = f"checkpoint-{study}-{series}-epoch{epoch}.pt"
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
        return None  # e.g. written on another machine's local disk: start over
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def remove_checkpoint(store: Any, meta: dict[str, Any] | None) -> None:
    """Delete a checkpoint artifact if it is still there."""
    if not meta:
        return
    try:
        store.remove(meta["artifact_id"])
    except ArtifactNotFound:
        pass
