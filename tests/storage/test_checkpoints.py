"""Checkpoints belong to one study's retry series; one that cannot be used restarts the trial.

Real SQLite files, a real objective training the reference CNN on a few digits, and (for the
names that differ only in punctuation) real ``bsopt search`` processes stopped with SIGTERM.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import shlex
import signal
import warnings
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from bsopt import records
from bsopt.config import build_config
from bsopt.search.objective import Objective
from bsopt.search.worker import retry_failed_trial
from bsopt.storage import make_storage
from bsopt.storage.checkpoints import CheckpointOwner, make_artifact_store, save_checkpoint
from bsopt.training.data import load_dataset
from bsopt.training.models import build_model
from bsopt.training.trainer import Trainer
from tests.helpers import EPOCHS as LONG_EPOCHS
from tests.helpers import TRAIN_SAMPLES, Reader, StartBsopt, finish, wait_for

EPOCHS = 3
SAMPLES = 120


def one_point_grid(lr: str) -> list[str]:
    """A one-point grid of long-ish trials, so a test can stop one mid-way."""
    return ["--sampler", "grid", "--grid-lr-points", "1", "--batch-size", "16:16", "--lr", lr,
            "--pruner", "none", "--dataset", "digits", "--max-train-samples",
            str(TRAIN_SAMPLES), "--epochs", str(LONG_EPOCHS)]


@pytest.mark.slow
def test_studies_whose_names_differ_only_in_punctuation_keep_their_own_checkpoints(
        sqlite_url: str, bsopt_process: StartBsopt) -> None:
    # "exp 1" and "exp_1" were once one file name: each resumed the other's model, or found
    # its checkpoint deleted. Each is stopped mid-trial, then resumed by the command it printed.
    lrs = {"exp 1": "1e-3:1e-3", "exp_1": "0.3:0.3"}
    resumes, stopped = {}, {}
    for name, lr in lrs.items():
        run = bsopt_process("search", "--storage", sqlite_url, "--study-name", name,
                            *one_point_grid(lr))
        stopped[name] = wait_for(Reader(sqlite_url, name).running_with_checkpoint,
                                 f"a trial of {name!r} past its first epoch")
        os.kill(run.pid, signal.SIGTERM)
        out, _ = finish(run, 130)
        match = re.search(r"^interrupted: 1 trials left; resume with: (.+)$", out, flags=re.M)
        assert match, out
        resumes[name] = shlex.split(match[1])  # quoted for the shell: "exp 1" is one word
        assert resumes[name][resumes[name].index("--study-name") + 1] == name
    ids = {name: Reader(sqlite_url, name).owner(t).artifact_id(1) for name, t in stopped.items()}
    assert ids["exp 1"] != ids["exp_1"]

    for name, command in resumes.items():
        finish(bsopt_process(*command[1:]))
        trials = Reader(sqlite_url, name).trials()
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
        dead, retry = trials
        epoch = retry.user_attrs[records.RESUMED_FROM_EPOCH]
        assert epoch >= 1  # its own checkpoint was there, not deleted by the other study
        # The resumed curve is this study's own (lr 1e-3 and 0.3 train very differently).
        assert (retry.user_attrs[records.VAL_LOSS][:epoch]
                == dead.user_attrs[records.VAL_LOSS][:epoch])
        assert records.FAIL_REASON not in retry.user_attrs  # the old attempt's, not its own
        assert retry.user_attrs[records.TORCH_THREADS] == 1  # as tests/conftest.py runs it


def setup_failed_trial(url: str) -> tuple[optuna.Study, Objective, Any, CheckpointOwner]:
    """A trial that trained two epochs and failed; its retry is enqueued (as a worker does)."""
    config, _ = build_config(None, {"dataset": "digits", "max_train_samples": SAMPLES,
                                    "epochs": EPOCHS, "device": "cpu", "storage": url,
                                    "pruner": "none"})
    data = load_dataset("digits", max_train_samples=SAMPLES)
    store = make_artifact_store(url)
    study = optuna.create_study(storage=make_storage(url, heartbeat=False), study_name="s")
    study.set_user_attr(records.UID_ATTR, "uid-s")
    study.enqueue_trial({"batch_size": 16, "lr": 1e-3})
    trial = study.ask()
    objective = Objective(config, data, torch.device("cpu"), artifact_store=store)
    trial.set_user_attr(records.SERIES, trial.number)
    for epoch in (1, 2):
        trial.report(1.0 / epoch, epoch)
    study.tell(trial, state=TrialState.FAIL)
    retry_failed_trial(study, study.trials[0])
    return study, objective, store, CheckpointOwner("uid-s", trial.number)


def trainer_state(model: str) -> dict[str, Any]:
    data = load_dataset("digits", max_train_samples=SAMPLES)
    config, _ = build_config(None, {"epochs": EPOCHS})
    trainer = Trainer(build_model(model, data.input_shape, data.num_classes), data,
                      Objective(config, data, torch.device("cpu")).settings(16, 1e-3))
    trainer.run_epoch()
    return trainer.state_dict()


def plant(store: Any, artifact_id: str, payload: Any) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    store.write(artifact_id, io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("payload, reason", [
    (lambda owner: {}, "not a bsopt checkpoint"),  # `torch.save({}, ...)` in its place
    (lambda owner: {"owner": dataclasses.asdict(owner), "epoch": 2, "state": {}}, "does not fit"),
    (lambda owner: {"owner": dataclasses.asdict(owner), "epoch": 1, "state": trainer_state("mlp")},
     "does not fit"),  # another network's weights
    (lambda owner: {"owner": {"study": "uid-other", "series": owner.series}, "epoch": 1,
                    "state": trainer_state("cnn")}, "belongs to"),
])
def test_a_checkpoint_that_cannot_be_used_restarts_the_trial_once(
        sqlite_url: str, payload: Any, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    study, objective, store, owner = setup_failed_trial(sqlite_url)
    plant(store, owner.artifact_id(2), payload(owner))
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    study._storage.set_trial_user_attr(waiting._trial_id, records.CHECKPOINT,
                                       {"artifact_id": owner.artifact_id(2), "epoch": 2})
    retry = study.ask()
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        value = objective(retry)
    study.tell(retry, value)
    frozen = study.trials[-1]
    assert frozen.state == TrialState.COMPLETE  # not a KeyError, not three failures in a row
    assert records.RESUMED_FROM_EPOCH not in frozen.user_attrs  # from epoch 0
    assert list(frozen.intermediate_values) == list(range(1, EPOCHS + 1))
    assert frozen.intermediate_values[1] != 1.0  # its own epoch 1, not the failed attempt's
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1 and reason in messages[0], messages  # reported once
    assert not [w for w in seen if "already reported" in str(w.message)]


def test_a_checkpoint_of_its_own_resumes_and_the_retry_inherits_no_old_attempt(
        sqlite_url: str) -> None:
    study, objective, store, owner = setup_failed_trial(sqlite_url)
    state = trainer_state("cnn")
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    retry = study.ask()
    assert retry.number == waiting.number
    save_checkpoint(store, retry, owner, state, 1)
    retry.set_user_attr(records.FAIL_REASON, "must not survive")  # an old attempt's attribute
    study.tell(retry, state=TrialState.FAIL)
    retry_failed_trial(study, study.trials[-1])
    again = study.ask()
    assert set(again.user_attrs) == {records.SERIES, records.CHECKPOINT}
    assert study._storage.get_trial(again._trial_id).intermediate_values == {}
    study.tell(again, objective(again))
    frozen = study.trials[-1]
    assert frozen.user_attrs[records.RESUMED_FROM_EPOCH] == 1
    assert list(frozen.intermediate_values) == list(range(1, EPOCHS + 1))
    assert frozen.intermediate_values[1] == pytest.approx(state["history"][0]["val_loss"])
