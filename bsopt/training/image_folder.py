"""``--dataset imagefolder:DIR``: torchvision's ``ImageFolder`` over DIR/train, DIR/val, DIR/test.

The layout is ``DIR/train/<class>/<image>`` and ``DIR/val/<class>/<image>``, and optionally
``DIR/test/<class>/<image>``; any extension ``ImageFolder`` reads (.png, .jpg, .jpeg, .bmp,
.ppm, .pgm, .tif, .tiff, .webp). The classes are the folder names of DIR/train, sorted (as
``ImageFolder`` numbers them); DIR/val and DIR/test use the same numbering and may lack a
class but not add one. Without DIR/test a fixed sixth of DIR/train is held out as the test
set (:mod:`bsopt.training.splits`).

- **Size**: with ``--image-size S`` every image is resized to S x S
  (``transforms.Resize((S, S))``); without it, all images must share one size, which is
  checked from the file headers before anything is stored.
- **Channels**: 1 when every image is grayscale, else 3 (RGB).
- **Values**: ``ToTensor`` (0..1), then ``Normalize`` with the per-channel mean and std of a
  fixed sample of up to :data:`STATS_SAMPLE` images of the train split (the same in every
  process, on the in-memory and the streamed path).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from bsopt.errors import UsageError
from bsopt.training.splits import LOAD_BATCH, Source, fixed_generator

STATS_SAMPLE = 2048  # train images whose mean and std normalize the data
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})  # PIL modes without colour


class _OpenImage:
    """``ImageFolder``'s loader: the file as a PIL image in ``mode`` (picklable for workers)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, path: str) -> Any:
        from PIL import Image

        with open(path, "rb") as file:
            return Image.open(file).convert(self.mode)


class _Folder(datasets.ImageFolder):
    """An ``ImageFolder`` numbering its classes as DIR/train does."""

    def __init__(self, root: str, class_to_idx: dict[str, int], **kwargs: Any) -> None:
        self._class_to_idx = class_to_idx
        super().__init__(root, **kwargs)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:  # noqa: D102
        return sorted(self._class_to_idx, key=self._class_to_idx.get), self._class_to_idx


def _subfolders(path: Path) -> set[str]:
    return {entry.name for entry in os.scandir(path) if entry.is_dir()}


def _folders(root: Path, name: str) -> tuple[dict[str, _Folder], list[str]]:
    """The ImageFolder of each split present, and the classes (refusing a wrong layout)."""
    layout = (f"{root}/train and {root}/val, each with one folder of images per class "
              f"({root}/test optional)")
    if not root.exists():
        raise UsageError(f"--dataset {name}: {root} does not exist: give a directory holding "
                         f"{layout}")
    if not root.is_dir():
        raise UsageError(f"--dataset {name}: {root} is not a directory: give one holding "
                         f"{layout}")
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise UsageError(f"--dataset {name}: {root / part} is missing: give {layout}")
    classes = sorted(_subfolders(root / "train"))
    if not classes:
        raise UsageError(f"--dataset {name}: {root / 'train'} holds no class folders: put each "
                         f"class's images in {root / 'train'}/<class>/")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    folders: dict[str, _Folder] = {}
    for part in ("train", "val", "test"):
        path = root / part
        if part == "test" and not path.is_dir():
            continue
        extra = sorted(_subfolders(path) - set(classes))
        if extra:
            raise UsageError(f"--dataset {name}: {path} has class folders that "
                             f"{root / 'train'} lacks: {', '.join(extra)}")
        try:
            folder = _Folder(str(path), class_to_idx, allow_empty=part != "train")
        except FileNotFoundError as exc:  # a class folder of train without images
            raise UsageError(f"--dataset {name}: {path}: {str(exc).splitlines()[0]}") from None
        if not folder.samples:
            raise UsageError(f"--dataset {name}: {path} holds no images "
                             f"({', '.join(datasets.folder.IMG_EXTENSIONS)})")
        folders[part] = folder
    return folders, classes


def _scan(folders: dict[str, _Folder], name: str,
          image_size: int | None) -> tuple[tuple[int, int], bool]:
    """(width, height) of the images and whether all are grayscale, from their headers."""
    from PIL import Image

    sizes: dict[tuple[int, int], str] = {}
    gray = True
    for folder in folders.values():
        for path, _ in folder.samples:
            try:
                with Image.open(path) as image:
                    size, mode = image.size, image.mode
            except OSError as exc:  # PIL's UnidentifiedImageError is an OSError
                raise UsageError(f"--dataset {name}: {path} is not an image PIL can read "
                                 f"({type(exc).__name__}): remove or replace it") from None
            sizes.setdefault(size, path)
            gray = gray and mode in GRAY_MODES
    if image_size is None and len(sizes) > 1:
        (a, a_path), (b, b_path) = list(sizes.items())[:2]
        raise UsageError(f"--dataset {name}: the images differ in size ({a[0]}x{a[1]} "
                         f"{a_path}, {b[0]}x{b[1]} {b_path}): give --image-size PIXELS to "
                         "resize them all to PIXELS x PIXELS")
    return next(iter(sizes)), gray


def _channel_stats(train: Dataset, channels: int,
                   loader_workers: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over a fixed sample of up to STATS_SAMPLE train images."""
    order = torch.randperm(len(train), generator=fixed_generator())  # type: ignore[arg-type]
    sample = Subset(train, order[:STATS_SAMPLE].tolist())
    loader = DataLoader(sample, batch_size=LOAD_BATCH, num_workers=loader_workers,
                        generator=fixed_generator())
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for x, _ in loader:
        x = x.double().transpose(0, 1).reshape(channels, -1)
        total += x.sum(dim=1)
        squares += (x * x).sum(dim=1)
        count += x.shape[1]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    std[std < 1e-8] = 1.0  # a constant channel: centre it, do not divide by zero
    return mean.tolist(), std.tolist()


def read_image_folder(name: str, directory: str, image_size: int | None,
                      loader_workers: int = 0) -> Source:
    """The :class:`~bsopt.training.splits.Source` of ``--dataset name``: images in ``directory``.

    Raises:
        UsageError: the directory or its layout is wrong, a file is not an image, or the
            images differ in size without ``image_size``.
    """
    if not directory:
        raise UsageError("--dataset imagefolder: needs a directory: imagefolder:DIR")
    folders, classes = _folders(Path(directory), name)
    (width, height), gray = _scan(folders, name, image_size)
    steps: list[Any] = [transforms.Resize((image_size, image_size))] if image_size else []
    steps.append(transforms.ToTensor())
    for folder in folders.values():
        folder.loader = _OpenImage("L" if gray else "RGB")
        folder.transform = transforms.Compose(steps)
    channels = 1 if gray else 3

    def fit(train: Dataset) -> None:
        mean, std = _channel_stats(train, channels, loader_workers)
        for folder in folders.values():  # test may be a Subset of train's folder: all of them
            folder.transform = transforms.Compose([*steps, transforms.Normalize(mean, std)])

    shape = (channels, image_size, image_size) if image_size else (channels, height, width)
    return Source(folders["train"], folders["val"], folders.get("test"), len(classes), shape,
                  fit)
