"""Expert placement on top of a layer placement: method ``experts``.

A base back end (``pipeline-dp`` by default) places whole layers; then, layer by
layer, the routed experts of each MoE layer are spread evenly over its FFN device (the router's) and the ``m − 1`` devices whose
dispatch, one expert and combine take least, for the ``m`` whose expected expert stage
(`placement.cost.routing.expected_expert_stage`, batch 1, the mean context's tables)
is least among those that fit the memory the base plan leaves free. The evaluator
then judges the plan with placed experts; the base plan is kept when it is not
better. A heuristic: it predicts nothing itself (docs/moe.md).
"""

from __future__ import annotations

import time

import numpy as np

from placement.cost.routing import expected_expert_stage
from placement.cost.tables import block_memory, phase_tables, step_costs, usable_bytes
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement
from placement.result import Result

__all__ = ["solve_experts", "spread_experts"]


def spread_experts(instance: Instance, placement: Placement, free_bytes: np.ndarray) -> np.ndarray:
    """Every MoE layer's expert devices (L, E), chosen layer by layer within `free_bytes`.

    Parameters
    ----------
    instance : Instance
    placement : Placement
        Whole FFN blocks (the base plan's); each layer's experts start on its FFN device.
    free_bytes : ndarray, shape (N,)
        Memory each device has left under the base plan, bytes.

    Returns
    -------
    ndarray of int, shape (L, E)
        Device indices in the instance's order, -1 in dense layers.
    """
    model, N = instance.model, instance.n_devices
    E, k = model.experts, model.experts_per_token
    mean = np.array([int(instance.workload.contexts().mean())])
    tables = phase_tables(instance, step_costs(instance, instance.precision, mean))
    expert_bytes = block_memory(instance, instance.precision, mean).expert[0]
    hop = tables.hidden_s[0]
    free = np.asarray(free_bytes, dtype=float).copy()
    out = np.full((model.layers, E), -1, dtype=np.int64)
    for l in np.flatnonzero(model.moe_layers):
        home = int(np.argmax(placement.ffn[l]))
        reach = hop[home] + hop[:, home] + tables.expert_s[0, l]
        reach[home] = -np.inf
        order = np.argsort(reach, kind="stable")  # home first, then the devices whose one-expert chain is shortest
        best, best_s = np.full(N, 0), np.inf
        for m in range(1, N + 1):
            holdings = np.zeros(N, dtype=np.int64)
            holdings[order[:m]] = E // m
            holdings[order[:E % m]] += 1
            extra = (holdings - np.where(np.arange(N) == home, E, 0)) * expert_bytes[l]
            if np.any(extra > free + 1e-9) or (holdings[order[:m]] == 0).any():
                continue
            stage = expected_expert_stage(holdings, k, home, tables.expert_s[0, l], hop[home], hop[:, home],
                                          instance.cluster.network == "shared")
            if stage.total_s < best_s:
                best, best_s = holdings, stage.total_s
        if not np.isfinite(best_s):
            best = np.where(np.arange(N) == home, E, 0)
        free -= (best - np.where(np.arange(N) == home, E, 0)) * expert_bytes[l]
        out[l] = np.repeat(np.arange(N), best)
    return out


def solve_experts(instance: Instance, *, base: str = "pipeline-dp") -> Result:
    """Place whole layers with `base`, then spread each MoE layer's experts (`spread_experts`).

    Parameters
    ----------
    instance : Instance
    base : str
        The back end placing whole layers first (any method whose plan keeps each FFN whole).

    Returns
    -------
    Result
        ``feasible`` with the better of the base plan and the plan with placed experts
        (by the evaluator's total); the base's status when it found no plan. ``stats``:
        ``decision_time_s``, ``base_total_s``, ``experts_moved`` (routed experts off their FFN device).
    """
    from placement.solve import solve  # the base runs through the one entry

    start = time.perf_counter()
    found = solve(instance, method=base)
    if found.plan is None or not instance.model.is_moe or len(found.plan.intervals) != 1:
        note = "" if instance.model.is_moe else " (a dense model: nothing to spread)"
        return Result(found.status, f"experts: the {base} plan{note}; {found.message}", found.plan, None,
                      stats={"decision_time_s": time.perf_counter() - start})
    report = evaluate(instance, found.plan)
    free = usable_bytes(instance) - report.peak_memory_bytes.max(axis=0)
    p = found.plan.intervals[0]
    experts = spread_experts(instance, p, free)
    spread = found.plan.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed, p.lm_head,
                                                     p.precision, experts)], method="experts")
    judged = evaluate(instance, spread)
    better = judged.feasible and (judged.total_s < report.total_s or not report.feasible)
    plan = spread if better else found.plan.replace(method="experts")
    home = np.asarray(p.ffn).argmax(axis=1)[:, None]
    moved = int(((experts >= 0) & (experts != home)).sum()) if better else 0
    status = "feasible" if (judged.feasible if better else report.feasible) else "infeasible"
    message = (f"experts: {moved} routed expert(s) placed off their FFN device on top of {base}"
               if better else f"experts: spreading experts did not beat the {base} plan; kept it")
    return Result(status, message, plan, None, stats={"decision_time_s": time.perf_counter() - start,
                                                       "base_total_s": report.total_s, "experts_moved": moved})
