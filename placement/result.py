"""The result every back end returns, and its vocabulary of statuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from placement.evaluate import Report
from placement.plan import Plan

__all__ = ["Result", "STATUSES", "judged"]

# optimal: proven optimal; feasible: a valid plan, optimality not proven; time_limit: stopped by
# the time limit (the incumbent, if any, is in `plan`); infeasible: no plan fits; error: the back
# end failed (the message says why).
STATUSES = ("optimal", "feasible", "time_limit", "infeasible", "error")


@dataclass(frozen=True, eq=False)
class Result:
    """What `placement.solve` returns, whatever the back end.

    Attributes
    ----------
    status : {"optimal", "feasible", "time_limit", "infeasible", "error"}
    message : str
        Readable explanation (the back end's raw status code is kept here).
    plan : Plan or None
        The plan found (None when there is none).
    report : Report or None
        The evaluator's judgement of `plan`: the one truth for every figure.
    objective : float or None
        What the back end believed the total latency to be, seconds; equals
        ``report.total_s`` for every back end (a test checks this).
    bound : float or None
        Best lower bound on the objective, seconds, where the back end has one.
    solve_time_s : float
        Wall-clock time of the back end.
    stats : dict
        Back-end statistics (nodes, iterations, model size, ...).
    """

    status: str
    message: str
    plan: Plan | None
    report: Report | None
    objective: float | None = None
    bound: float | None = None
    solve_time_s: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; statuses are {', '.join(STATUSES)}")

    @property
    def gap(self) -> float | None:
        """Relative gap ``(objective - bound) / objective`` where a bound exists."""
        if self.objective is None or self.bound is None or self.objective == 0:
            return None
        return max(0.0, (self.objective - self.bound) / self.objective)

    @property
    def success(self) -> bool:
        """True when `plan` is a valid plan (status optimal or feasible, or a time limit with an incumbent)."""
        return self.plan is not None and self.report is not None and self.report.feasible

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: status, message, figures and the plan."""
        return {
            "status": self.status,
            "message": self.message,
            "objective_s": self.objective,
            "bound_s": self.bound,
            "gap": self.gap,
            "solve_time_s": self.solve_time_s,
            "stats": self.stats,
            "report": None if self.report is None else self.report.to_dict(),
            "plan": None if self.plan is None else self.plan.to_dict(),
        }


def judged(instance, plan: Plan, note: str, stats: dict[str, Any], why: str = "") -> Result:
    """The evaluator's verdict on a heuristic's `plan`: ``feasible``, or ``infeasible`` naming the worst violation.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    note : str
        What the back end did; the message.
    stats : dict
        Back-end statistics, kept in the result.
    why : str
        A reason the back end knows for an overflow, put before the worst violation.

    Returns
    -------
    Result
        With the evaluator's report and ``objective = report.total_s``.
    """
    from placement.evaluate import evaluate

    report = evaluate(instance, plan)
    if report.feasible:
        return Result("feasible", note, plan, report, objective=report.total_s, stats=stats)
    worst = max(report.violations, key=lambda v: v.over_bytes)
    return Result("infeasible", f"{note}, but it does not fit: {why}{worst}", plan, report,
                  objective=report.total_s, stats=stats)
