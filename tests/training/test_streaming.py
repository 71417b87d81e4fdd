"""The streamed path trains as the in-memory path does: same order, same losses, exact resumes.

Tolerance: none. On the CPU the two paths give bit-identical losses, with 0 loader workers
and with worker processes alike: the streamed batches hold the same examples in the same
order, stacked into the same tensors, so every operation after them is the same.
"""

from __future__ import annotations

import io
import multiprocessing

import pytest
import torch

from bsopt.training.data import StreamedData, TensorData, load_dataset
from bsopt.training.models import build_model
from bsopt.training.trainer import Trainer, TrainSettings, evaluate

SAMPLES = 192


def digits(mode: str, loader_workers: int = 0) -> TensorData | StreamedData:
    return load_dataset("digits", max_train_samples=SAMPLES, mode=mode,
                        loader_workers=loader_workers)


class RecordingTrainer(Trainer):
    """A trainer that keeps the labels of every batch it trains on, epoch by epoch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[int]] = []

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.batches.append(y.tolist())
        return super()._step(x, y)


def trainer(data, seed: int = 0, cls: type[Trainer] = Trainer) -> Trainer:
    torch.manual_seed(seed)
    model = build_model("cnn", data.input_shape, data.num_classes)  # dropout: RNG matters
    return cls(model, data, TrainSettings(batch_size=32, lr=1e-3, epochs=3, seed=seed))


def curves(t: Trainer, epochs: int) -> list[tuple[float, float, float]]:
    return [(r.train_loss, r.val_loss, r.val_accuracy) for r in
            (t.run_epoch() for _ in range(epochs))]


def test_the_streamed_path_gives_the_in_memory_losses_exactly() -> None:
    memory = curves(trainer(digits("memory")), 2)
    assert curves(trainer(digits("stream")), 2) == memory
    assert memory[1][1] < memory[0][1]  # it learns: the comparison is of real training


def test_loader_worker_processes_change_nothing_and_are_gone_after_the_epoch() -> None:
    memory = curves(trainer(digits("memory")), 1)
    assert curves(trainer(digits("stream", loader_workers=2)), 1) == memory
    assert multiprocessing.active_children() == []


def test_each_epoch_has_its_own_seeded_order_the_same_on_both_paths() -> None:
    runs = {}
    for mode, seed in (("memory", 0), ("stream", 0), ("stream", 1)):
        t = trainer(digits(mode), seed, RecordingTrainer)
        curves(t, 2)
        steps = len(t.batches) // 2
        runs[mode, seed] = t.batches[:steps], t.batches[steps:]
    first, second = runs["memory", 0]
    assert runs["stream", 0] == (first, second)
    assert first != second  # reshuffled every epoch
    assert runs["stream", 1][0] != first  # by the trial's seed


def test_a_streamed_trial_resumes_from_its_checkpoint_exactly() -> None:
    straight = curves(trainer(digits("stream")), 3)
    first = trainer(digits("stream"))
    curves(first, 1)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # tensors and plain values only
    buffer.seek(0)
    for mode in ("stream", "memory"):  # a retry may hold the data the other way
        buffer.seek(0)
        resumed = trainer(digits(mode))
        resumed.load_state_dict(torch.load(buffer, weights_only=True))
        assert resumed.epoch == 1
        assert curves(resumed, 2) == straight[1:]


def test_an_exception_mid_epoch_stops_the_loader_workers() -> None:
    class Failing(Trainer):
        def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
            if self.steps == 2:
                raise RuntimeError("stop here")
            return super()._step(x, y)

    t = trainer(digits("stream", loader_workers=2), cls=Failing)
    with pytest.raises(RuntimeError, match="stop here") as caught:
        t.run_epoch()
    # The exception is still held (as a worker holds an interrupted trial's): its frames
    # must not keep the loader's processes alive.
    assert caught.value.__traceback__ is not None
    assert multiprocessing.active_children() == []


def test_evaluate_scores_the_test_split_on_both_paths() -> None:
    t = trainer(digits("memory"))
    curves(t, 1)
    scores = [evaluate(t.model, digits(mode), "test") for mode in ("memory", "stream")]
    assert scores[0] == scores[1]
    loss, accuracy = scores[0]
    assert 0 < loss < 2.3 and 0.1 < accuracy <= 1  # better than chance after an epoch
    assert t.model.training  # back in training mode
