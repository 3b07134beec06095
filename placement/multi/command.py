"""``placement multi-solve``: solve a multi-model file with a joint method and print the evaluator's figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from placement.cost.units import format_bytes, format_seconds

__all__ = ["multi_solve", "multi_evaluate"]


def _print(result, multi, console: Console) -> None:
    console.print(f"[bold]{result.method}[/]: {result.status} in {format_seconds(result.solve_time_s)}: {result.message}")
    if result.report is not None:
        _print_report(result.report, multi, console, result.bound)


def _print_report(report, multi, console: Console, bound: float | None = None) -> None:
    table = Table(title=f"{multi.name}: {report.schedule} schedule, objective {multi.objective}", title_justify="left")
    for column in ("model", "alone", "finish", "weight"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, alone, finish, weight in zip(report.names, report.alone_s, report.finish_s, multi.weights):
        table.add_row(name, format_seconds(alone), format_seconds(finish), f"{weight:g}")
    console.print(table)
    console.print(f"makespan {format_seconds(report.makespan_s)}, weighted {format_seconds(report.weighted_s)}, "
                  f"resource lower bound {format_seconds(report.lower_bound_s)}"
                  + ("" if bound is None else f", MILP bound {format_seconds(bound)}"))
    memory = Table(title="memory per device (all models together)", title_justify="left")
    for column in ("device", "needed", "available", "busy"):
        memory.add_column(column, justify="left" if column == "device" else "right")
    for n, name in enumerate(report.devices):
        memory.add_row(name, format_bytes(report.needed_bytes[:, n].sum()), format_bytes(report.limit_bytes[n]),
                       format_seconds(report.busy_s[n]))
    console.print(memory)
    for violation in report.violations:
        console.print(f"[red]violation:[/] {violation}")


def multi_solve(
    instance: Annotated[str, typer.Argument(help="Multi-model file, or a shipped one such as ppn-2x2 (instances/parallel).")],
    method: Annotated[str, typer.Option("--method", "-m", help="sequential, disjoint, pipeline-dp, local-search, milp, best-response, best-response-milp, best-response-contention, best-response-priced, milp-head or myopic+.")] = "local-search",
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", help="Seconds (milp, milp-head; best-response*: the whole response loop; myopic+: its interval loop).")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the joint plan as JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Place several models on one shared cluster with a joint method (docs/parallel.md)."""
    from placement.files import check_output_path, json_ready, write_text_atomic
    from placement.multi import load_multi, solve

    if out_path is not None:
        check_output_path(out_path, inputs=(instance,))
    multi = load_multi(instance)
    result = solve(multi, method, **({} if time_limit is None else {"time_limit": time_limit}))
    if out_path is not None and result.plan is not None:
        write_text_atomic(out_path, json.dumps(result.plan.to_dict(multi.names), indent=1, allow_nan=False) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(json_ready({"instance": multi.name, **result.to_dict(multi.names)}), indent=1,
                                    allow_nan=False) + "\n")
    else:
        _print(result, multi, Console())
    if result.status in ("infeasible", "error"):
        raise typer.Exit(1)


def multi_evaluate(
    instance: Annotated[str, typer.Argument(help="Multi-model file, or a shipped one such as ppn-2x2.")],
    plan_path: Annotated[Path, typer.Argument(help="Joint plan JSON (from `multi-solve --out`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Judge a joint plan on a multi-model file with the multi-model evaluator (docs/parallel.md)."""
    from placement.files import json_ready, load_data_file
    from placement.multi import JointPlan, evaluate_joint, load_multi

    multi = load_multi(instance)
    report = evaluate_joint(multi, JointPlan.from_dict(load_data_file(plan_path, "joint plan"), multi))
    if as_json:
        sys.stdout.write(json.dumps(json_ready({"instance": multi.name, **report.to_dict()}), indent=1,
                                    allow_nan=False) + "\n")
    else:
        _print_report(report, multi, Console())
    if not report.feasible:
        raise typer.Exit(1)
