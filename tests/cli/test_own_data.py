"""``bsopt search`` on the user's own data: an image folder and a loader module it writes.

Real files and real training: the image folder runs in-process; the loader modules run in a
real ``python -m bsopt`` whose working directory holds them, as a user's project would.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bsopt.cli import main
from bsopt.records import study_config
from tests.helpers import finish, write_image_folder

ONE_TRIAL = ["--sampler", "random", "--n-trials", "1", "--epochs", "1", "--batch-size", "8:8",
             "--lr", "1e-3:1e-3"]


def completed(url: str, name: str) -> optuna.Study:
    study = optuna.load_study(study_name=name, storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    return study


@pytest.mark.parametrize("with_test, sizes", [
    (False, "20 train / 6 val / 4 test"),  # a sixth of train held out
    (True, "24 train / 6 val / 4 test"),  # the test folder
])
def test_search_on_an_image_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], with_test: bool,
                                   sizes: str) -> None:
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "imgs", {"train": 12, "val": 3, **({"test": 2} if with_test
                                                                      else {})})
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["search", "--storage", url, "--dataset", "imagefolder:imgs", *ONE_TRIAL]) == 0
    out = capsys.readouterr().out
    assert (f"data: imagefolder:imgs, {sizes} examples (1x8x8, 2 classes) in memory on cpu "
            "(") in out
    assert "auto: within the budget of" in out
    study = completed(url, "imagefolder:imgs-cnn")
    assert study_config(study)["dataset"] == "imagefolder:imgs"  # as the user named it


LOADERS = {
    "tensors": """
        import torch

        def load(data_dir):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(60, 1, 6, 6, generator=g)
            y = (x.mean(dim=(1, 2, 3)) > 0).long()
            return (x[:48], y[:48]), (x[48:], y[48:])
    """,
    "datasets": """
        import torch
        from torch.utils.data import Dataset

        class Blobs(Dataset):
            classes = ["dark", "light"]

            def __init__(self, n, offset):
                self.n, self.offset = n, offset

            def __len__(self):
                return self.n

            def __getitem__(self, i):
                label = (i + self.offset) % 2
                g = torch.Generator().manual_seed(i + self.offset)
                return torch.randn(1, 6, 6, generator=g) + 2 * label, label

        def load():
            return Blobs(40, 0), Blobs(10, 1000), Blobs(10, 2000)
    """,
}


@pytest.mark.slow  # a real process each: about 10 s on the shared machine
@pytest.mark.parametrize("kind, flags, line", [
    ("tensors", [], "40 train / 12 val / 8 test examples (1x6x6, 2 classes) in memory on cpu"),
    ("datasets", ["--data-mode", "stream", "--loader-workers", "1"],
     "40 train / 10 val / 10 test examples (1x6x6, 2 classes) streamed to cpu by a DataLoader "
     "with 1 loader worker ("),
])
def test_search_on_a_loader_in_the_working_directory(tmp_path: Path, bsopt_process,
                                                     kind: str, flags: list[str],
                                                     line: str) -> None:
    (tmp_path / "mydata.py").write_text(textwrap.dedent(LOADERS[kind]))
    url = f"sqlite:///{tmp_path}/s.db"
    out, _ = finish(bsopt_process("search", "--storage", url, "--dataset", "mydata:load",
                                  *ONE_TRIAL, *flags))
    assert f"data: mydata:load, {line}" in out
    completed(url, "mydata:load-cnn")
