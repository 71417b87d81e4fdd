"""``bsopt launch slurm|ray``: create or join a study, hand its workers to a cluster.

The study comes from ``--config`` and ``--study-name`` (and ``--storage``), and any
``bsopt search`` flag after ``--`` (``-- --sampler grid --device cuda``): the launch
creates the study as ``bsopt search`` would, or joins it, and every worker runs
``bsopt search --study-name NAME`` with this run's flags.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from bsopt.cli.options import Parser, add_storage, add_study_name, non_negative_int, positive_int
from bsopt.cli.search import add_search, search_flags
from bsopt.config import StudyConfig, build_config
from bsopt.errors import UsageError

OWN_FLAGS = ("config", "study_name", "storage")  # the launch's, not to repeat after --


def add_launch(sub: Any) -> None:
    """``bsopt launch slurm`` and ``bsopt launch ray``."""
    p = sub.add_parser("launch", help="run a study's workers on Slurm or Ray",
                       description="Create or join a study and hand its workers to a "
                       "cluster's scheduler (see storage/k8s/ for Kubernetes).")
    kinds = p.add_subparsers(dest="launcher", required=True, parser_class=Parser)

    slurm = kinds.add_parser("slurm", help="a Slurm job array, one worker per task",
                             description="Submit a Slurm job array whose tasks are workers "
                             "of the study. Example: bsopt launch slurm --config "
                             "studies/mnist_cnn.toml --storage postgresql://u:pw@db/bsopt "
                             "--array 8 --gpus-per-task 1")
    _add_study_flags(slurm)
    slurm.add_argument("--array", type=positive_int, required=True, metavar="N",
                       help="array tasks, one worker each")
    slurm.add_argument("--gpus-per-task", type=non_negative_int, default=0, metavar="G",
                       help="GPUs per task (%(default)s)")
    slurm.add_argument("--cpus-per-task", type=positive_int, metavar="C",
                       help="CPUs per task (Slurm's default)")
    slurm.add_argument("--partition", metavar="P", help="the partition (Slurm's default)")
    slurm.add_argument("--time", metavar="T", help="time limit per task, as sbatch takes it "
                       "(30, 4:00:00, 1-00:00:00)")
    slurm.add_argument("--sbatch-option", action="append", default=[], metavar="OPTION",
                       help="one more #SBATCH line, e.g. --sbatch-option=--account=ml "
                            "(repeatable)")
    slurm.add_argument("--script-dir", type=Path, default=Path("bsopt-slurm"), metavar="DIR",
                       help="where the script and the tasks' logs go (%(default)s)")
    slurm.add_argument("--python", default=sys.executable, metavar="PATH",
                       help="the interpreter the tasks run (this one: %(default)s)")
    slurm.add_argument("--dry-run", action="store_true",
                       help="print the sbatch script; submit nothing, change no storage")
    slurm.set_defaults(func=cmd_launch_slurm)

    ray = kinds.add_parser("ray", help="Ray tasks on an existing Ray cluster",
                           description="Run the study's workers as Ray tasks on an existing "
                           "Ray cluster and wait for them. Example: bsopt launch ray "
                           "--address auto --storage postgresql://u:pw@db/bsopt "
                           "--study-name bs-lr-v1 --workers 8 --gpus-per-worker 1")
    _add_study_flags(ray)
    ray.add_argument("--address", default="auto", metavar="ADDRESS",
                     help="the cluster: auto ($RAY_ADDRESS, else the one on this machine), "
                          "HOST:PORT or ray://HOST:PORT (%(default)s)")
    ray.add_argument("--workers", type=positive_int, required=True, metavar="N",
                     help="Ray tasks, one worker each")
    ray.add_argument("--gpus-per-worker", type=_non_negative_float, default=0.0, metavar="G",
                     help="GPUs per worker, may be a fraction (%(default)s)")
    ray.add_argument("--cpus-per-worker", type=_non_negative_float, default=1.0, metavar="C",
                     help="CPUs per worker (%(default)s)")
    ray.add_argument("--max-retries", type=non_negative_int, default=3, metavar="R",
                     help="runs of a task again after its node died (%(default)s)")
    ray.set_defaults(func=cmd_launch_ray)


def _add_study_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="study definition (see studies/)")
    add_study_name(p, required=False)
    add_storage(p)
    p.add_argument("search_flags", nargs="*", metavar="-- SEARCH FLAGS",
                   help="bsopt search flags for the study and its workers, after --")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def study_config(args: argparse.Namespace) -> tuple[StudyConfig, dict[str, Any]]:
    """The study's config from the launch's own flags and the search flags after ``--``."""
    parser = Parser(prog=f"bsopt launch {args.launcher} --")
    add_search(parser.add_subparsers(dest="command", parser_class=Parser))
    searched = parser.parse_args(["search", *args.search_flags])
    for name in OWN_FLAGS:
        if getattr(searched, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"give {flag} before --: it is a flag of bsopt launch itself")
    flags = search_flags(searched)
    flags.update({k: getattr(args, k) for k in ("study_name", "storage")
                  if getattr(args, k) is not None})
    return build_config(args.config, flags)


def cmd_launch_slurm(args: argparse.Namespace) -> int:
    from bsopt.launch import SlurmOptions, launch_slurm

    config, explicit = study_config(args)
    options = SlurmOptions(array=args.array, gpus_per_task=args.gpus_per_task,
                           cpus_per_task=args.cpus_per_task, partition=args.partition,
                           time=args.time, sbatch_options=tuple(args.sbatch_option),
                           script_dir=args.script_dir, python=args.python)
    launch = launch_slurm(config, explicit, options, dry_run=args.dry_run)
    if launch.job_id is None:
        sys.stdout.write(launch.text)
        return 0
    storage = launch.storage
    print(f"submitted Slurm job {launch.job_id}: {args.array} workers of study "
          f"{config.name!r} in {storage}")
    print(f"  script: {launch.script}")
    print(f"  logs:   {launch.logs}")
    print(f"  watch:  squeue -j {launch.job_id}; cancel: scancel {launch.job_id}; "
          f"progress: {shlex.join(['bsopt', 'studies', '--storage', storage])}")
    return 0


def cmd_launch_ray(args: argparse.Namespace) -> int:
    from bsopt.launch import RayOptions, launch_ray

    config, explicit = study_config(args)
    options = RayOptions(address=args.address, workers=args.workers,
                         gpus_per_worker=args.gpus_per_worker,
                         cpus_per_worker=args.cpus_per_worker, max_retries=args.max_retries)
    result = launch_ray(config, explicit, options, say=lambda line: print(line, flush=True))
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    print(f"\nstudy {result.study_name!r} in {result.storage}: {counts}")
    if result.failed:
        print(f"{result.failed} of {args.workers} workers ended with an error or were lost: "
              "their output is above", file=sys.stderr)
    if result.budget_left:
        print(f"{result.budget_left} trials of the budget left: launch again to finish them",
              file=sys.stderr)
        return 1
    return 0
