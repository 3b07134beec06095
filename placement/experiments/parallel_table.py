"""`placement reproduce parallel-table`: several models on one cluster, joint methods against the baselines.

Cases (the shipped multi-model files, ``instances/parallel``): two LLMs (Llama 3.2 1B
and 3B) on four Raspberry Pi 5 boards; a draft and a target model on six mixed edge
devices over shared Wi-Fi; three LLMs on eight edge devices with the weighted
objective; and PPN's own case, two identical networks on two identical devices, where
running them side by side halves the sequential makespan. Every case is solved by
every joint method (`placement.multi.METHODS`); ``objective_s`` is the case's
objective (makespan or weighted sum), ``speedup`` the sequential baseline's objective
over the method's, ``lower_bound_s`` the plan's own resource bound on its makespan, and
``milp_bound_s`` the joint MILP's bound on the objective of every concurrent layer plan. Outputs: ``parallel-table.csv``,
``parallel-table.md`` and ``config.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from placement.experiments.output import versions, write_json, write_rows_csv
from placement.files import load_data_file, write_text_atomic

__all__ = ["reproduce_parallel_table", "CASES"]

CASES = ("1b-3b-4dev", "draft-target-6dev", "three-llms-8dev", "three-llms-8dev-weighted", "ppn-2x2", "short-long-2dev")
QUICK = {"generate_tokens": 64, "time_limit": 10.0}
COLUMNS = ("case", "models", "devices", "objective", "method", "schedule", "status", "objective_s", "makespan_s",
           "weighted_s", "speedup", "lower_bound_s", "milp_bound_s", "solve_time_s")


def _case(name: str, quick: bool):
    """The shipped case `name`; ``quick``: every model generates at most `QUICK` tokens."""
    from placement.multi.instance import multi_from_dict, multi_instances_dir

    path = multi_instances_dir() / f"{name}.yaml"
    data = load_data_file(path, "multi-model instance")
    if quick:
        for entry in data["models"]:
            entry["workload"]["generate_tokens"] = min(entry["workload"]["generate_tokens"], QUICK["generate_tokens"])
    return multi_from_dict(data, source=name, base=path.parent)


def _rows(name: str, multi, time_limit: float) -> list[dict[str, Any]]:
    from placement.multi import METHODS, solve

    rows, sequential = [], None
    for method in METHODS:
        start = time.perf_counter()
        result = solve(multi, method, **({"time_limit": time_limit} if method in ("milp", "milp-head") else {}))
        seconds = time.perf_counter() - start
        report = result.report
        if method == "sequential":
            sequential = result.objective
        rows.append({
            "case": name, "models": " + ".join(multi.names), "devices": multi.n_devices, "objective": multi.objective,
            "method": method, "schedule": result.plan.schedule if result.plan else "", "status": result.status,
            "objective_s": result.objective, "makespan_s": report.makespan_s if report else None, "weighted_s": report.weighted_s if report else None,
            "speedup": sequential / result.objective if sequential and result.objective else None,
            "lower_bound_s": report.lower_bound_s if report else None, "milp_bound_s": result.bound, "solve_time_s": seconds,
        })
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def reproduce_parallel_table(*, quick: bool = False, out_dir: Path | str = "results/parallel-table",
                             cases: tuple[str, ...] = CASES,
                             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Solve every case with every joint method and write the table.

    Parameters
    ----------
    quick : bool
        At most 64 generated tokens per model and a 10 s MILP time limit (instead of 30 s).
    out_dir : Path or str
    cases : tuple of str
        Shipped multi-model files (`CASES`).
    progress : callable, optional
        Called with (cases done, cases in all).

    Returns
    -------
    dict
        ``rows`` (one per case and method: ``case``, ``method``, ``makespan_s``, ...) and the output ``paths``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    time_limit = QUICK["time_limit"] if quick else 30.0
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(cases):
        rows += _rows(name, _case(name, quick), time_limit)
        if progress is not None:
            progress(i + 1, len(cases))
    paths = {"csv": out / "parallel-table.csv", "markdown": out / "parallel-table.md", "config": out / "config.json"}
    write_rows_csv(paths["csv"], rows, list(COLUMNS))
    write_text_atomic(paths["markdown"], _markdown(rows))
    write_json(paths["config"], {"quick": quick, "cases": list(cases), "milp_time_limit_s": time_limit,
                                 "versions": versions()})
    return {"rows": rows, "paths": {k: str(v) for k, v in paths.items()}}
