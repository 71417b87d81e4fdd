"""Trial throughput: bsopt's training loop against the articles' plain PyTorch loop, side by side.

The reference is the reference CNN as the articles bsopt follows write it (``ArticlesNet``:
``nn.Conv2d``, ``F.max_pool2d``, ``nn.Dropout``, ``nn.Linear``) trained by a ``DataLoader``
over a ``TensorDataset`` with ``shuffle=True`` and Adam (lr 1e-3, PyTorch defaults),
``zero_grad``/``backward``/``step`` per batch. bsopt's side is what a trial runs: bsopt's
CNN (:class:`bsopt.training.models.ReferenceCNN`, the same layers and initial weights)
trained by :meth:`bsopt.training.trainer.Trainer.run_epoch` (its training part:
``EpochResult.seconds``; the validation pass is not counted for either).

The data are ``bsopt.training.data.load_dataset("synthetic")``: 28x28 single-channel images,
as MNIST.
Every repeat times one epoch of each loop back to back (alternating which goes first) and the
ratio is the median of the per-repeat ratios, so the load that other processes put on the
machine hits both alike. Achieved FLOP/s count the convolutions and matrix multiplies of one
forward+backward step (``torch.utils.flop_counter.FlopCounterMode``); the peak is the best
float32 matrix multiply (``--matmul-size``) timed in the same run with all cores.

Run::

    python -m benchmarks.throughput                 # ratios at batch 16, 64, 256
    python -m benchmarks.throughput --explore       # also the variants we tried
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from bsopt.training.data import TensorData, load_dataset
from bsopt.training.models import build_model
from bsopt.training.trainer import Trainer, TrainSettings

LR = 1e-3
BATCH_SIZES = (16, 64, 256)


def matmul_flops(size: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """The best FLOP/s of a ``size`` x ``size`` float32 matmul over ``repeats`` timings."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)  # warm-up: thread pool, MKL's buffers
        best = 0.0
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * size**3 / (time.perf_counter() - started))
        return best
    finally:
        torch.set_num_threads(saved)


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward+backward pass on (x, y), as FlopCounterMode counts them."""
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


class ArticlesNet(nn.Module):
    """The reference CNN as the articles write it (for 1 x 28 x 28 inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(9216, 128)
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = torch.flatten(self.dropout1(F.max_pool2d(x, 2)), 1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


def reference_epoch(model: nn.Module, data: TensorData, batch_size: int, seed: int) -> float:
    """Seconds of one epoch of the articles' loop (DataLoader with shuffle, Adam)."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=batch_size,
                        shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    model.train()
    started = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def bsopt_epoch(model: nn.Module, data: TensorData, batch_size: int, seed: int,
                prepare: Callable[[Trainer], None] | None = None) -> float:
    """Seconds of the training part of one ``Trainer.run_epoch`` (``prepare`` alters it)."""
    trainer = Trainer(model, data, TrainSettings(batch_size=batch_size, lr=LR, epochs=1,
                                                 seed=seed))
    if prepare is not None:
        prepare(trainer)
    return trainer.run_epoch().seconds


def _unfused(trainer: Trainer) -> None:
    trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=LR)


def _contiguous(trainer: Trainer) -> None:
    trainer.memory_format = torch.contiguous_format
    trainer.model.to(memory_format=torch.contiguous_format)


def _torch_dropout(trainer: Trainer) -> None:
    for parent in trainer.model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Dropout):
                setattr(parent, name, nn.Dropout(child.p))


def _compiled(trainer: Trainer) -> None:
    trainer.model = torch.compile(trainer.model)


def _with_threads(n: int) -> Callable[[Trainer], None]:
    def prepare(trainer: Trainer) -> None:
        torch.set_num_threads(n)
    return prepare


# name -> how the variant alters a fresh Trainer; timed against bsopt's loop as shipped.
VARIANTS: dict[str, Callable[[Trainer], None]] = {
    "unfused Adam": _unfused,
    "nn.Dropout": _torch_dropout,
    "NCHW": _contiguous,
    "1 thread": _with_threads(1),
    "2 threads": _with_threads(2),
    "torch.compile": _compiled,
}


def _fresh_model(data: TensorData, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn", data.input_shape, data.num_classes)


def _articles_model(data: TensorData, seed: int) -> nn.Module:
    """The articles' CNN with the initial weights of ``_fresh_model(data, seed)``."""
    net = ArticlesNet()
    with torch.no_grad():
        for mine, theirs in zip(net.parameters(), _fresh_model(data, seed).parameters(),
                                strict=True):
            mine.copy_(theirs)
    return net


def measure(batch_sizes: tuple[int, ...] = BATCH_SIZES, *, samples: int = 2048,
            repeats: int = 5, matmul_size: int = 2048, explore: bool = False,
            variants: list[str] | None = None) -> dict[str, Any]:
    """Time both loops at each batch size, ``repeats`` times interleaved; see the module doc.

    Returns:
        ``{"peak_flops", "peak_flops_1_thread", "threads", "samples", "rows": [...]}``, one
        row per batch size with samples/s of both loops, their ratio and bsopt's FLOP/s and
        fraction of peak; with ``explore`` also ``"variants"``: the ratio of each variant
        of bsopt's loop to the shipped one.
    """
    data = load_dataset("synthetic", max_train_samples=samples)
    n = len(data.train_x)
    default_threads = torch.get_num_threads()
    peaks = [matmul_flops(matmul_size)]
    peak_1 = matmul_flops(matmul_size, threads=1)
    chosen = (variants or list(VARIANTS)) if explore else []
    # Warm-up: oneDNN builds its kernels per shape on first use; that belongs to no epoch.
    warm = load_dataset("synthetic", max_train_samples=max(batch_sizes))
    for b in batch_sizes:
        reference_epoch(_articles_model(warm, 0), warm, b, 0)
        bsopt_epoch(_fresh_model(warm, 0), warm, b, 0)
    times: dict[tuple[int, str], list[float]] = {}
    for rep in range(repeats):
        for b in batch_sizes:
            loops: list[tuple[str, Callable[[], float]]] = [
                ("reference",
                 lambda b=b: reference_epoch(_articles_model(data, rep), data, b, rep)),
                ("bsopt", lambda b=b: bsopt_epoch(_fresh_model(data, rep), data, b, rep)),
            ]
            for name in chosen:
                loops.append((name, lambda b=b, name=name: bsopt_epoch(
                    _fresh_model(data, rep), data, b, rep, VARIANTS[name])))
            if rep % 2:
                loops.reverse()
            for name, run in loops:
                try:
                    times.setdefault((b, name), []).append(run())
                finally:
                    torch.set_num_threads(default_threads)
        peaks.append(matmul_flops(matmul_size))
    peak = max(peaks)
    rows = []
    for b in batch_sizes:
        model = _fresh_model(data, 0)
        flops_per_example = step_flops(model, data.train_x[:b], data.train_y[:b]) / b
        ref, ours = times[(b, "reference")], times[(b, "bsopt")]
        ours_median = statistics.median(ours)
        achieved = flops_per_example * n / ours_median
        row = {
            "batch_size": b,
            "reference_samples_per_second": n / statistics.median(ref),
            "bsopt_samples_per_second": n / ours_median,
            "ratio": statistics.median(r / o for r, o in zip(ref, ours)),
            "flops_per_example": flops_per_example,
            "bsopt_flops": achieved,
            "fraction_of_peak": achieved / peak,
            "fraction_of_1_thread_peak": achieved / peak_1,
        }
        if chosen:
            row["variants"] = {name: statistics.median(o / v for o, v in
                                                       zip(ours, times[(b, name)]))
                               for name in chosen}
        rows.append(row)
    return {"peak_flops": peak, "peak_flops_1_thread": peak_1, "threads": default_threads,
            "samples": n, "repeats": repeats, "rows": rows}


def format_report(result: dict[str, Any]) -> str:
    """The result as a Markdown table (what BENCHMARKS.md records)."""
    lines = [
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads "
        f"{result['threads']}; matmul peak {result['peak_flops'] / 1e9:.1f} GFLOP/s "
        f"(1 thread: {result['peak_flops_1_thread'] / 1e9:.1f}); {result['samples']} "
        f"samples of 28x28 synthetic, {result['repeats']} repeats, medians",
        "",
        "| batch | reference samples/s | bsopt samples/s | ratio | bsopt GFLOP/s "
        "| of peak | of 1-thread peak |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['batch_size']} | {r['reference_samples_per_second']:.0f} "
            f"| {r['bsopt_samples_per_second']:.0f} | {r['ratio']:.2f} "
            f"| {r['bsopt_flops'] / 1e9:.1f} | {r['fraction_of_peak']:.0%} "
            f"| {r['fraction_of_1_thread_peak']:.0%} |"
        )
    if "variants" in result["rows"][0]:
        names = list(result["rows"][0]["variants"])
        lines += ["", "Variants of bsopt's loop (speed relative to bsopt as shipped; >1 is "
                  "faster):", "", "| batch | " + " | ".join(names) + " |",
                  "|---:|" + "---:|" * len(names)]
        for r in result["rows"]:
            lines.append(f"| {r['batch_size']} | "
                         + " | ".join(f"{r['variants'][k]:.2f}" for k in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--samples", type=int, default=2048,
                        help="training examples per timed epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--explore", action="store_true",
                        help="also time variants: NCHW, unfused Adam, nn.Dropout, threads, "
                        "compile")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    result = measure(tuple(int(b) for b in args.batch_sizes.split(",")), samples=args.samples,
                     repeats=args.repeats, matmul_size=args.matmul_size,
                     explore=args.explore or args.variants is not None,
                     variants=args.variants.split(",") if args.variants else None)
    print(format_report(result))
    return result


if __name__ == "__main__":
    main()
