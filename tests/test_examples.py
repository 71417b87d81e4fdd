"""The examples run as the README says, and do what they say (real training, real processes)."""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path

import optuna
import pytest
import torch

from bsopt import records
from bsopt.config import build_config
from bsopt.search import search
from bsopt.storage.checkpoints import make_artifact_store
from bsopt.storage.weights import load_weights
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "examples"))
import train_script  # noqa: E402


def test_the_plain_script_resumes_from_its_checkpoint_exactly(tmp_path: Path) -> None:
    data = train_script.load_digits(200)
    whole, resumed = [], []

    def into(losses):
        return lambda epoch, val_loss, **metrics: losses.append((epoch, val_loss))

    train_script.train(32, 3e-3, 4, data=data, checkpoint_dir=None, report=into(whole))
    train_script.train(32, 3e-3, 2, data=data, checkpoint_dir=tmp_path, report=into(resumed))
    train_script.train(32, 3e-3, 4, data=data, checkpoint_dir=tmp_path, report=into(resumed))
    assert [e for e, _ in resumed] == [1, 2, 3, 4]  # the second run went on from epoch 2
    assert resumed == whole  # model, optimizer and data order all restored
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    train_script.make_model().load_state_dict(state)


@pytest.mark.slow  # each trial is a process that imports torch
def test_the_plain_script_is_tuned_in_command_mode_as_the_readme_says(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    shown = ('--command "python examples/train_script.py --bs {batch_size} --lr {lr} '
             '--epochs {epochs}"')
    assert shown in readme
    command = shlex.join([sys.executable, str(REPO / "examples" / "train_script.py"), "--bs",
                          "{batch_size}", "--lr", "{lr}", "--epochs", "{epochs}",
                          "--samples", "300"])
    config, explicit = build_config(None, {
        "storage": f"sqlite:///{tmp_path}/s.db", "study_name": "script", "command": command,
        "sampler": "random", "n_trials": 3, "epochs": 3, "lr": "1e-3:3e-2"})
    result = search(config, explicit)
    trials = optuna.load_study(study_name="script", storage=config.storage).trials
    assert len(trials) == 3 and set(result.counts) <= {"COMPLETE", "PRUNED"}
    for trial in trials:
        epochs = len(trial.user_attrs[records.VAL_LOSS])
        assert list(trial.intermediate_values) == list(range(1, epochs + 1))
        assert len(trial.user_attrs[records.VAL_ACCURACY]) == epochs
        assert trial.user_attrs[records.STEPS][0] == -(-300 // trial.params["batch_size"])
    best = result.best[0]
    assert best.value < 2.0  # it learns (chance is ln 10 = 2.3)
    weights = load_weights(make_artifact_store(config.storage), best)
    train_script.make_model().load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
