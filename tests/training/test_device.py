"""Each worker's device: the pure placement over GPUs, and mixed precision on the CPU."""

from __future__ import annotations

import pytest
import torch

from bsopt.errors import UsageError
from bsopt.training.data import load_dataset
from bsopt.training.device import assign_devices, worker_devices
from bsopt.training.models import build_model
from bsopt.training.trainer import Trainer, TrainSettings


@pytest.mark.parametrize(("workers", "visible", "gpus", "k", "expected"), [
    (1, 1, None, 1, [0]),
    (4, 4, None, 1, [0, 1, 2, 3]),
    (6, 4, None, 1, [0, 1, 2, 3, 0, 1]),  # round-robin past the last GPU
    (3, 8, None, 1, [0, 1, 2]),  # fewer workers than GPUs: the first ones
    (4, 2, None, 2, [0, 0, 1, 1]),  # two trials packed onto each GPU
    (5, 2, None, 2, [0, 0, 1, 1, 0]),
    (8, 4, [1, 3], 1, [1, 3, 1, 3, 1, 3, 1, 3]),  # only the GPUs asked for
    (6, 4, [3, 0], 3, [3, 3, 3, 0, 0, 0]),  # in the order given
    (2, 1, [0], 4, [0, 0]),
])
def test_workers_are_placed_round_robin_k_per_gpu(workers: int, visible: int,
                                                  gpus: list[int] | None, k: int,
                                                  expected: list[int]) -> None:
    assert assign_devices(workers, visible, gpus, k) == [f"cuda:{i}" for i in expected]


def test_strict_placement_fits_exactly_gpus_times_k() -> None:
    assert assign_devices(4, 2, None, 2, strict=True) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    with pytest.raises(UsageError, match="--workers 5 exceeds 2 GPUs x --trials-per-gpu 2"):
        assign_devices(5, 2, None, 2, strict=True)


@pytest.mark.parametrize(("args", "message"), [
    ((2, 4, None, 0), "--trials-per-gpu must be 1 or more"),
    ((2, 0, None, 1), "no CUDA device is visible"),
    ((2, 2, [2], 1), "names GPU 2, but only 2 are visible"),
    ((2, 4, [0, 5], 1), "names GPU 5"),
    ((2, 4, [1, 1], 1), "distinct GPU indices"),
    ((2, 4, [], 1), "distinct GPU indices"),
])
def test_bad_placements_are_one_line_errors(args: tuple, message: str) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        assign_devices(*args)
    assert "\n" not in str(raised.value)


def test_on_the_cpu_every_worker_gets_the_cpu_and_gpu_flags_are_refused() -> None:
    assert worker_devices("cpu", 3) == ["cpu"] * 3
    with pytest.raises(UsageError, match="place workers on CUDA devices"):
        worker_devices("cpu", 2, gpus="0,1")
    with pytest.raises(UsageError, match="place workers on CUDA devices"):
        worker_devices("cpu", 2, trials_per_gpu=2)
    if not torch.cuda.is_available():  # auto is the CPU here, and cuda is refused
        assert worker_devices("auto", 2) == ["cpu", "cpu"]
        with pytest.raises(UsageError, match="no CUDA device"):
            worker_devices("cuda", 2, gpus="0")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train_samples=256)


def train(data, precision: str) -> list[float]:
    torch.manual_seed(0)
    model = build_model("cnn", data.input_shape, data.num_classes)
    trainer = Trainer(model, data, TrainSettings(batch_size=32, lr=3e-3, epochs=2,
                                                 precision=precision))
    return [trainer.run_epoch().val_loss for _ in range(2)]


def test_bf16_autocast_trains_on_the_cpu_and_differs_from_fp32(digits) -> None:
    fp32, bf16 = train(digits, "fp32"), train(digits, "bf16")
    assert bf16[1] < bf16[0] < 2.4  # it learns
    assert bf16 != fp32  # the forward passes ran in bfloat16: not the same arithmetic
    assert bf16[1] == pytest.approx(fp32[1], rel=0.1)  # but trains about as well


def test_fp16_on_the_cpu_is_a_one_line_error(digits) -> None:
    with pytest.raises(UsageError, match="--precision fp16 needs a CUDA device"):
        train(digits, "fp16")
