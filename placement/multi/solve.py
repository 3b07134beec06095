"""One entry to the joint methods: `placement.multi.solve(multi, method=...)`.

Every method returns a `MultiResult` whose verdict the multi-model evaluator owns
(`check`): the objective is the evaluator's figure for the returned joint plan, and a
plan that overflows a device's shared memory is ``infeasible``. Methods:

- ``sequential``, ``disjoint``: the baselines (`placement.multi.baselines`);
- ``pipeline-dp``: the best of both baselines and of every model's exact layer
  pipeline under a split of each device's memory (`budget_split_plans`);
- ``local-search``: ``pipeline-dp``'s best concurrent plan improved by single-model
  moves (`placement.multi.search`);
- ``milp``: the joint MILP (`placement.multi.milp`) for a plan and a lower bound,
  then the best of its plan and ``local-search``'s;
- ``best-response``, ``best-response-milp``: head-level joint plans, each model
  re-placed in turn by the single-model ``myopic+`` or ``milp`` under the memory the
  others leave (`placement.multi.response`), from the best concurrent plan after
  ``local-search``;
- ``best-response-contention``, ``best-response-priced``: the same loop with responses
  that see the others' busy time: the head-level MILP with the others as data, or
  ``myopic+`` and ``pipeline-dp`` on devices slowed by the others' share;
- ``milp-head``: the head-level joint MILP (`placement.multi.head_milp`) for a plan and
  a lower bound valid for every concurrent head-level joint plan, then the best of its
  plan, the layer ``milp``'s, ``local-search``'s and a ``best-response-contention`` loop
  from the best of them.
- ``myopic+``: the single-model ``myopic+`` placed jointly, interval by interval: each
  model switched to its ``myopic+`` placements from an interval on, or for one interval
  (`placement.multi.intervals`), from the best concurrent plan after ``local-search``.

Each joint method starts from both baselines and keeps the best plan it has seen, so
it is never worse than the better baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from placement.errors import InputError
from placement.multi.baselines import Budgeted, budget_split_plans, disjoint_plan, sequential_plan
from placement.multi.chains import layer_plan
from placement.multi.evaluate import JointPlan, JointReport, evaluate_joint, model_tables
from placement.multi.head_milp import head_terms, solve_head_milp
from placement.multi.instance import MultiInstance
from placement.multi.intervals import interval_search
from placement.multi.milp import joint_milp
from placement.multi.response import best_response
from placement.multi.search import local_search
from placement.result import relative_gap

__all__ = ["solve", "MultiResult", "METHODS"]

METHODS = {
    "sequential": {},
    "disjoint": {"max_exact_devices": 6},
    "pipeline-dp": {"max_exact_devices": 6},
    "local-search": {"max_exact_devices": 6, "max_rounds": 20},
    "milp": {"max_exact_devices": 6, "max_rounds": 20, "time_limit": 30.0},
    "best-response": {"max_exact_devices": 6, "max_rounds": 20, "response_rounds": 3, "time_limit": None},
    "best-response-milp": {"max_exact_devices": 6, "max_rounds": 20, "response_rounds": 3, "time_limit": None},
    "best-response-contention": {"max_exact_devices": 6, "max_rounds": 20, "response_rounds": 3, "time_limit": None},
    "best-response-priced": {"max_exact_devices": 6, "max_rounds": 20, "response_rounds": 3, "time_limit": None},
    "milp-head": {"max_exact_devices": 6, "max_rounds": 20, "response_rounds": 3, "time_limit": 30.0},
    "myopic+": {"max_exact_devices": 6, "max_rounds": 20, "response_rounds": 3, "time_limit": None},
}
RESPONSE_SOLVERS = {"best-response": "myopic+", "best-response-milp": "milp", "best-response-contention": "contention",
                    "best-response-priced": "priced", "milp-head": "contention"}


@dataclass(frozen=True, eq=False)
class MultiResult:
    """What `solve` returns for a multi-model instance.

    Attributes
    ----------
    status : {"optimal", "feasible", "infeasible", "error"}
    message : str
    plan : JointPlan or None
    report : JointReport or None
        The multi-model evaluator's judgement of `plan`.
    objective : float or None
        The evaluator's figure of the instance's objective (makespan or weighted sum), seconds.
    bound : float or None
        ``milp``: a lower bound on the objective of every concurrent joint layer plan that fits;
        ``milp-head``: of every concurrent head-level joint plan that fits (layer plans among them), seconds.
    solve_time_s : float
    stats : dict
        ``candidates`` (joint plans compared), ``dp_calls`` (single-model DPs), and per method
        ``iterations``, ``evaluations``, ``milp_status`` (``infeasible``: no concurrent layer
        plan fits the shared memory) and ``milp_message``.
    method : str
    """

    status: str
    message: str
    plan: JointPlan | None
    report: JointReport | None
    objective: float | None = None
    bound: float | None = None
    solve_time_s: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    method: str = ""

    @property
    def gap(self) -> float | None:
        """``(objective - bound) / objective`` where a bound exists (`placement.result.relative_gap`)."""
        return relative_gap(self.objective, self.bound)

    def to_dict(self, names: tuple[str, ...]) -> dict[str, Any]:
        """JSON-ready: status, message, figures, the report and the joint plan."""
        return {"method": self.method, "status": self.status, "message": self.message, "objective_s": self.objective,
                "bound_s": self.bound, "gap": self.gap, "solve_time_s": self.solve_time_s, "stats": self.stats,
                "report": None if self.report is None else self.report.to_dict(),
                "plan": None if self.plan is None else self.plan.to_dict(names)}


def _best(multi: MultiInstance, candidates: list[JointPlan], tables) -> tuple[JointPlan | None, JointReport | None]:
    """The feasible candidate with the least objective (the first on ties)."""
    best, best_report = None, None
    for plan in candidates:
        report = evaluate_joint(multi, plan, tables)
        if report.feasible and (best_report is None or report.objective(multi.objective) < best_report.objective(multi.objective)):
            best, best_report = plan, report
    return best, best_report


def _start(multi: MultiInstance, method: str, b: Budgeted, max_exact_devices: int) -> list[JointPlan]:
    """The candidates every method compares: its baselines, and for joint methods the memory-budget splits."""
    plans = []
    if method != "disjoint":
        plans.append(sequential_plan(b))
    if method != "sequential":
        plans.append(disjoint_plan(b, max_exact_devices))
    if method not in ("sequential", "disjoint"):
        plans += budget_split_plans(b)
    return [p for p in plans if p is not None]


def _concurrent_best(multi: MultiInstance, candidates: list[JointPlan], tables) -> JointPlan | None:
    """The best feasible ``concurrent`` candidate: the start of every improving stage."""
    return _best(multi, [p for p in candidates if p.schedule == "concurrent"], tables)[0]


# Every stage takes (multi, method, candidates so far, tables, options) and returns the joint plans it
# adds, a lower bound (None: none) and its stats; `_run` runs a method's stages in `STAGES` order.

def _layer_milp_stage(multi: MultiInstance, method: str, candidates, tables, options) -> tuple[list, float | None, dict]:
    """The joint layer MILP's plan; its bound only for ``milp`` (milp-head's plans need not be layer plans)."""
    devices, bound, status, message = joint_milp(multi, time_limit=options["time_limit"])
    plans = [] if devices is None else [JointPlan(tuple(layer_plan(inst, d, "milp") for inst, d in zip(multi.instances, devices)),
                                                  "concurrent", method="milp")]
    return plans, bound if method == "milp" else None, {"milp_status": status, "milp_message": message}


def _local_search_stage(multi: MultiInstance, method: str, candidates, tables, options) -> tuple[list, None, dict]:
    """`local_search` from the best concurrent candidate."""
    start = _concurrent_best(multi, candidates, tables)
    if start is None:
        return [], None, {}
    improved, _, stats = local_search(multi, start, tables, max_rounds=options["max_rounds"])
    return [improved], None, stats


def _head_milp_stage(multi: MultiInstance, method: str, candidates, tables, options) -> tuple[list, float | None, dict]:
    """The head-level joint MILP over every model: a plan and a bound valid for every concurrent head-level plan."""
    terms = tuple(head_terms(inst) for inst in multi.instances)
    found = solve_head_milp(multi, tuple(range(multi.n_models)), terms, time_limit=options["time_limit"])
    plans = [] if found.plans is None else [JointPlan(found.plans, "concurrent", method="milp-head")]
    return plans, found.bound_s, {"milp_status": found.status, "milp_message": found.message}


def _response_stage(multi: MultiInstance, method: str, candidates, tables, options) -> tuple[list, None, dict]:
    """`best_response` with the method's responder from the best concurrent candidate."""
    start = _concurrent_best(multi, candidates, tables)
    if start is None:
        return [], None, {}
    improved, _, stats = best_response(multi, start, tables, RESPONSE_SOLVERS[method],
                                       max_rounds=options["response_rounds"], time_limit=options["time_limit"])
    return [improved], None, stats


def _interval_stage(multi: MultiInstance, method: str, candidates, tables, options) -> tuple[list, None, dict]:
    """`interval_search` (the joint ``myopic+``) from the best concurrent candidate."""
    start = _concurrent_best(multi, candidates, tables)
    if start is None:
        return [], None, {}
    improved, _, stats = interval_search(multi, start, tables, max_rounds=options["response_rounds"],
                                         time_limit=options["time_limit"])
    return [improved], None, stats


STAGES = {"sequential": (), "disjoint": (), "pipeline-dp": (), "local-search": (_local_search_stage,),
          "milp": (_layer_milp_stage, _local_search_stage), "myopic+": (_local_search_stage, _interval_stage),
          **{m: (_local_search_stage, _response_stage) for m in RESPONSE_SOLVERS},
          "milp-head": (_layer_milp_stage, _local_search_stage, _head_milp_stage, _response_stage)}


def _run(multi: MultiInstance, method: str, options: dict[str, Any]) -> tuple[JointPlan | None, float | None, dict]:
    """The method's stages in order, each adding candidates; the best feasible candidate, a bound, the stats."""
    tables = model_tables(multi)
    b = Budgeted(multi, tables)
    candidates = _start(multi, method, b, options.get("max_exact_devices", 6))
    stats: dict[str, Any] = {}
    bound = None
    for stage in STAGES[method]:
        plans, stage_bound, stage_stats = stage(multi, method, candidates, tables, options)
        if stage is _head_milp_stage and "milp_status" in stats:  # keep the layer MILP's status beside the head MILP's
            stats["layer_milp_status"] = stats["milp_status"]
        candidates += plans
        bound = stage_bound if stage_bound is not None else bound
        stats |= stage_stats
    best, _ = _best(multi, candidates, tables)
    stats |= {"candidates": len(candidates), "dp_calls": b.calls}
    if best is None and candidates:
        best = candidates[0]  # nothing fits: the first candidate, for its diagnosis
    return best, bound, stats


def check(multi: MultiInstance, result: MultiResult) -> MultiResult:
    """The verdict: evaluate the result's plan; a plan that overflows shared memory is ``infeasible``.

    Parameters
    ----------
    multi : MultiInstance
    result : MultiResult

    Returns
    -------
    MultiResult
        With the evaluator's report and objective; ``optimal`` only when a bound meets the objective.
    """
    if result.plan is None:
        return replace(result, status="infeasible" if result.status != "error" else "error", report=None, objective=None)
    report = evaluate_joint(multi, result.plan)
    objective = report.objective(multi.objective)
    status, message = "feasible", result.message
    if not report.feasible:
        status = "infeasible"
        message = f"{message}, but it does not fit: {max(report.violations, key=lambda v: v.needed_bytes - v.available_bytes)}"
    elif result.bound is not None and result.plan.schedule == "concurrent" and objective <= result.bound * (1 + 1e-9):
        status = "optimal"
    return replace(result, status=status, message=message, report=report, objective=objective)


def solve(multi: MultiInstance, method: str = "local-search", **options: Any) -> MultiResult:
    """Place every model of `multi` on the shared cluster with the joint method `method`.

    Parameters
    ----------
    multi : MultiInstance
    method : str
        One of `METHODS`.
    **options
        ``max_exact_devices`` (disjoint split by enumeration up to this many devices),
        ``max_rounds`` (local-search passes), ``time_limit`` (seconds: milp and milp-head's MILP;
        best-response*'s and milp-head's whole response loop; myopic+'s interval loop), ``response_rounds`` (best-response and myopic+ passes over the models).

    Returns
    -------
    MultiResult
        Judged by `placement.multi.evaluate.evaluate_joint`.

    Raises
    ------
    InputError
        On an unknown method or option.

    Examples
    --------
    >>> from placement.multi import load_multi
    >>> result = solve(load_multi("ppn-2x2"), method="disjoint")
    >>> result.status, result.plan.schedule
    ('feasible', 'concurrent')
    """
    if method not in METHODS:
        raise InputError(f"unknown joint method {method!r}; methods: {', '.join(METHODS)}")
    unknown = sorted(set(options) - set(METHODS[method]))
    if unknown:
        known = ", ".join(METHODS[method]) or "none"
        raise InputError(f"joint method {method!r} takes no option {', '.join(map(repr, unknown))}; its options: {known}")
    merged = {**METHODS[method], **{k: v for k, v in options.items() if v is not None}}
    limit = merged.get("time_limit")
    if limit is not None and not (isinstance(limit, (int, float)) and np.isfinite(limit) and limit >= 0):
        raise InputError(f"joint method {method!r}: `time_limit` must be a number of seconds ≥ 0, got {limit!r}")
    start = time.perf_counter()
    plan, bound, stats = _run(multi, method, merged)
    seconds = time.perf_counter() - start
    note = ("no joint plan: a model fits in no device set or memory share this method tries" if plan is None
            else f"{plan.method} ({plan.schedule})")
    result = MultiResult("feasible", note, plan, None, bound=bound, solve_time_s=seconds, stats=stats, method=method)
    return check(multi, result)
