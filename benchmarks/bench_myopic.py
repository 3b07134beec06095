"""Benchmarks of the online methods `myopic` and `myopic+` (figures in docs/benchmarks.md).

    python benchmarks/bench_myopic.py decision     # decision time, llama-3.1-8b on 8 devices
    python benchmarks/bench_myopic.py gap          # gap to the MILP optimum on every paper-small instance
    python benchmarks/bench_myopic.py horizon      # myopic+'s gap on paper-small against its horizon
    python benchmarks/bench_myopic.py all

Decision times are wall-clock seconds of one decision (``stats["decision_times_s"]``),
the median over every decision of `--repeats` runs. Gaps are to the MILP's proven
optimum (HiGHS), geometric mean over the instances. The machine is printed first.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics

import placement
from placement.solvers.milp import solve_milp

DECISION_INSTANCE = "edge/llama-3.1-8b-8dev"


def _paper_small() -> list[str]:
    return [name for name in placement.instance_names() if name.startswith("paper-small/")]


def decision(repeats: int) -> None:
    inst = placement.load_instance(DECISION_INSTANCE)
    print(f"{DECISION_INSTANCE}: {inst.workload.n_intervals} decisions a run, {repeats} runs")
    for method in ("myopic", "myopic+"):
        times, first = [], []
        for _ in range(repeats):
            result = placement.solve(inst, method=method)
            times += result.stats["decision_times_s"]
            first.append(result.stats["decision_times_s"][0])
        print(f"  {method:8s} median decision {statistics.median(times) * 1e3:7.2f} ms, "
              f"first decision {statistics.median(first) * 1e3:7.1f} ms, total {result.objective:.3f} s")


def _geomean(gaps: list[float]) -> float:
    return math.exp(statistics.fmean(math.log1p(g) for g in gaps)) - 1


def gap(methods: tuple[str, ...] = ("myopic", "myopic+", "myopic-milp"), **options) -> dict[str, list[float]]:
    names = _paper_small()
    optimum = {}
    for name in names:
        result = solve_milp(placement.load_instance(name))
        assert result.status == "optimal", (name, result.message)
        optimum[name] = result.objective
    gaps: dict[str, list[float]] = {m: [] for m in methods}
    print(f"{'instance':36s}" + "".join(f"{m:>14s}" for m in methods))
    for name in names:
        inst = placement.load_instance(name)
        row = []
        for method in methods:
            result = placement.solve(inst, method=method, **(options if method == "myopic+" else {}))
            g = result.objective / optimum[name] - 1 if result.report.feasible else math.inf
            gaps[method].append(g)
            row.append(f"{g * 100:13.2f}%")
        print(f"{name.removeprefix('paper-small/'):36s}" + "".join(row))
    for method in methods:
        finite = [g for g in gaps[method] if math.isfinite(g)]
        print(f"  {method:12s} geometric mean {_geomean(finite) * 100:6.2f} %, mean {statistics.fmean(finite) * 100:6.2f} %, "
              f"worst {max(finite) * 100:6.2f} %, feasible {len(finite)}/{len(names)}")
    return gaps


def horizon() -> None:
    names = _paper_small()
    optimum = {name: solve_milp(placement.load_instance(name)).objective for name in names}
    for h in (1, 2, 4, 6, 8, 12, 16, 32):
        gaps = [placement.solve(placement.load_instance(n), method="myopic+", horizon=h).objective / optimum[n] - 1
                for n in names]
        print(f"  horizon {h:3d}: geometric mean {_geomean(gaps) * 100:6.2f} %, worst {max(gaps) * 100:7.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["decision", "gap", "horizon", "all"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    if args.case in ("decision", "all"):
        decision(args.repeats)
    if args.case in ("gap", "all"):
        gap()
    if args.case in ("horizon", "all"):
        horizon()


if __name__ == "__main__":
    main()
