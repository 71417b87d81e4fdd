"""The loaders of the built-in datasets that :mod:`bsopt.catalog` names.

Each follows the loader contract of :mod:`bsopt.training.sources`: ``loader(data_dir)``
returns ``(train, val, test)``, each an ``(images, labels)`` pair of tensors, where None
means "hold it out of train" (the fixed rule of :mod:`bsopt.training.splits`):

- :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (offline, the default); the
  validation and test sets are each a fixed sixth of the 1,797 images;
- :func:`mnist`, :func:`fashion_mnist`, :func:`cifar10`: torchvision, downloaded into
  ``data_dir`` (default ``~/.cache/bsopt``) or read from it offline when the files are there;
  validation is a fixed sixth of the training set, test is the dataset's own test set;
- :func:`synthetic`: random 28x28 images labelled by a fixed random teacher, for smoke tests
  and throughput; validation and test are a fixed sixth each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bsopt.errors import UsageError
from bsopt.training.splits import SPLIT_SEED

SYNTHETIC_SIZE = 6000
Images = tuple[torch.Tensor, torch.Tensor]  # (N x C x H x W float images, N labels)
Loaded = tuple[Images, Images | None, Images | None]  # (train, val, test); None: held out


def digits(data_dir: Path | None = None) -> Loaded:
    """scikit-learn's bundled 8x8 digits, standardised (``data_dir`` is not used)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    return (x, torch.tensor(bunch.target, dtype=torch.long)), None, None


def synthetic(data_dir: Path | None = None) -> Loaded:
    """Random 28x28 images labelled by a fixed random linear teacher (10 classes)."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    x = torch.randn(SYNTHETIC_SIZE, 1, 28, 28, generator=generator)
    teacher = torch.randn(28 * 28, 10, generator=generator)
    y = (x.flatten(1) @ teacher).argmax(dim=1)
    return (x, y), None, None


def mnist(data_dir: Path) -> Loaded:
    """MNIST through torchvision, normalised with its usual mean and std."""
    return _torchvision("MNIST", (0.1307,), (0.3081,), data_dir)


def fashion_mnist(data_dir: Path) -> Loaded:
    """Fashion-MNIST through torchvision, normalised."""
    return _torchvision("FashionMNIST", (0.2860,), (0.3530,), data_dir)


def cifar10(data_dir: Path) -> Loaded:
    """CIFAR-10 through torchvision, normalised per channel."""
    return _torchvision("CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                        data_dir)


def _torchvision(class_name: str, mean: tuple[float, ...], std: tuple[float, ...],
                 data_dir: Path) -> Loaded:
    """The training set (validation is carved from it) and the test set (``train=False``)."""
    import torchvision

    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        datasets = [dataset_class(str(data_dir), train=t, download=False) for t in (True, False)]
    except RuntimeError:  # not on disk: try to download it
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            datasets = [dataset_class(str(data_dir), train=t, download=True)
                        for t in (True, False)]
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"{class_name} is not in {data_dir} and could not be downloaded ({reason}): "
                f"download it where there is internet, copy it to {data_dir}, or pass "
                "--data-dir; --dataset digits works offline"
            ) from None
    train, test = (_tensors(d, mean, std) for d in datasets)
    return train, None, test


def _tensors(dataset: object, mean: tuple[float, ...], std: tuple[float, ...]) -> Images:
    x = torch.as_tensor(np.asarray(dataset.data), dtype=torch.float32) / 255.0
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # CIFAR is N x H x W x C
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    y = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
    return x.contiguous(), y
