"""Where a study's data come from: a built-in name, ``imagefolder:DIR`` or ``module:loader``.

:func:`read_source` turns the ``--dataset`` text into a :class:`Source`: the splits the data
come with (train always; val and test if they have them) as torch Datasets, the number of
classes and the shape of one example. :mod:`bsopt.training.data` then splits and holds them.

**The loader contract** (``--dataset package.module:loader``, and the built-ins of
:mod:`bsopt.catalog`): the loader is imported from the working directory or the installed
packages and called once per process with the keyword arguments it declares among

- ``data_dir``: a ``pathlib.Path``, ``--data-dir`` (default ``~/.cache/bsopt``);
- ``image_size``: ``--image-size`` (None when not given; a loader that declares no
  ``image_size`` refuses the flag).

It returns ``(train, val)`` or ``(train, val, test)``. Each split is a map-style torch
``Dataset`` whose items are ``(image, label)`` pairs (a float32 tensor, an int), or an
``(x, y)`` pair of tensors (x float, N x ...; y integers, N). A val or test that is None (or
absent) is held out of train by the fixed rule of :mod:`bsopt.training.splits`.

**The number of classes**, from the first of: a ``num_classes`` attribute of the train
Dataset, the length of its ``classes`` (torchvision's ``ImageFolder`` and datasets have one),
``max(label) + 1`` over the ``targets`` attribute or the label tensors of every split;
otherwise, in memory, over the labels read, and streamed it is an error.
**The input shape** is the shape of the first training example.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Subset, TensorDataset

from bsopt import catalog
from bsopt.errors import UsageError
from bsopt.import_path import is_import_path, load_object
from bsopt.training.splits import Source

DEFAULT_DATA_DIR = Path(os.environ.get("BSOPT_DATA_DIR", Path.home() / ".cache" / "bsopt"))
IMAGE_FOLDER = "imagefolder:"  # --dataset imagefolder:DIR
SPLIT_NAMES = ("train", "val", "test")
CONTRACT = ("return (train, val) or (train, val, test), each a torch Dataset of (image, "
            "label) pairs or an (x, y) pair of tensors")


def read_source(name: str, *, data_dir: Path, image_size: int | None = None,
                loader_workers: int = 0) -> Source:
    """The :class:`Source` that ``--dataset name`` means.

    Raises:
        UsageError: an unknown name, data that cannot be read, a loader that cannot be
            imported, raises or breaks the contract.
    """
    if name.startswith(IMAGE_FOLDER):
        from bsopt.training.image_folder import read_image_folder  # torchvision, only here

        return read_image_folder(name, name[len(IMAGE_FOLDER):], image_size, loader_workers)
    if name in catalog.DATASETS:
        if image_size is not None:
            raise UsageError(f"--image-size resizes the images of imagefolder:DIR (or goes to "
                             f"your loader); --dataset {name} has its own size: leave it out")
        builtin = catalog.DATASETS[name]
        returned = load_object(builtin.loader, "--dataset")(data_dir)
        return _source(name, returned, num_classes=builtin.num_classes)
    if not is_import_path(name):
        raise UsageError(f"unknown dataset {name!r}: choose {catalog.names(catalog.DATASETS)}, "
                         "imagefolder:DIR or package.module:loader")
    return _source(name, call_loader(name, data_dir, image_size))


def call_loader(name: str, data_dir: Path, image_size: int | None) -> Any:
    """Import the user's loader ``name`` and call it with the arguments it declares."""
    loader = load_object(name, "--dataset")
    if not callable(loader):
        raise UsageError(f"--dataset {name} is a {type(loader).__name__}, not a function: "
                         f"name a loader that will {CONTRACT}")
    try:
        parameters = inspect.signature(loader).parameters
    except (TypeError, ValueError):  # a builtin without a signature: give it data_dir
        parameters = {"data_dir": None}  # type: ignore[assignment]
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs: dict[str, Any] = {}
    if takes_any or "data_dir" in parameters:
        kwargs["data_dir"] = data_dir
    if takes_any or "image_size" in parameters:
        kwargs["image_size"] = image_size
    elif image_size is not None:
        raise UsageError(f"--image-size {image_size}: the loader {name} takes no image_size "
                         "argument: add one, or leave the flag out")
    try:
        return loader(**kwargs)
    except UsageError:
        raise
    except Exception as exc:  # the user's code: one line saying what it raised
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(f"--dataset {name} raised {type(exc).__name__}"
                         f"{': ' + text if text else ''}") from None


def _source(name: str, returned: Any, num_classes: int | None = None) -> Source:
    """Check what a loader returned against the contract and make it a :class:`Source`."""
    if not isinstance(returned, tuple | list) or len(returned) not in (2, 3):
        what = (f"a {len(returned)}-tuple" if isinstance(returned, tuple | list)
                else f"a {type(returned).__name__}")
        raise UsageError(f"--dataset {name} returned {what}: {CONTRACT}")
    splits = [_dataset(name, split_name, value)
              for split_name, value in zip(SPLIT_NAMES, [*returned, None][:3])]
    train, val, test = splits
    shapes = {s: _first_example(name, s, d) for s, d in zip(SPLIT_NAMES, splits) if d is not None}
    if len(set(shapes.values())) > 1:
        raise UsageError(f"--dataset {name}: the splits' examples differ in shape ("
                         + ", ".join(f"{s} {tuple(v)}" for s, v in shapes.items())
                         + "): give every example the same shape")
    if num_classes is None:
        num_classes = _known_classes([d for d in splits if d is not None])
    return Source(train, val, test, num_classes, tuple(shapes["train"]))


def _dataset(name: str, split_name: str, value: Any) -> Dataset | None:
    """A split as a map-style Dataset (tensors become a ``TensorDataset``); None stays None."""
    if value is None and split_name != "train":
        return None
    if isinstance(value, IterableDataset):
        raise UsageError(f"--dataset {name}: its {split_name} split is an IterableDataset; "
                         "give a map-style Dataset (len() and [i]): bsopt's seeded order "
                         "picks examples by index")
    if isinstance(value, Dataset):
        if not hasattr(value, "__len__"):
            raise UsageError(f"--dataset {name}: its {split_name} Dataset has no len()")
        if len(value) == 0:  # type: ignore[arg-type]
            raise UsageError(f"--dataset {name}: its {split_name} split is empty")
        return value
    if (isinstance(value, tuple | list) and len(value) == 2
            and all(isinstance(t, torch.Tensor) for t in value)):
        return TensorDataset(*_checked_tensors(name, split_name, *value))
    raise UsageError(f"--dataset {name} returned a {type(value).__name__} as its "
                     f"{split_name} split: {CONTRACT}")


def _checked_tensors(name: str, split_name: str, x: torch.Tensor,
                     y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    where = f"--dataset {name}: the {split_name} split's"
    if x.ndim < 2 or len(x) == 0:
        raise UsageError(f"{where} x has shape {tuple(x.shape)}: give N examples, N x ...")
    if not x.is_floating_point():
        raise UsageError(f"{where} x holds {x.dtype}: give floats (e.g. x.float() / 255)")
    if y.ndim != 1 or len(y) != len(x):
        raise UsageError(f"{where} y has shape {tuple(y.shape)}: give one label per example "
                         f"({len(x)})")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise UsageError(f"{where} labels are {y.dtype}: give integer class indices")
    return x.float().contiguous(), y.long()


def _first_example(name: str, split_name: str, dataset: Dataset) -> torch.Size:
    """The shape of ``dataset[0]``'s image, after checking it is an (image, label) pair."""
    try:
        item = dataset[0]
    except Exception as exc:
        raise UsageError(f"--dataset {name}: {split_name}[0] raised {type(exc).__name__}: "
                         f"{str(exc).strip()[:200]}") from None
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise UsageError(f"--dataset {name}: {split_name}[0] is a {type(item).__name__}: a "
                         "Dataset's items must be (image tensor, label) pairs")
    x, y = item[0], item[1]
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        what = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise UsageError(f"--dataset {name}: {split_name}[0]'s image is a {what}: give "
                         "float32 tensors (e.g. transforms.ToTensor())")
    if not (isinstance(y, int) or isinstance(y, torch.Tensor) and y.numel() == 1
            and not y.is_floating_point()):
        raise UsageError(f"--dataset {name}: {split_name}[0]'s label is a {type(y).__name__}: "
                         "give an int class index")
    return x.shape


def _known_classes(datasets: list[Dataset]) -> int | None:
    """The number of classes without reading the examples (see the module), or None."""
    train = datasets[0]
    base = train.dataset if isinstance(train, Subset) else train
    for holder in (train, base):
        if isinstance(getattr(holder, "num_classes", None), int):
            return holder.num_classes
        if getattr(holder, "classes", None) is not None:
            return len(holder.classes)
    highest = [_highest_label(d) for d in datasets]
    return None if None in highest else 1 + max(highest)  # type: ignore[type-var]


def _highest_label(dataset: Dataset) -> int | None:
    if isinstance(dataset, TensorDataset):
        return int(dataset.tensors[1].max())
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    targets = getattr(base, "targets", None)
    if targets is None:
        return None
    targets = torch.as_tensor(targets)
    if isinstance(dataset, Subset):
        targets = targets[torch.as_tensor(dataset.indices, dtype=torch.long)]
    return int(targets.max())
