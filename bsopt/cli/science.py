"""``bsopt analyze`` and ``bsopt profile``: the batch-size questions, and the hardware's."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bsopt import catalog
from bsopt.cli.options import add_storage, add_study_name, output_file, positive_int, write
from bsopt.config import parse_range


def add_analyze(sub: Any) -> None:
    p = sub.add_parser("analyze", help="scaling law, critical batch size, noise scale, gap")
    add_study_name(p)
    add_storage(p)
    p.add_argument("--target-loss", type=float, metavar="LOSS",
                   help="validation loss for steps-to-target (default: stated in the output)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--lr-loss", default="final", metavar="WHICH",
                   help="what ranks the lrs in the scaling fits: final (the trial's final val "
                        "loss, default) or best-epoch (its lowest over the epochs)")
    p.add_argument("--no-note", action="store_true",
                   help="do not write the answers as the study's note in optuna-dashboard")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from bsopt.analysis import analyze, format_analysis
    from bsopt.storage import open_existing

    study = open_existing(args.storage, args.study_name)
    result = analyze(study, target_loss=args.target_loss, lr_loss=args.lr_loss)
    if not args.no_note:
        from bsopt.visualization.note import write_answers_note

        write_answers_note(study, result)
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_analysis(result))
    return 0


def add_profile(sub: Any) -> None:
    p = sub.add_parser("profile", help="samples/s and memory per batch size; the largest fit")
    p.add_argument("--model", default="cnn", help="cnn or mlp (cnn)")
    p.add_argument("--dataset", default="mnist", help="input shape of this dataset (mnist)")
    p.add_argument("--batch-sizes", default="16:4096", metavar="MIN:MAX")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    p.add_argument("--optimizer", default="adam", choices=list(catalog.OPTIMIZERS))
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps per size (5)")
    p.add_argument("--memory-limit", type=float, metavar="MB",
                   help="CPU: largest footprint allowed (half the machine's memory)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="FILE.html", type=output_file,
                   help="also write a Plotly figure")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    from bsopt.text import table
    from bsopt.training.profile import profile, profile_figure

    low, high = parse_range(args.batch_sizes, "--batch-sizes", int)
    result = profile(args.model, args.dataset, batch_size_min=low, batch_size_max=high,
                     device=args.device, steps=args.steps, optimizer=args.optimizer,
                     memory_limit_mb=args.memory_limit)
    if args.plot:
        write(args.plot, profile_figure(result).to_html(include_plotlyjs=True))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(table(["batch_size", "fits", "samples/s", "step_ms", "peak_MB", "note"],
                [[b.batch_size, "yes" if b.fits else "no", b.samples_per_second, b.step_ms,
                  b.peak_memory_mb, b.note] for b in result.batches]))
    print(f"largest batch size that fits on {result.device}: {result.max_batch_size}")
    return 0
