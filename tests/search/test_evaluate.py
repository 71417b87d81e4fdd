"""``bsopt evaluate``: the best trials' kept weights scored on the real MNIST test digits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest

from bsopt import records
from bsopt.cli import main
from tests.helpers import REPO

MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 10,000 real MNIST digits laid out for torchvision (8,000 train, 2,000 test)."""
    if not (MNIST / "mnist_dir.sh").exists():
        pytest.skip(f"the real MNIST digits are not in {MNIST} (../shared beside the checkout)")
    target = tmp_path_factory.mktemp("mnist")
    subprocess.run([str(MNIST / "mnist_dir.sh"), str(target)], check=True, capture_output=True)
    return target


@pytest.mark.slow
def test_the_best_trials_are_scored_on_the_test_split_and_shown(
        mnist_dir: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    search = ["search", "--storage", sqlite_url, "--study-name", "mnist", "--dataset", "mnist",
              "--data-dir", str(mnist_dir), "--model", "mlp", "--optimizer", "sgd",
              "--momentum", "0", "--epochs", "1", "--batch-size", "64:128", "--lr", "0.05:0.2",
              "--n-trials", "3", "--keep-best", "2", "--max-train-samples", "1000",
              "--sampler", "random", "--pruner", "none"]
    assert main(search) == 0
    assert main(["evaluate", "--storage", sqlite_url, "--study-name", "mnist", "--top", "3",
                 "--data-dir", str(mnist_dir)]) == 0
    out, err = capsys.readouterr()
    assert "test_loss" in out and "2000" in out  # MNIST's own 2,000 test digits
    assert err.count("are gone") == 1  # the third best kept no weights (--keep-best 2)
    study = optuna.load_study(study_name="mnist", storage=sqlite_url)
    scores = records.test_scores(study)
    best = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)),
                  key=lambda t: t.value)
    assert sorted(scores) == sorted(t.number for t in best[:2])
    for number, score in scores.items():
        assert 0 < score[records.TEST_LOSS] < 2.31 and 0.1 < score[records.TEST_ACCURACY] <= 1
        assert score[records.TEST_EXAMPLES] == 2000
    assert main(["best", "--storage", sqlite_url, "--study-name", "mnist"]) == 0
    assert "test_loss" in capsys.readouterr().out
    assert main(["export", "--storage", sqlite_url, "--study-name", "mnist"]) == 0
    assert "test_loss" in capsys.readouterr().out.splitlines()[0]


def test_a_study_of_the_users_own_loop_is_not_evaluated(
        sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop.py").write_text("def train(run):\n    run.report(1, 0.5)\n")
    assert main(["search", "--storage", sqlite_url, "--study-name", "own", "--train",
                 "loop:train", "--epochs", "1", "--n-trials", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--storage", sqlite_url, "--study-name", "own"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "your own --train function" in err
