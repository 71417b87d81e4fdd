"""Build the tabular benchmark: every (batch size, lr, seed) on digits, with per-epoch curves.

Each cell trains bsopt's own :class:`~bsopt.training.trainer.Trainer` (the reference CNN,
Adam) for a fixed number of epochs and records the validation loss, training loss,
validation accuracy and training seconds after every epoch. A run whose loss becomes NaN/inf
is recorded up to the epoch it diverged at, as bsopt's objective prunes it there.
``benchmarks.search_efficiency`` replays samplers and pruners against this table without
training.

Run (10 seeds: 248 s with 2 processes on the 2-core machine of BENCHMARKS.md)::

    python -m benchmarks.grid_table            # writes benchmarks/data/digits_grid.json.gz
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import multiprocessing
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TABLE = Path(__file__).parent / "data" / "digits_grid.json.gz"


def _round(values: list[float], digits: int = 5) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # one process per core beats two threads per process


@functools.lru_cache(maxsize=2)
def _dataset(name: str, max_train_samples: int | None) -> Any:
    from bsopt.training.data import load_dataset

    return load_dataset(name, max_train_samples=max_train_samples)


def train_cell(task: dict[str, Any]) -> dict[str, Any]:
    """Train one (batch size, lr, seed) cell and return its curves."""
    import torch

    from bsopt.training.models import build_model
    from bsopt.training.trainer import Diverged, Trainer, TrainSettings

    data = _dataset(task["dataset"], task["max_train_samples"])
    torch.manual_seed(task["seed"])  # the initialisation differs by seed, as in a study
    model = build_model(task["model"], data.input_shape, data.num_classes)
    settings = TrainSettings(batch_size=task["batch_size"], lr=task["lr"], epochs=task["epochs"],
                             optimizer=task["optimizer"], seed=task["seed"])
    trainer = Trainer(model, data, settings)
    diverged = False
    while trainer.epoch < settings.epochs:
        try:
            trainer.run_epoch()
        except Diverged:
            diverged = True
            break
    curves = trainer.history.as_lists()
    return {
        "batch_size": task["batch_size"], "lr": task["lr"], "seed": task["seed"],
        "val_loss": _round(curves["val_loss"]), "train_loss": _round(curves["train_loss"]),
        "val_accuracy": _round(curves["val_accuracy"]), "seconds": _round(curves["seconds"], 3),
        "diverged": diverged,
    }


def build_table(*, dataset: str = "digits", model: str = "cnn", optimizer: str = "adam",
                batch_sizes: list[int] | None = None, lr_min: float = 1e-4, lr_max: float = 1.0,
                lr_points: int = 10, seeds: int = 10, epochs: int = 10, workers: int = 2,
                threads: int = 1, max_train_samples: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Train the whole grid and return the table (``meta`` and one ``runs`` entry per cell).

    Args:
        batch_sizes: Default: the powers of two 8..512.
        lr_points: Log-spaced learning rates from ``lr_min`` to ``lr_max``.
        workers: Processes training cells in parallel, each with ``threads`` torch threads.
        max_train_samples: Train on a subset (for tests).
    """
    import torch

    batch_sizes = batch_sizes or [8, 16, 32, 64, 128, 256, 512]
    lrs = _round(list(np.geomspace(lr_min, lr_max, lr_points)), 6)
    tasks = [{"dataset": dataset, "model": model, "optimizer": optimizer, "batch_size": b,
              "lr": lr, "seed": s, "epochs": epochs, "max_train_samples": max_train_samples}
             for b in batch_sizes for lr in lrs for s in range(seeds)]
    tasks.sort(key=lambda t: t["batch_size"])  # slowest (small batches) first: better packing
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    if workers <= 1:
        _init_worker(threads)
        iterator = map(train_cell, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (threads,))
        iterator = pool.imap_unordered(train_cell, tasks)
    try:
        for run in iterator:
            runs.append(run)
            if progress:
                print(f"[{len(runs)}/{len(tasks)} {time.perf_counter() - started:.0f}s] "
                      f"B={run['batch_size']} lr={run['lr']:g} seed={run['seed']} "
                      f"final val loss {run['val_loss'][-1]:.4f}", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    runs.sort(key=lambda r: (r["batch_size"], r["lr"], r["seed"]))
    from bsopt.training.data import load_dataset

    data = load_dataset(dataset, max_train_samples=max_train_samples)
    meta = {
        "dataset": dataset, "model": model, "optimizer": optimizer, "epochs": epochs,
        "batch_sizes": batch_sizes, "lrs": lrs, "seeds": list(range(seeds)),
        "train_samples": len(data.train_x), "val_samples": len(data.val_x),
        "objective": "validation loss after each epoch (bsopt.training.trainer.Trainer)",
        "workers": workers, "threads_per_worker": threads,
        "seconds": round(time.perf_counter() - started, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "machine": platform.machine(),
    }
    return {"meta": meta, "runs": runs}


def save_table(table: dict[str, Any], path: str | Path) -> None:
    """Write the table as gzipped JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(table, f, separators=(",", ":"))


def load_table(path: str | Path = DEFAULT_TABLE) -> dict[str, Any]:
    """Read a table written by :func:`save_table`."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: build the table and write it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_TABLE))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-sizes", default="8,16,32,64,128,256,512")
    parser.add_argument("--lr-min", type=float, default=1e-4)
    parser.add_argument("--lr-max", type=float, default=1.0)
    parser.add_argument("--lr-points", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    table = build_table(
        batch_sizes=[int(b) for b in args.batch_sizes.split(",")], lr_min=args.lr_min,
        lr_max=args.lr_max, lr_points=args.lr_points, seeds=args.seeds, epochs=args.epochs,
        workers=args.workers, threads=args.threads, max_train_samples=args.max_train_samples,
        progress=not args.quiet,
    )
    save_table(table, args.out)
    print(f"wrote {len(table['runs'])} runs to {args.out} in {table['meta']['seconds']}s")
    return table


if __name__ == "__main__":
    main()
