"""Speed of the MoE parts (issue 17): the evaluator, the MILP's expert patterns, myopic+'s expert moves.

Qwen3-30B-A3B (48 MoE layers of 128 experts, top-8) and Mixtral-8x7B at 4 bits on the
moe-table clusters. Medians of `--repeat` runs after one warm-up.

- ``evaluate`` (default): a 1,000-token generation (prompt 64, one interval) on 8
  devices, the evaluator's time for the `pipeline-dp` plan (experts with their FFN) and
  for the same plan with every layer's experts spread over all 8 devices (the exact
  expectation over up to 6,435 routing outcomes per layer).
- ``milp``: building the MILP with one holding pattern per MoE layer
  (`placement.solvers.milp_experts`) on 4 and 8 devices, the moe-table's 32 tokens: seconds,
  rows, columns.
- ``moves``: myopic+'s expert moves (`placement.solvers.expert_moves.place_experts`) after
  the `pipeline-dp` plan's blocks, on 4 and 8 devices: seconds and experts moved.

Run: ``python benchmarks/bench_moe.py [evaluate|milp|moves]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np


def main() -> None:
    from placement import evaluate, solve
    from placement.experiments.moe_table import moe_instance
    from placement.plan import Placement

    parser = argparse.ArgumentParser()
    parser.add_argument("part", nargs="?", default="evaluate", choices=("evaluate", "milp", "moves"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.part != "evaluate":
        return (bench_milp if args.part == "milp" else bench_moves)(args.repeat)
    for model in ("qwen3-30b-a3b", "mixtral-8x7b"):
        inst = moe_instance(model, 8, args.tokens)
        plan = solve(inst, method="pipeline-dp").plan
        p = plan.intervals[0]
        E, N = inst.model.experts, inst.n_devices
        spread = np.where(inst.model.moe_layers[:, None], np.arange(E)[None, :] % N, -1)
        plans = {"experts with FFN": plan,
                 "experts over 8 devices": plan.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed,
                                                                              p.lm_head, None, spread)])}
        for name, candidate in plans.items():
            evaluate(inst, candidate)  # warm-up (routing outcomes are cached per holding)
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                evaluate(inst, candidate)
                times.append(time.perf_counter() - start)
            print(f"{model:14s} {name:24s} median {statistics.median(times) * 1e3:8.1f} ms over {args.repeat} runs")


def _median_s(run, repeat: int) -> tuple[float, object]:
    out = run()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_milp(repeat: int) -> None:
    """Seconds to build the MILP with expert patterns, and its size."""
    from placement.experiments.moe_table import WORKLOAD, moe_instance
    from placement.solvers.milp_model import build_formulation

    for model in ("mixtral-8x7b", "qwen3-30b-a3b"):
        for n in (4, 8):
            inst = moe_instance(model, n, WORKLOAD["generate_tokens"])
            steps = np.arange(inst.workload.generate_tokens)
            seconds, form = _median_s(lambda: build_formulation(inst, [0], {0: [steps]}), repeat)
            rows, cols = form.problem.shape
            print(f"{model:14s} {n} devices  build median {seconds:6.2f} s over {repeat} runs, {rows} rows, "
                  f"{cols} columns, {form.experts.z.size} pattern binaries ({form.experts.space.describe()})")


def bench_moves(repeat: int) -> None:
    """Seconds of myopic+'s expert moves after the pipeline-dp plan's blocks, and experts moved."""
    from placement import solve
    from placement.experiments.moe_table import WORKLOAD, moe_instance
    from placement.solvers.expert_moves import place_experts
    from placement.solvers.myopic_plus import DecisionPlus

    for model in ("mixtral-8x7b", "qwen3-30b-a3b"):
        for n in (4, 8):
            inst = moe_instance(model, n, WORKLOAD["generate_tokens"])
            decision = DecisionPlus(solve(inst, method="pipeline-dp").plan.intervals[0], "pipeline-dp", 0, 0.0, 0.0)
            seconds, out = _median_s(lambda: place_experts(inst, 0, decision, None, 8), repeat)
            p = out.placement
            moved = 0 if p.experts is None else int(((p.experts >= 0) & (p.experts != p.ffn.argmax(1)[:, None])).sum())
            print(f"{model:14s} {n} devices  expert moves median {seconds:6.2f} s over {repeat} runs, "
                  f"{moved} experts moved")


if __name__ == "__main__":
    main()
