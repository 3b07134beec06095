"""A joint local search over the models' layer plans, judged by the multi-model evaluator.

From a concurrent joint plan it tries, for every model, moves of its layer pipeline:
shift the boundary between two consecutive runs of layers by one layer, or move a
whole run of layers to another device. A move is kept when the plan still fits in the
shared memory and the evaluator's objective (the simulated makespan, or the weighted
sum) improves; the search stops when no move improves or after ``max_rounds`` rounds.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from placement.multi.chains import ChainTables, layer_devices, layer_plan
from placement.multi.evaluate import JointPlan, JointReport, evaluate_joint
from placement.multi.instance import MultiInstance

__all__ = ["local_search"]

_IMPROVE_RTOL = 1e-9  # a move must gain more than rounding


def _runs(devices: np.ndarray) -> list[tuple[int, int]]:
    """``(first, end)`` of every run of consecutive layers on one device."""
    cuts = [0, *np.flatnonzero(np.diff(devices) != 0) + 1, len(devices)]
    return list(zip(cuts[:-1], cuts[1:]))


def _moves(devices: np.ndarray, n_devices: int) -> Iterator[np.ndarray]:
    """Neighbours of one model's layer devices: boundary shifts by one layer, then whole runs moved."""
    runs = _runs(devices)
    for (a, cut), (_, c) in zip(runs[:-1], runs[1:]):
        if cut - a > 1:  # the first run gives its last layer to the next
            moved = devices.copy()
            moved[cut - 1] = devices[cut]
            yield moved
        if c - cut > 1:  # the next run gives its first layer to the first
            moved = devices.copy()
            moved[cut] = devices[cut - 1]
            yield moved
    for first, end in runs:
        for n in range(n_devices):
            if n != devices[first]:
                moved = devices.copy()
                moved[first:end] = n
                yield moved


def _better(multi: MultiInstance, report: JointReport, incumbent: JointReport) -> bool:
    goal = multi.objective
    return report.feasible and report.objective(goal) < incumbent.objective(goal) * (1 - _IMPROVE_RTOL)


def local_search(multi: MultiInstance, start: JointPlan, tables: tuple[ChainTables, ...], *,
                 max_rounds: int = 20) -> tuple[JointPlan, JointReport, dict[str, int]]:
    """Improve a feasible concurrent joint plan by single-model moves (first improvement).

    Parameters
    ----------
    multi : MultiInstance
    start : JointPlan
        ``concurrent``, feasible.
    tables : tuple of ChainTables
        `placement.multi.evaluate.model_tables` of `multi`.
    max_rounds : int
        Passes over every model's moves.

    Returns
    -------
    plan : JointPlan
        Never worse than `start` by the evaluator's objective.
    report : JointReport
    stats : dict
        ``iterations`` (rounds), ``evaluations`` (joint plans judged).
    """
    plan, report = start, evaluate_joint(multi, start, tables)
    current = [layer_devices(inst, p)[0] for inst, p in zip(multi.instances, start.plans)]
    stats = {"iterations": 0, "evaluations": 0}
    for _ in range(max_rounds):
        stats["iterations"] += 1
        improved = False
        for m, inst in enumerate(multi.instances):
            for devices in _moves(current[m], multi.n_devices):
                plans = list(plan.plans)
                plans[m] = layer_plan(inst, devices, "local-search")
                candidate = JointPlan(tuple(plans), "concurrent", method="local-search")
                trial = evaluate_joint(multi, candidate, tables)
                stats["evaluations"] += 1
                if _better(multi, trial, report):
                    plan, report, improved = candidate, trial, True
                    current[m] = devices
                    break
        if not improved:
            break
    return plan, report, stats
