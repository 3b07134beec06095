"""Speed benchmarks of the foundation: evaluating a long generation, loading an instance.

Run with ``placement bench`` or ``python benchmarks/bench_evaluate.py``; the figures
go to docs/benchmarks.md. Timings are medians of several runs after one warm-up.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

__all__ = ["run_benchmarks", "changing_plan", "time_call"]


def time_call(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn`, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def changing_plan(instance, seed: int = 0):
    """A plan that changes every interval: the pipeline, with random groups moved each interval.

    Each interval moves a quarter of the attention groups of every layer to random
    devices, so the evaluator pays for per-interval placements and migrations.
    """
    from placement.plan import Plan
    from placement.solvers.reference import pipeline_plan

    rng = np.random.default_rng(seed)
    base = pipeline_plan(instance).intervals[0]
    intervals = []
    for _ in range(instance.workload.n_intervals):
        attention = base.attention.copy()
        moved = rng.random(attention.shape) < 0.25
        attention[moved] = rng.integers(0, instance.n_devices, moved.sum())
        intervals.append(base.__class__(attention, base.projection, base.ffn, base.embed, base.lm_head))
    return Plan(instance.cluster.names, intervals, method="bench-changing")


def run_benchmarks(repeats: int = 7) -> list[dict]:
    """The foundation's speed cases with their targets.

    Returns
    -------
    list of dict
        ``case``, ``median_s``, ``min_s``, ``target`` per case.
    """
    from placement.evaluate import evaluate
    from placement.instance import instances_dir, load_instance
    from placement.solvers.reference import pipeline_plan

    name = "edge/llama-3.1-8b-8dev"  # llama-3.1-8b, 8 devices, prompt 512, 1,000 tokens, tau = 32
    instance = load_instance(name)
    changing = changing_plan(instance)
    static = pipeline_plan(instance)
    cases = [
        ("evaluate llama-3.1-8b, 8 devices, 1,000 tokens, plan changes every 32", lambda: evaluate(instance, changing), "< 50 ms"),
        ("evaluate the same, static pipeline plan", lambda: evaluate(instance, static), "< 50 ms"),
        ("load and validate edge/llama-3.1-8b-8dev", lambda: load_instance(instances_dir() / f"{name}.yaml"), "< 100 ms"),
    ]
    rows = []
    for case, fn, target in cases:
        times = time_call(fn, repeats)
        rows.append({"case": case, "median_s": statistics.median(times), "min_s": min(times), "target": target})
    return rows
