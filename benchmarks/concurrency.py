"""Concurrency: N worker processes on one study, bsopt's storage and workers against plain Optuna.

For each storage (SQLite file, PostgreSQL database, journal file) and each worker count, two
studies run with the same trivial objective (``bsopt.search.space.suggest`` and a formula, no
training) and the same budget, one after the other, alternating which goes first:

- **bsopt**: the study is made by ``bsopt.search.join_or_create`` (grid sampler: one WAITING
  trial per grid point); each worker process builds its storage with
  ``bsopt.storage.make_storage``, joins with ``join_or_create`` and runs
  ``bsopt.search.run_worker``.
- **optuna**: each worker process calls ``optuna.create_study(storage=url,
  load_if_exists=True)`` with Optuna's ``GridSampler`` over the same grid and default
  ``RDBStorage`` settings (Optuna's ``JournalStorage`` on the same file for a journal),
  then ``study.optimize(n_trials=budget)`` with ``MaxTrialsCallback(budget)`` for the
  shared budget.

Workers import and connect first, then start together; the clock runs from the start signal
to the last worker's exit. Counted afterwards from the storage: finished trials (complete +
pruned) per second, errors (exceptions that ended a worker, plus FAIL trials), duplicate grid
points (a point finished more than once), trials lost (budget minus finished, if positive)
and extra trials (finished beyond the budget).

Run::

    python -m benchmarks.concurrency            # SQLite and PostgreSQL, 1/2/4/8 workers
    python -m benchmarks.concurrency --backends sqlite,journal
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
WORKER_COUNTS = (1, 2, 4, 8)


def bench_config(name: str, url: str, budget: int) -> Any:
    """The bsopt study of the benchmark: a grid of ``budget`` points (8 batch sizes x lrs)."""
    from bsopt.config import StudyConfig

    points = max(1, budget // 8)
    return StudyConfig(study_name=name, sampler="grid", pruner="none", n_trials=8 * points,
                       batch_size_min=8, batch_size_max=1024, lr_min=1e-4, lr_max=1.0,
                       grid_lr_points=points, storage=url)


def trivial_objective(config: Any) -> Any:
    """An objective that samples bsopt's space and returns a formula of it at once."""
    import math

    from bsopt.search.space import suggest

    def objective(trial: Any) -> float:
        batch_size, lr = suggest(trial, config)
        return (math.log10(lr) + 2.5) ** 2 + 0.1 * math.log2(batch_size)

    return objective


def _optuna_storage(url: str) -> Any:
    """What plain Optuna is given for ``url``: the URL, or its journal storage."""
    import optuna

    from bsopt.storage import sqlalchemy_url
    from bsopt.storage.urls import journal_path

    if (path := journal_path(url)) is not None:
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    return sqlalchemy_url(url)


def _close(storage: Any) -> None:
    if hasattr(storage, "engine"):  # an RDB storage: its connections
        storage.engine.dispose()


def _worker(mode: str, name: str, url: str, budget: int, ready: Any, start: Any,
            results: Any) -> None:
    warnings.filterwarnings("ignore")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = bench_config(name, url, budget)
    error = None
    try:
        if mode == "bsopt":
            from bsopt.search import join_or_create, run_worker
            from bsopt.storage import make_storage, retry_failed_trial

            storage = make_storage(url, stale_trial_callback=retry_failed_trial)
            study, config = join_or_create(config, storage)
            ready.put(os.getpid())
            start.wait()
            run_worker(study, trivial_objective(config))
        else:
            from bsopt.search.space import grid

            sampler = optuna.samplers.GridSampler(grid(config), seed=os.getpid())
            study = optuna.create_study(study_name=name, storage=_optuna_storage(url),
                                        sampler=sampler, load_if_exists=True)
            ready.put(os.getpid())
            start.wait()
            budget_callback = optuna.study.MaxTrialsCallback(
                budget, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
            study.optimize(trivial_objective(config), n_trials=budget,
                           callbacks=[budget_callback])
    except Exception as exc:  # what ended the worker is the benchmark's "error"
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    results.put(error)


def _count(url: str, name: str, budget: int) -> dict[str, int]:
    import optuna
    from optuna.trial import TrialState

    from bsopt.storage import make_storage

    storage = make_storage(url, heartbeat=False, create=False)
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finally:
        _close(storage)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    points = Counter((t.params["batch_size"], round(t.params["lr"], 12)) for t in done)
    return {"finished": len(done),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
            "duplicates": sum(n - 1 for n in points.values()),
            "lost": max(0, budget - len(done)), "extra": max(0, len(done) - budget)}


def run_once(mode: str, url: str, workers: int, budget: int, name: str) -> dict[str, Any]:
    """One study with ``workers`` processes; returns its counts and trials per second."""
    context = multiprocessing.get_context("spawn")
    if mode == "bsopt":  # the study is made once, as `bsopt search` does before its workers
        from bsopt.search.study import join_or_create
        from bsopt.storage import make_storage

        storage = make_storage(url)
        join_or_create(bench_config(name, url, budget), storage)
        _close(storage)
    else:
        import optuna

        optuna.create_study(study_name=name, storage=_optuna_storage(url))
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=_worker, args=(mode, name, url, budget, ready, start,
                                                       results)) for _ in range(workers)]
    for p in processes:
        p.start()
    for _ in processes:
        ready.get(timeout=300)
    started = time.perf_counter()
    start.set()
    errors = [e for e in (results.get(timeout=600) for _ in processes) if e]
    for p in processes:
        p.join()
    seconds = time.perf_counter() - started
    counts = _count(url, name, budget)
    return {"mode": mode, "workers": workers, "seconds": seconds,
            "trials_per_second": counts["finished"] / seconds,
            "errors": len(errors) + counts["failed"], "error_messages": errors[:3], **counts}


def _create_postgres_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"bsopt_bench_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + f"/{name}", name


def _drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def measure(backends: tuple[str, ...] = ("sqlite", "postgresql"),
            worker_counts: tuple[int, ...] = WORKER_COUNTS, *, budget: int = 64,
            postgres_admin_url: str = POSTGRES_ADMIN) -> dict[str, Any]:
    """Run every (backend, worker count, mode); see the module docstring.

    Returns:
        ``{"budget", "rows": [...]}``, one row per backend, worker count and mode.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            db_name = None
            if backend == "postgresql":
                url, db_name = _create_postgres_database(postgres_admin_url)
            try:
                for i, workers in enumerate(worker_counts):
                    modes = ("bsopt", "optuna") if i % 2 == 0 else ("optuna", "bsopt")
                    for mode in modes:
                        name = f"{mode}-{workers}"
                        if backend == "sqlite":
                            url = f"sqlite:///{Path(tmp) / f'{name}.db'}"
                        elif backend == "journal":
                            url = f"journal://{Path(tmp) / f'{name}.log'}"
                        row = run_once(mode, url, workers, budget, name)
                        rows.append({"backend": backend, **row})
                        print(_format_row(rows[-1]), flush=True)
            finally:
                if db_name is not None:
                    _drop_postgres_database(postgres_admin_url, db_name)
    return {"budget": budget, "rows": rows}


def _format_row(r: dict[str, Any]) -> str:
    ratio = r.get("ratio")
    return (f"| {r['backend']} | {r['workers']} | {r['mode']} | {r['trials_per_second']:.1f} "
            f"| {'' if ratio is None else f'{ratio:.2f}'} | {r['errors']} | {r['duplicates']} "
            f"| {r['lost']} | {r['extra']} |")


def format_report(result: dict[str, Any]) -> str:
    """The rows as a Markdown table, with bsopt's trials/s relative to Optuna's."""
    by_key = {(r["backend"], r["workers"], r["mode"]): r for r in result["rows"]}
    lines = [f"budget {result['budget']} trials per study, trivial objective", "",
             "| storage | workers | setup | finished trials/s | bsopt/optuna | errors "
             "| duplicates | lost | extra |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        other = by_key.get((r["backend"], r["workers"], "optuna"))
        if r["mode"] == "bsopt" and other and other["trials_per_second"] > 0:
            r = {**r, "ratio": r["trials_per_second"] / other["trials_per_second"]}
        lines.append(_format_row(r))
    messages = sorted({m for r in result["rows"] for m in r["error_messages"]})
    if messages:
        lines += ["", "errors seen:"] + [f"- {m}" for m in messages]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: run the grid of settings and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", default=",".join(map(str, WORKER_COUNTS)))
    parser.add_argument("--budget", type=int, default=64, help="trials per study (8 x lrs)")
    parser.add_argument("--postgres", default=POSTGRES_ADMIN,
                        help="URL of a database to connect to for CREATE/DROP DATABASE")
    args = parser.parse_args(argv)
    result = measure(tuple(args.backends.split(",")),
                     tuple(int(w) for w in args.workers.split(",")), budget=args.budget,
                     postgres_admin_url=args.postgres)
    print(format_report(result))
    return result


if __name__ == "__main__":
    main()
