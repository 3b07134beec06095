"""The myopic MILP: each interval solved exactly by the MILP's ``interval`` mode, knowing only the past (docs/milp.md, Modes)."""

from __future__ import annotations

import numpy as np

from placement.evaluate import evaluate
from placement.instance import Instance
from placement.options import Deadline
from placement.plan import Placement, Plan
from placement.result import Result
from placement.solvers.milp import solve_milp

__all__ = ["solve_myopic_milp"]


def solve_myopic_milp(instance: Instance, *, solver: str = "highs", gap: float = 1e-6,
                      time_limit: float | None = None, threads: int | None = None) -> Result:
    """The best a method looking one interval ahead can do: each interval solved exactly, knowing only the past.

    At every interval boundary the MILP's ``interval`` mode chooses the placement that
    minimizes that interval's cost (its decode steps, the migration into it, and the
    prefill for the first) given the placement before it; the placements are joined
    into one plan that the evaluator judges.

    Parameters
    ----------
    instance : Instance
    solver, gap, threads
        As for `solve_milp`.
    time_limit : float, optional
        Seconds for the whole call. Each decision gets an equal share of what is left;
        once time is up, the remaining intervals keep the last placement (status
        ``time_limit``).

    Returns
    -------
    Result
        Status ``feasible`` (each decision is optimal for its interval, the whole is
        not proven optimal), ``time_limit`` when a decision ran out of time, or
        ``infeasible``; ``stats["decision_times_s"]`` holds each interval's solve time.
    """
    placements: list[Placement] = []
    decision_s: list[float] = []
    worst = "feasible"
    deadline = Deadline.after(time_limit)
    I = instance.workload.n_intervals
    for k in range(I):
        if placements and deadline.expired:
            worst = "time_limit"
            placements.append(placements[-1])  # no time to decide: keep the placement (no migration)
            continue
        share = None if time_limit is None else deadline.remaining_s() / (I - k)
        result = solve_milp(instance, solver=solver, mode="interval", interval=k,
                            current=placements[-1] if placements else None, time_limit=share, gap=gap,
                            threads=threads)
        decision_s.append(result.solve_time_s)
        if result.plan is None:
            return Result(result.status, f"interval {k}: {result.message}", None, None, solve_time_s=sum(decision_s),
                          stats={"decision_times_s": decision_s})
        if result.status == "time_limit":
            worst = "time_limit"
        placements.append(result.plan.placement(k))
    plan = Plan(instance.cluster.names, placements, method="myopic-milp")
    report = evaluate(instance, plan)
    status = worst if report.feasible else "infeasible"
    message = f"{len(placements)} interval decisions, each optimal for its interval ({solver})"
    if not report.feasible:
        message = f"{message}; but {report.violations[0]}"
    return Result(status, message, plan, report, objective=report.total_s, solve_time_s=sum(decision_s),
                  stats={"decision_times_s": decision_s, "decision_time_median_s": float(np.median(decision_s))})
