"""Trial checkpoints through Optuna's artifact store, so a retried trial resumes.

After every epoch the objective writes the trainer's state (model, optimizer, RNG states,
curves) as a new artifact, records its id on the trial (user attribute ``checkpoint``), and
only then removes the previous one: a worker killed mid-write leaves the last complete
checkpoint in place. A retry of a failed trial (``bsopt.search.worker.retry_failed_trial``) inherits
that attribute and continues from that epoch.

Checkpoints belong to a :class:`CheckpointOwner`: the study's unique id (never its name: names
that differ only in punctuation must not share files) and the retry series. The owner is in
the artifact id and inside the checkpoint, and a resume refuses a checkpoint of another owner.

Where they are stored (:func:`make_artifact_store`): for a PostgreSQL study, in a table of
the same database (``bsopt.storage.artifacts``), so a retry on any machine resumes; for an
SQLite or journal study, in a directory beside its file (on the shared filesystem, for a
journal); through the gRPC proxy, in ``./bsopt-artifacts`` (give ``--artifact-dir`` on a
shared filesystem to resume across machines); ``--artifact-dir`` always wins.

Checkpoints hold only tensors and plain values and are read with
``torch.load(weights_only=True)``: loading one cannot run arbitrary code. One that cannot
be used (missing, truncated, unsafe, another owner's, or holding the wrong state) is reported
once with a warning and the trial starts over from epoch 0.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from bsopt import records
from bsopt.storage.urls import storage_file

logger = logging.getLogger("bsopt.storage.checkpoints")


def default_artifact_dir(storage_url: str) -> Path:
    """Where checkpoints go by default: beside an SQLite or journal file, else ./bsopt-artifacts."""
    path = storage_file(storage_url)
    return path.with_name(path.name + ".artifacts") if path else Path("bsopt-artifacts")


def make_artifact_store(storage_url: str, artifact_dir: str | Path | None = None) -> Any:
    """The store for a storage's checkpoints: ``artifact_dir``, else see the module docstring."""
    if not artifact_dir and storage_url.startswith(("postgresql", "postgres:")):
        from bsopt.storage.artifacts import DatabaseArtifactStore

        return DatabaseArtifactStore(storage_url)
    base = Path(artifact_dir) if artifact_dir else default_artifact_dir(storage_url)
    base.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base)


@dataclass(frozen=True)
class CheckpointOwner:
    """Whose checkpoints these are: one retry series of one study.

    Artifact ids are built from it and every checkpoint carries it, so two studies (even of
    similar names, or in two databases sharing one artifact directory) never read or delete
    each other's checkpoints, and a resume refuses a checkpoint that is not its own.
    """

    study: str  # the study's unique id (``bsopt.records.study_uid``)
    series: int  # number of the first trial of the retry series

    def artifact_id(self, epoch: int) -> str:
        """The artifact id of this series' checkpoint after ``epoch``."""
        return f"checkpoint-{self.study}-{self.series}-epoch{epoch}.pt"


def remove_series_checkpoints(store: Any, owner: CheckpointOwner, epochs: int) -> None:
    """Delete every checkpoint of the series, including any a killed worker orphaned.

    A worker killed between writing a checkpoint and recording it on the trial leaves an
    artifact no trial points to; the ids are known, so the finished series removes them all.
    """
    for epoch in range(epochs + 1):  # epoch 0: a state saved before the first epoch ended
        remove_checkpoint(store, {"artifact_id": owner.artifact_id(epoch)})


def save_checkpoint(store: Any, trial: optuna.Trial, owner: CheckpointOwner,
                    state: dict[str, Any], epoch: int) -> None:
    """Write ``state`` as ``owner``'s checkpoint after ``epoch`` and drop the older one."""
    import torch  # here, not at the top: reading a study's storage needs no torch

    buffer = io.BytesIO()
    torch.save({"owner": dataclasses.asdict(owner), "epoch": epoch, "state": state}, buffer)
    buffer.seek(0)
    artifact_id = owner.artifact_id(epoch)
    store.write(artifact_id, buffer)
    previous = trial.user_attrs.get(records.CHECKPOINT)
    trial.set_user_attr(records.CHECKPOINT, {"artifact_id": artifact_id, "epoch": epoch})
    if previous and previous["artifact_id"] != artifact_id:
        remove_checkpoint(store, previous)


def load_checkpoint(store: Any, trial: optuna.Trial,
                    owner: CheckpointOwner) -> dict[str, Any] | None:
    """The state checkpointed by ``owner`` that ``trial`` points to, or None to start over.

    None (with one warning) when the trial has no checkpoint, or its checkpoint is missing,
    cannot be loaded safely, or is not ``owner``'s.
    """
    meta = trial.user_attrs.get(records.CHECKPOINT)
    if not meta:
        return None
    artifact_id = meta["artifact_id"]
    try:
        with store.open_reader(artifact_id) as reader:
            data = reader.read()
    except ArtifactNotFound:
        # e.g. written to another machine's local disk (gRPC proxy without --artifact-dir)
        return _start_over(trial, artifact_id, "it is not in this worker's artifact store")
    import torch

    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        # Truncated, or holding objects that only a full (unsafe) unpickling would build.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return _start_over(trial, artifact_id, f"it cannot be loaded safely ({reason})")
    if not isinstance(payload, dict) or not isinstance(payload.get("state"), dict):
        return _start_over(trial, artifact_id, "it is not a bsopt checkpoint")
    if payload.get("owner") != dataclasses.asdict(owner):
        return _start_over(trial, artifact_id,
                           f"it belongs to {payload.get('owner')}, not to {owner}")
    return payload["state"]


def _start_over(trial: optuna.Trial, artifact_id: str, reason: str) -> None:
    logger.warning("bsopt: trial %d: checkpoint %s is not used because %s; training from "
                   "the start", trial.number, artifact_id, reason)


def remove_checkpoint(store: Any, meta: dict[str, Any] | None) -> None:
    """Delete a checkpoint artifact if it is still there."""
    if not meta:
        return
    try:
        store.remove(meta["artifact_id"])
    except ArtifactNotFound:
        pass
