"""Speed of the multi-model evaluator and of every joint method (issue 19, part 2: PPN).

1. `evaluate_joint` of the three-llms-8dev case (three models on eight devices) with
   every model generating `--tokens` tokens, all three models' layer pipelines sharing
   devices (the `local-search` plan): chain building, shared memory and the event
   simulation of ``3 × tokens`` forward steps.
1b. The same with head-level plans: every layer's attention groups split over its
   device and the next one (`head_split`), so every step is a task DAG
   (`placement.multi.dags`).
1c. The event simulation of 1b alone (`placement.multi.schedule.simulate_dags`), its
   DAGs built once.
2. Every joint method (`placement.multi.METHODS`) on every shipped case as shipped
   (milp with a 30 s limit).

3. ``--random N``: the quality of every joint method off the shipped cases, on ``N`` seeded
   random cases (`placement.multi.random_cases`: 2–3 models, 4–8 devices; the network and the
   memory cycle through shared/switched × tight/loose): per method the geometric mean and
   the worst of its makespan over the better baseline's, and how often another method beats
   it (one run each; ``--time-limit`` seconds for ``milp`` and ``milp-head``, the best-response
   loops run to their rounds).
   Run: ``python benchmarks/bench_parallel.py --random 8`` (seeds 0–7, those the methods were
   developed on); ``--seeds 100-111`` for held-out seeds (docs/parallel.md's held-out table).

Median of `--repeat` runs after one warm-up. Run: ``python benchmarks/bench_parallel.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def _median(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def head_split(inst, plan):
    """`plan` with the second half of every layer's groups on the next device (a head-level plan)."""
    p = plan.intervals[0]
    attention = p.attention.copy()
    half = attention.shape[1] // 2
    attention[:, half:] = (attention[:, half:] + 1) % inst.n_devices
    return plan.replace(intervals=[type(p)(attention, p.projection, p.ffn, p.embed, p.lm_head)])


def main() -> None:
    from placement.experiments.parallel_table import CASES
    from placement.files import load_data_file
    from placement.multi import METHODS, JointPlan, evaluate_joint, load_multi, multi_from_dict, solve
    from placement.multi.instance import multi_instances_dir

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--evaluator-only", action="store_true", help="skip the joint methods")
    parser.add_argument("--random", type=int, default=0, help="only the quality table on this many random cases")
    parser.add_argument("--seeds", type=_seed_range, default=None,
                        help="only the quality table on these seeds, FIRST-LAST (e.g. 100-111: held out)")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds, --random's milp and milp-head")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.random or args.seeds:
        return quality(args.seeds or range(args.random), args.time_limit)
    path = multi_instances_dir() / "three-llms-8dev.yaml"
    data = load_data_file(path)
    for entry in data["models"]:
        entry["workload"]["generate_tokens"] = args.tokens
    multi = multi_from_dict(data, source="three-llms-8dev", base=path.parent)
    plan = solve(multi, "local-search").plan
    seconds = _median(lambda: evaluate_joint(multi, plan), args.repeat)
    print(f"evaluate_joint three-llms-8dev, 3 x {args.tokens} tokens ({plan.schedule}): median {seconds * 1e3:.1f} ms")
    heads = JointPlan(tuple(head_split(inst, p) for inst, p in zip(multi.instances, plan.plans)))
    seconds = _median(lambda: evaluate_joint(multi, heads), args.repeat)
    print(f"evaluate_joint three-llms-8dev, 3 x {args.tokens} tokens, head-level plans: median {seconds * 1e3:.1f} ms")
    from placement.multi.dags import model_dags  # 1c. the event simulation alone, the DAGs built once
    from placement.multi.schedule import simulate_dags

    dags = [model_dags(inst, p) for inst, p in zip(multi.instances, heads.plans)]
    seconds = _median(lambda: simulate_dags(dags, multi.n_devices), args.repeat)
    print(f"simulate_dags three-llms-8dev, 3 x {args.tokens} tokens, head-level plans: median {seconds * 1e3:.1f} ms")
    if args.evaluator_only:
        return
    for case in CASES:
        multi = load_multi(case)
        for method in METHODS:
            seconds = _median(lambda: solve(multi, method), args.repeat)
            print(f"{case:24s} {method:13s} median {seconds:7.3f} s over {args.repeat} runs")


def _seed_range(text: str) -> range:
    """``FIRST-LAST`` (inclusive) as a range of seeds; argparse turns a ValueError into one usage line."""
    first, _, last = text.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    if not seeds:
        raise ValueError(text)
    return seeds


def quality(seeds: range, time_limit: float) -> None:
    """Section 3 of the module docstring: a markdown table of every method's quality on these seeds."""
    from placement.multi import METHODS
    from placement.multi.random_cases import compare_methods, random_case

    combos = [(net, mem) for net in ("shared", "switched") for mem in ("tight", "loose")]
    cases = [random_case(seed, network=combos[seed % 4][0], memory=combos[seed % 4][1]) for seed in seeds]
    found = compare_methods(cases, tuple(METHODS), time_limit)
    for r in found["rows"]:
        bound = "" if r["bound_s"] is None else f"bound {r['bound_s']:.6g} s"
        print(f"{r['case']:28s} {r['method']:26s} {r['objective_s']:.6g} s  ratio {r['ratio']:.4f}  {bound}  "
              f"{r['solve_time_s']:.1f} s", flush=True)
    print("\n| method | geometric mean vs better baseline | worst | beaten by another method |\n|---|---|---|---|")
    for method, s in found["summary"].items():
        print(f"| {method} | {s['geomean_ratio']:.4f} | {s['worst_ratio']:.4f} | {s['beaten']} of {s['cases']} |")
    print(f"bound violations: {len(found['bound_violations'])}")


if __name__ == "__main__":
    main()
