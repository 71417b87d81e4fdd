"""Every benchmark runs end to end on a tiny size, so none can rot; no timing is asserted."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

# The benchmarks live beside the package, not in it: import them from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (  # noqa: E402
    command_overhead,
    concurrency,
    data_paths,
    grid_table,
    scale,
    search_efficiency,
    throughput,
)


def finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value)


@pytest.mark.slow  # about 20 s on two idle cores: the real loops, timed side by side
def test_throughput_reports_ratios_and_fraction_of_peak():
    result = throughput.main(["--samples", "48", "--repeats", "2", "--batch-sizes", "16,32",
                              "--matmul-size", "128",
                              "--variants", "unfused Adam,nn.Dropout,1 thread"])
    assert [r["batch_size"] for r in result["rows"]] == [16, 32]
    assert finite(result["peak_flops"]) and result["peak_flops"] > 0
    for row in result["rows"]:
        assert finite(row["ratio"]) and row["ratio"] > 0
        assert finite(row["fraction_of_peak"]) and row["fraction_of_peak"] > 0
        assert row["flops_per_example"] > 0
        assert set(row["variants"]) == {"unfused Adam", "nn.Dropout", "1 thread"}
    assert "| 16 |" in throughput.format_report(result)


def test_data_paths_compares_streaming_with_memory_side_by_side():
    result = data_paths.main(["--models", "mlp", "--batch-sizes", "32", "--repeats", "1",
                              "--max-train-samples", "64", "--variants", "stream,png"])
    (row,) = result["rows"]
    assert result["variants"] == ["memory", "stream", "png"]
    assert finite(row["memory_seconds"]) and row["memory_seconds"] > 0
    assert all(finite(r) and r > 0 for r in row["ratios"].values())
    assert row["same_losses"] is True  # the two paths train identically on the CPU
    assert "| mlp | 32 |" in data_paths.format_report(result)


def test_grid_table_then_replay(tmp_path):
    path = tmp_path / "grid.json.gz"
    table = grid_table.main(["--out", str(path), "--epochs", "2", "--batch-sizes", "16,32",
                             "--lr-points", "2", "--seeds", "2", "--workers", "1",
                             "--max-train-samples", "64", "--quiet"])
    assert len(table["runs"]) == 2 * 2 * 2
    assert all(len(r["val_loss"]) == 2 or r["diverged"] for r in table["runs"])
    assert grid_table.load_table(path) == table

    result = search_efficiency.main(["--table", str(path), "--replays", "2"])
    assert set(result["methods"]) == set(search_efficiency.METHODS)
    assert result["grid_epochs"] == 2 * 2 * 2
    for summary in result["methods"].values():
        assert len(summary["epochs"]) == 2
        assert 0 <= summary["found_share"] <= 1
        assert all(0 < e <= search_efficiency.MAX_TRIALS_FACTOR * result["grid_epochs"]
                   for e in summary["epochs"])


@pytest.mark.parametrize("path", [grid_table.DEFAULT_TABLE,
                                  grid_table.DEFAULT_TABLE.with_name("digits_grid_3seeds.json.gz")])
def test_shipped_tables_are_full_grids(path):
    table = grid_table.load_table(path)
    meta = table["meta"]
    assert meta["batch_sizes"] == [8, 16, 32, 64, 128, 256, 512]
    assert len(meta["lrs"]) >= 10 and len(meta["seeds"]) >= 3 and meta["epochs"] >= 10
    cells = {(r["batch_size"], r["lr"], r["seed"]) for r in table["runs"]}
    assert len(cells) == len(table["runs"]) == 7 * len(meta["lrs"]) * len(meta["seeds"])
    indexed = search_efficiency.Table.from_dict(table)
    assert 0 < indexed.best_mean_final() < math.log(10)  # better than chance


@pytest.mark.slow
def test_shipped_table_replays_every_method():
    table = search_efficiency.Table.from_dict(grid_table.load_table())
    methods = {**search_efficiency.METHODS, **search_efficiency.CANDIDATES}
    result = search_efficiency.evaluate(table, methods, replays=1)
    assert set(result["methods"]) == set(methods)
    assert "bsopt default" in search_efficiency.format_report(result)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal",
                                     pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrency_counts_are_consistent(backend):
    result = concurrency.main(["--backends", backend, "--workers", "2", "--budget", "8"])
    rows = result["rows"]
    assert {r["mode"] for r in rows} == {"bsopt", "optuna"}
    for row in rows:
        assert row["finished"] + row["lost"] - row["extra"] == result["budget"]
        assert row["trials_per_second"] > 0
    bsopt = next(r for r in rows if r["mode"] == "bsopt")
    assert (bsopt["errors"], bsopt["lost"], bsopt["duplicates"], bsopt["extra"]) == (0, 0, 0, 0)
    assert "bsopt/optuna" in concurrency.format_report(result)


def test_command_overhead_compares_the_same_trials_in_and_out_of_process():
    result = command_overhead.main(["--trials", "2", "--epochs", "2", "--workloads", "no-op"])
    (row,) = result["rows"]
    assert row["workload"] == "no-op"
    for key in ("in_process", "command", "overhead", "in_process_cpu", "command_cpu"):
        assert finite(row[key]), key
    assert row["overhead"] == row["command"] - row["in_process"]
    assert row["command_cpu"] > 0  # the commands' own CPU time is counted
    assert "| no-op |" in command_overhead.format_report(result)


@pytest.mark.slow  # the digits script in processes that import torch
def test_command_overhead_splits_the_script_start_from_bsopt_s_part():
    result = command_overhead.main(["--trials", "1", "--epochs", "1", "--workloads", "digits"])
    assert finite(result["script_start"]) and result["script_start"] > 0
    assert finite(result["script_start_cpu"]) and result["script_start_cpu"] > 0
    assert "the digits script's own start" in command_overhead.format_report(result)


def test_scale_quick_measures_both_and_keeps_the_budget():
    result = scale.main(["--quick"])
    assert {(r["mode"], r["size"]) for r in result["sizes"]} == {
        (m, s) for m in ("bsopt", "optuna") for s in (20, 80)}
    for row in result["sizes"]:
        assert row["trials"] == row["size"]  # exactly the budget, for bsopt and Optuna
        assert all(finite(row[k]) and row[k] > 0 for k in ("first_ms", "last_ms", "mean_ms"))
    bsopt = [r for r in result["workers"] if r["mode"] == "bsopt"]
    assert {r["workers"] for r in bsopt} == {1, 2}
    for row in bsopt:
        assert (row["errors"], row["lost"], row["duplicates"], row["extra"]) == (0, 0, 0, 0)
    assert set(result["targets"]) == {"growth", "vs_optuna_20", "vs_optuna_80"}
    assert "ms/trial first 50" in scale.format_report(result)


@pytest.mark.slow  # minutes: real searches, a profile and a kill -9, on the CPU
def test_gpu_check_script_runs_every_check_on_the_cpu(tmp_path):
    import os
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1200,
                         env={**os.environ, "BSOPT_GPU_CHECK_DEVICE": "cpu",
                              "PYTHON": sys.executable, "TMPDIR": str(tmp_path)})
    assert run.returncode == 0, run.stdout + run.stderr
    checks = [line.split()[1] for line in run.stdout.splitlines()
              if line.startswith(("PASS", "FAIL"))]
    assert checks == ["search-1-device", "search-2-workers", "precision-bf16",
                      "precision-fp16", "profile", "resume-after-kill-9"]
    assert all(line.startswith("PASS") for line in run.stdout.splitlines()
               if line.split()[:1] in (["PASS"], ["FAIL"]))
    assert "batch 16:" in run.stdout and "samples/s" in run.stdout
    assert "ALL PASS on cpu" in run.stdout
