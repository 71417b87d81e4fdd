"""``imagefolder:DIR`` on folders of real PNG files the tests write: splits, sizes, channels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bsopt.errors import UsageError
from bsopt.training.data import StreamedData, describe, load_dataset
from tests.helpers import png, write_image_folder


def name(root: Path) -> str:
    return f"imagefolder:{root}"


def test_train_and_val_folders_without_test_hold_out_a_sixth_of_train(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", {"train": 12, "val": 3})
    data = load_dataset(name(root))
    assert (data.size("train"), data.size("val"), data.size("test")) == (20, 6, 4)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 2  # grayscale PNGs
    assert sorted(data.val_y.tolist()) == [0, 0, 0, 1, 1, 1]  # cat, dog: sorted folder names
    # Normalised with the train split's statistics: mean 0, std 1 there.
    assert abs(float(data.train_x.mean())) < 1e-4
    assert float(data.train_x.std()) == pytest.approx(1, abs=0.05)
    again = load_dataset(name(root))
    assert torch.equal(again.test_x, data.test_x) and torch.equal(again.train_y, data.train_y)


def test_a_test_folder_is_the_test_split(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", {"train": 6, "val": 2, "test": 3})
    data = load_dataset(name(root), max_train_samples=5)
    assert (data.size("train"), data.size("val"), data.size("test")) == (5, 1, 6)
    assert data.test_y.tolist() == [0, 0, 0, 1, 1, 1]


def test_colour_images_have_three_channels_and_image_size_resizes(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", {"train": 4, "val": 1}, mode="RGB",
                              size=(10, 6))
    assert load_dataset(name(root)).input_shape == (3, 6, 10)  # height 6, width 10
    assert load_dataset(name(root), image_size=5).input_shape == (3, 5, 5)


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", {"train": 4, "val": 1})
    (root / "val" / "dog" / "big.png").write_bytes(png((12, 12)))
    with pytest.raises(UsageError, match=r"differ in size \(8x8 .*, 12x12 .*big.png\): give "
                                         "--image-size"):
        load_dataset(name(root))
    assert load_dataset(name(root), image_size=8).size("val") == 3


def test_the_streamed_path_reads_the_same_tensors(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", {"train": 6, "val": 2}, mode="RGB")
    memory = load_dataset(name(root))
    streamed = load_dataset(name(root), mode="stream", loader_workers=1)
    assert isinstance(streamed, StreamedData) and streamed.num_classes == 2
    for split in ("train", "val", "test"):
        (x, y), = memory.batches(split, 100)
        (sx, sy), = streamed.batches(split, 100)
        assert torch.equal(x, sx) and torch.equal(y, sy)
    assert describe(streamed).startswith(f"data: {name(root)}, 10 train / 4 val / 2 test "
                                         "examples (3x8x8, 2 classes) streamed to cpu")


@pytest.mark.parametrize("layout, message", [
    ("missing", "does not exist"),
    ("file", "is not a directory"),
    ("no-val", "val is missing"),
    ("flat", "holds no class folders"),
    ("empty-class", "Found no valid file for the classes dog"),
    ("extra-val-class", "has class folders that .*train lacks: bird"),
    ("corrupt", "broken.png is not an image PIL can read"),
    ("one-image", "too few to hold out a test part"),
])
def test_a_wrong_layout_is_one_usage_error(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "imgs"
    if layout == "file":
        root.write_text("not a folder")
    elif layout == "flat":
        (root / "train").mkdir(parents=True)
        (root / "val").mkdir()
        (root / "train" / "a.png").write_bytes(png())
    elif layout == "one-image":
        write_image_folder(root, {"train": 1, "val": 1}, classes=("cat",))
    elif layout != "missing":
        write_image_folder(root, {"train": 2, "val": 1} if layout != "no-val" else {"train": 2})
    if layout == "empty-class":
        for image in (root / "train" / "dog").iterdir():
            image.unlink()
    elif layout == "extra-val-class":
        (root / "val" / "bird").mkdir()
        (root / "val" / "bird" / "0.png").write_bytes(png())
    elif layout == "corrupt":
        (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match=message) as caught:
        load_dataset(name(root))
    assert "\n" not in str(caught.value)
