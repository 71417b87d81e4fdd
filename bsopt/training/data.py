"""Datasets as in-memory tensors on the training device.

Holding the whole dataset as one tensor on the device and slicing it with a shuffled index
is what makes small batches fast: no DataLoader workers, no per-sample Python. The split
into training and validation sets is deterministic (a fixed generator), so every trial and
every worker of a study sees the same split.

The datasets are named in :mod:`bsopt.catalog`; their loaders are here:

- :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (offline, the default).
- :func:`mnist`, :func:`fashion_mnist`, :func:`cifar10`: torchvision, downloaded into
  ``data_dir`` (default ``~/.cache/bsopt``) or read from it offline when the files are there.
- :func:`synthetic`: random 28x28 images labelled by a fixed random teacher; for smoke tests
  and throughput.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bsopt import catalog
from bsopt.errors import UsageError
from bsopt.import_path import load_object

VALIDATION_FRACTION = 1 / 6
SPLIT_SEED = 20251123  # fixed: the split never depends on the study's seed
SYNTHETIC_SIZE = 6000
DEFAULT_DATA_DIR = Path(os.environ.get("BSOPT_DATA_DIR", Path.home() / ".cache" / "bsopt"))
Images = tuple[torch.Tensor, torch.Tensor]  # (N x C x H x W float images, N labels)


@dataclass(frozen=True)
class TensorData:
    """A train/validation split held as tensors (images N x C x H x W, labels N)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one example."""
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> TensorData:
        """The same data on ``device``."""
        return TensorData(self.train_x.to(device), self.train_y.to(device),
                          self.val_x.to(device), self.val_y.to(device), self.num_classes)


def split(x: torch.Tensor, y: torch.Tensor, num_classes: int,
          max_train_samples: int | None = None) -> TensorData:
    """Split deterministically into training and validation sets."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, round(len(x) * VALIDATION_FRACTION))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if max_train_samples is not None:
        train_idx = train_idx[:max_train_samples]
        # Keep the validation set in proportion to the smaller training set.
        n_val = round(max_train_samples * VALIDATION_FRACTION / (1 - VALIDATION_FRACTION))
        val_idx = val_idx[: max(1, n_val)]
    return TensorData(x[train_idx].contiguous(), y[train_idx].contiguous(),
                      x[val_idx].contiguous(), y[val_idx].contiguous(), num_classes)


def digits(data_dir: Path | None = None) -> Images:
    """scikit-learn's bundled 8x8 digits, standardised (``data_dir`` is not used)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    return x, torch.tensor(bunch.target, dtype=torch.long)


def synthetic(data_dir: Path | None = None) -> Images:
    """Random 28x28 images labelled by a fixed random linear teacher (10 classes)."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    x = torch.randn(SYNTHETIC_SIZE, 1, 28, 28, generator=generator)
    teacher = torch.randn(28 * 28, 10, generator=generator)
    y = (x.flatten(1) @ teacher).argmax(dim=1)
    return x, y


def mnist(data_dir: Path) -> Images:
    """MNIST's training set through torchvision, normalised with its usual mean and std."""
    return _torchvision("MNIST", (0.1307,), (0.3081,), data_dir)


def fashion_mnist(data_dir: Path) -> Images:
    """Fashion-MNIST's training set through torchvision, normalised."""
    return _torchvision("FashionMNIST", (0.2860,), (0.3530,), data_dir)


def cifar10(data_dir: Path) -> Images:
    """CIFAR-10's training set through torchvision, normalised per channel."""
    return _torchvision("CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                        data_dir)


def _torchvision(class_name: str, mean: tuple[float, ...], std: tuple[float, ...],
                 data_dir: Path) -> Images:
    import torchvision

    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        dataset = dataset_class(str(data_dir), train=True, download=False)
    except RuntimeError:  # not on disk: try to download it
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            dataset = dataset_class(str(data_dir), train=True, download=True)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"{class_name} is not in {data_dir} and could not be downloaded ({reason}): "
                f"download it where there is internet, copy it to {data_dir}, or pass "
                "--data-dir; --dataset digits works offline"
            ) from None
    data = dataset.data
    x = torch.as_tensor(np.asarray(data), dtype=torch.float32) / 255.0
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # CIFAR is N x H x W x C
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    y = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
    return x.contiguous(), y


def load_dataset(name: str, *, data_dir: str | Path | None = None,
                 max_train_samples: int | None = None,
                 device: torch.device | str = "cpu") -> TensorData:
    """Load the dataset ``name`` (see :mod:`bsopt.catalog`) as a deterministic split on ``device``.

    Raises:
        UsageError: an unknown name, or torchvision files that are absent and cannot be
            downloaded.
    """
    if name not in catalog.DATASETS:
        raise UsageError(f"unknown dataset {name!r}: choose {catalog.names(catalog.DATASETS)}")
    builtin = catalog.DATASETS[name]
    loader = load_object(builtin.loader, "--dataset")
    x, y = loader(Path(data_dir) if data_dir else DEFAULT_DATA_DIR)
    return split(x, y, builtin.num_classes, max_train_samples).to(device)
