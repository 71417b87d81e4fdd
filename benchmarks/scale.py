"""Scale: bsopt's per-trial overhead against the study's size, and many workers on one study.

**Study size.** One worker, a trivial objective (``benchmarks.concurrency.trivial_objective``:
bsopt's space sampled, a formula returned, no training), the random sampler, a fresh SQLite
file per study. For each size (100, 1,000, 10,000 trials), in one run:

- **bsopt**: the library path a user calls, ``bsopt.search.plan_study`` + ``open_study``
  (which enqueues the first chunk of the budget) then ``bsopt.search.run_worker``;
- **optuna**: ``optuna.create_study(storage=URL, sampler=RandomSampler())`` then
  ``study.optimize(objective, n_trials=size)`` on the same kind of SQLite file.

The time of each trial is the gap between successive trial ends (claim, objective, tell,
bookkeeping: with a trivial objective, the overhead); reported as ms/trial over the first
50 and the last 50 trials, and the mean: the total wall time, the study's creation included,
over the trials.

**Workers.** ``benchmarks.concurrency.run_once``: N processes on one study (a grid of the
budget's size), bsopt against plain Optuna (``MaxTrialsCallback`` for the shared budget),
1 to 64 processes on PostgreSQL and 1 to 8 on SQLite; errors, lost, duplicated (a grid point
finished twice) and extra trials counted from the storage afterwards.

Run::

    python -m benchmarks.scale                 # the figures in BENCHMARKS.md
    python -m benchmarks.scale --quick         # a small run (what the test runs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks import concurrency

SIZES = (100, 1000, 10000)
PG_WORKERS = (1, 8, 64)
SQLITE_WORKERS = (1, 2, 4, 8)
EDGE = 50  # trials in the "first" and "last" columns


def _spread(ends: list[float], opened: float, total: float) -> dict[str, float]:
    """ms/trial: first and last ``EDGE`` trials (from the trials' end times), and the mean.

    The mean is the total wall time, the study's creation included, over the trials: bsopt
    enqueues a chunk of the budget when it creates a study and the rest while trials run,
    Optuna creates each trial as it asks for it; the mean counts both the same way.
    """
    gaps = [1000 * (b - a) for a, b in zip([opened, *ends[:-1]], ends, strict=True)]
    edge = min(EDGE, len(gaps))
    return {"first_ms": statistics.fmean(gaps[:edge]), "last_ms": statistics.fmean(gaps[-edge:]),
            "mean_ms": 1000 * total / len(gaps)}


def run_bsopt(url: str, size: int) -> dict[str, Any]:
    """One study of ``size`` trials on bsopt's library path; its timings."""
    from bsopt.config import StudyConfig
    from bsopt.search import open_study, plan_study, run_worker
    from bsopt.storage import make_storage, retry_failed_trial

    config = StudyConfig(study_name="scale", sampler="random", pruner="none", n_trials=size,
                         storage=url)
    objective = concurrency.trivial_objective(config)
    ends: list[float] = []
    started = time.perf_counter()
    storage = make_storage(url, stale_trial_callback=retry_failed_trial)
    study = open_study(plan_study(config, None), storage)
    opened = time.perf_counter()
    result = run_worker(study, objective, on_trial_end=lambda _e: ends.append(time.perf_counter()))
    total = time.perf_counter() - started
    concurrency._close(storage)
    return {"mode": "bsopt", "size": size, "trials": sum(result.finished.values()),
            "total_s": total, "open_s": opened - started, **_spread(ends, opened, total)}


def run_optuna(url: str, size: int) -> dict[str, Any]:
    """One study of ``size`` trials on plain Optuna's ``study.optimize``; its timings."""
    import optuna

    from bsopt.config import StudyConfig

    config = StudyConfig(study_name="scale", sampler="random", n_trials=size)
    objective = concurrency.trivial_objective(config)
    ends: list[float] = []
    started = time.perf_counter()
    study = optuna.create_study(study_name="scale", storage=url,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    opened = time.perf_counter()
    study.optimize(objective, n_trials=size,
                   callbacks=[lambda _s, _t: ends.append(time.perf_counter())])
    total = time.perf_counter() - started
    return {"mode": "optuna", "size": size, "trials": len(study.trials), "total_s": total,
            "open_s": opened - started, **_spread(ends, opened, total)}


def measure_sizes(sizes: tuple[int, ...], tmp: Path) -> list[dict[str, Any]]:
    """bsopt then Optuna (alternating which goes first) at each study size."""
    rows = []
    for i, size in enumerate(sizes):
        modes = ("bsopt", "optuna") if i % 2 == 0 else ("optuna", "bsopt")
        for mode in modes:
            url = f"sqlite:///{tmp / f'{mode}-{size}.db'}"
            row = (run_bsopt if mode == "bsopt" else run_optuna)(url, size)
            rows.append(row)
            print(_size_row(row), flush=True)
    return rows


def measure_workers(backend: str, counts: tuple[int, ...], budget: int, tmp: Path,
                    postgres_admin_url: str) -> list[dict[str, Any]]:
    """``concurrency.run_once`` for each worker count on one backend, bsopt and Optuna."""
    rows = []
    for i, workers in enumerate(counts):
        modes = ("bsopt", "optuna") if i % 2 == 0 else ("optuna", "bsopt")
        for mode in modes:
            db_name = None
            name = f"{mode}-{workers}"
            if backend == "postgresql":  # a database per study: nothing left from the last
                url, db_name = concurrency._create_postgres_database(postgres_admin_url)
            else:
                url = f"sqlite:///{tmp / f'{name}.db'}"
            try:
                row = {"backend": backend, "budget": budget,
                       **concurrency.run_once(mode, url, workers, budget, name)}
            finally:
                if db_name is not None:
                    concurrency._drop_postgres_database(postgres_admin_url, db_name)
            rows.append(row)
            print(concurrency._format_row(row), flush=True)
    return rows


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with its figure and whether it was met."""
    by = {(r["mode"], r["size"]): r for r in result["sizes"]}
    sizes = sorted({r["size"] for r in result["sizes"]})
    out: dict[str, Any] = {}
    if len(sizes) >= 2:
        growth = by[("bsopt", sizes[-1])]["mean_ms"] / by[("bsopt", sizes[0])]["mean_ms"]
        out["growth"] = {"value": growth, "met": growth <= 1.2,
                         "what": f"bsopt mean ms/trial at {sizes[-1]} / at {sizes[0]} <= 1.2"}
    for size in sizes:
        ratio = by[("bsopt", size)]["mean_ms"] / by[("optuna", size)]["mean_ms"]
        out[f"vs_optuna_{size}"] = {"value": ratio, "met": ratio <= 1.5,
                                    "what": f"bsopt/optuna mean ms/trial at {size} <= 1.5"}
    pg = [r for r in result["workers"] if r["backend"] == "postgresql" and r["mode"] == "bsopt"]
    if pg:
        most = max(pg, key=lambda r: r["workers"])
        bad = sum(most[k] for k in ("errors", "lost", "duplicates", "extra"))
        out["postgresql_workers"] = {
            "value": bad, "met": bad == 0,
            "what": f"{most['workers']} bsopt workers on PostgreSQL: 0 errors/lost/dup/extra"}
    return out


def _size_row(r: dict[str, Any]) -> str:
    return (f"| {r['size']} | {r['mode']} | {r['total_s']:.1f} | {r['first_ms']:.1f} "
            f"| {r['last_ms']:.1f} | {r['mean_ms']:.1f} |")


def format_report(result: dict[str, Any]) -> str:
    """Both tables as Markdown, then the targets."""
    lines = ["one worker, trivial objective, random sampler, SQLite", "",
             "| trials in the study | setup | total s | ms/trial first 50 | last 50 | mean |",
             "|---:|---|---:|---:|---:|---:|", *(_size_row(r) for r in result["sizes"])]
    if result["workers"]:
        lines += ["", "| storage | workers | setup | finished trials/s | bsopt/optuna | errors "
                  "| duplicates | lost | extra |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        by = {(r["backend"], r["workers"], r["mode"]): r for r in result["workers"]}
        for r in result["workers"]:
            other = by.get((r["backend"], r["workers"], "optuna"))
            if r["mode"] == "bsopt" and other and other["trials_per_second"] > 0:
                r = {**r, "ratio": r["trials_per_second"] / other["trials_per_second"]}
            lines.append(concurrency._format_row(r))
        budgets = sorted({(r["backend"], r["budget"]) for r in result["workers"]})
        lines.append("budget: " + ", ".join(f"{b} trials on {s}" for s, b in budgets))
    lines += ["", "targets:"] + [f"- {t['what']}: {t['value']:.2f} -> "
                                 f"{'met' if t['met'] else 'MISSED'}"
                                 for t in result["targets"].values()]
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: both measurements, the tables and the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small run: sizes 20,80, 1-2 SQLite workers, no PostgreSQL")
    parser.add_argument("--sizes", help="study sizes (default 100,1000,10000)")
    parser.add_argument("--pg-workers", help="PostgreSQL worker counts (default 1,8,64)")
    parser.add_argument("--sqlite-workers", help="SQLite worker counts (default 1,2,4,8)")
    parser.add_argument("--pg-budget", type=int, default=640)
    parser.add_argument("--sqlite-budget", type=int, default=256)
    parser.add_argument("--postgres", default=concurrency.POSTGRES_ADMIN,
                        help="URL of a database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = _ints(args.sizes if args.sizes is not None
                  else "20,80" if quick else ",".join(map(str, SIZES)))
    pg = _ints(args.pg_workers if args.pg_workers is not None
               else "" if quick else ",".join(map(str, PG_WORKERS)))
    lite = _ints(args.sqlite_workers if args.sqlite_workers is not None
                 else "1,2" if quick else ",".join(map(str, SQLITE_WORKERS)))
    sqlite_budget = 16 if quick and args.sqlite_budget == 256 else args.sqlite_budget
    warnings.filterwarnings("ignore")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        result: dict[str, Any] = {"sizes": measure_sizes(sizes, tmp), "workers": []}
        if pg:
            result["workers"] += measure_workers("postgresql", pg, args.pg_budget, tmp,
                                                 args.postgres)
        if lite:
            result["workers"] += measure_workers("sqlite", lite, sqlite_budget, tmp,
                                                 args.postgres)
    result["targets"] = targets(result)
    print(format_report(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
