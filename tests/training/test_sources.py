"""``--dataset package.module:loader``: the loader contract, on modules the tests write."""

from __future__ import annotations

import itertools
import re
import textwrap
from pathlib import Path

import pytest
import torch

from bsopt.errors import UsageError
from bsopt.training.data import StreamedData, TensorData, load_dataset

_names = itertools.count()


@pytest.fixture
def loader_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a module into ``tmp_path`` (the working directory); returns ``module:load``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(body: str) -> str:
        module = f"user_loader_{next(_names)}"  # a fresh name: modules are cached by name
        source = "import torch\nfrom torch.utils.data import Dataset, TensorDataset\n\n"
        (tmp_path / f"{module}.py").write_text(source + textwrap.dedent(body))
        return f"{module}:load"

    return write


TENSORS = """
    def load(data_dir):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(60, 3, 4, 4, generator=g)
        y = torch.arange(60) % 3
        return (x[:48], y[:48]), (x[48:], y[48:])
"""


def test_tensors_without_a_test_split_get_one_held_out_of_train(loader_module) -> None:
    data = load_dataset(loader_module(TENSORS))
    assert isinstance(data, TensorData)
    assert (data.size("train"), data.size("val"), data.size("test")) == (40, 12, 8)
    assert data.input_shape == (3, 4, 4) and data.num_classes == 3  # max(label) + 1


def test_datasets_with_a_test_split_and_the_arguments_a_loader_declares(
        loader_module, tmp_path: Path) -> None:
    path = loader_module("""
        class Squares(Dataset):
            classes = ["a", "b", "c", "d"]

            def __init__(self, n, side):
                self.n, self.side = n, side

            def __len__(self):
                return self.n

            def __getitem__(self, i):
                return torch.full((1, self.side, self.side), float(i)), i % 2

        def load(data_dir, image_size=None):
            assert data_dir.name == "given"
            side = image_size or 3
            return Squares(30, side), Squares(6, side), Squares(5, side)
    """)
    data = load_dataset(path, data_dir=tmp_path / "given", image_size=5)
    assert (data.size("train"), data.size("val"), data.size("test")) == (30, 6, 5)
    assert data.input_shape == (1, 5, 5) and data.num_classes == 4  # len(classes)
    assert data.test_x[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    streamed = load_dataset(path, data_dir=tmp_path / "given", mode="stream")
    assert isinstance(streamed, StreamedData) and streamed.input_shape == (1, 3, 3)


def test_a_loader_without_arguments_and_a_none_validation_split(loader_module) -> None:
    data = load_dataset(loader_module("""
        def load():
            x = torch.rand(36, 1, 2, 2, dtype=torch.float64)  # converted to float32
            return (x, torch.arange(36) % 2), None, (x[:4], torch.zeros(4, dtype=torch.int32))
    """))
    assert (data.size("train"), data.size("val"), data.size("test")) == (30, 6, 4)
    assert data.train_x.dtype == torch.float32 and data.test_y.dtype == torch.long


def test_unknown_classes_are_counted_in_memory_and_refused_when_streamed(loader_module) -> None:
    path = loader_module("""
        class Plain(Dataset):
            def __len__(self):
                return 24

            def __getitem__(self, i):
                return torch.zeros(2), i % 5

        def load():
            return Plain(), Plain()
    """)
    assert load_dataset(path).num_classes == 5
    with pytest.raises(UsageError, match="num_classes, classes or targets attribute"):
        load_dataset(path, mode="stream")


@pytest.mark.parametrize("body, message", [
    ("def load():\n    return {'train': 1}\n", "returned a dict: return (train, val) or"),
    ("def load():\n    return (torch.zeros(3, 1),)\n", "returned a 1-tuple"),
    ("def load():\n    x = torch.zeros(4, 2)\n    return (x, x[:, 0].long()), 'val'\n",
     "returned a str as its val split"),
    ("def load():\n    raise ValueError('no such file: x.csv')\n",
     "raised ValueError: no such file: x.csv"),
    ("def load():\n    x = torch.zeros(4, 2, dtype=torch.uint8)\n    return (x, x[:, 0]), None\n",
     "x holds torch.uint8: give floats"),
    ("def load():\n    x = torch.zeros(4, 2)\n    return (x, x[:3, 0].long()), None\n",
     "give one label per example"),
    ("def load():\n    x = torch.zeros(4, 2)\n    return (x, x[:, 0]), None\n",
     "labels are torch.float32: give integer class indices"),
    ("def load():\n    x = torch.zeros(12, 2)\n    return (x, -torch.ones(12).long()), None\n",
     "labels run from -1 to -1"),
    ("def load():\n    return TensorDataset(torch.zeros(4, 2, dtype=torch.int64), "
     "torch.zeros(4).long()), None\n", "image is a torch.int64: give float32 tensors"),
    ("load = 5\n", "is a int, not a function"),
])
def test_a_loader_breaking_the_contract_is_one_usage_error(loader_module, body: str,
                                                           message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)) as e:
        load_dataset(loader_module(body))
    assert "\n" not in str(e.value)


def test_image_size_for_a_loader_that_takes_none_is_refused(loader_module) -> None:
    with pytest.raises(UsageError, match="takes no image_size argument"):
        load_dataset(loader_module(TENSORS), image_size=8)
