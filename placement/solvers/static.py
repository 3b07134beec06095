"""The ``static`` back end: another method's first-interval plan, kept for the whole generation.

It composes another back end through `placement.solve` (so that the inner result is
judged like any other); no back end imports this module.
"""

from __future__ import annotations

from typing import Any

from placement.errors import InputError
from placement.instance import Instance
from placement.result import Result, judged
from placement.solve import solve

__all__ = ["solve_static"]


def solve_static(instance: Instance, *, base: str = "milp", time_limit: float | None = 60.0) -> Result:
    """The first interval's plan of another method, kept for the whole generation.

    For ``milp`` the first interval is solved on its own
    (``placement.solve(instance, method="milp", mode="interval", interval=0, **options)``:
    the best placement for the prefill and the first ``τ`` tokens, memory judged at
    that interval's end); for any other method its plan's first placement is taken.
    That placement is then evaluated as a static plan over every decode step, so it
    may run out of memory later as the KV caches grow (status ``infeasible``).

    Parameters
    ----------
    instance : Instance
    base : str
        The method whose first-interval plan is kept (any of `placement.METHODS` but
        ``static``).
    time_limit : float or None
        Seconds for the MILP's first-interval solve (``base="milp"``); default 60.

    Returns
    -------
    Result
        ``feasible`` or ``infeasible``; objective = the evaluator's total, seconds;
        the inner method's status when it gives no plan. ``stats``:
        ``decision_time_s`` (the inner solve), ``inner_status``, ``inner_stats``.

    Raises
    ------
    InputError
        For ``base="static"``.
    """
    key = base.lower()
    if key == "static":
        raise InputError("`base` of `static` must be another method, not 'static'")
    if key == "milp":
        inner = solve(instance, method="milp", mode="interval", interval=0, time_limit=time_limit)
    else:
        inner = solve(instance, method=key)
    stats: dict[str, Any] = {"decision_time_s": inner.solve_time_s, "inner_status": inner.status,
                             "inner_stats": inner.stats}
    if inner.plan is None:
        status = inner.status if inner.status in ("infeasible", "error", "time_limit") else "error"
        return Result(status, f"{key} gave no first-interval plan: {inner.message}", None, None, stats=stats)
    plan = inner.plan.replace(intervals=[inner.plan.intervals[0]], method="static",
                              extras={**inner.plan.extras, "static_of": key})
    return judged(instance, plan, f"{key}'s first-interval plan ({inner.status}) kept for all "
                  f"{instance.workload.generate_tokens} tokens", stats)
