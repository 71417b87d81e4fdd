"""The streamed data path against the in-memory path: epoch time on the same MNIST-sized data.

Each variant trains the same network (the reference MLP or CNN, Adam, same initial weights
and seed) for one epoch with bsopt's own :class:`~bsopt.training.trainer.Trainer` and
records the seconds of its training part (``EpochResult.seconds``, without the evaluation):

- ``memory``: :class:`~bsopt.training.data.TensorData`, the default where the data fit;
- ``stream``: :class:`~bsopt.training.data.StreamedData` over the same tensors, a
  ``DataLoader`` with 0 loader workers (the per-example indexing and collation alone);
- ``stream-workers``: the same with 2 loader processes (forked every epoch);
- ``png``: ``imagefolder:DIR`` over the same images written as PNG files, streamed with 2
  loader processes: decoding and transforming every image every epoch, as a dataset that
  does not fit in memory does.

The data: the real MNIST digits of ``/work/shared/data/mnist`` laid out by its
``mnist_dir.sh`` (8,000 training images: 6,667 train / 1,333 val / 2,000 test), or, where
that is absent, bsopt's 28x28 ``synthetic`` data (4,000 / 1,000 / 1,000). Ratio = median
over repeats of variant seconds / in-memory seconds, each repeat timing every variant back
to back in alternating order. The in-memory and streamed (0 workers) losses are compared
too: they are identical on the CPU.

Run::

    python -m benchmarks.data_paths                      # MLP and CNN, batch 32, 128, 512
    python -m benchmarks.data_paths --models mlp --batch-sizes 64 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from bsopt.training.data import TrialData, load_dataset
from bsopt.training.models import build_model
from bsopt.training.trainer import Trainer, TrainSettings

SHARED_MNIST = Path("/work/shared/data/mnist")
LR = 1e-3
# variant -> its column in the table
VARIANTS = {"memory": "in memory", "stream": "streamed, 0 workers",
            "stream-workers": "streamed, 2 workers", "png": "PNG files, 2 workers"}


def mnist_dir(root: Path) -> tuple[str, Path]:
    """Lay out MNIST under ``root``: ``(dataset name, data_dir)`` (synthetic where it is absent)."""
    if SHARED_MNIST.exists():
        subprocess.run([str(SHARED_MNIST / "mnist_dir.sh"), str(root)], check=True,
                       capture_output=True)
        return "mnist", root
    return "synthetic", root


def write_pngs(data: TrialData, root: Path) -> Path:
    """The same images as PNG files in an image folder (train/val/test, a folder per class)."""
    from PIL import Image

    for split in ("train", "val", "test"):
        (x, y), = data.batches(split, data.size(split))
        low, high = float(x.min()), float(x.max())
        pixels = ((x - low) / (high - low) * 255).round().to(torch.uint8)
        for i, (image, label) in enumerate(zip(pixels, y.tolist())):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy(), "L").save(folder / f"{i}.png")
    return root


def epoch_seconds(data: TrialData, model_name: str, batch_size: int,
                  seed: int) -> tuple[float, float]:
    """Seconds of one epoch's training part, and its training loss."""
    torch.manual_seed(seed)
    model = build_model(model_name, data.input_shape, data.num_classes)
    trainer = Trainer(model, data, TrainSettings(batch_size=batch_size, lr=LR, epochs=1,
                                                 seed=seed))
    result = trainer.run_epoch()
    return result.seconds, result.train_loss


def measure(models: list[str], batch_sizes: list[int], repeats: int,
            max_train_samples: int | None, variants: list[str]) -> dict[str, Any]:
    """Time every (model, batch size, variant), ``repeats`` times interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        name, data_dir = mnist_dir(Path(tmp) / "mnist")
        memory = load_dataset(name, data_dir=data_dir, max_train_samples=max_train_samples)
        sets: dict[str, TrialData] = {"memory": memory}
        for variant, workers in (("stream", 0), ("stream-workers", 2)):
            if variant in variants:
                sets[variant] = load_dataset(name, data_dir=data_dir, mode="stream",
                                             max_train_samples=max_train_samples,
                                             loader_workers=workers)
        if "png" in variants:
            folder = write_pngs(memory, Path(tmp) / "png")
            sets["png"] = load_dataset(f"imagefolder:{folder}", mode="stream",
                                                        loader_workers=2)
        for model in models:  # warm-up: oneDNN builds its kernels per shape on first use
            for b in batch_sizes:
                epoch_seconds(load_dataset(name, data_dir=data_dir, max_train_samples=2 * b),
                              model, b, 0)
        times: dict[tuple[str, int, str], list[float]] = {}
        losses: dict[tuple[str, int, str], float] = {}
        for rep in range(repeats):
            for model in models:
                for b in batch_sizes:
                    order = list(sets) if rep % 2 == 0 else list(reversed(sets))
                    for variant in order:
                        seconds, loss = epoch_seconds(sets[variant], model, b, rep)
                        times.setdefault((model, b, variant), []).append(seconds)
                        losses[(model, b, variant)] = loss
    rows = []
    for model in models:
        for b in batch_sizes:
            base = times[(model, b, "memory")]
            row: dict[str, Any] = {"model": model, "batch_size": b,
                                   "memory_seconds": statistics.median(base), "ratios": {}}
            for variant in sets:
                if variant != "memory":
                    row["ratios"][variant] = statistics.median(
                        v / m for v, m in zip(times[(model, b, variant)], base))
            if "stream" in sets:
                row["same_losses"] = losses[(model, b, "stream")] == losses[(model, b, "memory")]
            rows.append(row)
    return {"dataset": name, "train_examples": memory.size("train"), "repeats": repeats,
            "threads": torch.get_num_threads(), "variants": list(sets), "rows": rows}


def format_report(result: dict[str, Any]) -> str:
    """The result as a Markdown table (what BENCHMARKS.md records)."""
    others = [v for v in result["variants"] if v != "memory"]
    lines = [f"{result['dataset']}, {result['train_examples']:,} training examples, torch "
             f"{torch.__version__}, {os.cpu_count()} CPUs, torch threads {result['threads']}, "
             f"{result['repeats']} repeats, medians; ratio = seconds / in-memory seconds",
             "",
             "| model | batch | in memory s/epoch | " + " | ".join(VARIANTS[v] for v in others)
             + " | same losses (stream) |",
             "|---|---:|---:|" + "---:|" * len(others) + "---|"]
    for r in result["rows"]:
        ratios = " | ".join(f"{r['ratios'][v]:.2f}" for v in others)
        same = {True: "yes", False: "NO", None: "-"}[r.get("same_losses")]
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['memory_seconds']:.2f} | "
                     f"{ratios} | {same} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-train-samples", type=int, default=None,
                        help="train on fewer examples (for tests)")
    compared = [v for v in VARIANTS if v != "memory"]
    parser.add_argument("--variants", default=",".join(compared),
                        help="compared with memory: " + ", ".join(compared))
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(compared))
    if unknown:
        parser.error(f"unknown variants {unknown}: choose from {', '.join(compared)}")
    result = measure(args.models.split(","), [int(b) for b in args.batch_sizes.split(",")],
                     args.repeats, args.max_train_samples, variants)
    print(format_report(result))
    return result


if __name__ == "__main__":
    main()
