"""The result every back end returns, its vocabulary of statuses and of statistics.

A back end returns a `Result` with its plan, its status, the objective it believed
(`Result.backend_objective`), its bound and its statistics; `placement.solve` then
judges the plan with the evaluator (`check_result`, as scipy's ``_check_result`` does
for ``minimize``): `Result.objective` becomes the evaluator's total, and a plan that
violates memory, an energy budget or an error target the back end was given is
downgraded to ``infeasible``. `Result.success` follows from the status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from placement.errors import PlanError
from placement.evaluate import Report, evaluate
from placement.plan import Plan

__all__ = ["Result", "STATUSES", "STATS", "judged", "check_result", "relative_gap"]

# optimal: proven optimal; feasible: a valid plan, optimality not proven; time_limit: stopped by
# the time limit (the incumbent, if any, is in `plan`); infeasible: no plan fits; error: the back
# end failed (the message says why).
STATUSES = ("optimal", "feasible", "time_limit", "infeasible", "error")

# Statistics that mean the same thing have one name in every back end's `Result.stats`.
STATS: dict[str, str] = {
    "decision_time_s": "seconds spent deciding the plan (without the final evaluation)",
    "decision_times_s": "online methods: seconds of every interval's decision, in order",
    "decision_time_median_s": "online methods: median of `decision_times_s`",
    "decision_time_max_s": "online methods: largest of `decision_times_s`",
    "solver": "the MILP solver used (highs, cbc, ortools)",
    "iterations": "iterations of the back end's outer loop (SSCA steps, local-search rounds)",
    "nodes": "branch-and-bound nodes the MILP solver explored",
    "refinements": "times the MILP model was refined after the evaluator disagreed with it",
}

# An error figure meets its target up to rounding (the figure is recomputed from the stored design).
_TARGET_RTOL = 1e-9


def relative_gap(objective: float | None, bound: float | None) -> float | None:
    """``(objective - bound) / objective``, at least 0; None without a bound or a nonzero objective.

    Parameters
    ----------
    objective, bound : float or None
        Seconds.

    Returns
    -------
    float or None
    """
    if objective is None or bound is None or objective == 0:
        return None
    return max(0.0, (objective - bound) / objective)

@dataclass(frozen=True, eq=False, repr=False)
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
        The evaluator's total latency of `plan` (``report.total_s``), seconds.
    bound : float or None
        Best lower bound on the objective, seconds, where the back end has one.
    solve_time_s : float
        Wall-clock time of the back end.
    stats : dict
        Back-end statistics; names shared by several back ends are those of `STATS`.
    backend_objective : float or None
        The total latency the back end itself believed its plan has, seconds (its
        model's value); None for a back end that builds a plan without predicting it.
        Exact back ends (``milp``, ``pipeline-dp``, ``split``) believe the evaluator's
        figure; docs/methods.md states the relation for each back end.
    targets : dict of str to float
        Upper limits on the report's error figures (``report.errors``) that the back end
        was asked to meet, e.g. ``{"allreduce_mse": 1e-3}``; `check_result` enforces them.
    """

    status: str
    message: str
    plan: Plan | None
    report: Report | None
    objective: float | None = None
    bound: float | None = None
    solve_time_s: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    backend_objective: float | None = None
    targets: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; statuses are {', '.join(STATUSES)}")

    @property
    def gap(self) -> float | None:
        """Relative gap ``(objective - bound) / objective`` where a bound exists (`relative_gap`)."""
        return relative_gap(self.objective, self.bound)

    @property
    def success(self) -> bool:
        """True when the status says `plan` is a valid plan: optimal, feasible, or a time limit with an incumbent."""
        return self.status in ("optimal", "feasible") or (self.status == "time_limit" and self.plan is not None)

    def __repr__(self) -> str:
        seconds = lambda x: "None" if x is None else f"{x:.6g} s"  # noqa: E731
        plan = "None" if self.plan is None else (
            f"<Plan {self.plan.method!r}: {len(self.plan.intervals)} interval(s), {len(self.plan.devices)} device(s)>")
        message = self.message if len(self.message) <= 80 else self.message[:77] + "..."
        return (f"Result(status={self.status!r}, objective={seconds(self.objective)}, "
                f"backend_objective={seconds(self.backend_objective)}, bound={seconds(self.bound)}, "
                f"solve_time={seconds(self.solve_time_s)}, plan={plan}, message={message!r})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: status, message, figures and the plan."""
        return {
            "status": self.status,
            "message": self.message,
            "success": self.success,
            "objective_s": self.objective,
            "backend_objective_s": self.backend_objective,
            "bound_s": self.bound,
            "gap": self.gap,
            "solve_time_s": self.solve_time_s,
            "stats": self.stats,
            "report": None if self.report is None else self.report.to_dict(),
            "plan": None if self.plan is None else self.plan.to_dict(),
        }


def judged(instance, plan: Plan, note: str, stats: dict[str, Any], why: str = "",
           backend_objective: float | None = None) -> Result:
    """A heuristic's `plan` with the evaluator's verdict: ``feasible``, or ``infeasible`` naming the worst violation.

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
    backend_objective : float, optional
        The total latency the back end predicted, seconds.

    Returns
    -------
    Result
        With the evaluator's report and ``objective = report.total_s``.
    """
    report = evaluate(instance, plan)
    if report.feasible:
        return Result("feasible", note, plan, report, objective=report.total_s, stats=stats,
                      backend_objective=backend_objective)
    worst = max(report.violations, key=lambda v: v.over_bytes)
    return Result("infeasible", f"{note}, but it does not fit: {why}{worst}", plan, report,
                  objective=report.total_s, stats=stats, backend_objective=backend_objective)


def _violations(report: Report, targets: dict[str, float]) -> list[str]:
    """What `report` violates: memory, an energy budget, an error target (one line each)."""
    found = []
    if report.violations:
        found.append(f"it does not fit: {max(report.violations, key=lambda v: v.over_bytes)}")
    if report.errors.get("energy_over_j", 0.0) > 0:
        found.append(f"a device's computing exceeds its energy per token by {report.errors['energy_over_j']:.3g} J")
    for name, limit in targets.items():
        value = report.errors.get(name)
        if value is not None and value > limit * (1 + _TARGET_RTOL):
            found.append(f"{name} {value:.3g} misses the target {limit:.3g}")
    return found


def check_result(instance, result: Result, solve_time_s: float) -> Result:
    """The verdict on a back end's result: evaluate its plan, downgrade the status on any violation.

    Parameters
    ----------
    instance : Instance
    result : Result
        As the back end returned it.
    solve_time_s : float
        Wall-clock seconds the back end took.

    Returns
    -------
    Result
        With the evaluator's report and objective; status ``infeasible`` (the message
        naming every violation) when the plan violates memory, an energy budget or a
        target in ``result.targets`` while the back end claimed a valid plan; ``error``
        when it claimed one without a plan, or gave a plan the evaluator rejects.
    """
    if result.plan is None:
        status = "error" if result.status in ("optimal", "feasible") else result.status
        message = result.message if status == result.status else f"{result.message} (the back end gave no plan)"
        return replace(result, status=status, message=message, report=None, objective=None, solve_time_s=solve_time_s)
    try:
        report = evaluate(instance, result.plan)
    except PlanError as exc:
        return replace(result, status="error", message=f"{result.message}; the evaluator rejects its plan: {exc}",
                       report=None, objective=None, solve_time_s=solve_time_s)
    status, message = result.status, result.message
    problems = _violations(report, result.targets)
    if problems and status in ("optimal", "feasible", "time_limit"):
        status = "infeasible"
        message = f"{message}, but " + "; ".join(p for p in problems if p not in message)
    return replace(result, status=status, message=message, report=report, objective=report.total_s,
                   solve_time_s=solve_time_s)
