"""Benchmark the serving simulation: ``python benchmarks/bench_serving.py [repeats]``.

1,000 Poisson requests × 256 decode steps (prompts uniform on 64–512 tokens) on
Llama-3.1-8B over the eight devices of ``edge/llama-3.1-8b-8dev``, placed by
``pipeline-dp`` (8 layer stages) and by ``tp`` (every device in every layer), at a
load that keeps tens of requests live. Each case is a fresh simulation (fresh cost
tables, so the evaluator calls that fill them are timed too). Target: ≤ 2 s each.
Prints the median and minimum of `repeats` runs after one warm-up.
"""

import dataclasses
import platform
import statistics
import sys
import time

import placement
from placement.instance import Workload
from placement.serving import generate_trace, simulate

TARGET_S = 2.0


def cases():
    instance = placement.load_instance("edge/llama-3.1-8b-8dev")
    instance = dataclasses.replace(instance, workload=Workload(288, 256))
    requests = generate_trace(1000, 0.5, (64, 512), 256, seed=0)
    for method in ("pipeline-dp", "tp"):
        plan = placement.solve(instance, method=method).plan
        for policy in ("fused", "static-batch", "sequential"):
            yield f"{method:11s} {policy:12s} 1,000 requests x 256 tokens", instance, plan, requests, policy


if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, median of {repeats}")
    for name, instance, plan, requests, policy in cases():
        simulate(instance, plan, requests, policy)  # warm-up
        runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            report = simulate(instance, plan, requests, policy)
            runs.append(time.perf_counter() - began)
        live = report.summary()["max_in_service"]
        print(f"{name}  median {statistics.median(runs):6.3f} s  min {min(runs):6.3f} s  (up to {live} live)  "
              f"target <= {TARGET_S} s")
