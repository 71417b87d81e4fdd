"""Batch-size science on real MNIST: the scaling design against a grid and TPE, same budget.

The reference MLP on MNIST (8,000 training images laid out by ``mnist_dir.sh``), plain SGD
(momentum 0) and Adam, batch sizes 16..1024, ``--noise-scale`` on, no pruning (so every
trial costs ``--epochs`` epochs and equal trials are equal epochs). For each optimizer, three
studies with the same number of trials: ``--sampler scaling``, ``grid`` (7 batch sizes x 7
lrs) and ``tpe``. It prints, per study, what ``bsopt analyze`` answers: alpha with its
interval and verdict, the surge fit, both critical batch sizes, B_simple late in training and
the ratios, the epochs spent; then the alpha interval's width against the epochs spent
(the first k trials of each study).

Run (about 25 minutes on one core)::

    /work/shared/data/mnist/mnist_dir.sh /tmp/mnist
    nice -n 10 python -m benchmarks.scaling_laws --data-dir /tmp/mnist --storage /tmp/sl.db
    python -m benchmarks.scaling_laws --data-dir /tmp/mnist --storage /tmp/sl.db --report-only
"""

from __future__ import annotations

import argparse
import math
import time

import optuna
import torch

from bsopt.analysis import analyze_records
from bsopt.analysis.answers import answer_lines
from bsopt.analysis.best_lr import best_lrs
from bsopt.analysis.scaling import fit_power_law
from bsopt.config import StudyConfig
from bsopt.records import study_records
from bsopt.search.run import search

LR_RANGES = {"sgd": (3e-3, 3.0), "adam": (1e-4, 1e-1)}
METHODS = ("scaling", "grid", "tpe")


def config(optimizer: str, method: str, args: argparse.Namespace) -> StudyConfig:
    """The study of one optimizer and one method."""
    low, high = LR_RANGES[optimizer]
    return StudyConfig(
        study_name=f"mnist-mlp-{optimizer}-{method}", storage=f"sqlite:///{args.storage}",
        dataset="mnist", data_dir=args.data_dir, model="mlp", epochs=args.epochs,
        batch_size_min=16, batch_size_max=1024, lr_min=low, lr_max=high, grid_lr_points=7,
        sampler=method, pruner="none", n_trials=args.trials, optimizer=optimizer,
        momentum=0.0, noise_scale=True, seed=0, device="cpu")


def epochs_spent(records: list) -> int:
    """Training epochs the trials ran (each epoch leaves one val loss)."""
    return sum(len(r.val_loss) for r in records)


TARGET_WIDTH = 0.4


def _g(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3g}"


def epochs_to_width(records: list, lr_loss: str) -> tuple[int | None, list[str]]:
    """The epochs after which the alpha interval first is at most TARGET_WIDTH wide, and the
    width after every 7th trial."""
    first, marks = None, []
    for k in range(3, len(records) + 1):
        bests = best_lrs(records[:k], lr_loss)
        if len({b.batch_size for b in bests}) < 3:
            continue
        fit = fit_power_law(bests)
        if first is None and fit.width <= TARGET_WIDTH:
            first = epochs_spent(records[:k])
        if k % 7 == 0 or k == len(records):
            marks.append(f"{epochs_spent(records[:k])} ep: {fit.alpha:.2f} +- {fit.width / 2:.2f}")
    return first, marks


def report(optimizer: str, method: str, args: argparse.Namespace) -> list[str]:
    """Print one study's answers; return its row of the summary table."""
    c = config(optimizer, method, args)
    study = optuna.load_study(study_name=c.name, storage=c.storage)
    records = sorted(study_records(study), key=lambda r: r.number)
    a = analyze_records(records, study_name=c.name)
    epochs = epochs_spent(records)
    print(f"\n== {optimizer} / {method}: {a.complete_trials} complete and {a.pruned_trials} "
          f"pruned (diverged) trials, {epochs} epochs")
    for line in answer_lines(a):
        print("  " + line)
    # The same fits with each trial ranked by its lowest val loss over the epochs.
    b = analyze_records(records, study_name=c.name, lr_loss="best-epoch")
    for line in answer_lines(b):
        if line.startswith(("lr scaling", "surge", "saturating")):
            print("  [best-epoch] " + line)
    row = [optimizer, method, str(epochs)]
    for lr_loss, an in (("final", a), ("best-epoch", b)):
        first, marks = epochs_to_width(records, lr_loss)
        print(f"  [{lr_loss}] alpha against epochs: " + "; ".join(marks))
        fit = an.lr_scaling
        row += ([f"{fit.alpha:.2f} ({fit.alpha_low:.2f} .. {fit.alpha_high:.2f})",
                 f"{fit.width:.2f}", fit.verdict, str(first or "-")] if fit else ["-"] * 4)
    best = max((f for f in (b.surge, b.saturating) if f is not None and f.preferred),
               key=lambda f: f.aicc_power - f.aicc_surge, default=None)
    row.append(f"{best.form} @ {best.b_noise:.3g}" if best else "power law")
    crit, z, late = a.critical_batch, a.zhang, a.b_simple_late
    row += [_g(crit.b_crit) if crit else "-", _g(z.b_crit) if z else "-", _g(late),
            _g(crit.b_crit / late) if crit and late else "-"]
    return row


HEADER = ["optimizer", "design", "epochs", "alpha (final)", "width", "verdict",
          "epochs to width<=0.4", "alpha (best-epoch)", "width", "verdict",
          "epochs to width<=0.4", "best form (best-epoch)", "B_crit", "Zhang", "B_simple late",
          "B_crit/B_simple"]


def main() -> None:
    """Train the studies not yet finished, then print the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="laid out by mnist_dir.sh")
    p.add_argument("--storage", required=True, help="SQLite file for the studies")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--trials", type=int, default=49)
    p.add_argument("--optimizers", default="sgd,adam")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)  # one core: the figures are per core
    optimizers, methods = args.optimizers.split(","), args.methods.split(",")
    pairs = [(m, o) for m in methods for o in optimizers]  # the scaling design first
    if not args.report_only:
        for method, optimizer in pairs:
            start = time.monotonic()
            search(config(optimizer, method, args))
            print(f"trained {optimizer}/{method} in {time.monotonic() - start:.0f} s",
                  flush=True)
    rows = []
    for optimizer in optimizers:
        for method in methods:
            try:
                rows.append(report(optimizer, method, args))
            except (KeyError, ValueError) as exc:
                print(f"{optimizer}/{method}: no report ({exc})")
    print("\n| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(lr ranges {LR_RANGES}; {args.epochs} epochs a trial, {args.trials} trials a "
          "study; no pruning)")


if __name__ == "__main__":
    main()
