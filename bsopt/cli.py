"""The ``bsopt`` command: parse flags, build a config, make one library call, print.

Every subcommand is a parser function plus a command function whose body is a call into
the library. Mistakes a user can make (``UsageError``) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bsopt import config as cfg
from bsopt.errors import UsageError
from bsopt.network import check_port
from bsopt.worker import StorageFull, TooManyFailures

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse with bsopt's error line (one line, exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", metavar="URL",
                        help="sqlite:///FILE.db, postgresql://USER:PW@HOST/DB or "
                             "grpc://HOST:PORT (default: $BSOPT_STORAGE, else sqlite:///bsopt.db)")


def _add_study_name(parser: argparse.ArgumentParser, required: bool = True) -> None:
    # Checked here too, for the reading commands: the same rule as a new study's name.
    parser.add_argument("--study-name", required=required, metavar="NAME",
                        type=cfg.check_study_name,
                        help=f"at most {cfg.MAX_STUDY_NAME_LENGTH} characters, on one line")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _port(text: str) -> int:
    return check_port(_integer(text))


def _output_file(text: str) -> str:
    """A file to write: refused before any work if it cannot be, for lack of a directory."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"{text} is a directory: give a file name in it")
    if not path.absolute().parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist: create it first")
    return text


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:  # no permission, a full disk, ...
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- search -------------------------------------------------------------------------------

SEARCH_FLAGS = ("study_name", "storage", "sampler", "pruner", "n_trials", "timeout", "dataset",
                "data_dir", "model", "epochs", "grid_lr_points", "optimizer", "momentum", "seed",
                "device", "max_train_samples", "workers", "artifact_dir", "lr_scaling",
                "reference_batch", "warmup_epochs", "max_micro_batch", "noise_scale",
                "objectives")


def add_search(sub: Any) -> None:
    p = sub.add_parser("search", help="run a batch-size x learning-rate study",
                       description="Create or join a study and run its remaining trials.")
    p.add_argument("--config", metavar="FILE.toml", help="study definition (see studies/)")
    _add_study_name(p, required=False)
    _add_storage(p)
    p.add_argument("--sampler", help=f"one of {', '.join(cfg.SAMPLERS)} (default tpe)")
    p.add_argument("--pruner", help=f"one of {', '.join(cfg.PRUNERS)} (default batch-asha)")
    p.add_argument("--n-trials", type=_positive_int,
                   help="total budget of complete + pruned trials, at most "
                        f"{cfg.MAX_N_TRIALS} (default: grid size or 20)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop this run after")
    p.add_argument("--dataset", help=f"one of {', '.join(cfg.DATASETS)} (default digits)")
    p.add_argument("--data-dir", metavar="DIR", help="torchvision datasets (~/.cache/bsopt)")
    p.add_argument("--model", help="cnn or mlp (default cnn)")
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--batch-size", metavar="MIN:MAX", help="powers of two in [MIN, MAX]")
    p.add_argument("--lr", metavar="MIN:MAX", help="log-uniform learning rate bounds")
    p.add_argument("--grid-lr-points", type=_positive_int, metavar="N",
                   help="learning rates per batch size in the grid (default 5)")
    p.add_argument("--optimizer", help="sgd or adam (default adam)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu or cuda (default auto)")
    p.add_argument("--max-train-samples", type=_positive_int, metavar="N",
                   help="train on the first N examples of the split")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="worker processes on this machine sharing the study (default 1); at "
                        f"most {cfg.WORKERS_PER_CORE} x the usable cores unless "
                        f"${cfg.MAX_WORKERS_ENV} allows more")
    p.add_argument("--artifact-dir", metavar="DIR",
                   help="where checkpoints go (default: beside the SQLite file)")
    science = p.add_argument_group("batch-size science")
    science.add_argument("--lr-scaling", help="none, linear or sqrt: sample base_lr at "
                         "--reference-batch and train at base_lr * (B/B0)^k (none)")
    science.add_argument("--reference-batch", type=_positive_int, metavar="B0",
                         help="batch size at which base_lr applies (64)")
    science.add_argument("--warmup-epochs", type=float, metavar="E",
                         help="linear learning-rate warmup over E epochs (0)")
    science.add_argument("--max-micro-batch", type=_positive_int, metavar="M",
                         help="train larger batches as accumulated micro-batches of M")
    science.add_argument("--noise-scale", action="store_true", default=None,
                         help="measure the gradient noise scale B_simple every epoch")
    science.add_argument("--objectives", help="loss (default) or loss,time: a two-objective "
                         "study of validation loss and training seconds")
    p.set_defaults(func=cmd_search)


def search_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user gave as flags (None: not given)."""
    flags = {name: getattr(args, name) for name in SEARCH_FLAGS}
    flags["batch_size"] = args.batch_size
    flags["lr"] = args.lr
    return {k: v for k, v in flags.items() if v is not None}


def cmd_search(args: argparse.Namespace) -> int:
    from bsopt.console import ProgressPrinter, best_table
    from bsopt.search import search

    config, explicit = cfg.build_config(args.config, search_flags(args))
    result = search(config, explicit, progress=ProgressPrinter())
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    print(f"\nstudy {result.study_name!r} in {result.storage}: {counts}")
    if result.best:
        print(best_table(result.best, result.config.objectives))
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    resume = shlex.join(["bsopt", "search", "--storage", result.storage,
                         "--study-name", result.study_name])
    if ":***@" in result.storage:  # the password is never printed
        resume += " (with your password in place of ***)"
    if result.interrupted:
        print(f"interrupted: {result.budget_left} trials left; resume with: {resume}")
        return 130
    if result.budget_left:
        print(f"{result.budget_left} trials of the budget left; continue with: {resume}")
    print(f"dashboard: {shlex.join(['bsopt', 'dashboard', '--storage', result.storage])}")
    return 0


# --- studies, best, export ---------------------------------------------------------------

def add_studies(sub: Any) -> None:
    p = sub.add_parser("studies", help="list the studies in a storage with their counts")
    _add_storage(p)
    p.set_defaults(func=cmd_studies)


def cmd_studies(args: argparse.Namespace) -> int:
    from bsopt.summaries import list_studies
    from bsopt.text import table

    rows = list_studies(args.storage)
    if not rows:
        print("no studies")
        return 0
    print(table(["study", "sampler", "dataset", "model", "budget", "complete", "pruned",
                 "fail", "running", "waiting", "best"],
                [[r.name, r.sampler, r.dataset, r.model, r.budget, *r.counts_row(), r.best_value]
                 for r in rows]))
    return 0


def add_best(sub: Any) -> None:
    p = sub.add_parser("best", help="print the best trial of a study")
    _add_study_name(p)
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_best)


def cmd_best(args: argparse.Namespace) -> int:
    from bsopt.console import best_table
    from bsopt.summaries import best_trial_summary

    summary = best_trial_summary(args.storage, args.study_name)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(best_table(summary.trials, summary.objectives))
    return 0


def add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="write every trial with its params, value and curves")
    _add_study_name(p)
    _add_storage(p)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("-o", "--output", metavar="FILE", type=_output_file,
                   help="default: standard output")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from bsopt.export import export_study
    from bsopt.summaries import open_existing

    text = export_study(open_existing(args.storage, args.study_name), args.format)
    if args.output:
        _write(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# --- figures: plots, report, dashboard -----------------------------------------------------

def add_plots(sub: Any) -> None:
    p = sub.add_parser("plots", help="attach bsopt's figures to a study for optuna-dashboard")
    _add_study_name(p)
    _add_storage(p)
    p.set_defaults(func=cmd_plots)


def cmd_plots(args: argparse.Namespace) -> int:
    from bsopt.dashboard import attach_figures
    from bsopt.summaries import open_existing

    count = attach_figures(open_existing(args.storage, args.study_name))
    print(f"attached {count} figures to study {args.study_name!r}; "
          "open them with `bsopt dashboard` or `optuna-dashboard URL`")
    return 0


def add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report of a study")
    _add_study_name(p)
    _add_storage(p)
    p.add_argument("-o", "--output", metavar="FILE.html", default="report.html",
                   type=_output_file)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from bsopt.summaries import open_existing
    from bsopt.visualization.report import write_report

    path = write_report(open_existing(args.storage, args.study_name), args.output)
    print(f"wrote {path}")
    return 0


def add_dashboard(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="refresh the figures and start optuna-dashboard")
    _add_storage(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (8080)")
    p.add_argument("--no-refresh", action="store_true", help="serve the figures as stored")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from bsopt.dashboard import run_dashboard

    run_dashboard(args.storage, args.host, args.port, refresh=not args.no_refresh)
    return 0


# --- batch-size science: analyze, profile --------------------------------------------------

def add_analyze(sub: Any) -> None:
    p = sub.add_parser("analyze", help="scaling law, critical batch size, noise scale, gap")
    _add_study_name(p)
    _add_storage(p)
    p.add_argument("--target-loss", type=float, metavar="LOSS",
                   help="validation loss for steps-to-target (default: stated in the output)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    from bsopt.analysis import analyze, format_analysis
    from bsopt.summaries import open_existing

    result = analyze(open_existing(args.storage, args.study_name), target_loss=args.target_loss)
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_analysis(result))
    return 0


def add_profile(sub: Any) -> None:
    p = sub.add_parser("profile", help="samples/s and memory per batch size; the largest fit")
    p.add_argument("--model", default="cnn", help="cnn or mlp (cnn)")
    p.add_argument("--dataset", default="mnist", help="input shape of this dataset (mnist)")
    p.add_argument("--batch-sizes", default="16:4096", metavar="MIN:MAX")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    p.add_argument("--optimizer", default="adam", choices=cfg.OPTIMIZERS)
    p.add_argument("--steps", type=_positive_int, default=5, help="timed steps per size (5)")
    p.add_argument("--memory-limit", type=float, metavar="MB",
                   help="CPU: largest footprint allowed (half the machine's memory)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="FILE.html", type=_output_file,
                   help="also write a Plotly figure")
    p.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    from bsopt.text import table
    from bsopt.training.profile import profile, profile_figure

    low, high = cfg.parse_range(args.batch_sizes, "--batch-sizes", int)
    result = profile(args.model, args.dataset, batch_size_min=low, batch_size_max=high,
                     device=args.device, steps=args.steps, optimizer=args.optimizer,
                     memory_limit_mb=args.memory_limit)
    if args.plot:
        _write(args.plot, profile_figure(result).to_html(include_plotlyjs=True))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(table(["batch_size", "fits", "samples/s", "step_ms", "peak_MB", "note"],
                [[b.batch_size, "yes" if b.fits else "no", b.samples_per_second, b.step_ms,
                  b.peak_memory_mb, b.note] for b in result.batches]))
    print(f"largest batch size that fits on {result.device}: {result.max_batch_size}")
    return 0


# --- storage-proxy ------------------------------------------------------------------------

def add_storage_proxy(sub: Any) -> None:
    p = sub.add_parser("storage-proxy", help="serve a storage to workers over gRPC",
                       description="Serve a storage through Optuna's gRPC storage proxy; "
                       "workers use --storage grpc://HOST:PORT.")
    _add_storage(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1; 0.0.0.0 for every interface, with "
                        "a warning: the proxy has no authentication)")
    p.add_argument("--port", type=_port, default=13000, help="port (13000)")
    p.set_defaults(func=cmd_storage_proxy)


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    from bsopt.proxy import serve_storage_proxy

    serve_storage_proxy(args.storage, host=args.host, port=args.port)
    return 0


COMMANDS: list[Callable[[Any], None]] = [add_search, add_studies, add_best, add_export,
                                         add_plots, add_report, add_dashboard, add_analyze,
                                         add_profile, add_storage_proxy]


def build_parser() -> Parser:
    """The ``bsopt`` argument parser with every subcommand."""
    parser = Parser(prog="bsopt", description="Find the batch size and learning rate at "
                    "which a network trains best, and show why.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bsopt`` command; returns the exit status."""
    import warnings

    import optuna

    # bsopt prints its own progress; Optuna's per-trial log lines and its notes that
    # heartbeats are experimental would only repeat or distract.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"bsopt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TooManyFailures as exc:  # the objective keeps failing: say so, no traceback
        print(f"bsopt: error: {exc}; each trial's fail_reason is in `bsopt export`",
              file=sys.stderr)
        return 1
    except StorageFull as exc:  # mid-study: trials ran, so not a usage error
        print(f"bsopt: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bsopt: aborted", file=sys.stderr)
        return 130


def entry_point() -> None:
    sys.exit(main())
