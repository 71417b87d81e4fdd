"""``--model package.module:factory``: the user's network, with workers, checkpoints, resume."""

from __future__ import annotations

import os
import re
import shlex
import signal
import textwrap
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from bsopt import records
from tests.helpers import QUICK_FLAGS, REPO, Reader, StartBsopt, finish, wait_for

USER_MODEL = textwrap.dedent("""
    import math
    from torch import nn

    def build(input_shape, num_classes, hidden=16):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden),
                             nn.ReLU(), nn.Linear(hidden, num_classes))
""")


@pytest.mark.slow
def test_a_users_model_trains_with_two_workers_and_resumes_after_sigterm(
        sqlite_url: str, bsopt_process: StartBsopt, tmp_path: Path) -> None:
    (tmp_path / "mynet.py").write_text(USER_MODEL)
    run = bsopt_process("search", "--storage", sqlite_url, "--study-name", "mine",
                        "--model", "mynet:build", "--model-args", '{"hidden": 12}',
                        "--workers", "2", "--n-trials", "4", "--sampler", "random",
                        "--pruner", "none", "--dataset", "digits", "--max-train-samples", "1000",
                        "--epochs", "40", "--batch-size", "16:16", "--lr", "1e-3:1e-2")
    reader = Reader(sqlite_url, "mine")
    wait_for(reader.running_with_checkpoint, "a trial past its first epoch")
    os.kill(run.pid, signal.SIGTERM)
    out, _ = finish(run, 130)
    command = shlex.split(re.search(r"resume with: (.+)$", out, flags=re.M)[1])
    finish(bsopt_process(*command[1:]))
    trials = reader.trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4  # the budget, across the stop
    assert any(records.RESUMED_FROM_EPOCH in t.user_attrs for t in done)
    definition = reader.trials()[0]  # the definition names the factory and its arguments
    import optuna

    stored = optuna.load_study(study_name="mine", storage=reader.storage).user_attrs
    assert (stored[records.CONFIG_ATTR]["model"], stored[records.CONFIG_ATTR]["model_args"]) == (
        "mynet:build", {"hidden": 12})
    assert definition.params["batch_size"] == 16
    # The kept weights are the factory's network's, hidden layer of 12.
    weights = tmp_path / "best.pt"
    finish(bsopt_process("best", "--storage", sqlite_url, "--study-name", "mine",
                         "--save-model", str(weights)))
    state = torch.load(weights, weights_only=True)
    assert state["1.weight"].shape == (12, 64)


@pytest.mark.slow
def test_the_resnet_example_trains(sqlite_url: str, bsopt_process: StartBsopt) -> None:
    finish(bsopt_process("search", "--storage", sqlite_url, "--study-name", "resnet",
                         "--model", "examples.resnet:build", "--model-args",
                         '{"zero_init_residual": true}', "--n-trials", "1", *QUICK_FLAGS,
                         "--dataset", "synthetic", "--max-train-samples", "64",
                         "--batch-size", "32:32", cwd=REPO))
    (trial,) = Reader(sqlite_url, "resnet").trials()
    assert trial.state == TrialState.COMPLETE and len(trial.user_attrs[records.VAL_LOSS]) == 1
