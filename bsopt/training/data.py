"""What a trial trains on: train / validation / test splits, in memory or streamed.

Two ways to hold the same splits, with the same semantics:

- :class:`TensorData` (**in memory**): each split is one tensor on the training device,
  and a batch is a slice of a shuffled index. No DataLoader workers, no per-sample Python:
  what makes small batches fast. The default wherever the data fit (see :func:`load_dataset`).
- :class:`StreamedData` (**streamed**): each split is a torch ``Dataset`` read through a
  ``DataLoader`` (``loader_workers`` processes, pinned memory on CUDA), for datasets that do
  not fit.

The trainer asks either for the training batches of an epoch in an order it draws itself
(``torch.randperm`` from its seeded generator, part of its checkpoint), so both paths see the
same examples in the same batches, and a resumed trial continues exactly. On the CPU with 0
loader workers both give identical losses (``tests/training/test_streaming.py``).

The splits are deterministic (:mod:`bsopt.training.splits`); where the data come from is
:mod:`bsopt.training.sources` (built-ins, ``imagefolder:DIR``, ``package.module:loader``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import DataLoader, Dataset

from bsopt.config import DATA_MODES
from bsopt.errors import UsageError
from bsopt.training.sources import DEFAULT_DATA_DIR, read_source
from bsopt.training.splits import (
    SPLIT_SEED,
    TEST_FRACTION,
    VALIDATION_FRACTION,
    example_bytes,
    limit,
    split,
    to_tensors,
)

SPLITS = ("train", "val", "test")
# What "fits" means for --data-mode auto: a share of what is free where the data would live.
RAM_SHARE = 0.5  # of the available RAM (cgroup limit included), split among --workers
DEVICE_SHARE = 0.25  # of the CUDA device's free memory: the rest is for activations
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]

__all__ = ["DEFAULT_DATA_DIR", "DataChoice", "SPLIT_SEED", "StreamedData", "TEST_FRACTION",
           "TensorData", "TrialData", "VALIDATION_FRACTION", "describe", "load_dataset"]


@dataclass(frozen=True)
class DataChoice:
    """How the data of a study are held, and why (for the line ``bsopt search`` prints)."""

    name: str  # the dataset as the user named it
    mode: str  # "memory" or "stream"
    nbytes: int  # the estimated size of all three splits in memory
    reason: str  # e.g. "auto: within the budget of 5.2 GB, half the available memory"


@dataclass(frozen=True)
class TensorData:
    """Train / validation / test splits held as tensors (examples N x C x H x W, labels N)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    choice: DataChoice | None = None
    mode: ClassVar[str] = "memory"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. (channels, height, width)."""
        return tuple(self.train_x.shape[1:])

    @property
    def device(self) -> torch.device:
        """Where the tensors are (where the trial trains)."""
        return self.train_x.device

    def size(self, split_name: str) -> int:
        """Examples in ``split_name`` (``train``, ``val`` or ``test``)."""
        return len(self._split(split_name)[1])

    def to(self, device: torch.device | str) -> TensorData:
        """The same data on ``device``."""
        move = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **move)

    def train_batches(self, order: torch.Tensor, batch_size: int, *, seed: int = 0) -> Batches:
        """The training batches of one epoch: examples ``order[i:i + batch_size]`` in turn.

        ``seed`` seeds a streamed path's loader workers; here there are none.
        """
        order = order.to(self.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield self.train_x[index], self.train_y[index]

    def batches(self, split_name: str, batch_size: int) -> Batches:
        """The examples of ``split_name`` in order, ``batch_size`` at a time (for evaluation)."""
        x, y = self._split(split_name)
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]

    def _split(self, split_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = {"train": (self.train_x, self.train_y), "val": (self.val_x, self.val_y),
                "test": (self.test_x, self.test_y)}[split_name]
        if x is None or y is None:
            raise ValueError(f"this TensorData has no {split_name} split")
        return x, y


@dataclass(frozen=True)
class StreamedData:
    """Train / validation / test splits as torch Datasets, read through a ``DataLoader``."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    device: torch.device
    loader_workers: int = 0
    choice: DataChoice | None = None
    mode: ClassVar[str] = "stream"

    def size(self, split_name: str) -> int:
        """Examples in ``split_name`` (``train``, ``val`` or ``test``)."""
        return len(getattr(self, split_name))

    def _loader(self, dataset: Dataset, batch_size: int, sampler: list[int] | None,
                seed: int) -> Batches:
        # A generator of the loader's own: otherwise it draws its workers' base seed from
        # torch's global RNG, which would shift the trial's dropout masks. Seeded by the
        # caller (the trial's seed and epoch), so random transforms replay on a resume.
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                            num_workers=self.loader_workers,
                            pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(seed))
        blocking = self.device.type != "cuda"
        for x, y in loader:
            yield (x.to(self.device, non_blocking=not blocking),
                   torch.as_tensor(y, dtype=torch.long).to(self.device,
                                                           non_blocking=not blocking))

    def train_batches(self, order: torch.Tensor, batch_size: int, *, seed: int = 0) -> Batches:
        """The training batches of one epoch: examples ``order[i:i + batch_size]`` in turn.

        The order is the loader's sampler, so the batches hold exactly the examples the
        in-memory path would slice. Close the iterator (``contextlib.closing``) to stop its
        workers early.
        """
        return self._loader(self.train, batch_size, order.tolist(), seed)

    def batches(self, split_name: str, batch_size: int) -> Batches:
        """The examples of ``split_name`` in order, ``batch_size`` at a time (for evaluation)."""
        return self._loader(getattr(self, split_name), batch_size, None, SPLIT_SEED)


TrialData = TensorData | StreamedData


def _size_text(nbytes: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes:.0f} B"


def describe(data: TrialData) -> str:
    """One line: the dataset, its splits, where they are held and why.

    Example: ``data: mnist, 6,667 train / 1,333 val / 2,000 test examples (1x28x28,
    10 classes) in memory on cpu (31.4 MB; auto: within the budget ...)``.
    """
    name = data.choice.name if data.choice else "data"
    sizes = " / ".join(f"{data.size(s):,} {s}" for s in SPLITS if _has(data, s))
    shape = "x".join(str(d) for d in data.input_shape)
    if data.mode == "memory":
        where = f"in memory on {data.device}"
    else:
        workers = data.loader_workers  # type: ignore[union-attr]
        where = (f"streamed to {data.device} by a DataLoader with {workers} loader worker"
                 f"{'' if workers == 1 else 's'}")
    why = f" ({_size_text(data.choice.nbytes)}; {data.choice.reason})" if data.choice else ""
    return (f"data: {name}, {sizes} examples ({shape}, {data.num_classes} classes) "
            f"{where}{why}")


def _has(data: TrialData, split_name: str) -> bool:
    return data.mode == "stream" or getattr(data, f"{split_name}_x") is not None


def available_ram() -> int:
    """Bytes of RAM this process can still use: MemAvailable, within a cgroup's limit."""
    import os

    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    for limit_file, used_file in (("memory.max", "memory.current"),  # cgroup v2, then v1
                                  ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit_text = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            used = int(Path("/sys/fs/cgroup", used_file).read_text())
        except (OSError, ValueError):
            continue
        if limit_text.isdigit():
            free = min(free, max(0, int(limit_text) - used))
        break
    return free


def _choose(name: str, mode: str, nbytes: int, device: torch.device, workers: int) -> DataChoice:
    if mode not in DATA_MODES:
        raise UsageError(f"unknown data mode {mode!r}: choose {', '.join(DATA_MODES)}")
    if mode != "auto":
        return DataChoice(name, mode, nbytes, f"--data-mode {mode}")
    if device.type == "cuda":
        budget = DEVICE_SHARE * torch.cuda.mem_get_info(device)[0]
        of = f"{DEVICE_SHARE:.0%} of {device}'s free memory"
    else:
        budget = RAM_SHARE * available_ram() / workers
        of = "half the available memory" + (f" / {workers} workers" if workers > 1 else "")
    fits = nbytes <= budget
    return DataChoice(name, "memory" if fits else "stream", nbytes,
                      f"auto: {'within' if fits else 'over'} the budget of {_size_text(budget)}, "
                      f"{of}")


def load_dataset(name: str, *, data_dir: str | Path | None = None,
                 max_train_samples: int | None = None, device: torch.device | str = "cpu",
                 image_size: int | None = None, mode: str = "memory",
                 loader_workers: int = 0, workers: int = 1) -> TrialData:
    """Load ``name`` as deterministic train / validation / test splits for ``device``.

    Args:
        name: A :mod:`bsopt.catalog` dataset, ``imagefolder:DIR`` or ``package.module:loader``
            (see :mod:`bsopt.training.sources`).
        data_dir: Where torchvision datasets are (``~/.cache/bsopt``); given to a loader.
        max_train_samples: Train on the first N training examples (see ``splits.limit``).
        image_size: ``imagefolder:DIR`` images are resized to this square size.
        mode: ``memory`` (a :class:`TensorData` on ``device``), ``stream`` (a
            :class:`StreamedData`) or ``auto``: in memory when the estimated size of the
            splits is within a share of the free memory (:data:`RAM_SHARE` of the RAM on
            the CPU, shared by ``workers`` processes; :data:`DEVICE_SHARE` of a CUDA
            device's), else streamed.
        loader_workers: DataLoader processes that read a Dataset (streamed, or into memory).
        workers: Worker processes on this machine, each holding its own copy.

    Raises:
        UsageError: an unknown name, a dataset that cannot be read (absent torchvision
            files, a bad image folder, a loader that fails or returns something else), or
            a streamed Dataset whose number of classes is unknown.

    Example::

        data = load_dataset("imagefolder:pets", image_size=64, mode="auto", loader_workers=4)
        print(describe(data))
    """
    device = torch.device(device)
    source = read_source(name, data_dir=Path(data_dir) if data_dir else DEFAULT_DATA_DIR,
                         image_size=image_size, loader_workers=loader_workers)
    splits = split(name, source.train, source.val, source.test)
    if source.fit is not None:
        source.fit(splits.train)  # e.g. an image folder's normalization, from the train split
    splits = limit(splits, max_train_samples)
    nbytes = example_bytes(splits.train) * sum(splits.sizes())
    choice = _choose(name, mode, nbytes, device, workers)
    if choice.mode == "stream":
        if source.num_classes is None:
            raise UsageError(f"--dataset {name}: the number of classes of a streamed Dataset "
                             "must be known without reading every example: give the train "
                             "Dataset a num_classes, classes or targets attribute, or use "
                             "--data-mode memory")
        return StreamedData(splits.train, splits.val, splits.test, source.num_classes,
                            source.input_shape, device, loader_workers, choice)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        to_tensors(s, loader_workers) for s in (splits.train, splits.val, splits.test))
    labels = torch.cat([train_y, val_y, test_y])
    num_classes = source.num_classes or 1 + int(labels.max())
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise UsageError(f"--dataset {name}: labels run from {int(labels.min())} to "
                         f"{int(labels.max())}; with {num_classes} classes they must be 0 .. "
                         f"{num_classes - 1}")
    return TensorData(train_x, train_y, val_x, val_y, num_classes, test_x, test_y,
                      choice).to(device)
