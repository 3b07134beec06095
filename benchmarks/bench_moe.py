"""Speed of the evaluator on MoE models with placed experts (issue 17).

Qwen3-30B-A3B (48 MoE layers of 128 experts, top-8) and Mixtral-8x7B at 4 bits on the
8-device moe-table cluster, a 1,000-token generation (prompt 64, one interval): the
evaluator's time for the `pipeline-dp` plan (experts with their FFN) and for the same
plan with every layer's experts spread over all 8 devices (the exact expectation over up to 6,435 routing outcomes per layer). Median of
`--repeat` runs after one warm-up. Run: ``python benchmarks/bench_moe.py``.
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
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
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


if __name__ == "__main__":
    main()
