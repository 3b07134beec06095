"""Benchmark the evaluator and instance loading: ``python benchmarks/bench_evaluate.py [repeats]``.

Prints the median of several runs per case; the same as ``placement bench``.
"""

import platform
import sys

from placement.experiments.bench import run_benchmarks

if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, median of {repeats}")
    for row in run_benchmarks(repeats):
        print(f"{row['case']:75s} median {row['median_s'] * 1e3:8.2f} ms  min {row['min_s'] * 1e3:8.2f} ms  target {row['target']}")
