"""``bsopt profile``: a table of batch sizes, bounded by memory, whose answer runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bsopt.catalog import DATASETS
from bsopt.cli import main
from bsopt.training.models import build_model
from bsopt.training.profile import profile


def test_the_largest_batch_that_fits_runs_and_the_next_is_over_the_limit() -> None:
    result = profile("cnn", "mnist", batch_size_min=16, batch_size_max=1024, steps=1,
                     memory_limit_mb=100)
    fitting = [b for b in result.batches if b.fits]
    assert [b.batch_size for b in fitting] == [16, 32, 64, 128][: len(fitting)]
    assert all(b.samples_per_second > 0 and b.peak_memory_mb <= 100 for b in fitting)
    peaks = [b.peak_memory_mb for b in fitting]
    assert peaks == sorted(peaks)  # memory grows with the batch
    over = result.batches[-1]
    assert not over.fits and over.peak_memory_mb > 100 and "memory-limit" in over.note
    largest = result.max_batch_size
    assert largest == fitting[-1].batch_size
    # The answer is a batch size that really trains.
    model = build_model("cnn", DATASETS["mnist"].input_shape, 10)
    x = torch.randn(largest, *DATASETS["mnist"].input_shape)
    torch.nn.functional.cross_entropy(model(x), torch.zeros(largest, dtype=torch.long)).backward()


def test_cli_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "profile.html"
    assert main(["profile", "--model", "mlp", "--dataset", "digits", "--batch-sizes", "16:64",
                 "--steps", "1", "--json", "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [b["batch_size"] for b in data["batches"]] == [16, 32, 64]
    assert data["max_batch_size"] == 64
    assert "plotly" in plot.read_text()[:5000].lower()
    assert main(["profile", "--model", "mlp", "--dataset", "digits", "--batch-sizes", "16:32",
                 "--steps", "1"]) == 0
    assert "largest batch size that fits on cpu: 32" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--batch-sizes", "64:16"], "MIN <= MAX"),
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--model", "resnet"], "unknown model"),
    (["--memory-limit", "-5"], "--memory-limit"),
])
def test_bad_profile_flags(argv: list[str], message: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", *argv]) == 2
    assert message in capsys.readouterr().err
