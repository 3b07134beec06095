"""Joint head-level plans by best response: one model at a time, the others' memory set aside.

Starting from a joint plan, each model in turn is re-placed by a single-model back end
(``myopic+`` or ``milp``, `placement.solve`) on the instance whose devices keep the
bytes the other models' current plans hold (`memory_left`, through each device's
``reserved_bytes``). The new plan replaces the model's one when the *joint* evaluator
(`placement.multi.evaluate.evaluate_joint`) finds the joint plan fits and is better;
rounds repeat until no model improves. The single-model back end minimises the model's
own latency, not the joint objective, so a response can be rejected; the loop keeps
the best joint plan it has seen and so is never worse than its start.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from placement.cost.tables import usable_bytes
from placement.errors import PlanError
from placement.instance import Instance
from placement.multi.baselines import with_usable_bytes
from placement.multi.evaluate import JointPlan, JointReport, evaluate_joint
from placement.multi.instance import MultiInstance

__all__ = ["memory_left", "best_response", "RESPONDERS"]

RESPONDERS = {"myopic+": {}, "milp": {"time_limit": 10.0}}  # single-model back end → its options


def memory_left(instance: Instance, others_bytes: np.ndarray) -> Instance:
    """`instance` with each device's reservation grown by the bytes other models keep on it.

    Parameters
    ----------
    instance : Instance
    others_bytes : ndarray, shape (N,)
        Bytes the other models' plans hold on every device.

    Returns
    -------
    Instance
        The same model, workload and links; usable memory ``memory - reserved - others``
        (at least one byte: a `Device` needs a reservation below its memory, and one byte holds no block).
    """
    return with_usable_bytes(instance, usable_bytes(instance) - np.asarray(others_bytes, dtype=float))


def _respond(multi: MultiInstance, joint: JointPlan, report: JointReport, m: int, solver: str) -> JointPlan | None:
    """Model ``m`` re-placed under the memory the others leave; None when the back end finds no usable plan."""
    from placement.solve import solve

    others = report.needed_bytes.sum(axis=0) - report.needed_bytes[m]
    result = solve(memory_left(multi.instances[m], others), method=solver, **RESPONDERS[solver])
    if result.plan is None:
        return None
    plan = replace(result.plan, devices=multi.cluster.names, method=f"best-response {solver}")
    plans = list(joint.plans)
    plans[m] = plan
    return JointPlan(tuple(plans), "concurrent", method=f"best-response {solver}")


def best_response(multi: MultiInstance, start: JointPlan, tables, solver: str = "myopic+",
                  max_rounds: int = 3) -> tuple[JointPlan, JointReport, dict[str, Any]]:
    """Improve a feasible concurrent joint plan one model at a time (module docstring).

    Parameters
    ----------
    multi : MultiInstance
    start : JointPlan
        Feasible and ``concurrent``.
    tables : tuple of ChainTables
        `placement.multi.evaluate.model_tables` of `multi`.
    solver : {"myopic+", "milp"}
    max_rounds : int
        Passes over the models.

    Returns
    -------
    plan : JointPlan
    report : JointReport
        The joint evaluator's judgement of `plan`; its objective is at most `start`'s.
    stats : dict
        ``responses`` (single-model solves), ``accepted``, ``refused`` (plans the joint
        evaluator cannot simulate, e.g. split blocks), ``rounds``.
    """
    best, report = start, evaluate_joint(multi, start, tables)
    stats = {"responses": 0, "accepted": 0, "refused": 0, "rounds": 0}
    for _ in range(max_rounds):
        stats["rounds"] += 1
        improved = False
        for m in range(multi.n_models):
            stats["responses"] += 1
            candidate = _respond(multi, best, report, m, solver)
            if candidate is None:
                continue
            try:
                judged = evaluate_joint(multi, candidate, tables)
            except PlanError:
                stats["refused"] += 1
                continue
            if judged.feasible and judged.objective(multi.objective) < report.objective(multi.objective) * (1 - 1e-12):
                best, report, improved = candidate, judged, True
                stats["accepted"] += 1
        if not improved:
            break
    return best, report, stats
