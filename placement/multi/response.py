"""Joint head-level plans by best response: one model at a time, the others' plans as data.

Starting from a joint plan, each model in turn is re-placed while the other models'
current plans stay put. What a response knows about the others depends on the responder:

- ``myopic+``, ``milp``: the single-model back end (`placement.solve`) on the instance
  whose devices keep the bytes the others hold (`memory_left`) — memory only;
- ``priced``: ``myopic+`` and ``pipeline-dp`` on the memory-left instance whose devices
  are also slowed by the share of the makespan the others keep them busy
  (`contention_priced`): a scalarised price of their busy time; and ``myopic+`` unpriced;
- ``contention``: ``priced``'s responses and the head-level MILP
  (`placement.multi.head_milp`) with this model free and the others' busy seconds per
  device and on the shared medium, bytes and times alone as data, minimising the
  makespan proxy ``C ≥`` own latency, ``C ≥`` others' busy + own busy on every device,
  ``C ≥`` medium busy — once with every device the others use priced at their busy
  seconds there (``Fixed.wait_s``), once without. Under a ``weighted`` objective the priced
  one minimises ``w_m ·`` (own latency with that price) ``+ Σ_n harm[n] · busy[n]`` instead,
  ``harm[n]`` the summed weight of the other models using device ``n`` (``Fixed.harm``;
  docs/parallel.md, "The weighted response").

A response replaces the model's plan only when the *joint* evaluator
(`placement.multi.evaluate.evaluate_joint`) finds the joint plan fits and is better;
rounds repeat until no model improves, the rounds run out or the time limit passes.
The loop keeps the best joint plan it has seen and so is never worse than its start.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from placement.cost.tables import usable_bytes
from placement.errors import PlanError
from placement.instance import Instance
from placement.multi.baselines import with_usable_bytes
from placement.multi.evaluate import JointPlan, JointReport, evaluate_joint
from placement.multi.head_milp import Fixed, head_terms, plan_point, solve_head_milp
from placement.multi.instance import MultiInstance

__all__ = ["memory_left", "busy_share", "contention_priced", "best_response", "RESPONDERS"]

# responder → its responses: (back end, priced?, options); ``head-milp`` is `solve_head_milp`, the rest
# `placement.solve`. Priced: the busy time of the others is seen (module docstring); not: their memory only.
# Each contention-aware responder also tries the cheaper responses, so that it sees at least what they see.
_PRICED = (("myopic+", False, {}), ("myopic+", True, {}), ("pipeline-dp", True, {}))
RESPONDERS = {"myopic+": (("myopic+", False, {}),), "milp": (("milp", False, {"time_limit": 10.0}),),
              "priced": _PRICED,
              "contention": _PRICED + (("head-milp", True, {"time_limit": 10.0}), ("head-milp", False, {"time_limit": 10.0}))}
MAX_BUSY_SHARE = 0.9  # a device the others keep busy longer still offers a tenth of its speed to the price


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


def busy_share(others_busy_s: np.ndarray, makespan_s: float) -> np.ndarray:
    """``β_n = min(others_busy_s[n] / makespan_s, MAX_BUSY_SHARE)``: the share of the makespan others keep ``n`` busy.

    Parameters
    ----------
    others_busy_s : ndarray, shape (N,)
        Seconds the other models compute on each device.
    makespan_s : float
        The current joint makespan, seconds.

    Returns
    -------
    ndarray, shape (N,)
    """
    return np.minimum(np.asarray(others_busy_s, dtype=float) / max(makespan_s, 1e-300), MAX_BUSY_SHARE)


def contention_priced(instance: Instance, share: np.ndarray) -> Instance:
    """`instance` with every device slowed by the share of the time the other models keep it busy.

    Parameters
    ----------
    instance : Instance
    share : ndarray, shape (N,)
        `busy_share` of every device, in [0, 1).

    Returns
    -------
    Instance
        Device ``n``'s peak compute and memory bandwidth times ``1 − share[n]`` and its block
        overhead divided by it: every block on ``n`` takes ``1 / (1 − share[n])`` times as long,
        as on a processor shared in that proportion.
    """
    devices = tuple(replace(d, peak_flops_per_s=d.peak_flops_per_s * (1 - b),
                            memory_bandwidth_bytes_per_s=d.memory_bandwidth_bytes_per_s * (1 - b),
                            block_overhead_s=d.block_overhead_s / (1 - b))
                    for d, b in zip(instance.devices, share))
    return replace(instance, cluster=replace(instance.cluster, devices=devices))  # routes rebuilt from the links


def _others(multi: MultiInstance, joint: JointPlan, report: JointReport, m: int, terms) -> Fixed:
    """The models other than ``m`` as data: busy seconds per device and on the medium, bytes, longest time alone, price.

    Under a ``weighted`` objective also ``harm``: the summed weight of the others that use each
    device (and the medium), which the weighted response charges per busy second of ``m`` there.
    """
    others = [o for o in range(multi.n_models) if o != m]
    points = [plan_point(multi, o, joint.plans[o], terms) for o in others]
    alone, busy = np.delete(report.alone_s, m), sum(p["busy_s"] for p in points)
    harm = None
    if multi.objective == "weighted":
        harm = sum(multi.weights[o] * (np.append(p["busy_s"], p["medium_s"]) > 0) for o, p in zip(others, points))
    return Fixed(busy_s=busy, medium_s=float(sum(p["medium_s"] for p in points)),
                 bytes=report.needed_bytes.sum(axis=0) - report.needed_bytes[m], alone_s=float(alone.max(initial=0.0)),
                 wait_s=busy, harm=harm)


def _with(joint: JointPlan, m: int, plan, method: str) -> JointPlan:
    plans = list(joint.plans)
    plans[m] = plan
    return JointPlan(tuple(plans), "concurrent", method=method)


def _respond(multi: MultiInstance, joint: JointPlan, report: JointReport, m: int, solver: str, terms,
             deadline: float | None) -> list[JointPlan]:
    """Model ``m``'s responses (module docstring), those started before `deadline` (`time.perf_counter`)."""
    from placement.solve import solve

    method = f"best-response {solver}"
    fixed = _others(multi, joint, report, m, terms) if terms is not None else None
    blind = None if fixed is None else replace(fixed, wait_s=np.zeros_like(fixed.wait_s), harm=None)
    memory = memory_left(multi.instances[m], report.needed_bytes.sum(axis=0) - report.needed_bytes[m])
    responses = []
    for back_end, priced, options in RESPONDERS[solver]:
        left_s = None if deadline is None else deadline - time.perf_counter()
        if left_s is not None and left_s <= 0:
            break
        if "time_limit" in options and left_s is not None:
            options = {**options, "time_limit": min(options["time_limit"], left_s)}
        if back_end == "head-milp":
            found = solve_head_milp(multi, (m,), terms, fixed=fixed if priced else blind, method=method, **options)
            plan = None if found.plans is None else found.plans[0]
        else:
            instance = contention_priced(memory, busy_share(fixed.busy_s, report.makespan_s)) if priced else memory
            plan = solve(instance, method=back_end, **options).plan
        if plan is not None:
            responses.append(_with(joint, m, replace(plan, devices=multi.cluster.names, method=method), method))
    return responses


def best_response(multi: MultiInstance, start: JointPlan, tables, solver: str = "myopic+",
                  max_rounds: int = 3, time_limit: float | None = None) -> tuple[JointPlan, JointReport, dict[str, Any]]:
    """Improve a feasible concurrent joint plan one model at a time (module docstring).

    Parameters
    ----------
    multi : MultiInstance
    start : JointPlan
        Feasible and ``concurrent``.
    tables : tuple of ChainTables
        `placement.multi.evaluate.model_tables` of `multi`.
    solver : {"myopic+", "milp", "contention", "priced"}
    max_rounds : int
        Passes over the models.
    time_limit : float, optional
        Seconds: no single-model solve starts after it, and a MILP gets at most what is left
        (so the loop may overrun by one solve of ``myopic+`` or ``pipeline-dp``).

    Returns
    -------
    plan : JointPlan
    report : JointReport
        The joint evaluator's judgement of `plan`; its objective is at most `start`'s.
    stats : dict
        ``responses`` (single-model solves), ``accepted``, ``refused`` (plans the joint
        evaluator cannot simulate, e.g. split blocks), ``rounds``, ``stopped`` (``time_limit``
        when the limit cut the loop short).
    """
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    priced = any(p for _, p, _ in RESPONDERS[solver])
    terms = tuple(head_terms(inst) for inst in multi.instances) if priced else None
    best, report = start, evaluate_joint(multi, start, tables)
    stats = {"responses": 0, "accepted": 0, "refused": 0, "rounds": 0}
    for _ in range(max_rounds):
        stats["rounds"] += 1
        improved = False
        for m in range(multi.n_models):
            if deadline is not None and time.perf_counter() >= deadline:
                stats["stopped"] = "time_limit"
                return best, report, stats
            stats["responses"] += 1
            for candidate in _respond(multi, best, report, m, solver, terms, deadline):
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
