"""``bsopt profile``: throughput and memory of each batch size, and the largest that fits.

For each batch size the profiler times optimizer steps of the model on random inputs of the
dataset's shape (values do not change the speed) and measures the step's peak memory:

- on CUDA, ``torch.cuda.max_memory_allocated`` around a real step; the largest batch size
  that fits is found by trying sizes until one runs out of memory, then verified by running
  it again;
- on the CPU, the bytes of the parameters, gradients and optimizer state plus every tensor
  autograd saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``);
  batch sizes whose footprint would pass ``memory_limit_mb`` are not run, and the largest
  one within the limit is the answer, verified by the step that was timed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bsopt import catalog
from bsopt.config import powers_of_two
from bsopt.errors import UsageError
from bsopt.training.memory import MB, static_bytes, step_bytes, training_step
from bsopt.training.models import build_model
from bsopt.training.trainer import make_optimizer


@dataclass(frozen=True)
class BatchProfile:
    """One batch size on one device."""

    batch_size: int
    fits: bool
    samples_per_second: float | None = None
    step_ms: float | None = None
    peak_memory_mb: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Profile:
    """Every batch size profiled, and the largest that fits."""

    model: str
    dataset: str
    device: str
    memory_limit_mb: float | None
    batches: list[BatchProfile]

    @property
    def max_batch_size(self) -> int | None:
        fitting = [b.batch_size for b in self.batches if b.fits]
        return max(fitting) if fitting else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"model": self.model, "dataset": self.dataset, "device": self.device,
                "memory_limit_mb": self.memory_limit_mb, "max_batch_size": self.max_batch_size,
                "batches": [asdict(b) for b in self.batches]}


def default_memory_limit_mb() -> float:
    """Half of this machine's physical memory (the CPU bound when none is given)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MB / 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_batch(model_name: str, shape: tuple[int, int, int], batch_size: int,
                  device: torch.device, *, steps: int = 5, optimizer: str = "adam",
                  memory_limit_mb: float | None = None) -> BatchProfile:
    """Time ``steps`` optimizer steps at ``batch_size`` and measure their peak memory."""
    torch.manual_seed(0)
    model = build_model(model_name, shape, 10).to(device)
    opt = make_optimizer(optimizer, model.parameters(), 1e-3, 0.9)
    x = torch.randn(batch_size, *shape, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    if device.type == "cpu" and memory_limit_mb is not None:
        # Estimated first, so that a batch that cannot fit is never run.
        estimate = step_bytes(model, opt, x, y, batch_size) / MB
        if estimate > memory_limit_mb:
            return BatchProfile(batch_size, False, peak_memory_mb=round(estimate, 1),
                                note=f"over --memory-limit {memory_limit_mb:g} MB")
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        saved = training_step(model, opt, x, y)  # warm-up (allocations, kernels)
        training_step(model, opt, x, y)
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            training_step(model, opt, x, y)
        _sync(device)
        seconds = (time.perf_counter() - started) / steps
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return BatchProfile(batch_size, False, note="out of memory")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / MB
    else:
        peak = (static_bytes(model, opt) + saved) / MB
    return BatchProfile(batch_size, True, samples_per_second=round(batch_size / seconds, 1),
                        step_ms=round(seconds * 1000, 3), peak_memory_mb=round(peak, 1))


def profile(model: str = "cnn", dataset: str = "mnist", *, batch_size_min: int = 16,
            batch_size_max: int = 4096, device: str = "cpu", steps: int = 5,
            optimizer: str = "adam", memory_limit_mb: float | None = None) -> Profile:
    """Profile every power-of-two batch size of ``model`` on ``dataset``-shaped inputs.

    Raises:
        UsageError: an unknown model or dataset, bad bounds, or CUDA asked for but absent.
    """
    if dataset not in catalog.DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}: choose {catalog.names(catalog.DATASETS)}")
    if model not in catalog.MODELS:
        raise UsageError(f"unknown model {model!r}: choose {catalog.names(catalog.MODELS)}")
    shape = catalog.DATASETS[dataset].input_shape
    if not 0 < batch_size_min <= batch_size_max:
        raise UsageError("--batch-sizes takes MIN:MAX with 0 < MIN <= MAX")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA device is available: use --device cpu")
    if memory_limit_mb is not None and not (memory_limit_mb > 0 and math.isfinite(memory_limit_mb)):
        raise UsageError("--memory-limit must be a positive number of megabytes")
    torch_device = torch.device(device)
    if torch_device.type == "cpu" and memory_limit_mb is None:
        memory_limit_mb = default_memory_limit_mb()
    sizes = powers_of_two(batch_size_min, batch_size_max)
    if not sizes:
        raise UsageError(f"--batch-sizes {batch_size_min}:{batch_size_max} holds no power of two")
    results: list[BatchProfile] = []
    for size in sizes:
        result = profile_batch(model, shape, size, torch_device, steps=steps,
                               optimizer=optimizer, memory_limit_mb=memory_limit_mb)
        results.append(result)
        if not result.fits:
            break  # a larger batch does not fit either
    if torch_device.type == "cuda" and (largest := max(
            (r.batch_size for r in results if r.fits), default=None)):
        # Verify the answer by running it again from a clean cache.
        torch.cuda.empty_cache()
        again = profile_batch(model, shape, largest, torch_device, steps=1,
                              optimizer=optimizer)
        if not again.fits:
            results = [r if r.batch_size != largest else again for r in results]
    return Profile(model, dataset, str(torch_device), memory_limit_mb, results)


def profile_figure(result: Profile) -> Any:
    """Samples/s and peak memory against batch size (a Plotly figure)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fitting = [b for b in result.batches if b.fits]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    x = [b.batch_size for b in fitting]
    figure.add_trace(go.Scatter(x=x, y=[b.samples_per_second for b in fitting],
                                name="samples/s", mode="lines+markers"))
    figure.add_trace(go.Scatter(x=x, y=[b.peak_memory_mb for b in fitting],
                                name="peak memory (MB)", mode="lines+markers"), secondary_y=True)
    figure.update_xaxes(type="log", title="batch size", tickvals=x)
    figure.update_yaxes(title="samples/s", secondary_y=False)
    figure.update_yaxes(title="peak memory (MB)", secondary_y=True)
    figure.update_layout(title=f"{result.model} on {result.dataset}-shaped inputs, "
                               f"{result.device}: largest batch {result.max_batch_size}")
    return figure
