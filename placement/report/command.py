"""What ``placement report`` and the human ``placement solve`` output do, kept out of the CLI module."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from placement.instance import load_instance
from placement.plan import Plan
from placement.report.page import write_report
from placement.report.summary import bound_line, device_blocks, migrations
from placement.result import Result

__all__ = ["report_command", "print_solve_summary"]


def report_command(instance: str, plan: Path, out_path: Path) -> str:
    """Load an instance and a plan file and write the plan's report page.

    Parameters
    ----------
    instance : str
        Instance file or shipped name.
    plan : Path
        Plan JSON.
    out_path : Path
        HTML file to write.

    Returns
    -------
    str
        One line saying what was written.
    """
    inst = load_instance(instance, check_capacity=False)
    the_plan = Plan.from_json(plan, kv_heads=inst.model.kv_heads)
    write_report(out_path, inst, the_plan)
    return f"report of {the_plan.method or plan} on {inst.name} written to {out_path}"


def print_solve_summary(console: Console, instance, result: Result) -> None:
    """Print which blocks run on each device (interval 0), what moves later, and the bound and gap.

    Parameters
    ----------
    console : rich.console.Console
    instance : Instance
    result : Result
        With a plan.
    """
    plan = result.plan
    intervals = len(plan.intervals)
    title = "blocks per device" + ("" if plan.static else f" (interval 0 of {intervals})")
    table = Table(title=title, title_justify="left")
    table.add_column("device", no_wrap=True)
    table.add_column("blocks")
    for name, blocks in device_blocks(instance, plan, 0).items():
        table.add_row(name, blocks)
    console.print(table)
    if result.report is not None:
        moves = migrations(instance, plan, result.report.migration_s)
        if moves:
            console.print(f"{len(moves)} boundary(ies) move blocks, first before step {moves[0]['step']}: "
                          + "; ".join(moves[0]["moves"]))
    console.print(bound_line(result.objective, result.bound, result.gap), highlight=False)
