"""Shared fixtures: real SQLite studies planted with trials that follow bsopt's records schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from bsopt import records

BATCH_SIZES = [16, 32, 64, 128, 256]
DISTRIBUTIONS = {
    "batch_size": optuna.distributions.CategoricalDistribution(BATCH_SIZES),
    "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
}


def bsopt_trial(
    batch_size: int,
    lr: float,
    val_loss: Sequence[float],
    *,
    state: TrialState = TrialState.COMPLETE,
    train_loss: Sequence[float] | None = None,
    val_accuracy: Sequence[float] | None = None,
    epoch_seconds: Sequence[float] | None = None,
    samples_per_second: Sequence[float] | None = None,
) -> FrozenTrial:
    """A finished trial as bsopt stores it: params, val loss per epoch, curves as user attrs."""
    epochs = len(val_loss)
    attrs: dict[str, Any] = {
        records.VAL_LOSS: list(val_loss),
        records.TRAIN_LOSS: list(train_loss if train_loss is not None else val_loss),
        records.VAL_ACCURACY: list(val_accuracy or [0.5] * epochs),
        records.EPOCH_SECONDS: list(epoch_seconds or [1.0] * epochs),
        records.SAMPLES_PER_SECOND: list(samples_per_second or [100.0] * epochs),
        records.STEPS: [(e + 1) * 10 for e in range(epochs)],
    }
    return optuna.trial.create_trial(
        params={"batch_size": batch_size, "lr": lr},
        distributions=DISTRIBUTIONS,
        value=val_loss[-1] if state == TrialState.COMPLETE else None,
        intermediate_values={e + 1: v for e, v in enumerate(val_loss)},
        user_attrs=attrs,
        state=state,
    )


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """The URL of a fresh SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path}/s.db"


@pytest.fixture(scope="session")
def make_trial() -> Callable[..., FrozenTrial]:
    """:func:`bsopt_trial`, for planting trials with ``study.add_trial``."""
    return bsopt_trial


# --- storages: PostgreSQL and SQLite (bsopt.storage and everything that shares a study) -----

# The test server: trust authentication, user postgres (see storage/README.md).
POSTGRES_SERVER = os.environ.get("BSOPT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


POSTGRES_ABSENT = (
    "the tests marked postgres need the PostgreSQL server on 127.0.0.1:5432 (trust "
    "authentication, user postgres, database test), which is not answering: start it with "
    "`storage/dev-postgres.sh start` or `pg_ctlcluster --skip-systemctl-redirect "
    "$(ls /etc/postgresql) main start` (CI starts it), or leave them out with "
    "-m 'not postgres'"
)
_postgres_seen = False  # once the server answered, a later outage is a test's own restart


def run_postgres_admin(statement: str) -> None:
    """Run one statement on the test server's ``test`` database, in autocommit mode.

    Waits up to 60 s for a server that answered before, so a restart by a test elsewhere
    does not fail this one; a server that never answered fails the test at once, saying
    what to start.
    """
    import psycopg

    global _postgres_seen
    deadline = time.monotonic() + (60 if _postgres_seen else 5)
    while True:
        try:
            with psycopg.connect(f"{POSTGRES_SERVER}/test", autocommit=True,
                                 connect_timeout=5) as connection:
                connection.execute(statement)
                _postgres_seen = True
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                if not _postgres_seen:
                    pytest.fail(POSTGRES_ABSENT, pytrace=False)
                raise
            time.sleep(0.5)


@pytest.fixture(scope="session")
def postgres_admin() -> Callable[[str], None]:
    """:func:`run_postgres_admin`: one SQL statement as the server's superuser."""
    return run_postgres_admin


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server at 127.0.0.1:5432, dropped after the test.

    The server is required: a test using this fixture fails (never skips) without it.
    """
    name = f"bsopt_test_{uuid.uuid4().hex[:12]}"
    run_postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        run_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh storage of each kind: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/study.db"
    return request.getfixturevalue("postgres_url")


class SmallDisk:
    """A real filesystem of a few MiB (tmpfs) that a test can fill up and free again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write one file until the filesystem has no space left (ENOSPC)."""
        with open(self.filler, "ab", buffering=0) as filler:
            for chunk in (2**20, 4096, 1):  # big pieces first, then the last bytes
                try:
                    while True:
                        filler.write(b"\0" * chunk)
                except OSError:
                    continue

    def free(self) -> None:
        """Remove what :meth:`fill` wrote."""
        self.filler.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A real 32 MiB filesystem mounted under ``tmp_path``, unmounted after the test.

    Mounting needs root (as the tests of storage/dev-postgres.sh do); without it the test
    is skipped with the reason.
    """
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def bsopt_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``python -m bsopt ARGS...`` as a real process (in ``tmp_path``, text pipes).

    Each runs in a session of its own, so a test can signal it with its worker processes
    (``os.killpg``); whatever is still running at the end of the test is killed.
    Keyword ``env`` adds environment variables (e.g. short heartbeats), ``cwd`` runs it
    elsewhere (the repository root, to import ``examples``). Torch gets one
    thread per process (``--workers`` processes share out the cores as usual): tests run
    several commands at once on few cores, where more threads only fight over them.
    """
    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "bsopt", *args], cwd=cwd or tmp_path,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        try:  # the process and any worker processes it left behind
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()

