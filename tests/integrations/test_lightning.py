"""``BsoptCallback``: a real Lightning module tuned by bsopt, in --command and --train mode."""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from bsopt import records
from bsopt.config import build_config
from bsopt.search import search
from bsopt.storage.checkpoints import make_artifact_store
from bsopt.storage.weights import load_weights
from tests.helpers import REPO

pytest.importorskip("lightning", reason="Lightning is not installed: pip install "
                                        "'bsopt[lightning]' (the test extra has it)")
EXAMPLE = REPO / "examples" / "lightning_module.py"
sys.path.insert(0, str(EXAMPLE.parent))
import lightning_module  # noqa: E402
import train_script  # noqa: E402

SPACE = {"sampler": "random", "pruner": "none", "batch_size": "16:32", "lr": "1e-3:1e-2",
         "epochs": 2, "n_trials": 2}


def study(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/s.db")


@pytest.mark.slow  # two processes that import Lightning (seconds each) and train
def test_the_lightning_example_is_tuned_in_command_mode(tmp_path: Path) -> None:
    assert ('--command "python examples/lightning_module.py --bs {batch_size} --lr {lr} '
            '--epochs {epochs}"') in (REPO / "README.md").read_text()
    command = shlex.join([sys.executable, str(EXAMPLE), "--bs", "{batch_size}", "--lr",
                          "{lr}", "--epochs", "{epochs}", "--samples", "200"])
    config, explicit = build_config(None, {"storage": f"sqlite:///{tmp_path}/s.db",
                                           "study_name": "lightning", "command": command,
                                           **SPACE})
    search(config, explicit)
    trials = study(tmp_path, "lightning").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        assert list(trial.intermediate_values) == [1, 2]
        assert len(trial.user_attrs[records.VAL_ACCURACY]) == 2
        assert len(trial.user_attrs[records.TRAIN_LOSS]) == 2  # each epoch's own (see below)
    best = min(trials, key=lambda t: t.value)
    weights = torch.load(io.BytesIO(load_weights(make_artifact_store(config.storage), best)),
                         weights_only=True)
    train_script.make_model().load_state_dict(weights)  # the network's own state_dict


def train_with_lightning(run: Any) -> None:
    """A --train function whose loop is Lightning's: BsoptCallback(run) reports."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from bsopt.integrations.lightning import BsoptCallback

    train_x, train_y, val_x, val_y = train_script.load_digits(200)
    trainer = L.Trainer(max_epochs=run.epochs, callbacks=[BsoptCallback(run)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(lightning_module.DigitsModule(run.lr),
                DataLoader(TensorDataset(train_x, train_y), batch_size=run.batch_size),
                DataLoader(TensorDataset(val_x, val_y), batch_size=256))


@pytest.mark.slow
def test_the_callback_reports_through_a_run_in_train_mode(tmp_path: Path) -> None:
    config, explicit = build_config(None, {
        "storage": f"sqlite:///{tmp_path}/s.db", "study_name": "lightning-train",
        "train": "tests.integrations.test_lightning:train_with_lightning", **SPACE})
    search(config, explicit)
    trials = study(tmp_path, "lightning-train").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        losses = trial.user_attrs[records.VAL_LOSS]
        assert list(trial.intermediate_values) == [1, 2] and trial.value == losses[-1]
        # The training loss reported with epoch 1 is epoch 1's: the first epoch's average,
        # higher than the second's (a report at the end of validation would give none).
        assert trial.user_attrs[records.TRAIN_LOSS][0] > trial.user_attrs[records.TRAIN_LOSS][1]
