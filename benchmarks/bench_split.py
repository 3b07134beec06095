"""Benchmark the exact split search: ``python benchmarks/bench_split.py [repeats]``.

Full search (every split layer × front/back weight bits {2,3,4,8,16} × KV bits
{4,8,16} per segment × TS/TAB-Q settings) for the 80-layer Llama-2-70B on a Jetson
Orin Nano with an A100-80GB server over 10 Mbit/s, prompt 512, 512 decode steps:
prints the median of several runs (target: under 50 ms), and the same for the
adaptive search over 8 intervals.
"""

import platform
import statistics
import sys
import time

from placement.experiments.split_table import split_instance
from placement.solvers.split import solve_split, solve_split_adaptive


def median_s(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, median of {repeats}")
    inst = split_instance("llama-2-70b", "jetson-orin-nano", 10, prompt_tokens=512, generate_tokens=512,
                          server="nvidia-a100-80gb")
    result = solve_split(inst)
    med, low = median_s(lambda: solve_split(inst), repeats)
    print(f"split, llama-2-70b (80 layers), {result.stats['configurations']} configurations: "
          f"median {med * 1e3:.2f} ms  min {low * 1e3:.2f} ms  target < 50 ms  [{result.status}: {result.message}]")
    adaptive = split_instance("llama-2-70b", "jetson-orin-nano", 10, prompt_tokens=512, generate_tokens=512,
                              server="nvidia-a100-80gb", interval=64)
    result = solve_split_adaptive(adaptive)
    med, low = median_s(lambda: solve_split_adaptive(adaptive), max(3, repeats // 3))
    print(f"split-adaptive, llama-2-70b, 8 intervals: median {med * 1e3:.2f} ms  min {low * 1e3:.2f} ms  "
          f"[{result.status}: {result.stats['settings_searched']} of {result.stats['settings']} settings DP'd]")
