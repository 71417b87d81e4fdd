"""End to end on the bundled digits: ``bsopt search --sampler scaling`` then ``bsopt analyze``."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note

from bsopt.cli import main
from bsopt.visualization.note import MARKER


@pytest.mark.slow
def test_scaling_search_then_analyze_answers_and_writes_the_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    argv = ["search", "--storage", db, "--study-name", "sc", "--sampler", "scaling",
            "--dataset", "digits", "--model", "mlp", "--max-train-samples", "256",
            "--epochs", "2", "--batch-size", "16:64", "--lr", "0.001:0.1", "--n-trials", "12",
            "--noise-scale", "--lr-search-limit", "10"]
    assert main(argv) == 0
    study = optuna.load_study(study_name="sc", storage=db)
    assert study.metric_names == ["val_loss"]
    sizes = [t.params["batch_size"] for t in study.trials]
    assert sorted(set(sizes)) == [16, 32, 64] and min(sizes.count(b) for b in (16, 32, 64)) >= 3
    assert all(1e-4 <= t.params["lr"] <= 1.0 for t in study.trials)
    assert any(k.startswith("bsopt_lr_bracket_") for k in study.user_attrs)
    capsys.readouterr()

    assert main(["analyze", "--storage", db, "--study-name", "sc"]) == 0
    out = capsys.readouterr().out
    assert out.index("Answers") < out.index("Best learning rate per batch size")
    assert "lr scaling: lr* =" in out and "Verdict:" in out and "B_simple" in out
    note = get_note(optuna.load_study(study_name="sc", storage=db))
    assert MARKER in note and "lr scaling" in note

    assert main(["analyze", "--storage", db, "--study-name", "sc", "--json",
                 "--no-note"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lr_scaling"]["verdict"] in ("linear", "sqrt", "neither", "undecided")
    assert len(result["best_lrs"]) == 3
    assert get_note(optuna.load_study(study_name="sc", storage=db)) == note
