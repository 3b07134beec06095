"""A Lagrangian bound over classes of identical devices, for clusters too large to price device by device.

The configuration LP of `placement.solvers.milp_bounds` prices layer configurations
with a DP over every device (``N⁴K³`` per class and interval), out of reach at 32–48
devices. Real clusters are a few kinds of board repeated; this module bounds the
optimum by a relaxation whose devices fall into *hardware classes* (docs/milp.md,
"Device classes"):

1. Devices whose every compute figure (time of each block, summed over each
   interval) and usable memory are equal form one class (`device_classes`).
2. Every transfer time between two distinct devices is replaced by the least over the
   pairs of their two classes (`_class_transfers`). Each is at most the true time and
   every configuration's cost is non-decreasing in the transfer times, so every
   plan costs no more in the relaxation: the relaxation's optimum is a lower bound.
   Within the relaxation, devices of one class are interchangeable.
3. The memory rows (one per device) and the devices row (a placement over ``d``
   devices sends at least ``d`` messages) move into the objective with multipliers
   ``π_c ≥ 0`` (equal within a class) and ``σ ≥ 0``. What remains is a cheapest path
   over the layers; its arcs are the cheapest priced configurations, found by a DP
   over *types* of devices (the input device, the projection device, the others of
   each class) in which identical devices are combined by min-plus powers, so a
   pricing costs ``O(C² · CK · C log N · K²)`` instead of ``N⁴K³``.

Each interval's tokens form one block (a sum of maxima is at least the maximum of
sums), migration (≥ 0) is dropped, and a feasible plan satisfies the dualized rows,
so the Lagrangian value at any multipliers bounds every feasible plan's evaluator
total from below. The multipliers are searched by a cutting-plane method in a trust
region (`_search`); the bound is the best value evaluated. With memory free
(``π = 0``) the same relaxation is the analytic floor: every block at the best rate a
device offers it, plus the messages that the memory forces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linprog

from placement.cost.tables import block_memory, heads_share_memory, usable_bytes
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.options import Deadline
from placement.plan import Plan
from placement.solvers.milp_bounds import ConfigurationBound, layer_classes, row_classes
from placement.solvers.milp_packing import packing_bound
from placement.solvers.milp_pricing import head_outputs
from placement.solvers.milp_model import (
    SECONDS_PER_UNIT, Phase, output_routes, phase_terms, profile_sends_input, skip_reason,
)

__all__ = ["ClassBound", "device_classes", "class_bound", "with_class_bound", "REPRESENTATIVES", "CLASS_BOUND_DEVICES"]

# Devices kept per class in the path over layers: a closed walk whose costs depend only
# on the classes and on which consecutive devices are equal can be list-coloured with
# three devices per class (cycles are 3-choosable), so three lose nothing.
REPRESENTATIVES = 3
# Clusters of at least this many devices get the class bound even when the configuration LP
# ran (its pricing per device is slow there, so its bound has seldom converged in time).
CLASS_BOUND_DEVICES = 16
# The bound given up to cover rounding in the sums of many small times.
_ROUNDING = 1e-9


class _OutOfScope(Exception):
    """The three-phase profile (``kafetzis2025``): its head outputs add up, which `_attention` does not model."""


@dataclass(frozen=True)
class ClassBound:
    """The best Lagrangian bound over device classes.

    Attributes
    ----------
    bound_s : float
        Lower bound on the total latency of every feasible plan, seconds.
    floor_s : float
        The same relaxation with memory unpriced (``π = 0``) and only the devices row
        priced: the analytic floor, seconds.
    classes : int
        Hardware classes of devices.
    evaluations : int
        Lagrangian evaluations (pricings) spent, over all intervals.
    intervals_priced : int
        Intervals whose bound was computed (each other one counts a priced interval's
        bound that it dominates, or 0).
    """

    bound_s: float
    floor_s: float
    classes: int
    evaluations: int
    intervals_priced: int


def device_classes(instance: Instance) -> np.ndarray:
    """The hardware class of every device: devices with equal compute times and usable memory share one.

    Compared: each device's time for every block of every layer summed over each
    interval's tokens (with the prefill in interval 0), and its usable bytes: what the
    relaxation reads of a device. Links are not compared: the bound relaxes them to
    each pair of classes' fastest (`class_bound`).

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    ndarray of int, shape (N,)
        Class label of each device, numbered in order of first appearance.
    """
    route, varies = output_routes(instance)
    columns = [usable_bytes(instance)[None]]
    for k in range(instance.workload.n_intervals):  # the sums the relaxation uses, interval by interval
        terms = _interval_terms(instance, k, route, varies)
        columns += [terms["group"], terms["proj"], terms["ffn"], terms["embed"][None], terms["lm"][None]]
    return row_classes(np.concatenate(columns, 0).T)  # rows: devices


@dataclass(frozen=True, eq=False)
class _Relaxed:
    """One interval of the relaxation, per class: times in ms (summed over the interval's tokens), memory in
    fractions of a device's usable memory."""

    size: np.ndarray  # (C,) devices per class
    group: np.ndarray  # (Lc, C) one group's time, per layer class
    proj: np.ndarray  # (Lc, C)
    ffn: np.ndarray  # (Lc, C)
    embed: np.ndarray  # (C,)
    lm: np.ndarray  # (C,)
    t_in: np.ndarray  # (C, C) least time between distinct devices of the two classes
    t_hidden: np.ndarray  # (C, C)
    t_lm: np.ndarray  # (C, C)
    t_token: np.ndarray  # (C, C)
    out: np.ndarray  # (C, C, K+1) head outputs of c groups
    group_mem: np.ndarray  # (Lc, C)
    proj_mem: np.ndarray  # (Lc, C)
    ffn_mem: np.ndarray  # (Lc, C)
    embed_mem: np.ndarray  # (C,)
    lm_mem: np.ndarray  # (C,)
    saving: np.ndarray  # (C,) tied embeddings on one device
    messages_needed: float  # right-hand side of the devices row
    alone: np.ndarray  # (C,) bool: a device of the class holds every block by itself


def _class_transfers(matrix: np.ndarray, labels: np.ndarray, C: int) -> np.ndarray:
    """The least of `matrix` (N, N, ...) over distinct pairs of each two classes: (C, C, ...); inf where none."""
    N = len(labels)
    off = ~np.eye(N, dtype=bool)
    out = np.full((C, C) + matrix.shape[2:], np.inf)
    for a in range(C):
        for b in range(C):
            pair = off & (labels[:, None] == a) & (labels[None, :] == b)
            if pair.any():
                out[a, b] = matrix[pair].min(axis=0)
    return out


def _per_class(values: np.ndarray, labels: np.ndarray, C: int) -> np.ndarray:
    """Columns of `values` (..., N) for one device of each class (they are equal within a class): (..., C)."""
    first = np.array([np.flatnonzero(labels == c)[0] for c in range(C)])
    return np.asarray(values, dtype=float)[..., first]


def _interval_terms(instance: Instance, k: int, route: np.ndarray, varies: np.ndarray) -> dict:
    """`phase_terms` summed over interval `k`'s tokens, the prefill in interval 0 (ms; ``sum_gather`` if any)."""
    steps = np.flatnonzero(instance.workload.interval_of_step() == k)
    phases = ([Phase(0, None)] if k == 0 else []) + [Phase(0, steps)]
    parts = [phase_terms(instance, phase, route, varies) for phase in phases]
    terms = {key: sum(part[key] for part in parts) for key in parts[0] if key != "sum_gather"}
    return {**terms, "sum_gather": any(part["sum_gather"] for part in parts)}


def _relaxed_interval(instance: Instance, k: int, labels: np.ndarray, layer_labels: np.ndarray) -> _Relaxed:
    """Interval `k` of the relaxation (the prefill belongs to interval 0)."""
    workload, K, C = instance.workload, instance.model.kv_heads, int(labels.max()) + 1
    t = _interval_terms(instance, k, *output_routes(instance))
    if t["sum_gather"]:
        raise _OutOfScope
    out = head_outputs(t)  # (N, N, K+1)
    first_layer = np.array([np.flatnonzero(layer_labels == c)[0] for c in range(int(layer_labels.max()) + 1)])
    usable = usable_bytes(instance)
    memory = block_memory(instance, instance.precision, workload.interval_max_context()[k:k + 1])
    fraction = lambda per_layer: _per_class(np.asarray(per_layer, float)[0][first_layer][:, None] / usable, labels, C)  # noqa: E731
    embed_bytes, lm_bytes = float(np.ravel(memory.embed)[0]), float(np.ravel(memory.lm_head)[0])
    tied = heads_share_memory(instance.model, instance.precision)
    whole = (float(np.sum(memory.group)) * K + float(np.sum(memory.projection)) + float(np.sum(memory.ffn))
             + lm_bytes + (0.0 if tied else embed_bytes))
    room = np.cumsum(np.sort(usable)[::-1])
    needed = min(int(np.searchsorted(room, whole * (1 - 1e-9))) + 1, len(usable))
    alone = _per_class(usable >= whole * (1 - 1e-9), labels, C) > 0
    send = t["t_in"] if profile_sends_input(instance) else np.zeros_like(t["t_in"])
    return _Relaxed(
        np.bincount(labels, minlength=C).astype(float),
        _per_class(t["group"][first_layer], labels, C), _per_class(t["proj"][first_layer], labels, C),
        _per_class(t["ffn"][first_layer], labels, C), _per_class(t["embed"], labels, C), _per_class(t["lm"], labels, C),
        _class_transfers(send, labels, C), _class_transfers(t["t_hidden"], labels, C),
        _class_transfers(t["t_lm"], labels, C), _class_transfers(t["t_token"], labels, C),
        _class_transfers(out, labels, C), fraction(memory.group), fraction(memory.projection), fraction(memory.ffn),
        _per_class(embed_bytes / usable, labels, C), _per_class(lm_bytes / usable, labels, C),
        _per_class((embed_bytes if tied else 0.0) / usable, labels, C), float(max(needed, 2)), alone)


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Min-plus convolution over the last axis, truncated to its length: ``c[s] = min_i a[i] + b[s−i]``."""
    size = a.shape[-1]
    c = np.full(np.broadcast_shapes(a.shape, b.shape), np.inf)
    for i in range(size):
        np.minimum(c[..., i:], a[..., i:i + 1] + b[..., :size - i], out=c[..., i:])
    return c


def _power(h: np.ndarray, r: int) -> np.ndarray:
    """Least cost of spreading ``s`` groups over `r` identical devices of per-count cost `h` (..., K+1)."""
    result = np.full(h.shape, np.inf)
    result[..., 0] = 0.0
    base = h
    while r:
        if r & 1:
            result = _convolve(result, base)
        r >>= 1
        if r:
            base = _convolve(base, base)
    return result


def _stage(types: list[tuple[int, np.ndarray, np.ndarray]], K: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Least ``A + Σ_m h_m(n_m)`` over a threshold ``A`` and counts ``Σ n_m = K`` with every used device's chain
    within ``A``.

    Parameters: `types`, one ``(multiplicity, chain (K+1,), cost (K+1,))`` per type of
    identical devices (entry 0 of each: no groups). The thresholds tried are every chain
    value, so the least is exact. Returns the least (ms), and at it the groups and the
    devices used of each type.
    """
    T = len(types)
    live = [t for t in range(T) if types[t][0] > 0]
    finite = [types[t][1][1:][np.isfinite(types[t][1][1:])] for t in live]
    thresholds = np.unique(np.concatenate(finite)) if finite else np.zeros(0)
    groups, devices = np.zeros(T), np.zeros(T)
    if not len(thresholds):
        return np.inf, groups, devices
    count = np.arange(K + 1)
    allowed = lambda t, at: (types[t][1] <= at) | (count == 0)  # noqa: E731
    total = np.full((len(thresholds), K + 1), np.inf)
    total[:, 0] = 0.0
    for t in live:
        cost = np.where(allowed(t, thresholds[:, None]), types[t][2][None], np.inf)
        total = _convolve(total, _power(cost, types[t][0]))
    best = int(np.argmin(thresholds + total[:, K]))
    value = float(thresholds[best] + total[best, K])
    if not np.isfinite(value):
        return np.inf, groups, devices
    # the counts at the best threshold, for the multipliers' search (a supergradient)
    spread = [_spread(np.where(allowed(t, thresholds[best]), types[t][2], np.inf), types[t][0]) for t in live]
    prefix = [np.where(count == 0, 0.0, np.inf)]
    for f, _ in spread:
        prefix.append(_convolve(prefix[-1], f))
    left = K
    for i in range(len(live) - 1, -1, -1):
        f, used = spread[i]
        take = int(np.argmin(prefix[i][left - count[:left + 1]] + f[:left + 1]))
        groups[live[i]], devices[live[i]] = take, used[take]
        left -= take
    return value, groups, devices


def _spread(h: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """`_power` of one cost vector (K+1,), with the devices used at each total."""
    K = len(h) - 1
    s, n = np.indices((K + 1, K + 1))
    f = np.where(np.arange(K + 1) == 0, 0.0, np.inf)
    used = np.zeros(K + 1)
    for _ in range(r):
        cand = np.where(n <= s, f[np.clip(s - n, 0, K)] + h[n], np.inf)  # [total, on this device]
        pick = cand.argmin(axis=1)
        f, used = cand[np.arange(K + 1), pick], used[np.clip(np.arange(K + 1) - pick, 0, K)] + (pick > 0)
    return f, used


def _attention(x: _Relaxed, lc: int, pi: np.ndarray, sigma: float, shared: bool, a: int,
               b: int | None) -> tuple[float, np.ndarray]:
    """The cheapest priced attention stage of layer class `lc` with input on a device of class `a` and the
    projection on that device (`b` None) or on another of class `b`.

    Returns the cost (ms) and its use of the dualized rows: memory per class (C,) and messages, (C+1,).
    """
    C, K = len(x.size), x.out.shape[-1] - 1
    c = np.arange(K + 1)
    used = c > 0
    qc = a if b is None else b
    types, classes, messages = [], [], []

    def add(r: float, cls: int, recv: float, out: np.ndarray, sends: int) -> None:
        compute = x.group[lc, cls] * c
        price = pi[cls] * x.group_mem[lc, cls] * c - sigma * sends * used
        if shared:  # the stage is the slowest compute; every transfer adds up
            types.append((int(r), np.where(used, compute, 0.0), np.where(used, recv + out, 0.0) + price))
        else:  # each group device is its own chain: input, groups, outputs
            types.append((int(r), np.where(used, recv + out + compute, 0.0), price))
        classes.append(cls)
        messages.append(sends)

    zero = np.zeros(K + 1)
    add(1, a, 0.0, zero if b is None else x.out[a, b], 0 if b is None else 1)  # the input device
    if b is not None:
        add(1, b, x.t_in[a, b], zero, 1)  # the projection device
    for cls in range(C):
        others = x.size[cls] - (cls == a) - (b is not None and cls == b)
        add(others, cls, x.t_in[a, cls], x.out[cls, qc], 2)
    value, groups, devices = _stage(types, K)
    use = np.zeros(C + 1)
    np.add.at(use, classes, groups * x.group_mem[lc, classes])
    use[C] = devices @ np.array(messages, dtype=float)
    return value, use


def _arcs(x: _Relaxed, lc: int, pi: np.ndarray, sigma: float, shared: bool,
          reps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Priced cost of a layer of class `lc` whose input is on representative `u` and FFN on `v`: (R, R), ms,
    and each arc's use of the dualized rows (R, R, C+1)."""
    C = len(x.size)
    eye = np.eye(C + 1)
    proj = x.proj[lc] + pi * x.proj_mem[lc]
    ffn = x.ffn[lc] + pi * x.ffn_mem[lc]
    same = [_attention(x, lc, pi, sigma, shared, a, None) for a in range(C)]
    other = [[_attention(x, lc, pi, sigma, shared, a, b) if x.size[b] - (a == b) >= 1 else (np.inf, None)
              for b in range(C)] for a in range(C)]
    hidden = x.t_hidden - sigma

    def option(att, qb: int, cv: int, sends: bool) -> tuple[float, np.ndarray | None]:
        value, use = att
        cost = value + proj[qb] + ffn[cv] + (hidden[qb, cv] if sends else 0.0)
        if not np.isfinite(cost):
            return np.inf, None
        return cost, use + x.proj_mem[lc, qb] * eye[qb] + x.ffn_mem[lc, cv] * eye[cv] + sends * eye[C]

    R = len(reps)
    arcs, uses = np.full((R, R), np.inf), np.zeros((R, R, C + 1))
    for i, a in enumerate(reps):
        for j, cv in enumerate(reps):
            if i == j:  # FFN on the input device: projection there too, or on another device
                third = x.size - (np.arange(C) == a)
                options = [option(same[a], a, a, False)]
                options += [option(other[a][qb], qb, a, True) for qb in range(C) if third[qb] >= 1]
            else:  # projection on the input device, on the FFN device, or on a third device
                third = x.size - (np.arange(C) == a) - (np.arange(C) == cv)
                options = [option(same[a], a, cv, True), option(other[a][cv], cv, cv, False)]
                options += [option(other[a][qb], qb, cv, True) for qb in range(C) if third[qb] >= 1]
            cost, use = min(options, key=lambda o: o[0])
            arcs[i, j] = cost
            if use is not None:
                uses[i, j] = use
    return arcs, uses


def _lagrangian(x: _Relaxed, layer_labels: np.ndarray, pi: np.ndarray, sigma: float,
                shared: bool) -> tuple[float, np.ndarray]:
    """The Lagrangian value (ms) at multipliers `pi` (C,) and `sigma`: the cheapest closed path embed → layers →
    lm_head → embed over representatives, plus the dualized rows' right-hand sides; and a supergradient
    (C+1,) in ``(π, σ)``: each class's memory used less its devices, the messages needed less those sent."""
    C = len(x.size)
    reps = np.concatenate([np.full(int(min(x.size[c], REPRESENTATIVES)), c) for c in range(C)])
    R, eye_c = len(reps), np.eye(C + 1)
    arcs = {lc: _arcs(x, lc, pi, sigma, shared, reps) for lc in np.unique(layer_labels)}
    dist = np.where(np.eye(R, dtype=bool), 0.0, np.inf)  # [e, u]: cheapest path from embed e to layer input u
    use = np.zeros((R, R, C + 1))
    rows = np.arange(R)[:, None]
    for lc in layer_labels:
        cost, arc_use = arcs[int(lc)]
        through = dist[:, :, None] + cost[None]  # (e, u, v)
        pick = through.argmin(axis=1)  # (e, v)
        dist = np.take_along_axis(through, pick[:, None], axis=1)[:, 0]
        use = use[rows, pick] + arc_use[pick, np.arange(R)[None]]
    off = 1.0 - np.eye(R)
    lm_t = np.where(off > 0, x.t_lm[reps][:, reps] - sigma, 0.0)
    through = dist[:, :, None] + lm_t[None]  # (e, v, h)
    # a placement wholly on one device that holds it all sends nothing and is exempt from the devices row
    exempt = np.zeros((R, R, R))
    on = np.flatnonzero(x.alone[reps])
    exempt[on, on, on] = x.messages_needed
    through = through - sigma * exempt
    pick = through.argmin(axis=1)  # (e, h)
    lm_in = np.take_along_axis(through, pick[:, None], axis=1)[:, 0]
    hh = np.arange(R)[None]
    use = use[rows, pick] + (off[pick, hh] + exempt[rows, pick, hh])[..., None] * eye_c[C]
    token = np.where(off > 0, x.t_token[reps][:, reps] - sigma, 0.0).T  # [e, h]: h → e
    ends = (lm_in + (x.embed + pi * x.embed_mem)[reps][:, None] + (x.lm + pi * x.lm_mem)[reps][None]
            + token - np.diag((pi * x.saving)[reps]))
    e, h = np.unravel_index(int(np.argmin(ends)), ends.shape)
    g = use[e, h] + x.embed_mem[reps[e]] * eye_c[reps[e]] + x.lm_mem[reps[h]] * eye_c[reps[h]] + off[e, h] * eye_c[C]
    if e == h:
        g = g - x.saving[reps[e]] * eye_c[reps[e]]
    g = np.concatenate([g[:C] - x.size, [x.messages_needed - g[C]]])
    return float(ends[e, h] - pi @ x.size + sigma * x.messages_needed), g


def _search(x: _Relaxed, layer_labels: np.ndarray, shared: bool, scale_ms: float, start: np.ndarray,
            deadline_s: float) -> tuple[float, float, np.ndarray, int]:
    """The largest Lagrangian value over ``(π, σ) ≥ 0`` by a cutting-plane method with a trust region.

    Each evaluation gives a value and a supergradient, hence a cut ``L(z') ≤ L(z) + g·(z' − z)``;
    the next point maximizes the cuts within a box around the best point, which shrinks
    when a step does not improve (Kelley's method, stabilized). Returns the best value
    (ms), the floor (the best value with π = 0, σ searched on a line first), the best
    multipliers and the evaluations spent.
    """
    C = len(x.size)
    cuts_z, cuts_v, cuts_g = [], [], []

    def evaluate_at(z: np.ndarray) -> float:
        z = np.maximum(z, 0.0)
        v, g = _lagrangian(x, layer_labels, z[:C], float(z[C]), shared)
        cuts_z.append(z)
        cuts_v.append(v)
        cuts_g.append(g)
        return v

    floor = evaluate_at(np.zeros(C + 1))
    for step in range(12):  # the analytic floor: memory free, the devices row priced on its own
        if time.perf_counter() > deadline_s:
            break
        sigma = float(cuts_z[int(np.argmax(cuts_v))][C])
        trial = sigma + scale_ms * 1e-3 * 2.0 ** step if cuts_g[-1][C] > 0 else sigma * 0.5
        floor = max(floor, evaluate_at(np.concatenate([np.zeros(C), [trial]])))
    z0 = np.maximum(start, 0.0)
    evaluate_at(z0)
    radius = scale_ms * 0.1
    while time.perf_counter() < deadline_s and radius > 1e-9 * scale_ms and len(cuts_v) < 40 * (C + 1):
        best = int(np.argmax(cuts_v))
        centre = cuts_z[best]
        lower, upper = np.maximum(centre - radius, 0.0), centre + radius
        # maximize t subject to t ≤ v_i + g_i·(z − z_i) for every cut, z in the box: variables (z, t)
        G, V, Z = np.array(cuts_g), np.array(cuts_v), np.array(cuts_z)
        a_ub = np.hstack([-G, np.ones((len(V), 1))])
        b_ub = V - np.einsum("ij,ij->i", G, Z)
        lp = linprog(np.concatenate([np.zeros(C + 1), [-1.0]]), A_ub=a_ub, b_ub=b_ub,
                     bounds=list(zip(lower, upper)) + [(None, None)], method="highs")
        if lp.status != 0:
            break
        predicted = -lp.fun
        value = evaluate_at(lp.x[:C + 1])
        if predicted - cuts_v[best] <= 1e-7 * max(abs(cuts_v[best]), scale_ms * 1e-3):
            break  # no point of the box beats the best one, so (L is concave) none anywhere does
        if value <= cuts_v[best] + 0.1 * (predicted - cuts_v[best]):
            radius *= 0.5  # the model promised more than the function gave: trust it less
        else:
            radius *= 2.0
    best = int(np.argmax(cuts_v))
    return cuts_v[best], floor, cuts_z[best], len(cuts_v)


def class_bound(instance: Instance, *, time_limit_s: float, upper_bound_s: float | None = None) -> ClassBound | None:
    """A lower bound on every feasible plan's total latency, from the device-class relaxation.

    Parameters
    ----------
    instance : Instance
    time_limit_s : float
        Seconds for the whole call, shared by the intervals in turn; the bound is
        valid whenever it stops.
    upper_bound_s : float, optional
        Total latency of a known plan, seconds: the scale of the multipliers' first steps.

    Returns
    -------
    ClassBound or None
        None for the three-phase profile (``kafetzis2025``), whose head outputs add up
        differently. Intervals are priced in the order first, first decode, last, then
        the rest; one the time limit leaves unpriced counts the best bound of a priced
        interval it dominates (every time and memory fraction at least as large), else 0.
    """
    started = time.perf_counter()
    deadline = started + time_limit_s
    I = instance.workload.n_intervals
    labels, layer_labels = device_classes(instance), layer_classes(instance)
    try:
        relaxed = [_relaxed_interval(instance, k, labels, layer_labels) for k in range(I)]
    except _OutOfScope:
        return None
    shared = instance.cluster.network == "shared"
    scale = (upper_bound_s or 1.0) / SECONDS_PER_UNIT / I
    evaluations = 0
    start = np.zeros(int(labels.max()) + 2)
    found: dict[int, tuple[float, float]] = {}
    # the first decode interval and the last first: by dominance their bounds cover the others
    order = list(dict.fromkeys([0, min(1, I - 1), I - 1] + list(range(I))))
    for done, k in enumerate(order):
        now = time.perf_counter()
        if now > deadline:
            break
        value, lowest, start, spent = _search(relaxed[k], layer_labels, shared, scale, start,
                                              now + (deadline - now) / (len(order) - done))
        found[k] = (max(value, 0.0), max(lowest, 0.0))
        evaluations += spent
    # an interval not priced counts the best priced one it dominates (`_dominates`), else 0
    covered = [[found[j] for j in found if _dominates(relaxed[k], relaxed[j])] for k in range(I)]
    total = sum(max((v for v, _ in c), default=0.0) for c in covered)
    floor = sum(max((f for _, f in c), default=0.0) for c in covered)
    to_s = SECONDS_PER_UNIT * (1 - _ROUNDING)
    return ClassBound(total * to_s, floor * to_s, int(labels.max()) + 1, evaluations, len(found))


def _dominates(a: _Relaxed, b: _Relaxed) -> bool:
    """Whether interval `a`'s Lagrangian is at least `b`'s at every multiplier: its every time and memory
    fraction at least `b`'s, and the same classes, tied saving and devices row (so each placement's priced
    cost is at least its cost in `b`, and so is the minimum)."""
    same = all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("size", "saving", "alone", "messages_needed"))
    larger = ("group", "proj", "ffn", "embed", "lm", "t_in", "t_hidden", "t_lm", "t_token", "out", "group_mem",
              "proj_mem", "ffn_mem", "embed_mem", "lm_mem")
    return same and all((getattr(a, f) >= getattr(b, f)).all() for f in larger)


def with_class_bound(instance: Instance, columns: ConfigurationBound | None, warm_plan: Plan | None, *,
                     deadline: Deadline, stats: dict) -> ConfigurationBound | None:
    """`columns` (the configuration LP's result, or None) with the class bound when that is higher.

    The MILP back end's hook, for clusters the configuration LP could not price (`columns`
    None) or of `CLASS_BOUND_DEVICES` devices or more. The bound gets a fifth of the time
    left, or nine tenths of it when the per-layer MILP will not be built anyway
    (`milp_model.skip_reason`), a minute without a limit; its figures go to `stats`
    (``class_bound_s``, ``class_floor_s``, ``device_classes``, ``class_intervals_priced``).
    On a shared medium the packing bound (`milp_packing.packing_bound`) runs first with
    up to two thirds of that time, the class bound gets the rest, and the higher of the
    two counts (``packing_bound_s``).

    Parameters
    ----------
    instance : Instance
    columns : ConfigurationBound or None
    warm_plan : Plan or None
        The incumbent, whose evaluator total sets the multipliers' scale.
    deadline : Deadline
        The end of the MILP call.
    stats : dict
        The result's statistics, updated in place.

    Returns
    -------
    ConfigurationBound or None
        `columns`, its bound raised to the class bound's when higher; a bound without a
        plan when `columns` is None; None when neither exists.
    """
    if columns is not None and instance.n_devices < CLASS_BOUND_DEVICES:
        return columns  # the configuration LP prices every device: the class bound would only add its time
    remaining = deadline.remaining_s()
    if remaining is None:
        budget = 60.0
    else:
        skipped = skip_reason(instance, list(range(instance.workload.n_intervals)), 0.8 * remaining)
        budget = (0.9 if skipped else 0.2) * remaining
    upper = None if warm_plan is None else evaluate(instance, warm_plan).total_s
    # on a shared medium the packing bound (milp_packing) runs first, with up to two thirds of the time
    began = time.perf_counter()
    packed = packing_bound(instance, time_limit_s=budget * 2 / 3) if instance.cluster.network == "shared" else None
    found = class_bound(instance, time_limit_s=budget - (time.perf_counter() - began), upper_bound_s=upper)
    if packed is not None:
        stats["packing_bound_s"] = packed
    if found is not None and found.intervals_priced > 0:
        stats.update(class_bound_s=found.bound_s, class_floor_s=found.floor_s, device_classes=found.classes,
                     class_intervals_priced=found.intervals_priced)
    best = max([b for b in (packed, None if found is None or found.intervals_priced == 0 else found.bound_s)
                if b is not None and b > 0], default=None)
    if best is None:
        return columns  # out of scope, or no time was left: no bound rather than a bound of 0
    if columns is None:
        # no configuration LP ran: the class (or packing) bound is the only (path) bound there is
        return ConfigurationBound(best, None, None, 0, int(layer_classes(instance).max()) + 1, path_bound_s=best)
    return replace(columns, bound_s=max(columns.bound_s, best))
