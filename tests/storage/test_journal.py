"""Optuna's journal file as a storage: its URL, atomic claims, heartbeats, reading it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from bsopt.cli import main
from bsopt.config import StudyConfig
from bsopt.internals import storage_of, trial_id
from bsopt.records import CONFIG_ATTR
from bsopt.search.worker import claim_trial
from bsopt.storage import heartbeat, heartbeat_interval, make_storage, retry_failed_trial
from bsopt.storage.checkpoints import default_artifact_dir
from bsopt.storage.journal import HeartbeatJournalStorage


def journal_url(tmp_path: Path) -> str:
    return f"journal://{tmp_path}/study.log"


def test_a_journal_url_opens_optunas_journal_storage_with_bsopts_heartbeats(
        tmp_path: Path) -> None:
    url = journal_url(tmp_path)
    storage = make_storage(url, heartbeat_interval=3, grace_period=7)
    assert isinstance(storage, HeartbeatJournalStorage)
    assert heartbeat_interval(storage) == 3 and (tmp_path / "study.log").is_file()
    # Optuna's own tools read the same file.
    optuna.create_study(storage=storage, study_name="s")
    plain = make_storage(url, heartbeat=False, create=False)
    assert type(plain) is JournalStorage and heartbeat_interval(plain) is None
    assert optuna.get_all_study_names(plain) == ["s"]
    # Checkpoints go beside the file, as for SQLite.
    assert default_artifact_dir(url) == tmp_path / "study.log.artifacts"


def test_two_workers_claiming_one_trial_of_a_journal_get_it_once(tmp_path: Path) -> None:
    url = journal_url(tmp_path)
    study = optuna.create_study(storage=make_storage(url), study_name="s")
    study.enqueue_trial({"x": 1.0})
    # Each storage object replays the file on its own, as a process on another machine.
    first = optuna.load_study(study_name="s", storage=make_storage(url))
    second = optuna.load_study(study_name="s", storage=make_storage(url))
    assert claim_trial(first) is not None
    assert claim_trial(second) is None  # the first line in the file won
    assert [t.state for t in study.trials] == [TrialState.RUNNING]


def test_a_trial_whose_beat_stands_still_is_failed_and_retried(tmp_path: Path) -> None:
    url = journal_url(tmp_path)

    def storage() -> HeartbeatJournalStorage:  # beats every second, stale after four
        made = make_storage(url, heartbeat_interval=1, grace_period=4,
                            stale_trial_callback=retry_failed_trial)
        assert isinstance(made, HeartbeatJournalStorage)
        return made

    study = optuna.create_study(storage=storage(), study_name="s")
    study.enqueue_trial({"x": 1.0})
    trial = claim_trial(study)
    assert trial is not None
    onlooker = optuna.load_study(study_name="s", storage=storage())  # another worker

    def failed() -> bool:
        optuna.storages.fail_stale_trials(onlooker)
        return onlooker.trials[0].state == TrialState.FAIL

    with heartbeat(storage_of(study), trial_id(trial)):  # a live worker: beating
        deadline = time.monotonic() + 6.5
        while time.monotonic() < deadline:
            assert not failed(), "a live trial was failed as stale"
            time.sleep(0.2)
    deadline = time.monotonic() + 60  # only against a hang
    while not failed():  # the worker died: its beat stands still
        assert time.monotonic() < deadline, "the dead trial was never failed"
        time.sleep(0.2)
    dead, retry = onlooker.trials
    assert retry.state == TrialState.WAITING and retry.params == dead.params
    assert retry.system_attrs["failed_trial"] == dead.number


@pytest.fixture
def planted_journal(tmp_path: Path, make_trial: Callable[..., Any]) -> Path:
    """A journal holding a bsopt study with two finished trials."""
    path = tmp_path / "study.log"
    study = optuna.create_study(storage=make_storage(f"journal://{path}", heartbeat=False),
                                study_name="planted")
    study.set_user_attr(CONFIG_ATTR, StudyConfig(study_name="planted", n_trials=2,
                                                 epochs=2).definition())
    study.add_trial(make_trial(16, 1e-3, [0.5, 0.4]))
    study.add_trial(make_trial(32, 1e-2, [0.6, 0.3]))
    return path


@pytest.mark.parametrize("command, shown", [
    (["studies"], "planted"),
    (["best", "--study-name", "planted"], "0.3"),
    (["export", "--study-name", "planted", "--format", "json"], '"batch_size": 32'),
])
def test_reading_commands_read_a_journal_and_write_nothing(
        planted_journal: Path, command: list[str], shown: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = planted_journal.read_bytes()
    listing = sorted(p.name for p in planted_journal.parent.iterdir())
    assert main([*command, "--storage", f"journal://{planted_journal}"]) == 0
    assert shown in capsys.readouterr().out
    assert planted_journal.read_bytes() == before  # not a line appended
    assert sorted(p.name for p in planted_journal.parent.iterdir()) == listing  # no lock left
