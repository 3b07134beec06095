"""The `large` suite under the exact MILP back end: plan, bound, gap and time (figures in docs/benchmarks.md).

    python benchmarks/bench_large.py                       # all 5 instances, 600 s each, once
    python benchmarks/bench_large.py --repeats 3           # the median of 3 runs of each
    python benchmarks/bench_large.py --time-limit 60 --only llama-3.1-8b-16dev-eth
    python benchmarks/bench_large.py --time-limit 20 --solver cbc --only edge-real/qwen2.5-7b-3dev-wifi

For every instance of `instances/large/` the heuristics the MILP must match are run
(pipeline-dp, myopic+, memory-proportional) and then
``placement.solve(instance, method="milp", time_limit=T)``; the table gives the best
heuristic's total, the MILP's plan total and bound, the gap ``(plan − bound) / plan``,
the MILP's wall-clock time (the median over `--repeats`), where the bound came from
(the configuration LP, the device-class bound, the packing bound on a shared medium,
the per-layer MILP) and whether the per-layer MILP was built. The machine and its load
are printed first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import placement

HEURISTICS = ("pipeline-dp", "myopic+", "memory-proportional")


def _best_heuristic(instance) -> tuple[str, float]:
    figures = {}
    for method in HEURISTICS:
        result = placement.solve(instance, method=method)
        if result.report is not None and result.report.feasible:
            figures[method] = result.report.total_s
    best = min(figures, key=figures.get)
    return best, figures[best]


def _source(result) -> str:
    stats = result.stats
    named = {"configuration LP": stats.get("configuration_bound_s"), "device classes": stats.get("class_bound_s"),
             "packing": stats.get("packing_bound_s")}
    found = {name: value for name, value in named.items() if value is not None}
    if result.bound is None:
        return "-"
    if found and max(found.values()) >= result.bound * (1 - 1e-9):
        return max(found, key=found.get)
    return "per-layer MILP"


def run(names: list[str], time_limit: float, repeats: int, solver: str = "highs") -> None:
    print("| instance | best heuristic (s) | MILP plan (s) | bound (s) | gap | floor (s) | MILP time (median) | "
          "bound from | per-layer MILP | status |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        instance = placement.load_instance(name if "/" in name else f"large/{name}")
        heuristic, heuristic_s = _best_heuristic(instance)
        times, result = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            result = placement.solve(instance, method="milp", time_limit=time_limit, solver=solver)
            times.append(time.perf_counter() - start)
        plan_s = result.report.total_s if result.report is not None else float("nan")
        bound = "-" if result.bound is None else f"{result.bound:.2f}"
        gap = "-" if result.bound is None else f"{100 * (plan_s - result.bound) / plan_s:.2f} %"
        floor = result.stats.get("class_floor_s")
        built = "skipped" if "milp_skipped" in result.stats else "built"
        print(f"| {name} | {heuristic_s:.2f} ({heuristic}) | {plan_s:.2f} | {bound} | {gap} | "
              f"{'-' if floor is None else f'{floor:.2f}'} | {statistics.median(times):.1f} s | {_source(result)} | "
              f"{built} | {result.status} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per MILP call (default 600)")
    parser.add_argument("--repeats", type=int, default=1, help="MILP runs per instance; the median time is shown")
    parser.add_argument("--only", nargs="*", help="instance names without the suite, e.g. qwen2.5-7b-16dev-wifi "
                        "(a name with a suite, e.g. edge-real/qwen2.5-7b-3dev-wifi, is taken as it is)")
    parser.add_argument("--solver", default="highs", choices=("highs", "cbc", "ortools"),
                        help="the MILP solver (default highs): cbc and ortools check that their time limit is kept")
    args = parser.parse_args()
    names = args.only or sorted(n.split("/", 1)[1] for n in placement.instance_names() if n.startswith("large/"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}; time limit {args.time_limit:g} s; "
          f"solver {args.solver}")
    run(names, args.time_limit, args.repeats, args.solver)


if __name__ == "__main__":
    main()
