"""Joint plans that re-partition at interval boundaries: the single-model ``myopic+`` placed jointly.

A model whose workload has re-decision intervals may change its placement at every
boundary (paying the evaluator's migration). Jointly that matters: when one model
finishes early, or its context grows, another can spread over the devices it leaves.
`interval_search` starts from a concurrent joint plan and, for every model, gathers
alternatives from the single-model ``myopic+`` (which re-decides every interval,
`placement.solvers.myopic_plus`):

- its plan under the memory the other models' current plans leave (`memory_left`);
- its plan with the cluster to itself (the placement it would choose alone).

It then tries, model by model and interval by interval, to switch the model to an
alternative *from that interval on* (a re-partition) or *for that interval only*; a
switch is kept when the joint evaluator (`placement.multi.evaluate.evaluate_joint`,
migration included) finds the joint plan fits and its objective improves. Passes
repeat until nothing improves. The result is never worse than the start.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from placement.errors import PlanError
from placement.instance import Instance
from placement.multi.evaluate import JointPlan, JointReport, evaluate_joint
from placement.multi.instance import MultiInstance
from placement.multi.response import memory_left
from placement.plan import Placement, Plan
from placement.solve import solve

__all__ = ["interval_search", "per_interval"]

_IMPROVE_RTOL = 1e-9  # a switch must gain more than rounding


def per_interval(instance: Instance, plan: Plan) -> list[Placement]:
    """A plan's placement of every re-decision interval of `instance` (a static plan repeated).

    Parameters
    ----------
    instance : Instance
    plan : Plan

    Returns
    -------
    list of Placement
        ``instance.workload.n_intervals`` entries.
    """
    return [plan.placement(k) for k in range(instance.workload.n_intervals)]


def _with(plan: Plan, placements: list[Placement], method: str) -> Plan:
    """`plan` with these placements (one when they are all the same object: a static plan)."""
    static = all(p is placements[0] for p in placements)
    return replace(plan, intervals=placements[:1] if static else list(placements), method=method)


def _alternatives(multi: MultiInstance, report: JointReport, m: int, cache: dict,
                  deadline: float | None) -> list[list[Placement]]:
    """Model ``m``'s ``myopic+`` plans under the memory the others leave and alone, per interval.

    `cache` keeps every solve by model and the others' bytes (the plan alone: by model); no
    solve starts after `deadline` (`time.perf_counter`).
    """
    inst = multi.instances[m]
    others = report.needed_bytes.sum(axis=0) - report.needed_bytes[m]
    out = []
    for key, instance in (((m, others.tobytes()), memory_left(inst, others)), ((m,), inst)):
        if key not in cache and not _past(deadline):
            result = solve(instance, method="myopic+")
            cache[key] = None if result.plan is None else per_interval(inst, replace(result.plan, devices=multi.cluster.names))
        out.extend([cache[key]] if cache.get(key) is not None else [])
    return out


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def _switches(current: list[Placement], alternative: list[Placement]) -> Iterator[list[Placement]]:
    """`current` switched to `alternative` from each interval on, then for each interval alone."""
    for k in range(len(current)):
        if any(a is not c for a, c in zip(alternative[k:], current[k:])):
            yield current[:k] + alternative[k:]
    for k in range(len(current) if len(current) > 1 else 0):
        if alternative[k] is not current[k]:
            yield current[:k] + [alternative[k]] + current[k + 1:]


def interval_search(multi: MultiInstance, start: JointPlan, tables, *,
                    max_rounds: int = 3, time_limit: float | None = None) -> tuple[JointPlan, JointReport, dict[str, Any]]:
    """Improve a feasible concurrent joint plan by per-interval switches to ``myopic+`` placements (module docstring).

    Parameters
    ----------
    multi : MultiInstance
    start : JointPlan
        Feasible and ``concurrent``.
    tables : tuple of ChainTables
        `placement.multi.evaluate.model_tables` of `multi`.
    max_rounds : int
        Passes over the models.
    time_limit : float, optional
        Seconds: no single-model ``myopic+`` solve starts after it (so the loop may overrun by one
        solve and the switches to the alternatives already found).

    Returns
    -------
    plan : JointPlan
    report : JointReport
        The joint evaluator's judgement of `plan`; its objective is at most `start`'s.
    stats : dict
        ``responses`` (distinct single-model ``myopic+`` solves), ``switches_tried``, ``switches_kept``, ``rounds``,
        ``stopped`` (``time_limit`` when the limit cut the loop short).
    """
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    goal, method = multi.objective, "myopic+ (joint, per interval)"
    best, report = start, evaluate_joint(multi, start, tables)
    placements = [per_interval(inst, p) for inst, p in zip(multi.instances, start.plans)]
    stats = {"responses": 0, "switches_tried": 0, "switches_kept": 0, "rounds": 0}
    cache: dict = {}
    for _ in range(max_rounds):
        stats["rounds"] += 1
        improved = False
        for m in range(multi.n_models):
            if _past(deadline):
                stats["stopped"] = "time_limit"
                break
            alternatives = _alternatives(multi, report, m, cache, deadline)
            for alternative in alternatives:
                for switched in _switches(placements[m], alternative):
                    stats["switches_tried"] += 1
                    plans = list(best.plans)
                    plans[m] = _with(best.plans[m], switched, method)
                    candidate = JointPlan(tuple(plans), "concurrent", method=method)
                    try:
                        judged = evaluate_joint(multi, candidate, tables)
                    except PlanError:  # e.g. a plan with a client the joint evaluator does not simulate
                        continue
                    if judged.feasible and judged.objective(goal) < report.objective(goal) * (1 - _IMPROVE_RTOL):
                        best, report, placements[m], improved = candidate, judged, switched, True
                        stats["switches_kept"] += 1
        if not improved or "stopped" in stats:
            break
    stats["responses"] = len(cache)
    return best, report, stats
