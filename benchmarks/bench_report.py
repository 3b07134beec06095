"""Benchmark the HTML report and the export: ``python benchmarks/bench_report.py [repeats]``.

Times `report_html` (the whole page: the evaluator's report given, plus the ideal-network
evaluation and one timeline per interval) and `export_plan`, median of several runs.
Target: the report of Llama 3.1 8B on 8 devices with 32 intervals in under 2 s.
"""

import platform
import statistics
import sys
import time

import placement
from placement.export import export_plan
from placement.report import report_html


def _median(function, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main(repeats: int) -> None:
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, median of {repeats}")
    cases = [("edge/llama-3.1-8b-8dev", "myopic+"), ("edge/llama-3.2-1b-4dev", "pipeline"),
             ("paper-small/h16-5dev-medium-s1-roofline", "myopic")]
    for name, method in cases:
        instance = placement.load_instance(name)
        result = placement.solve(instance, method=method)
        median, best = _median(lambda: report_html(instance, result.plan, report=result.report, result=result), repeats)
        size = len(report_html(instance, result.plan, report=result.report)) / 2**20
        print(f"report {name} ({method}, {len(result.plan.intervals)} intervals, {size:.2f} MiB)"
              f"  median {median * 1e3:8.1f} ms  min {best * 1e3:8.1f} ms")
    instance = placement.load_instance("edge/llama-3.1-8b-8dev")
    plan = placement.solve(instance, method="pipeline").plan
    median, best = _median(lambda: export_plan(instance, plan, "llama.cpp"), repeats)
    print(f"export edge/llama-3.1-8b-8dev to llama.cpp  median {median * 1e3:8.3f} ms  min {best * 1e3:8.3f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
