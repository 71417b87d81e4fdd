"""``bsopt search``: create or join a study and run its remaining trials."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from bsopt.cli.options import (
    add_storage,
    add_study_name,
    default,
    json_table,
    non_negative_int,
    positive_int,
)
from bsopt.config import ALL_FIELDS, MAX_N_TRIALS, build_config
from bsopt.config.checks import MAX_WORKERS_ENV, WORKERS_PER_CORE

FLAG_FIELDS = frozenset(ALL_FIELDS) | {"batch_size", "lr"}  # ranges set two fields each


def add_search(sub: Any) -> None:
    """``bsopt search``: every flag sets the config field of its name (``--n-trials``)."""
    from bsopt import catalog
    from bsopt.search import PRUNERS, SAMPLERS
    from bsopt.search.space import SCALING_EXPONENTS

    p = sub.add_parser("search", help="run a batch-size x learning-rate study",
                       description="Create or join a study and run its remaining trials.")
    p.add_argument("--config", metavar="FILE.toml", help="study definition (see studies/)")
    add_study_name(p, required=False)
    add_storage(p)
    p.add_argument("--sampler", help=f"{', '.join(SAMPLERS)} (default {default('sampler')})")
    p.add_argument("--pruner", help=f"{', '.join(PRUNERS)} (default {default('pruner')})")
    p.add_argument("--n-trials", type=positive_int,
                   help="total budget of complete + pruned trials, at most "
                        f"{MAX_N_TRIALS} (default: grid size or 20)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop this run after")
    p.add_argument("--dataset", help=f"{', '.join(catalog.DATASETS)}, imagefolder:DIR or "
                                     "package.module:loader (default "
                                     f"{default('dataset')})")
    p.add_argument("--data-dir", metavar="DIR", help="torchvision datasets (~/.cache/bsopt)")
    p.add_argument("--model", help=f"the reference {catalog.names(catalog.MODELS)} "
                                   f"(default {default('model')})")
    p.add_argument("--epochs", type=positive_int,
                   help=f"epochs per trial (default {default('epochs')})")
    p.add_argument("--batch-size", metavar="MIN:MAX", help="powers of two in [MIN, MAX] "
                   f"(default {default('batch_size_min')}:{default('batch_size_max')})")
    p.add_argument("--lr", metavar="MIN:MAX", help="log-uniform learning rate bounds "
                   f"(default {default('lr_min'):g}:{default('lr_max'):g})")
    p.add_argument("--grid-lr-points", type=positive_int, metavar="N",
                   help="learning rates per batch size in the grid "
                        f"(default {default('grid_lr_points')})")
    p.add_argument("--optimizer", help=f"{catalog.names(catalog.OPTIMIZERS)} "
                                       f"(default {default('optimizer')})")
    p.add_argument("--momentum", type=float,
                   help=f"SGD momentum (default {default('momentum')})")
    p.add_argument("--seed", type=int, help=f"sampler, initialisation and shuffling seed "
                                            f"(default {default('seed')})")
    p.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default {default('device')})")
    p.add_argument("--max-train-samples", type=positive_int, metavar="N",
                   help="train on the first N examples of the split")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="worker processes on this machine sharing the study (default "
                        f"{default('workers')}); at most {WORKERS_PER_CORE} x the usable "
                        f"cores unless ${MAX_WORKERS_ENV} allows more")
    p.add_argument("--artifact-dir", metavar="DIR",
                   help="where checkpoints go (default: beside the SQLite file)")
    own = p.add_argument_group("your own network, data, loop or script")
    own.add_argument("--model-args", type=json_table, metavar="JSON",
                     help='keyword arguments of a --model factory, e.g. \'{"width": 64}\'')
    own.add_argument("--train", metavar="MODULE:FUNCTION",
                     help="your training loop, called once per trial with a bsopt Run")
    own.add_argument("--command", metavar="COMMAND",
                     help='your training script, run once per trial, e.g. "python train.py '
                          '--bs {batch_size} --lr {lr} --epochs {epochs}"')
    own.add_argument("--shell", action="store_true", default=None,
                     help="run --command through /bin/sh (default: not through a shell)")
    own.add_argument("--image-size", type=positive_int, metavar="PIXELS",
                     help="imagefolder:DIR images resized to PIXELS x PIXELS")
    own.add_argument("--data-mode", metavar="MODE",
                     help=f"auto, memory or stream (default {default('data_mode')}: "
                          "in memory where the data fit)")
    own.add_argument("--loader-workers", type=non_negative_int, metavar="N",
                     help="DataLoader processes when streaming "
                          f"(default {default('loader_workers')})")
    own.add_argument("--keep-best", type=non_negative_int, metavar="K",
                     help="keep the final weights of the best K trials "
                          f"(default {default('keep_best')})")
    hardware = p.add_argument_group("GPUs")
    hardware.add_argument("--gpus", metavar="IDS",
                          help="GPUs the workers share out, e.g. 0,1,2,3 (default: all visible)")
    hardware.add_argument("--trials-per-gpu", type=positive_int, metavar="K",
                          help="workers packed onto one GPU "
                               f"(default {default('trials_per_gpu')})")
    hardware.add_argument("--precision", metavar="P",
                          help=f"fp32, bf16 or fp16 (default {default('precision')}; "
                               "mixed precision on CUDA)")
    science = p.add_argument_group("batch-size science")
    science.add_argument("--lr-scaling", help=f"{', '.join(SCALING_EXPONENTS)}: sample base_lr "
                         "at --reference-batch and train at base_lr * (B/B0)^k "
                         f"(default {default('lr_scaling')})")
    science.add_argument("--reference-batch", type=positive_int, metavar="B0",
                         help="batch size at which base_lr applies "
                              f"(default {default('reference_batch')})")
    science.add_argument("--warmup-epochs", type=float, metavar="E",
                         help="linear learning-rate warmup over E epochs "
                              f"(default {default('warmup_epochs')})")
    science.add_argument("--max-micro-batch", type=positive_int, metavar="M",
                         help="train larger batches as accumulated micro-batches of M")
    science.add_argument("--lr-search-limit", type=float, metavar="FACTOR",
                         help="--sampler scaling: how far past --lr the lr search may go when "
                              "the best lr sits at an edge "
                              f"(default {default('lr_search_limit')}: 100x either way)")
    science.add_argument("--noise-scale", action="store_true", default=None,
                         help="measure the gradient noise scale B_simple every epoch")
    science.add_argument("--objectives", help="loss (default) or loss,time: a two-objective "
                         "study of validation loss and training seconds")
    p.set_defaults(func=cmd_search)


def search_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user gave as flags (None: not given).

    Every search flag is named after the config field it sets (``--n-trials`` sets
    ``n_trials``; ``--batch-size`` and ``--lr`` set a range), so the fields are read off the
    parsed arguments, not listed here again.
    """
    return {name: value for name, value in vars(args).items()
            if value is not None and name in FLAG_FIELDS}


def cmd_search(args: argparse.Namespace) -> int:
    from bsopt.cli.console import ProgressPrinter, best_table
    from bsopt.search import search

    config, explicit = build_config(args.config, search_flags(args))
    result = search(config, explicit, progress=ProgressPrinter(), on_data=print)
    if not result.interrupted:  # stopping should be prompt; the next run attaches them
        from bsopt.visualization import attach_figures

        attach_figures(result.study)
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
