"""What tests share besides fixtures: one QUICK setting, and onlookers of real processes.

Fixtures (storages, processes, planted trials) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bsopt import records
from bsopt.storage import make_storage, storage_file
from bsopt.storage.artifacts import DatabaseArtifactStore
from bsopt.storage.checkpoints import CheckpointOwner

REPO = Path(__file__).resolve().parents[1]
# The one quick training setting: a real trial of the reference CNN in well under a second.
QUICK: dict[str, Any] = {"dataset": "digits", "max_train_samples": 128, "epochs": 1,
                         "batch_size": "32:64"}
QUICK_FLAGS = [part for key, value in QUICK.items()
               for part in (f"--{key.replace('_', '-')}", str(value))]
# For studies that several processes must share: quick trials of 40 epochs (about a second
# each), so that processes whose start (imports, on a loaded machine) is seconds apart all
# get trials; a grid of quick one-epoch trials is done in half a second by the first one.
SHARED_EPOCHS = ["--epochs", "40"]
TIMEOUT = 300  # seconds: only against a hang, never an assertion about speed
FAST_HEARTBEATS = {"BSOPT_HEARTBEAT_SECONDS": "1", "BSOPT_GRACE_SECONDS": "2"}
# Trials of several short epochs: long enough to stop in the middle (about 1.5 s after the
# first epoch, so a loaded machine still lands a kill there), quick to finish. One
# (batch size, lr) point, so a test knows exactly how each trial trains.
EPOCHS, TRAIN_SAMPLES = 16, 1000
ONE_POINT = ["--sampler", "random", "--pruner", "none", "--dataset", "digits",
             "--max-train-samples", str(TRAIN_SAMPLES), "--batch-size", "16:16",
             "--lr", "1e-3:1e-3"]
LONG_TRIALS = [*ONE_POINT, "--epochs", str(EPOCHS)]
# Trials that are stopped and never finished: a scheduler's stop (Ray's cancel, scancel)
# takes a second or more to reach the worker, and must still find it in the middle.
STOPPABLE_TRIALS = [*ONE_POINT, "--epochs", "400"]
StartBsopt = Callable[..., subprocess.Popen]


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` until it returns something true (a guard against hangs only)."""
    deadline = time.monotonic() + TIMEOUT
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)
    return result


class Reader:
    """Reads a study's trials afresh from its storage, as an onlooker (no heartbeats)."""

    def __init__(self, url: str, name: str) -> None:
        self.storage = make_storage(url, heartbeat=False)
        self.name = name

    def trials(self) -> list[FrozenTrial]:
        """The study's trials now (none if the study does not exist yet)."""
        try:
            study_id = self.storage.get_study_id_from_name(self.name)
        except KeyError:
            return []
        return self.storage.get_all_trials(study_id)

    def owner(self, trial: FrozenTrial) -> CheckpointOwner:
        """Whose checkpoints ``trial``'s are (its study's uid and its retry series)."""
        study = optuna.load_study(study_name=self.name, storage=self.storage)
        return CheckpointOwner(records.study_uid(study), trial.user_attrs[records.SERIES])

    def running_with_checkpoint(self) -> FrozenTrial | None:
        """A RUNNING trial that has finished at least one epoch (its checkpoint is in).

        And its curves: an epoch's checkpoint is written before its curves, so a trial is
        taken only once both are there, while it trains its next epoch (a test that kills
        its worker then finds the trial's record and checkpoint at the same epoch).
        """
        return next((t for t in self.trials()
                     if t.state == TrialState.RUNNING and records.CHECKPOINT in t.user_attrs
                     and len(t.user_attrs.get(records.VAL_LOSS, []))
                     == t.user_attrs[records.CHECKPOINT]["epoch"]), None)


def stored_checkpoints(url: str) -> list[str]:
    """The ids of the checkpoints a storage holds (in its database, or beside its file).

    Not the final weights of the best trials, which are kept on purpose.
    """
    return [a for a in stored_artifacts(url) if a.startswith("checkpoint-")]


def stored_artifacts(url: str) -> list[str]:
    """The ids of every artifact a storage holds: checkpoints and kept weights."""
    path = storage_file(url)
    if path is None:
        return DatabaseArtifactStore(url).artifact_ids()
    artifacts = path.with_name(path.name + ".artifacts")
    return sorted(p.name for p in artifacts.iterdir()) if artifacts.exists() else []




def png(size: tuple[int, int] = (8, 8), mode: str = "L", seed: int = 0, shift: int = 0) -> bytes:
    """A small PNG image of random pixels (``shift`` brightens it: a learnable class)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    pixels = np.clip(rng.integers(0, 200, shape) + shift, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_folder(root: Path, counts: dict[str, int], *, classes: tuple[str, ...] = (
        "cat", "dog"), size: tuple[int, int] = (8, 8), mode: str = "L") -> Path:
    """Write ``root/<split>/<class>/<i>.png`` with ``counts[split]`` images per class."""
    for split, n in counts.items():
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed = zlib.crc32(f"{split}/{name}/{i}".encode())  # the same every run
                (folder / f"{i}.png").write_bytes(png(size, mode, seed, shift=50 * k))
    return root


def finish(process: subprocess.Popen, status: int = 0) -> tuple[str, str]:
    """Wait for ``process``; its output, after checking it exited with ``status``."""
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == status, f"exit {process.returncode}\n{out}\n{err}"
    return out, err
