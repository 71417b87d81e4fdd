"""Deterministic train / validation / test splits, and how big and how to hold them.

A split is a ``torch.utils.data.Subset`` of the dataset a loader gave (or that dataset
itself), chosen with a generator of fixed seed :data:`SPLIT_SEED`, never the study's seed:
every trial, worker and machine of a study sees the same examples in each split, on the
in-memory and the streamed path alike.

The split rule, for a training set of N examples:

- no validation split given: the first ``round(N / 6)`` of a fixed permutation of N are
  the validation set (the built-ins' validation sets, as they were before test splits);
- no test split given: the last ``round(N / 6)`` of the same permutation are held out as
  the test set, which the search never sees (``bsopt evaluate`` scores the best trials on it);
- the training set is the rest, in the permutation's order, so ``max_train_samples`` keeps a
  fixed random subset (its first N) and the validation set shrinks in proportion (1 : 5);
  the test set is never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from bsopt.errors import UsageError

VALIDATION_FRACTION = 1 / 6
TEST_FRACTION = 1 / 6  # held out where a dataset has no test split of its own
SPLIT_SEED = 20251123  # fixed: the split never depends on the study's seed
LOAD_BATCH = 256  # examples per batch when a Dataset is read into memory


def fixed_generator() -> torch.Generator:
    """A CPU generator seeded with :data:`SPLIT_SEED` (the same in every process)."""
    return torch.Generator().manual_seed(SPLIT_SEED)


@dataclass(frozen=True)
class Source:
    """A dataset as it comes (:mod:`bsopt.training.sources`): the splits it has, as Datasets."""

    train: Dataset
    val: Dataset | None  # None: held out of train
    test: Dataset | None  # None: held out of train
    num_classes: int | None  # None: count the labels once they are read into memory
    input_shape: tuple[int, ...]
    fit: Callable[[Dataset], None] | None = None  # told the final train split (normalization)


@dataclass(frozen=True)
class Splits:
    """The three splits a trial and ``bsopt evaluate`` use, as Datasets."""

    train: Dataset
    val: Dataset
    test: Dataset

    def sizes(self) -> tuple[int, int, int]:
        """Examples in (train, val, test)."""
        return len(self.train), len(self.val), len(self.test)  # type: ignore[arg-type]


def split(name: str, train: Dataset, val: Dataset | None, test: Dataset | None) -> Splits:
    """Carve the missing validation and test splits out of ``train`` (see the module).

    Raises:
        UsageError: too few training examples to hold out the missing splits.
    """
    n = len(train)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=fixed_generator()).tolist()
    n_val = 0 if val is not None else max(1, round(n * VALIDATION_FRACTION))
    n_test = 0 if test is not None else max(1, round(n * TEST_FRACTION))
    if n - n_val - n_test < 1:
        missing = " and ".join(s for s, k in (("validation", n_val), ("test", n_test)) if k)
        raise UsageError(f"--dataset {name}: its training split has {n} examples, too few to "
                         f"hold out a {missing} part (1/6 each): give more examples or the "
                         "splits themselves")
    return Splits(Subset(train, order[n_val:n - n_test]),
                  val if val is not None else Subset(train, order[:n_val]),
                  test if test is not None else Subset(train, order[n - n_test:]))


def limit(splits: Splits, max_train_samples: int | None) -> Splits:
    """Keep the first ``max_train_samples`` training examples and a validation set 1/5 of that.

    The validation set given by a loader is cut along a fixed permutation (a loader's own
    order is often sorted by class); a carved one is already in permutation order.
    """
    if max_train_samples is None:
        return splits
    n_val = max(1, round(max_train_samples * VALIDATION_FRACTION / (1 - VALIDATION_FRACTION)))
    return Splits(_first(splits.train, max_train_samples, shuffle=False),
                  _first(splits.val, n_val, shuffle=True), splits.test)


def _first(dataset: Dataset, n: int, *, shuffle: bool) -> Dataset:
    if n >= len(dataset):  # type: ignore[arg-type]
        return dataset
    if isinstance(dataset, Subset):
        return Subset(dataset.dataset, list(dataset.indices[:n]))
    order = (torch.randperm(len(dataset), generator=fixed_generator())  # type: ignore[arg-type]
             if shuffle else torch.arange(n))
    return Subset(dataset, order[:n].tolist())


def base_and_indices(dataset: Dataset) -> tuple[Dataset, Sequence[int] | None]:
    """The dataset under a chain of Subsets, and the indices into it (None: all of it)."""
    indices: Sequence[int] | None = None
    while isinstance(dataset, Subset):
        indices = (list(dataset.indices) if indices is None
                   else [dataset.indices[i] for i in indices])
        dataset = dataset.dataset
    return dataset, indices


def example_bytes(dataset: Dataset) -> int:
    """Bytes of one example (its image tensor and an int64 label) as held in memory."""
    x = dataset[0][0]
    return x.numel() * x.element_size() + 8


def to_tensors(dataset: Dataset, loader_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``dataset`` into two tensors (examples N x ..., labels N), in its order.

    Tensors a loader returned are indexed directly; any other Dataset is read item by item
    (decoded, transformed) through a ``DataLoader`` with ``loader_workers`` processes.
    """
    base, indices = base_and_indices(dataset)
    if isinstance(base, TensorDataset):
        x, y = base.tensors
        if indices is None:
            return x.contiguous(), y
        index = torch.as_tensor(indices, dtype=torch.long)
        return x[index].contiguous(), y[index]
    # A generator of its own: the workers' seeds are not drawn from torch's global RNG,
    # which seeds the trials' dropout.
    loader = DataLoader(dataset, batch_size=LOAD_BATCH, num_workers=loader_workers,
                        generator=fixed_generator())
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(torch.as_tensor(y, dtype=torch.long))
    return torch.cat(xs).contiguous(), torch.cat(ys)
