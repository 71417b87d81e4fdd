"""Datasets as tensors: digits, synthetic, and the torchvision path on IDX files we write."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bsopt.catalog import DATASETS
from bsopt.errors import UsageError
from bsopt.training.data import load_dataset


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


def test_digits_is_a_deterministic_split_of_all_1797_images() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.input_shape == (1, 8, 8) and a.num_classes == DATASETS["digits"].num_classes == 10
    assert len(a.train_x) + len(a.val_x) == 1797
    assert torch.equal(a.train_y, b.train_y) and torch.equal(a.val_x, b.val_x)
    assert set(a.train_y.tolist()) == set(range(10))


def test_max_train_samples_limits_the_training_split() -> None:
    data = load_dataset("digits", max_train_samples=100)
    assert len(data.train_x) == 100
    assert 10 <= len(data.val_x) <= 30


def test_synthetic_is_28x28_with_ten_learnable_classes() -> None:
    data = load_dataset("synthetic")
    assert data.num_classes == DATASETS["synthetic"].num_classes
    assert data.input_shape == (1, 28, 28)
    assert len(set(data.train_y.tolist())) == 10


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_datasets_read_idx_files_offline(tmp_path: Path, name: str,
                                                      folder: str) -> None:
    labels = make_mnist_files(tmp_path, folder)
    data = load_dataset(name, data_dir=tmp_path)
    assert data.num_classes == DATASETS[name].num_classes
    assert data.input_shape == (1, 28, 28)
    assert len(data.train_x) + len(data.val_x) == 120
    assert sorted(torch.cat([data.train_y, data.val_y]).tolist()) == sorted(labels.tolist())
    assert abs(float(data.train_x.mean())) < 3  # normalised, not raw 0..255 bytes


def test_absent_dataset_that_cannot_be_downloaded_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="could not be downloaded.*--data-dir"):
        load_dataset("mnist", data_dir=tmp_path / "empty")


def test_unknown_dataset_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("imagenet")
