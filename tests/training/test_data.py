"""The splits of the built-in datasets, and how they are held: digits, synthetic, torchvision
on IDX files we write and on the real MNIST digits of shared/, in memory or streamed."""

from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bsopt.catalog import DATASETS
from bsopt.errors import UsageError
from bsopt.training import data as data_module
from bsopt.training.data import StreamedData, TensorData, describe, load_dataset
from bsopt.training.splits import SPLIT_SEED

SHARED_MNIST = Path("/work/shared/data/mnist")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the IDX format MNIST ships in."""
    magic = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    dims = struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(magic + dims + array.astype(np.uint8).tobytes())


def make_mnist_files(root: Path, folder: str, n: int = 120) -> np.ndarray:
    """Write a tiny MNIST-format dataset under ``root/folder/raw``; returns the labels."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels)
    write_idx(raw / "t10k-images-idx3-ubyte", images[:20])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:20])
    return labels


def rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r.numpy().tobytes()) for r in x.flatten(1)}


def test_digits_is_a_deterministic_split_of_all_1797_images_with_a_held_out_test_sixth() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.input_shape == (1, 8, 8) and a.num_classes == DATASETS["digits"].num_classes == 10
    assert (a.size("train"), a.size("val"), a.size("test")) == (1197, 300, 300)
    for x in ("train_x", "val_x", "test_x"):
        assert torch.equal(getattr(a, x), getattr(b, x))
    splits = [rows(a.train_x), rows(a.val_x), rows(a.test_x)]
    assert len(set.union(*splits)) == sum(len(s) for s in splits)  # disjoint
    assert set(a.train_y.tolist()) == set(range(10))


def test_the_validation_set_is_the_one_before_test_splits_existed() -> None:
    # The benchmark tables were trained with validation = the first sixth of this permutation
    # and training = the rest; the test sixth comes from the end, so both keep their start.
    from sklearn.datasets import load_digits

    order = torch.randperm(1797, generator=torch.Generator().manual_seed(SPLIT_SEED))
    labels = torch.tensor(load_digits().target)
    data = load_dataset("digits")
    assert torch.equal(data.val_y, labels[order[:300]])
    assert torch.equal(data.train_y, labels[order[300:1497]])
    assert torch.equal(data.test_y, labels[order[1497:]])


def test_max_train_samples_limits_training_and_validation_but_never_the_test_split() -> None:
    full, data = load_dataset("digits"), load_dataset("digits", max_train_samples=100)
    assert (data.size("train"), data.size("val"), data.size("test")) == (100, 20, 300)
    assert torch.equal(data.train_x, full.train_x[:100]) and torch.equal(data.test_x, full.test_x)


def test_synthetic_is_28x28_with_ten_learnable_classes() -> None:
    data = load_dataset("synthetic")
    assert data.num_classes == DATASETS["synthetic"].num_classes
    assert data.input_shape == (1, 28, 28)
    assert (data.size("train"), data.size("val"), data.size("test")) == (4000, 1000, 1000)
    assert len(set(data.train_y.tolist())) == 10


def test_both_paths_hold_the_same_splits_and_say_how_in_one_line() -> None:
    memory = load_dataset("digits", max_train_samples=200)
    streamed = load_dataset("digits", max_train_samples=200, mode="stream")
    assert isinstance(memory, TensorData) and isinstance(streamed, StreamedData)
    for split in ("train", "val", "test"):
        (x, y), = memory.batches(split, 10_000)
        (sx, sy), = streamed.batches(split, 10_000)
        assert torch.equal(x, sx) and torch.equal(y, sy)
    assert describe(memory) == ("data: digits, 200 train / 40 val / 300 test examples (1x8x8, "
                                "10 classes) in memory on cpu (142.6 kB; --data-mode memory)")
    assert "streamed to cpu by a DataLoader with 0 loader workers" in describe(streamed)


def test_auto_keeps_data_in_memory_within_the_budget_and_streams_beyond_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    line = describe(load_dataset("digits", mode="auto"))
    assert "in memory on cpu" in line and "auto: within the budget of" in line
    monkeypatch.setattr(data_module, "RAM_SHARE", 1e-12)  # a budget of a few bytes
    data = load_dataset("digits", mode="auto", workers=2)
    assert isinstance(data, StreamedData)
    assert "auto: over the budget of" in describe(data) and "/ 2 workers" in describe(data)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_datasets_read_idx_files_offline(tmp_path: Path, name: str,
                                                      folder: str) -> None:
    labels = make_mnist_files(tmp_path, folder)
    data = load_dataset(name, data_dir=tmp_path)
    assert data.num_classes == DATASETS[name].num_classes
    assert data.input_shape == (1, 28, 28)
    assert (data.size("train"), data.size("val"), data.size("test")) == (100, 20, 20)
    assert sorted(torch.cat([data.train_y, data.val_y]).tolist()) == sorted(labels.tolist())
    assert data.test_y.tolist() == labels[:20].tolist()  # the t10k files, in their order
    assert abs(float(data.train_x.mean())) < 3  # normalised, not raw 0..255 bytes


def read_idx_labels(path: Path) -> list[int]:
    raw = gzip.open(path).read()
    return list(raw[8:])


@pytest.mark.skipif(not SHARED_MNIST.exists(), reason="needs /work/shared/data/mnist")
def test_real_mnist_digits_load_with_their_test_split(tmp_path: Path) -> None:
    subprocess.run([str(SHARED_MNIST / "mnist_dir.sh"), str(tmp_path)], check=True,
                   capture_output=True)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert (data.size("train"), data.size("val"), data.size("test")) == (6667, 1333, 2000)
    labels = read_idx_labels(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert data.test_y.tolist() == labels[8000:]  # mnist_dir.sh's test set, never trained on
    assert sorted(torch.cat([data.train_y, data.val_y]).tolist()) == sorted(labels[:8000])
    assert abs(float(data.train_x.mean())) < 0.1 and 0.9 < float(data.train_x.std()) < 1.1
    line = describe(load_dataset("mnist", data_dir=tmp_path, mode="auto"))
    assert line.startswith("data: mnist, 6,667 train / 1,333 val / 2,000 test examples "
                           "(1x28x28, 10 classes) in memory on cpu (31.4 MB; auto: within")


def test_absent_dataset_that_cannot_be_downloaded_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="could not be downloaded.*--data-dir"):
        load_dataset("mnist", data_dir=tmp_path / "empty")


def test_unknown_dataset_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown dataset.*imagefolder:DIR or package.module"):
        load_dataset("imagenet")


def test_image_size_is_for_image_folders_and_data_modes_are_named() -> None:
    with pytest.raises(UsageError, match="has its own size"):
        load_dataset("digits", image_size=16)
    with pytest.raises(UsageError, match="unknown data mode"):
        load_dataset("digits", mode="disk")
