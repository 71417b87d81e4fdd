"""``--command`` overhead: a trial as a script in its own process, against the same in-process.

Two workloads, each run as two studies of the same budget, space and seed (so the same
batch sizes and learning rates), SQLite, one worker, no pruner, one after the other:

- **digits**: ``examples/train_script.py``'s training (its CNN on the 8x8 digits). In-process
  it is ``--train benchmarks.command_overhead:train_digits``, which calls the script's
  ``train`` with the data loaded once per process, reporting through ``run.report`` and
  keeping no checkpoint. As a command, each trial starts Python, imports torch and
  scikit-learn, loads the data, trains, checkpoints every epoch (``state.pt``, which bsopt
  packs into the trial's checkpoint) and writes ``weights.pt``.
- **no-op**: no training at all, to isolate bsopt's own part: a function that reports
  ``epochs`` losses against a script (``python -c``, no imports) that prints them.

A trial's seconds are its start-to-complete time in the storage (``datetime_start`` to
``datetime_complete``); overhead per trial is the mean command trial minus the mean
in-process trial. CPU seconds (this process and the commands it ran, per trial) are shown
beside them: on a shared machine they move less with the load than wall time does. The
digits script's own start (``python examples/train_script.py --epochs 0``: interpreter,
torch, scikit-learn, data) is timed on its own too, so the overhead splits into what any
separate process of that script costs and what bsopt adds.

Run::

    python -m benchmarks.command_overhead                 # 6 trials x 3 epochs per study
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "train_script.py"
SAMPLES = 600  # training examples of the digits workload: an epoch is a fraction of a second
NOOP = ("import json, sys\n"
        "for e in range(1, int(sys.argv[1]) + 1):\n"
        "    print(json.dumps(dict(epoch=e, val_loss=1.0 / e)), flush=True)\n")  # no braces


@cache
def _digits() -> tuple[Any, ...]:
    sys.path.insert(0, str(SCRIPT.parent))
    import train_script

    return train_script.load_digits(SAMPLES)


def train_digits(run: Any) -> float:
    """``--train``: the example script's training, in this process."""
    import train_script  # on the path once _digits() has run

    data = _digits()
    return train_script.train(run.batch_size, run.lr, run.epochs, data=data,
                              checkpoint_dir=None, report=run.report, seed=run.seed)


def train_noop(run: Any) -> None:
    """``--train``: report ``epochs`` losses, train nothing."""
    for epoch in range(1, run.epochs + 1):
        run.report(epoch, 1.0 / epoch)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the commands)."""
    own, children = (resource.getrusage(who)
                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _study_seconds(fields: dict[str, Any], directory: Path, name: str) -> tuple[list[float],
                                                                               float]:
    """Run one study: each trial's start-to-complete seconds, and the CPU seconds per trial."""
    import optuna

    from bsopt.config import build_config
    from bsopt.search import search

    url = f"sqlite:///{directory}/{name}.db"
    config, explicit = build_config(None, {"storage": url, "study_name": name,
                                           "sampler": "random", "pruner": "none",
                                           "lr": "1e-3:1e-2", "batch_size": "16:64", **fields})
    cpu = _cpu_seconds()
    search(config, explicit)
    cpu = _cpu_seconds() - cpu
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert all(t.state.name == "COMPLETE" for t in trials), [t.state for t in trials]
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials], (
        cpu / len(trials))


def script_start_seconds(repeats: int = 3) -> tuple[float, float]:
    """Median (wall, CPU) seconds of the digits script doing all but train: its own start."""
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), _cpu_seconds()
        subprocess.run([sys.executable, str(SCRIPT), "--epochs", "0", "--samples", str(SAMPLES)],
                       check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def measure(trials: int, epochs: int, workloads: tuple[str, ...]) -> dict[str, Any]:
    """Both studies of each workload; rows of mean seconds per trial."""
    python = shlex.quote(sys.executable)
    commands = {
        "digits": (f"{python} {shlex.quote(str(SCRIPT))} --bs {{batch_size}} --lr {{lr}} "
                   f"--epochs {{epochs}} --samples {SAMPLES}",
                   "benchmarks.command_overhead:train_digits"),
        "no-op": (f"{python} -c {shlex.quote(NOOP)} {{epochs}}",
                  "benchmarks.command_overhead:train_noop"),
    }
    if "digits" in workloads:  # the data, as --train's module (this one by name) sees it
        import importlib

        importlib.import_module("benchmarks.command_overhead")._digits()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            command, function = commands[workload]
            budget = {"n_trials": trials, "epochs": epochs}
            inside, inside_cpu = _study_seconds({**budget, "train": function}, Path(tmp),
                                                f"{workload}-in")
            outside, outside_cpu = _study_seconds({**budget, "command": command}, Path(tmp),
                                                  f"{workload}-cmd")
            rows.append({"workload": workload, "in_process": statistics.mean(inside),
                         "command": statistics.mean(outside),
                         "overhead": statistics.mean(outside) - statistics.mean(inside),
                         "in_process_cpu": inside_cpu, "command_cpu": outside_cpu,
                         "overhead_cpu": outside_cpu - inside_cpu})
    start, start_cpu = script_start_seconds() if "digits" in workloads else (None, None)
    return {"trials": trials, "epochs": epochs, "rows": rows, "script_start": start,
            "script_start_cpu": start_cpu, "load_average": os.getloadavg()[0]}


def format_report(result: dict[str, Any]) -> str:
    """The rows as a Markdown table, and the overhead split into its parts."""
    lines = [f"{result['trials']} trials x {result['epochs']} epochs per study, SQLite, one "
             f"worker, load average {result['load_average']:.1f}", "",
             "| workload | in-process s/trial | --command s/trial | overhead s/trial "
             "| in-process CPU s | --command CPU s | overhead CPU s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['workload']} | {r['in_process']:.3f} | {r['command']:.3f} | "
                     f"{r['overhead']:.3f} | {r['in_process_cpu']:.3f} | "
                     f"{r['command_cpu']:.3f} | {r['overhead_cpu']:.3f} |")
    digits = next((r for r in result["rows"] if r["workload"] == "digits"), None)
    if digits is not None and result["script_start"] is not None:
        lines += ["", "the digits script's own start (interpreter, torch, scikit-learn, data): "
                      f"{result['script_start']:.3f} s ({result['script_start_cpu']:.3f} CPU s);"
                      " the rest of its overhead (bsopt's process handling, parsing, "
                      f"checkpoints; the child's cold start of training): "
                      f"{digits['overhead'] - result['script_start']:.3f} s "
                      f"({digits['overhead_cpu'] - result['script_start_cpu']:.3f} CPU s) "
                      "per trial"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: run the studies and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per study (6)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (3)")
    parser.add_argument("--workloads", default="digits,no-op", help="digits,no-op")
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # --train names this module by its import path
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = measure(args.trials, args.epochs, tuple(args.workloads.split(",")))
    print(format_report(result))
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
