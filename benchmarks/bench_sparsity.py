"""Speed of DeltaLLM sparsity (issue 19 part 1): the evaluator with and without it, and the quick table.

1. The evaluator on Llama-3.2-1B and BitNet-b1.58-2B-4T at an 8,192-token prompt with
   1,000 decode steps on the sparsity-table cluster, for the `pipeline-dp` plan, dense
   and with ``attention: {local_window: 256, delta_sparsity: 0.57}``: the option should
   cost nothing measurable (two array operations per table).
2. ``placement reproduce sparsity-table --quick --json`` end to end in a fresh process
   (the target: well under a minute).

Medians of `--repeat` runs (after one warm-up for the evaluator).
Run: ``python benchmarks/bench_sparsity.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings


def _median_s(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from placement import evaluate, solve
    from placement.experiments.sparsity_table import sparsity_instance

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--table-repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for model in ("llama-3.2-1b", "bitnet-b1.58-2b-4t"):
        plan = None
        for s in (0.0, 0.57):
            inst = sparsity_instance(model, 8192, s, generate_tokens=1000)
            plan = plan or solve(inst, method="pipeline-dp").plan
            evaluate(inst, plan)  # warm-up
            median = _median_s(lambda inst=inst: evaluate(inst, plan), args.repeat)
            print(f"evaluate {model:20s} s={s:<4g} median {median * 1e3:8.1f} ms over {args.repeat} runs")
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "placement.cli", "reproduce", "sparsity-table", "--quick", "--json",
                   "--out", out]
        median = _median_s(lambda: subprocess.run(command, check=True, capture_output=True, env=os.environ),
                           args.table_repeat)
    print(f"reproduce sparsity-table --quick: median {median:.1f} s over {args.table_repeat} runs")


if __name__ == "__main__":
    main()
