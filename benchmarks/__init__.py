"""bsopt's benchmarks: trial throughput, search efficiency on a tabular benchmark, concurrency.

Each module runs with one command (``python -m benchmarks.<name>``) and prints ratios measured
side by side in one run; BENCHMARKS.md records the latest figures.
"""
