"""Reference plans: the whole model on the best single device, and a memory-proportional pipeline.

They give the evaluator something to judge before the optimizing back ends, and they
are baselines every optimizer must beat.
"""

from __future__ import annotations

import numpy as np

from placement.cost.tables import usable_bytes
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.result import Result

__all__ = ["single_plan", "pipeline_plan", "solve_single", "solve_pipeline"]


def single_plan(instance: Instance, device: int) -> Plan:
    """Every block on device index `device`, for the whole generation."""
    model = instance.model
    layer_devices = np.full(model.layers, device)
    return Plan(
        devices=instance.cluster.names,
        intervals=[Placement.by_layer(layer_devices, model.kv_heads, instance.n_devices)],
        method="single",
    )


def pipeline_layers(instance: Instance) -> np.ndarray:
    """Device of each layer: contiguous runs in device order, sized in proportion to usable memory.

    Layer counts are the largest-remainder rounding of ``L · memory_n / Σ memory``;
    a device whose share rounds to zero runs no layer.
    """
    memory = usable_bytes(instance)
    layers = instance.model.layers
    exact = layers * memory / memory.sum()
    counts = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - counts), kind="stable")
    counts[remainder_order[: layers - counts.sum()]] += 1
    return np.repeat(np.arange(len(memory)), counts)


def pipeline_plan(instance: Instance) -> Plan:
    """Contiguous layers in proportion to device memory (what exo does); embed with the first layer, lm_head with the last.

    Examples
    --------
    >>> from placement import load_instance
    >>> plan = pipeline_plan(load_instance("edge/llama-3.2-1b-4dev"))
    >>> plan.method
    'pipeline'
    """
    model = instance.model
    return Plan(
        devices=instance.cluster.names,
        intervals=[Placement.by_layer(pipeline_layers(instance), model.kv_heads, instance.n_devices)],
        method="pipeline",
    )


def _result(plan: Plan, instance: Instance, note: str) -> Result:
    report = evaluate(instance, plan)
    if report.feasible:
        return Result("feasible", note, plan, report, objective=report.total_s)
    worst = max(report.violations, key=lambda v: v.over_bytes)
    return Result("infeasible", f"{note}, but it does not fit: {worst}", plan, report, objective=report.total_s)


def solve_single(instance: Instance) -> Result:
    """The fastest single device that holds the whole model (status ``infeasible`` when none does)."""
    names = instance.cluster.names
    candidates = [_result(single_plan(instance, m), instance, f"all blocks on {names[m]!r}") for m in range(instance.n_devices)]
    feasible = [c for c in candidates if c.report.feasible]
    if feasible:
        return min(feasible, key=lambda c: c.objective)
    overflow = [max(v.over_bytes for v in c.report.violations) for c in candidates]
    closest = candidates[overflow.index(min(overflow))]
    return Result("infeasible", f"no single device holds the whole model; the closest: {closest.report.violations[0]}",
                  closest.plan, closest.report, objective=closest.objective)


def solve_pipeline(instance: Instance) -> Result:
    """Contiguous layers in proportion to memory (`pipeline_plan`)."""
    counts = np.bincount(pipeline_layers(instance), minlength=instance.n_devices)
    used = ", ".join(f"{n}: {c}" for n, c in zip(instance.cluster.names, counts) if c)
    return _result(pipeline_plan(instance), instance, f"layers per device {used}")
