"""Benchmark of the tensor-parallel back end `tp` (figures in docs/tensor-parallel.md).

    python benchmarks/bench_tp.py [--repeats 7]

Solves Llama-2-70B over 8 weak devices (`placement.experiments.tp_table.weak_instance`:
Raspberry Pi 5 / Pi 4 / N100 / Orin Nano, 2 GB/s disks, 1 Gbit/s, 1 ms mesh; the model
needs offload) and Llama-2-7B on the same devices, and prints the median wall-clock
time of `solve_tp` over `--repeats` runs (target: under 2 s for the 70B case), with the
plan's per-token latency and peak memory. The machine is printed first.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from placement.experiments.tp_table import weak_instance
from placement.solvers.tp import solve_tp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{platform.platform()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    for model in ("llama-2-70b", "llama-2-7b"):
        inst = weak_instance(model, 8, 1.0, "1 Gbit/s")
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            result = solve_tp(inst)
            times.append(time.perf_counter() - began)
        report = result.report
        print(f"{model} on 8 devices: median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}) "
              f"over {args.repeats} runs; {result.status}, {result.plan.collective}, "
              f"mean token {report.mean_token_s * 1e3:.1f} ms, peak {report.peak_memory_bytes.max() / 2**30:.2f} GiB, "
              f"{len(result.stats['candidates'])} candidates evaluated")


if __name__ == "__main__":
    main()
