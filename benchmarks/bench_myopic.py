"""Benchmarks of the online methods `myopic` and `myopic+` (figures in docs/benchmarks.md).

    python benchmarks/bench_myopic.py decision     # decision time, llama-3.1-8b on 8 devices
    python benchmarks/bench_myopic.py gap          # gap to the MILP optimum on every paper-small instance
    python benchmarks/bench_myopic.py horizon      # myopic+'s gap on paper-small against its horizon
    python benchmarks/bench_myopic.py random       # gap to the MILP optimum on random tiny instances (report seeds)
    python benchmarks/bench_myopic.py random --seeds 0:200   # ... on the tuning seeds
    python benchmarks/bench_myopic.py random --lns-time 0   # ... without the MILP neighbourhood (default "auto")
    python benchmarks/bench_myopic.py edge-real    # gap to the best plan known on edge-real
    python benchmarks/bench_myopic.py all
    python benchmarks/bench_myopic.py time-limit --repeats 1   # wall time of `placement solve` under
                                   # --time-limit on large/llama-2-13b-48dev-eth (not in `all`: minutes)

Decision times are wall-clock seconds of one decision (``stats["decision_times_s"]``),
the median over every decision of `--repeats` runs. Gaps are to the MILP's proven
optimum (HiGHS), geometric mean over the instances. The machine is printed first.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from joblib import Parallel, delayed

import placement
from placement.experiments.suites.random_tiny import REPORT_SEEDS, random_tiny_instance
from placement.solvers.milp import solve_milp
from placement.solvers.myopic_plus import baseline_placements, decide_plus

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


TIME_LIMIT_INSTANCE = "large/llama-2-13b-48dev-eth"


def time_limit(repeats: int) -> None:
    """Wall seconds of the whole CLI call (start-up, loading, solve, evaluation, JSON) under a time limit."""
    for method, limit_s in (("myopic+", 5), ("milp", 60)):
        walls, solves = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "placement.cli", "solve", TIME_LIMIT_INSTANCE, "--method",
                                   method, "--time-limit", str(limit_s), "--json"], capture_output=True, text=True,
                                  check=True)
            walls.append(time.perf_counter() - began)
            out = json.loads(proc.stdout)
            solves.append(out["solve_time_s"])
        cut = out["stats"].get("cut_short")
        print(f"  {method:8s} --time-limit {limit_s:3d}: wall {statistics.median(walls):6.1f} s, solve_time_s "
              f"{statistics.median(solves):6.1f} s (median of {repeats}), status {out['status']}, "
              f"objective {out['objective_s']:.4f} s" + ("" if cut is None else f", cut_short {cut}"))


def decision_cpu(repeats: int) -> None:
    """CPU seconds of myopic+'s decisions (robust to other processes on a loaded machine)."""
    inst = placement.load_instance(DECISION_INSTANCE)
    first, later = [], []
    for _ in range(repeats):
        began = time.process_time()
        baselines = baseline_placements(inst)
        decided = decide_plus(inst, 0, None, baselines=baselines)
        first.append(time.process_time() - began)
        for k in range(1, inst.workload.n_intervals):
            began = time.process_time()
            decided = decide_plus(inst, k, decided.placement, baselines=baselines)
            later.append(time.process_time() - began)
    print(f"  myopic+  CPU time: median decision {statistics.median(later) * 1e3:7.2f} ms, "
          f"first decision {statistics.median(first) * 1e3:7.1f} ms (without the whole-run check of the static plans)")


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


# Seconds the MILP gets per random instance; one not proven optimal in it is left out and counted.
MILP_TIME_LIMIT_S = 20
BASELINES = ("single", "pipeline-dp", "memory-proportional")
EDGE_REAL_METHODS = ("myopic+", "myopic", "single", "pipeline", "pipeline-dp", "memory-proportional", "greedy",
                     "static", "milp")


def _optimum(seed: int) -> tuple[int, str, float]:
    result = solve_milp(random_tiny_instance(seed), time_limit=MILP_TIME_LIMIT_S)
    return seed, result.status, result.objective


def _optima(seeds: range, cache: Path) -> dict[int, tuple[str, float]]:
    """The MILP's optimum of every seed, cached in `cache` (JSON) so reruns only time the online methods."""
    known = {int(k): tuple(v) for k, v in json.loads(cache.read_text()).items()} if cache.exists() else {}
    missing = [s for s in seeds if s not in known]
    cache.parent.mkdir(parents=True, exist_ok=True)
    for seed, status, objective in Parallel(n_jobs=2, return_as="generator")(delayed(_optimum)(s) for s in missing):
        known[seed] = (status, objective)
        cache.write_text(json.dumps({str(k): v for k, v in sorted(known.items())}))  # an interrupted run resumes
    return {s: known[s] for s in seeds}


def _distribution(label: str, gaps: list[float], beaten: dict[str, int], n: int) -> None:
    finite = [g for g in gaps if math.isfinite(g)]
    worse = ", ".join(f"{name} {count}" for name, count in beaten.items())
    print(f"  {label}: geometric mean {_geomean(finite) * 100:.2f} %, median {statistics.median(finite) * 100:.2f} %, "
          f"worst {max(finite) * 100:.2f} %, above 5 % on {sum(g > 0.05 for g in finite)}, above 1 % on "
          f"{sum(g > 0.01 for g in finite)}, feasible {len(finite)}/{n}; beaten by: {worse}")


def random_tiny(seeds: range, method: str = "myopic+", cache: Path = Path.home() / ".cache" / "placement" / "random-tiny-optima.json",
                verbose: bool = False, **options) -> dict[int, float]:
    """Gap of `method` to the MILP's proven optimum on every seed, and how often each baseline beats it."""
    optima = _optima(seeds, cache)
    proven = [s for s in seeds if optima[s][0] == "optimal"]
    print(f"random tiny instances, seeds {seeds.start}..{seeds.stop - 1}: {len(proven)}/{len(seeds)} proven optimal")
    gaps, beaten, times, unproven = {}, dict.fromkeys(BASELINES, 0), [], 0
    for seed in proven:
        inst = random_tiny_instance(seed)
        result = placement.solve(inst, method=method, **options)
        ours = result.objective if result.report.feasible else math.inf
        times += result.stats["decision_times_s"]
        windows = result.stats.get("lns_proven", []) + [result.stats.get("lns_static_proven", [])]
        unproven += not all(all(w) for w in windows)
        gaps[seed] = ours / optima[seed][1] - 1
        for name in BASELINES:
            other = placement.solve(inst, method=name)
            if other.report.feasible and other.objective < ours * (1 - 1e-9):
                beaten[name] += 1
        if verbose:
            print(f"    seed {seed:6d}: {gaps[seed] * 100:7.2f} %  (L{inst.model.layers} K{inst.model.kv_heads} "
                  f"N{inst.n_devices} I{inst.workload.n_intervals} {inst.cluster.network})")
    _distribution(method, list(gaps.values()), beaten, len(proven))
    print(f"  decision time: median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.0f} ms wall; "
          f"runs with a MILP window not proven in its budget (a result that may depend on the clock): {unproven}")
    return gaps


def edge_real(method: str = "myopic+", **options) -> dict[str, float]:
    """Gap of `method` to the best plan known on edge-real: the best of every method, the MILP's incumbent too."""
    names = [n for n in placement.instance_names() if n.startswith("edge-real/")]
    gaps, beaten = {}, dict.fromkeys(BASELINES, 0)
    for name in names:
        inst = placement.load_instance(name)
        objectives = {}
        for m in EDGE_REAL_METHODS:
            extra = {"time_limit": MILP_TIME_LIMIT_S} if m == "milp" else (options if m == method else {})
            result = placement.solve(inst, method=m, **extra)
            objectives[m] = result.objective if result.report is not None and result.report.feasible else math.inf
        best = min(objectives.values())
        gaps[name] = objectives[method] / best - 1
        for b in BASELINES:
            beaten[b] += objectives[b] < objectives[method] * (1 - 1e-9)
        winner = min(objectives, key=objectives.get)
        print(f"    {name.removeprefix('edge-real/'):28s} {gaps[name] * 100:7.2f} %  (best: {winner})")
    _distribution(method, list(gaps.values()), beaten, len(names))
    return gaps


def _seed_range(text: str) -> range:
    start, stop = (int(x) for x in text.split(":"))
    return range(start, stop)


def _lns_time(text: str) -> float | str:
    return text if text == "auto" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["decision", "gap", "horizon", "random", "edge-real", "time-limit", "all"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=_seed_range, default=REPORT_SEEDS, help="random seeds START:STOP")
    parser.add_argument("--verbose", action="store_true", help="one line per random seed")
    parser.add_argument("--lns-time", type=_lns_time, default=None,
                        help='myopic+\'s lns_time_s, "auto" or seconds (random, edge-real, gap); default: its own')
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    if args.case in ("decision", "all"):
        decision(args.repeats)
        decision_cpu(args.repeats)
    lns = {} if args.lns_time is None else {"lns_time_s": args.lns_time}
    if args.case in ("gap", "all"):
        gap(**lns)
    if args.case in ("horizon", "all"):
        horizon()
    if args.case in ("random", "all"):
        random_tiny(args.seeds, verbose=args.verbose, **lns)
    if args.case in ("edge-real", "all"):
        edge_real(**lns)
    if args.case == "time-limit":
        time_limit(args.repeats)


if __name__ == "__main__":
    main()
