"""bsopt.storage and bsopt.storage.artifacts on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from bsopt.errors import DiskFull, UsageError
from bsopt.search.worker import claim_trial
from bsopt.storage import make_storage, mask_url
from bsopt.storage.artifacts import DatabaseArtifactStore
from bsopt.storage.checkpoints import make_artifact_store
from tests.helpers import REPO

if TYPE_CHECKING:
    from tests.conftest import SmallDisk

RETRY_LOG = "lost the database connection"


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def cut_off(postgres_admin: Callable[[str], None], url: str) -> None:
    """Refuse new connections to the database and end the open ones (a real outage)."""
    name = database_name(url)
    postgres_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    postgres_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")


def reopen(postgres_admin: Callable[[str], None], url: str) -> None:
    postgres_admin(f'ALTER DATABASE "{database_name(url)}" ALLOW_CONNECTIONS true')


@pytest.mark.parametrize("url, masked", [
    ("postgresql://alice:s3cret@db.example/bsopt", "postgresql://alice:***@db.example/bsopt"),
    ("postgresql+psycopg://alice:p%40ss@db:5432/bsopt",
     "postgresql+psycopg://alice:***@db:5432/bsopt"),
    ("grpc://bob:hunter2@proxy:13000", "grpc://bob:***@proxy:13000"),
    ("postgresql://alice@db/bsopt", "postgresql://alice@db/bsopt"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    # passwords holding the delimiters, unescaped: hidden whole, not cut at the first one
    ("postgresql://alice:p@ss@db/bsopt", "postgresql://alice:***@db/bsopt"),
    ("postgres://alice:pa:ss@db:5432/bsopt", "postgres://alice:***@db:5432/bsopt"),
    ("postgresql://alice:pa/ss@db/bsopt", "postgresql://alice:***@db/bsopt"),
    ("grpc://bob:p@ss:w0rd@proxy:13000", "grpc://bob:***@proxy:13000"),
    ("grpc://proxy:13000", "grpc://proxy:13000"),
    ("postgresql://alice@db/bsopt?sslmode=require&password=s3cret",
     "postgresql://alice@db/bsopt?sslmode=require&password=***"),
    ("sqlite:////tmp/a@b:c/x.db", "sqlite:////tmp/a@b:c/x.db"),
])
def test_passwords_are_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_an_unreachable_server_is_a_usage_error_without_the_password() -> None:
    with pytest.raises(UsageError, match="cannot reach storage") as exc:
        make_storage("postgresql://postgres:s3cret@127.0.0.1:1/bsopt")
    assert "s3cret" not in str(exc.value) and "***" in str(exc.value)


def test_sqlite_files_use_wal_and_wait_for_the_lock(sqlite_url: str) -> None:
    storage = make_storage(sqlite_url)
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_heartbeat_settings_come_from_arguments_or_the_environment(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    default = make_storage(sqlite_url)
    assert (default.heartbeat_interval, default.grace_period) == (10, 30)
    monkeypatch.setenv("BSOPT_HEARTBEAT_SECONDS", "2")
    monkeypatch.setenv("BSOPT_GRACE_SECONDS", "5")
    from_env = make_storage(sqlite_url)
    assert (from_env.heartbeat_interval, from_env.grace_period) == (2, 5)
    explicit = make_storage(sqlite_url, heartbeat_interval=1, grace_period=3)
    assert (explicit.heartbeat_interval, explicit.grace_period) == (1, 3)
    assert make_storage(sqlite_url, heartbeat=False).heartbeat_interval is None
    monkeypatch.setenv("BSOPT_GRACE_SECONDS", "soon")
    with pytest.raises(UsageError, match="BSOPT_GRACE_SECONDS"):
        make_storage(sqlite_url)


@pytest.mark.postgres
def test_postgresql_uses_psycopg3_and_replaces_connections_the_server_ended(
        postgres_url: str, postgres_admin: Callable[[str], None],
        caplog: pytest.LogCaptureFixture) -> None:
    storage = make_storage(postgres_url)
    assert storage.engine.dialect.driver == "psycopg"
    optuna.create_study(storage=storage, study_name="s")
    name = database_name(postgres_url)
    postgres_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
    # The pool's connections are dead; the pre-ping replaces them without an error or retry.
    assert optuna.load_study(study_name="s", storage=storage).study_name == "s"
    assert RETRY_LOG not in caplog.text


@pytest.mark.postgres
def test_a_claim_and_a_tell_wait_out_a_database_that_refuses_connections(
        postgres_url: str, postgres_admin: Callable[[str], None],
        caplog: pytest.LogCaptureFixture) -> None:
    study = optuna.create_study(storage=make_storage(postgres_url), study_name="s")
    study.enqueue_trial({"x": 1.0})
    cut_off(postgres_admin, postgres_url)
    timer = threading.Timer(2.0, reopen, [postgres_admin, postgres_url])
    timer.start()
    with caplog.at_level(logging.WARNING, logger="bsopt.storage"):
        trial = claim_trial(study)
        assert trial is not None
        study.tell(trial, trial.suggest_float("x", 0, 2))
    timer.join()
    assert RETRY_LOG in caplog.text
    (finished,) = optuna.load_study(study_name="s", storage=postgres_url).trials
    assert finished.state == TrialState.COMPLETE and finished.value == 1.0


@pytest.mark.postgres
def test_retries_give_up_after_the_deadline_and_other_errors_are_not_retried(
        postgres_url: str, postgres_admin: Callable[[str], None],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    storage = make_storage(postgres_url)
    optuna.create_study(storage=storage, study_name="s")
    with pytest.raises(KeyError):  # a missing study is an answer, not a lost connection
        storage.get_study_id_from_name("missing")
    assert RETRY_LOG not in caplog.text
    monkeypatch.setenv("BSOPT_STORAGE_RETRY_SECONDS", "1")
    cut_off(postgres_admin, postgres_url)
    try:
        with pytest.raises(optuna.exceptions.StorageInternalError):
            storage.get_study_id_from_name("s")
    finally:
        reopen(postgres_admin, postgres_url)
    assert RETRY_LOG in caplog.text


def test_the_database_artifact_store_keeps_bytes_by_id(storage_url: str) -> None:
    store = DatabaseArtifactStore(storage_url)
    store.write("a", io.BytesIO(b"first"))
    store.write("a", io.BytesIO(b"second"))  # written again: replaced, not duplicated
    store.write("b", io.BytesIO(bytes(range(256)) * 1000))
    assert store.open_reader("a").read() == b"second"
    assert store.open_reader("b").read() == bytes(range(256)) * 1000
    assert store.artifact_ids() == ["a", "b"]
    store.remove("a")
    assert store.artifact_ids() == ["b"]
    with pytest.raises(ArtifactNotFound):
        store.open_reader("a")
    with pytest.raises(ArtifactNotFound):
        store.remove("a")
    # Another process (here: another engine) sees the same artifacts.
    assert DatabaseArtifactStore(storage_url).open_reader("b").read()[:3] == b"\x00\x01\x02"


def test_workers_starting_together_all_get_the_artifact_table(storage_url: str) -> None:
    stores: list[DatabaseArtifactStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(DatabaseArtifactStore(storage_url))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 4
    assert sqlalchemy.inspect(stores[0].engine).has_table("bsopt_artifacts")


def test_checkpoints_go_to_the_database_for_postgresql_and_beside_sqlite_files(
        tmp_path: Path) -> None:
    sqlite_store = make_artifact_store(f"sqlite:///{tmp_path}/s.db")
    assert isinstance(sqlite_store, FileSystemArtifactStore)
    assert (tmp_path / "s.db.artifacts").is_dir()
    chosen = make_artifact_store("sqlite:///x.db", tmp_path / "shared")
    assert isinstance(chosen, FileSystemArtifactStore) and (tmp_path / "shared").is_dir()


@pytest.mark.postgres
def test_postgresql_checkpoints_default_to_the_database(postgres_url: str) -> None:
    assert isinstance(make_artifact_store(postgres_url), DatabaseArtifactStore)


SCRIPT = REPO / "storage" / "dev-postgres.sh"


@pytest.mark.slow
@pytest.mark.postgres
def test_the_development_script_starts_a_server_bsopt_can_use() -> None:
    with socket.socket() as probe:  # a free port: the test server keeps 5432
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    home = Path(tempfile.mkdtemp(prefix="bsopt-pg-"))
    home.chmod(0o755)  # run as root, the script runs the server as the postgres user
    env = {**os.environ, "BSOPT_PG_DIR": str(home / "data"), "BSOPT_PG_PORT": port}
    try:
        started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True,
                                 text=True, timeout=300)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url == f"postgresql://postgres@127.0.0.1:{port}/bsopt"
        study = optuna.create_study(storage=make_storage(url), study_name="dev")
        assert optuna.get_all_study_names(make_storage(url)) == [study.study_name]
        again = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                               timeout=300)
        assert again.returncode == 0 and again.stdout.strip() == url  # idempotent
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, timeout=300)
        shutil.rmtree(home)
    stopped = subprocess.run([str(SCRIPT), "status"], env=env, capture_output=True, text=True)
    assert stopped.returncode == 3 and stopped.stdout.strip() == "stopped"


def test_the_compose_file_points_the_dashboard_at_its_database() -> None:
    compose = yaml.safe_load((SCRIPT.parent / "compose.yaml").read_text())
    database = compose["services"]["postgres"]["environment"]
    (dashboard_url,) = compose["services"]["dashboard"]["command"]
    url = sqlalchemy.engine.make_url(dashboard_url.replace("${BSOPT_DB_PASSWORD:-bsopt}", "pw"))
    assert (url.username, url.host, url.port, url.database) == (
        database["POSTGRES_USER"], "postgres", 5432, database["POSTGRES_DB"])
    assert database["POSTGRES_PASSWORD"] == "${BSOPT_DB_PASSWORD:-bsopt}"
    assert compose["services"]["dashboard"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy")


def _open_storage(url: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    make_storage(url, heartbeat=False)


@pytest.mark.slow
def test_processes_opening_a_new_database_at_once_all_succeed(storage_url: str) -> None:
    # Workers started together on a new database race to create Optuna's tables and to stamp
    # its schema version; every one of them must come up.
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    processes = [context.Process(target=_open_storage, args=(storage_url, barrier))
                 for _ in range(8)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * 8


def _raised(error: BaseException) -> BaseException:
    """``error`` re-raised as Optuna does: a StorageInternalError from it."""
    try:
        try:
            raise error
        except Exception as cause:
            raise optuna.exceptions.StorageInternalError("during the commit") from cause
    except optuna.exceptions.StorageInternalError as exc:
        return exc


def test_a_session_left_broken_by_a_lost_connection_counts_as_a_lost_connection() -> None:
    from bsopt.storage.failures import is_connection_error

    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
    broken = sqlalchemy.exc.PendingRollbackError("Can't reconnect until invalid transaction "
                                                 "is rolled back")
    bad_data = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert is_connection_error(_raised(lost))
    assert is_connection_error(_raised(broken))  # seen mid-restart in _get_trials' fallback
    assert not is_connection_error(_raised(bad_data))
    assert not is_connection_error(_raised(ValueError("bad value")))


# --- what is retried: only what waiting can heal ----------------------------------------

def _failing(url: str, statement: str, **connect: Any) -> BaseException:
    """What SQLAlchemy raises for ``statement`` on the real SQLite file of ``url``."""
    engine = sqlalchemy.create_engine(url, connect_args=connect)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
    except sqlalchemy.exc.DBAPIError as exc:
        return _raised(exc)
    finally:
        engine.dispose()
    raise AssertionError(f"{statement} did not fail")


def test_only_a_locked_sqlite_file_is_retried(tmp_path: Path, small_disk: SmallDisk) -> None:
    from bsopt.storage.failures import is_connection_error, permanent_error

    url = f"sqlite:///{tmp_path}/s.db"
    sqlite3.connect(tmp_path / "s.db").execute("CREATE TABLE t (x)").connection.commit()
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    locked = _failing(url, "INSERT INTO t VALUES (1)", timeout=0)
    holder.execute("ROLLBACK")
    (tmp_path / "text.db").write_text("not a database\n" * 300)
    not_a_database = _failing(f"sqlite:///{tmp_path}/text.db", "SELECT * FROM sqlite_master")
    read_only = _failing(f"sqlite:///file:{tmp_path}/s.db?mode=ro&uri=true",
                         "INSERT INTO t VALUES (1)")
    full_url = f"sqlite:///{small_disk.path}/s.db"
    with contextlib.closing(sqlite3.connect(small_disk.path / "s.db")) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE t (x)")
        small_disk.fill()
        # A process that had the file open before the disk filled up gets SQLITE_FULL.
        full = _failing(full_url, "INSERT INTO t VALUES (randomblob(100000))")

    assert is_connection_error(locked) and permanent_error(locked, url) is None
    for error in (not_a_database, read_only, full):
        assert not is_connection_error(error)
    assert "is not an SQLite database" in str(permanent_error(not_a_database, url))
    assert "cannot be written" in str(permanent_error(read_only, url))
    disk_full = permanent_error(full, full_url)
    assert isinstance(disk_full, DiskFull)
    assert str(disk_full) == (f"the disk holding {small_disk.path}/s.db is full: free space "
                              "and run again")


def test_a_full_disk_is_said_at_once_not_retried(small_disk: SmallDisk,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSOPT_STORAGE_RETRY_SECONDS", "30")
    storage = make_storage(f"sqlite:///{small_disk.path}/s.db")
    study = optuna.create_study(storage=storage, study_name="s")
    small_disk.fill()
    started = time.monotonic()
    with pytest.raises(DiskFull, match="is full: free space and run again"):
        study.set_user_attr("big", "x" * 100_000)
    assert time.monotonic() - started < 5  # not 30 s of retries
    storage.engine.dispose()


def test_in_memory_sqlite_is_refused_at_once() -> None:
    for url in ("sqlite:///:memory:", "sqlite://"):
        with pytest.raises(UsageError, match="in-memory SQLite cannot be shared by workers"):
            make_storage(url)


def test_a_full_postgresql_disk_is_not_a_lost_connection() -> None:
    import psycopg

    from bsopt.storage.failures import is_connection_error, permanent_error

    full = _raised(sqlalchemy.exc.OperationalError(
        "INSERT", {}, psycopg.errors.DiskFull("could not extend file: No space left on device")))
    assert not is_connection_error(full)
    error = permanent_error(full, "postgresql://u:pw@db.example/bsopt")
    assert isinstance(error, DiskFull) and "PostgreSQL server at db.example is full" in str(error)


def test_reading_opens_write_nothing_and_refuse_what_is_not_optuna(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(UsageError, match="not a bsopt/Optuna database"):
        make_storage(f"sqlite:///{empty}", create=False)
    assert empty.read_bytes() == b""  # no schema written into it
    made = tmp_path / "made.db"
    optuna.create_study(storage=f"sqlite:///{made}", study_name="s")  # plain Optuna: no WAL
    before = made.read_bytes()
    reader = make_storage(f"sqlite:///{made}", heartbeat=False, create=False)
    assert optuna.get_all_study_names(reader) == ["s"]
    reader.engine.dispose()
    assert made.read_bytes() == before  # not even switched to WAL


@pytest.mark.postgres
def test_reading_an_empty_postgresql_database_creates_no_tables(postgres_url: str) -> None:
    with pytest.raises(UsageError, match="not a bsopt/Optuna database"):
        make_storage(postgres_url, create=False)
    engine = sqlalchemy.create_engine(postgres_url.replace("postgresql://",
                                                           "postgresql+psycopg://"))
    assert sqlalchemy.inspect(engine).get_table_names() == []
    engine.dispose()


def test_a_trial_whose_creation_committed_but_whose_answer_was_lost_is_added_once(
        storage_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The database committed the INSERT, then the connection died before the answer came
    # (a server restart at that instant): the repeat must find the trial, not add another.
    # A refill token added twice would enqueue its whole chunk twice.
    from optuna.storages import RDBStorage

    from bsopt.records import SLOT_ATTR
    from bsopt.search.budget import REFILL_ATTR

    real = RDBStorage._create_new_trial
    answers_lost = []

    def commit_then_lose_the_answer(self: RDBStorage, study_id: int,
                                    template_trial: Any = None) -> Any:
        trial = real(self, study_id, template_trial)
        if len(answers_lost) < 2:
            answers_lost.append(trial.number)
            raise sqlalchemy.exc.OperationalError(
                "INSERT INTO trials", {}, OSError("server closed the connection unexpectedly"))
        return trial

    study = optuna.create_study(storage=make_storage(storage_url), study_name="lost")
    monkeypatch.setattr(RDBStorage, "_create_new_trial", commit_then_lose_the_answer)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, system_attrs={SLOT_ATTR: 7, REFILL_ATTR: [8, 16]}))
    # A retry of slot 7's trial: the same slot, its own retry history.
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, system_attrs={SLOT_ATTR: 7, "retry_history": [0],
                                                "failed_trial": 0}))
    trials = study.get_trials(deepcopy=False)
    assert answers_lost == [0, 1]
    assert [(t.number, t.system_attrs.get(SLOT_ATTR), t.system_attrs.get("retry_history"))
            for t in trials] == [(0, 7, None), (1, 7, [0])]
