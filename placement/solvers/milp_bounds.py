"""Valid lower bounds for the MILP from the structure of real models (docs/milp.md, "Layer configurations").

A *configuration* of a layer says where its groups go (a count per device), where its
projection and FFN go, and which device holds its input. Relaxing the memory rows with
multipliers ``π ≥ 0`` (Lagrangian relaxation) leaves, per interval, a shortest path over
the layers whose arc ``u → v`` costs the cheapest configuration with input on ``u`` and
FFN on ``v``, its memory priced by ``π``. The dual of that relaxation is the
configuration LP (Dantzig–Wolfe: one column per configuration), so its best value is the
configuration LP's bound, and the pricing problem is solved here exactly:

- layers whose tables are equal form a *class* (`layer_classes`): the cheapest
  configuration is priced once per class, not once per layer;
- the attention stage of a configuration is the least ``A + Σ_m h_m(n_m)`` over a
  threshold ``A`` (every used device's chain within ``A``) and counts summing to ``K``, a
  small resource-allocation DP over devices.

Every value of the relaxation is a lower bound on the evaluator's total of any feasible
plan (migration, ≥ 0, is dropped; an interval's tokens form one block, whose sum of
maxima is at least the maximum of sums). Subgradient steps move ``π``; a relaxed solution
that fits every device is a plan, which the evaluator judges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from placement.cost.tables import block_memory, heads_share_memory, usable_bytes
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.solvers.milp_model import SECONDS_PER_UNIT, Phase, output_routes, phase_terms, profile_sends_input

__all__ = ["LagrangianBound", "layer_classes", "lagrangian_bound", "pricing_work"]

# Above this many elementary DP operations per evaluation of the relaxation the bound is
# not computed (a 48-device cluster with 40 groups per layer would take minutes per step).
_WORK_LIMIT = 4e8
# The bound given up to cover rounding in the sums of many small times.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class LagrangianBound:
    """The best Lagrangian bound found, and the best plan the relaxation produced.

    Attributes
    ----------
    bound_s : float
        Lower bound on the total latency of every feasible plan, seconds.
    plan : Plan or None
        The best relaxed solution that fits every device, as a plan (None if none did).
    plan_total_s : float or None
        The evaluator's total of `plan`, seconds.
    iterations : int
        Evaluations of the relaxation.
    classes : int
        Classes of identical layers.
    """

    bound_s: float
    plan: Plan | None
    plan_total_s: float | None
    iterations: int
    classes: int


def layer_classes(instance: Instance) -> np.ndarray:
    """The class of every layer: layers whose every per-layer figure is equal share one.

    Compared: each layer's group, projection and FFN times on every device at the
    prefill and at every decode step's context, its resident bytes of each block at
    every interval's largest context, and its precisions.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    ndarray of int, shape (L,)
        Class label of each layer, numbered in order of first appearance.
    """
    route, varies = output_routes(instance)
    workload = instance.workload
    rows = []
    for phase in (Phase(0, None), Phase(0, np.arange(workload.generate_tokens))):
        terms = phase_terms(instance, phase, route, varies)
        rows += [terms["group"], terms["proj"], terms["ffn"]]
    memory = block_memory(instance, instance.precision, workload.interval_max_context())
    rows += [memory.group.T, memory.projection.T, memory.ffn.T]
    p = instance.precision
    rows += [np.stack([p.attention, p.projection, p.ffn, p.kv], 1)]
    table = np.concatenate([np.asarray(r, dtype=float).reshape(instance.model.layers, -1) for r in rows], 1)
    _, first, labels = np.unique(table, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number classes by their first layer
    return order[labels.ravel()]


def pricing_work(instance: Instance) -> float:
    """Elementary operations of one evaluation of the relaxation (the DP over devices), per class and interval.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    float
        ``N⁴ K³``: every input device, projection device and threshold, a DP over devices and counts.
    """
    N, K = instance.n_devices, instance.model.kv_heads
    return float(N) ** 4 * float(K) ** 3


@dataclass(frozen=True, eq=False)
class _IntervalData:
    """One interval's summed costs (milliseconds) and memory (fractions of each device's usable memory)."""

    terms: dict
    group_mem: np.ndarray  # (L, N)
    projection_mem: np.ndarray  # (L, N)
    ffn_mem: np.ndarray  # (L, N)
    embed_mem: np.ndarray  # (N,)
    lm_head_mem: np.ndarray  # (N,)
    shared_saving: np.ndarray  # (N,) memory saved when tied embed and lm_head share a device


def _interval_data(instance: Instance, k: int, route: np.ndarray, varies: np.ndarray) -> _IntervalData:
    workload = instance.workload
    steps = np.flatnonzero(workload.interval_of_step() == k)
    phases = ([Phase(0, None)] if k == 0 else []) + [Phase(0, steps)]
    parts = [phase_terms(instance, phase, route, varies) for phase in phases]
    terms = {key: sum(part[key] for part in parts) for key in parts[0] if key != "sum_gather"}
    terms["sum_gather"] = any(part["sum_gather"] for part in parts)
    usable = usable_bytes(instance)
    memory = block_memory(instance, instance.precision, workload.interval_max_context()[k:k + 1])
    per = lambda a: np.asarray(a, dtype=float)[0][:, None] / usable[None, :]  # noqa: E731
    tied = heads_share_memory(instance.model, instance.precision)
    embed = float(np.ravel(memory.embed)[0]) / usable
    return _IntervalData(terms, per(memory.group), per(memory.projection), per(memory.ffn), embed,
                         float(np.ravel(memory.lm_head)[0]) / usable, embed if tied else np.zeros_like(embed))


def _head_outputs(terms: dict, K: int) -> np.ndarray:
    """Time of the head outputs of ``c`` groups from ``m`` to ``q``: (N_m, N_q, K+1), ms."""
    c = np.arange(K + 1)
    fixed = terms["out_latency"][..., None] * (c > 0) + terms["out_per_group"][..., None] * c
    return fixed + np.moveaxis(terms["out_by_count"], 0, -1)


def _allocate(per_count: np.ndarray, allowed: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Least ``Σ_m per_count[..., m, n_m]`` with ``Σ_m n_m = K`` over allowed counts.

    Parameters: `per_count` and `allowed` (..., N, K+1). Returns the least cost (...)
    and the counts (..., N) that reach it (a DP over devices, counts 0…K).
    """
    batch, N = per_count.shape[:-2], per_count.shape[-2]
    cost = np.where(allowed, per_count, np.inf)
    value = np.full(batch + (K + 1,), np.inf)
    value[..., 0] = 0.0
    choices = np.zeros((N,) + batch + (K + 1,), dtype=np.int64)
    s, c = np.arange(K + 1)[:, None], np.arange(K + 1)[None, :]
    prev_index = np.clip(s - c, 0, K)  # (s, c): total before adding c on this device
    valid = (s - c) >= 0
    for m in range(N):
        candidates = np.where(valid, value[..., prev_index] + cost[..., m, None, :], np.inf)  # (..., s, c)
        choices[m] = candidates.argmin(axis=-1)
        value = np.take_along_axis(candidates, choices[m][..., None], axis=-1)[..., 0]
    counts = np.zeros(batch + (N,), dtype=np.int64)
    left = np.full(batch, K)
    for m in range(N - 1, -1, -1):
        took = np.take_along_axis(choices[m], left[..., None], axis=-1)[..., 0]
        counts[..., m] = took
        left = left - took
    return value[..., K], counts


def _attention(terms: dict, layer: int, group_price: np.ndarray, shared: bool, sends_input: bool,
               K: int) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest attention stage of one layer for every input device ``u`` and projection device ``q``.

    Returns the cost (N_u, N_q) in ms (memory priced) and the counts (N_u, N_q, N).
    """
    N = len(group_price)
    out = _head_outputs(terms, K)  # (m, q, c)
    c = np.arange(K + 1)
    compute = terms["group"][layer][:, None] * c  # (m, c)
    t_in = terms["t_in"] if sends_input else np.zeros((N, N))
    price = group_price[:, None] * c  # (m, c)
    best = np.full((N, N), np.inf)
    counts = np.zeros((N, N, N), dtype=np.int64)
    for u in range(N):
        recv = t_in[u][:, None] * (c > 0)  # (m, c)
        if shared:  # the stage is the slowest compute; every transfer adds up
            chain = np.broadcast_to(compute, (N, N, K + 1))  # (q, m, c)
            per_count = recv[None] + out.transpose(1, 0, 2) + price[None]
        else:  # each group device is its own chain: input, groups, outputs
            chain = recv[None] + out.transpose(1, 0, 2) + compute[None]
            per_count = np.broadcast_to(price, (N, N, K + 1))
        thresholds = chain[:, :, 1:].reshape(N, -1)  # (q, A): every chain value is a candidate
        allowed = (chain[:, None] <= thresholds[:, :, None, None]) | (c == 0)  # (q, A, m, c)
        value, n = _allocate(np.broadcast_to(per_count[:, None], allowed.shape), allowed, K)
        total = thresholds + value  # (q, A)
        pick = total.argmin(axis=1)
        best[u] = total[np.arange(N), pick]
        counts[u] = n[np.arange(N), pick]
    return best, counts


@dataclass(frozen=True, eq=False)
class _Relaxed:
    """One interval's relaxed optimum: value (ms), memory used (N,), and the placement."""

    value: float
    used: np.ndarray
    placement: Placement


def _relax_interval(data: _IntervalData, labels: np.ndarray, pi: np.ndarray, shared: bool, sends_input: bool,
                    K: int) -> _Relaxed:
    """The Lagrangian subproblem of one interval at multipliers `pi` (N,), ms per unit of memory fraction."""
    t, L, N = data.terms, len(labels), len(pi)
    arcs, choice = {}, {}
    for cls in np.unique(labels):
        layer = int(np.flatnonzero(labels == cls)[0])
        att, counts = _attention(t, layer, pi * data.group_mem[layer], shared, sends_input, K)
        proj = t["proj"][layer] + pi * data.projection_mem[layer]
        ffn = t["ffn"][layer] + pi * data.ffn_mem[layer]
        through = att[:, :, None] + proj[None, :, None] + t["t_hidden"][None] + ffn[None, None, :]  # (u, q, v)
        q = through.argmin(axis=1)
        arcs[cls] = np.take_along_axis(through, q[:, None], axis=1)[:, 0]
        choice[cls] = (q, counts)
    dist = np.where(np.eye(N, dtype=bool), 0.0, np.inf)  # [e, u]: cheapest path from embed e to layer input u
    back = np.zeros((L, N, N), dtype=np.int64)
    for l in range(L):
        step = dist[:, :, None] + arcs[labels[l]][None]  # (e, u, v)
        back[l] = step.argmin(axis=1)
        dist = np.take_along_axis(step, back[l][:, None], axis=1)[:, 0]
    lm_in = dist[:, :, None] + t["t_lm"][None]  # (e, v, h)
    last = lm_in.argmin(axis=1)
    ends = (np.take_along_axis(lm_in, last[:, None], axis=1)[:, 0] + (t["embed"] + pi * data.embed_mem)[:, None]
            + (t["lm"] + pi * data.lm_head_mem)[None] + t["t_token"].T
            - np.diag(pi * data.shared_saving))  # (e, h)
    e, h = np.unravel_index(int(ends.argmin()), ends.shape)
    return _read_back(data, labels, choice, back, int(e), int(h), int(last[e, h]), float(ends[e, h] - pi.sum()))


def _read_back(data: _IntervalData, labels, choice, back, e: int, h: int, v: int, value: float) -> _Relaxed:
    """The relaxed solution's placement and memory, from the path's back pointers."""
    L, N = len(labels), len(data.embed_mem)
    outputs = np.zeros(L, dtype=np.int64)
    for l in range(L - 1, -1, -1):
        outputs[l] = v
        v = back[l, e, v]
    inputs = np.concatenate([[e], outputs[:-1]])
    attention, projection = [], np.zeros((L, N))
    used = np.eye(N)[e] * data.embed_mem + np.eye(N)[h] * data.lm_head_mem - (e == h) * np.eye(N)[e] * data.shared_saving
    for l in range(L):
        q, counts = choice[labels[l]]
        qq = q[inputs[l], outputs[l]]
        n = counts[inputs[l], qq]
        attention.append(np.repeat(np.arange(N), n))
        projection[l, qq] = 1.0
        used = used + n * data.group_mem[l] + np.eye(N)[qq] * data.projection_mem[l] + np.eye(N)[outputs[l]] * data.ffn_mem[l]
    ffn = np.eye(N)[outputs]
    return _Relaxed(value, used, Placement(np.stack(attention), projection, ffn, e, h))


def lagrangian_bound(instance: Instance, *, time_limit_s: float, upper_bound_s: float | None = None,
                     max_iterations: int = 200) -> LagrangianBound | None:
    """The best Lagrangian bound (memory rows relaxed) within `time_limit_s`, and the best plan it met.

    Parameters
    ----------
    instance : Instance
    time_limit_s : float
        Seconds for the subgradient search (one evaluation always runs).
    upper_bound_s : float, optional
        Total latency of a known feasible plan, seconds: the target of the step sizes
        (Polyak's rule) and a stop once the bound reaches it.
    max_iterations : int
        Most evaluations of the relaxation.

    Returns
    -------
    LagrangianBound or None
        None when the instance is out of this bound's scope: a cluster too large for the
        pricing DP (`pricing_work`), or a three-phase profile whose inputs travel.
    """
    started = time.perf_counter()
    shared = instance.cluster.network == "shared"
    sends_input = profile_sends_input(instance)
    if pricing_work(instance) > _WORK_LIMIT:
        return None
    route, varies = output_routes(instance)
    intervals = [_interval_data(instance, k, route, varies) for k in range(instance.workload.n_intervals)]
    if any(d.terms["sum_gather"] for d in intervals):
        if sends_input and not shared:
            return None
        shared = True  # the three-phase model adds the outputs up, like a shared network
    labels = layer_classes(instance)
    K, N = instance.model.kv_heads, instance.n_devices
    pi = np.zeros((len(intervals), N))
    target = None if upper_bound_s is None else upper_bound_s / SECONDS_PER_UNIT
    best_bound, best_plan, best_total = -np.inf, None, None
    theta, stalled, iterations = 1.0, 0, 0
    while iterations < max_iterations:
        relaxed = [_relax_interval(d, labels, pi[k], shared, sends_input, K) for k, d in enumerate(intervals)]
        iterations += 1
        value = sum(r.value for r in relaxed)
        if value > best_bound:
            best_bound, stalled = value, 0
        else:
            stalled += 1
        slope = np.array([r.used - 1.0 for r in relaxed])  # (I, N) subgradient: memory over each device's share
        if (slope <= 1e-12).all():
            plan = Plan(instance.cluster.names, [r.placement for r in relaxed], method="milp")
            report = evaluate(instance, plan)
            if report.feasible and (best_total is None or report.total_s < best_total):
                best_plan, best_total = plan, report.total_s
                target = min(target, best_total / SECONDS_PER_UNIT) if target is not None else best_total / SECONDS_PER_UNIT
        if target is not None and best_bound >= target * (1 - 1e-7):
            break
        if time.perf_counter() - started > time_limit_s or theta < 1e-5:
            break
        if stalled >= 5:
            theta, stalled = theta / 2, 0
        # subgradient on the multipliers: only rows that can bind (π > 0 or over) move
        direction = np.where((pi > 0) | (slope > 0), slope, 0.0)
        norm = float((direction ** 2).sum())
        if norm == 0.0:
            break  # the relaxed optimum fits and no multiplier can fall: the relaxation is solved
        gap = (target - value) if target is not None and target > value else abs(value) * 0.05 + 1e-3
        pi = np.maximum(pi + theta * gap / norm * direction, 0.0)
    bound_s = max(best_bound, 0.0) * SECONDS_PER_UNIT * (1 - _ROUNDING)
    return LagrangianBound(bound_s, best_plan, best_total, iterations, int(labels.max()) + 1)
