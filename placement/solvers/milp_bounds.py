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
import scipy.sparse as sp

from placement.cost.tables import block_memory, heads_share_memory, usable_bytes
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.solvers.backends import solve_lp_duals, solve_problem
from placement.solvers.linear import LinearProblem
from placement.solvers.milp_model import SECONDS_PER_UNIT, Phase, output_routes, phase_terms, profile_sends_input

__all__ = ["ConfigurationBound", "layer_classes", "configuration_bound", "pricing_work"]

# Above this many elementary DP operations per evaluation of the relaxation the bound is
# not computed (a 48-device cluster with 40 groups per layer would take hours per step).
_WORK_LIMIT = 1e9
# Pricing operations per second measured on the loaded 2-core VM (docs/benchmarks.md): a call
# whose first two rounds of pricing (every class, every interval) would not fit its time
# limit returns no bound rather than overrunning it.
_OPS_PER_S = 3e7
# The bound given up to cover rounding in the sums of many small times.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class ConfigurationBound:
    """The best bound found by column generation, and the best plan over the generated configurations.

    Attributes
    ----------
    bound_s : float
        Lower bound on the total latency of every feasible plan, seconds.
    plan : Plan or None
        The restricted MILP's plan (one placement for every interval), when it fits.
    plan_total_s : float or None
        The evaluator's total of `plan`, seconds.
    columns : int
        Configurations generated, over all classes.
    classes : int
        Classes of identical layers.
    """

    bound_s: float
    plan: Plan | None
    plan_total_s: float | None
    columns: int
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
    devices_needed: int  # fewest devices whose memory holds every block at the interval's largest context


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
    whole = float(np.sum(memory.group) * instance.model.kv_heads + np.sum(memory.projection) + np.sum(memory.ffn)
                  + (0.0 if tied else float(np.ravel(memory.embed)[0])) + float(np.ravel(memory.lm_head)[0]))
    room = np.cumsum(np.sort(usable)[::-1])
    needed = int(np.searchsorted(room, whole * (1 - 1e-9))) + 1  # the largest devices first
    return _IntervalData(terms, per(memory.group), per(memory.projection), per(memory.ffn), embed,
                         float(np.ravel(memory.lm_head)[0]) / usable, embed if tied else np.zeros_like(embed),
                         min(needed, len(usable)))


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


def _attention(terms: dict, layer: int, group_price: np.ndarray, sigma: float, shared: bool, sends_input: bool,
               K: int) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest attention stage of one layer for every input device ``u`` and projection device ``q``.

    Memory is priced by `group_price` (N,) per group and every message (input to a
    group device, outputs to the projection) earns `sigma` (the devices-needed row).
    Returns the cost (N_u, N_q) in ms (priced) and the counts (N_u, N_q, N).
    """
    N = len(group_price)
    out = _head_outputs(terms, K)  # (m, q, c)
    c = np.arange(K + 1)
    compute = terms["group"][layer][:, None] * c  # (m, c)
    t_in = terms["t_in"] if sends_input else np.zeros((N, N))
    price = group_price[:, None] * c  # (m, c)
    best = np.full((N, N), np.inf)
    counts = np.zeros((N, N, N), dtype=np.int64)
    off = 1.0 - np.eye(N)
    for u in range(N):
        recv = t_in[u][:, None] * (c > 0)  # (m, c)
        messages = (off[u][None, :, None] + off.T[:, :, None]) * (c > 0)  # (q, m, c): input and output messages
        if shared:  # the stage is the slowest compute; every transfer adds up
            chain = np.broadcast_to(compute, (N, N, K + 1))  # (q, m, c)
            per_count = recv[None] + out.transpose(1, 0, 2) + price[None] - sigma * messages
        else:  # each group device is its own chain: input, groups, outputs
            chain = recv[None] + out.transpose(1, 0, 2) + compute[None]
            per_count = price[None] - sigma * messages
        thresholds = chain[:, :, 1:].reshape(N, -1)  # (q, A): every chain value is a candidate
        allowed = (chain[:, None] <= thresholds[:, :, None, None]) | (c == 0)  # (q, A, m, c)
        value, n = _allocate(np.broadcast_to(per_count[:, None], allowed.shape), allowed, K)
        total = thresholds + value  # (q, A)
        pick = total.argmin(axis=1)
        best[u] = total[np.arange(N), pick]
        counts[u] = n[np.arange(N), pick]
    return best, counts


@dataclass(frozen=True, eq=False)
class _Prices:
    """The cheapest configuration of every class for every arc ``u → v`` at memory prices π."""

    arcs: dict  # class → (N_u, N_v) priced cost, ms
    choice: dict  # class → (q (N_u, N_v), counts (N_u, N_q, N))


@dataclass(frozen=True)
class _Scope:
    """What the pricing needs to know about the instance."""

    labels: np.ndarray  # (L,) class of each layer
    shared: bool  # the attention stage's transfers add up
    sends_input: bool
    K: int


def _price(data: _IntervalData, scope: _Scope, pi: np.ndarray, sigma: float) -> _Prices:
    """Price every class's configurations at multipliers `pi` (N,), ms per unit of memory fraction, and `sigma`,
    ms per message (the devices-needed row)."""
    t, N = data.terms, len(pi)
    arcs, choice = {}, {}
    for cls in np.unique(scope.labels):
        layer = int(np.flatnonzero(scope.labels == cls)[0])
        att, counts = _attention(t, layer, pi * data.group_mem[layer], sigma, scope.shared, scope.sends_input, scope.K)
        proj = t["proj"][layer] + pi * data.projection_mem[layer]
        ffn = t["ffn"][layer] + pi * data.ffn_mem[layer]
        hidden = t["t_hidden"] - sigma * (1.0 - np.eye(N))
        through = att[:, :, None] + proj[None, :, None] + hidden[None] + ffn[None, None, :]  # (u, q, v)
        q = through.argmin(axis=1)
        arcs[int(cls)] = np.take_along_axis(through, q[:, None], axis=1)[:, 0]
        choice[int(cls)] = (q, counts)
    return _Prices(arcs, choice)


def _lagrangian(data: _IntervalData, scope: _Scope, pi: np.ndarray, sigma: float, prices: _Prices) -> float:
    """The Lagrangian value (ms) at `pi` and `sigma`: the cheapest path embed → layers → lm_head → embed over
    priced arcs, plus the relaxed rows' right-hand sides."""
    t, N = data.terms, len(pi)
    off = 1.0 - np.eye(N)
    dist = np.where(np.eye(N, dtype=bool), 0.0, np.inf)  # [e, u]: cheapest path from embed e to layer input u
    for cls in scope.labels:
        dist = (dist[:, :, None] + prices.arcs[int(cls)][None]).min(axis=1)
    ends = ((dist[:, :, None] + t["t_lm"][None] - sigma * off[None]).min(axis=1)
            + (t["embed"] + pi * data.embed_mem)[:, None] + (t["lm"] + pi * data.lm_head_mem)[None]
            + t["t_token"].T - sigma * off - np.diag(pi * data.shared_saving))  # (e, h)
    return float(ends.min() - pi.sum() + sigma * data.devices_needed)


@dataclass(frozen=True, eq=False)
class _Pool:
    """Generated configurations of one class: input ``u``, projection ``q``, FFN ``v``, group counts ``n``."""

    u: np.ndarray
    q: np.ndarray
    v: np.ndarray
    n: np.ndarray  # (J, N)

    def add(self, u, q, v, n) -> "_Pool":
        """The pool with the new configurations that are not in it yet."""
        rows = np.concatenate([np.stack([self.u, self.q, self.v], 1), self.n], 1)
        new = np.concatenate([np.stack([u, q, v], 1), n], 1)
        both = np.unique(np.concatenate([rows, new]), axis=0)
        return _Pool(both[:, 0], both[:, 1], both[:, 2], both[:, 3:])


def _config_costs(data: _IntervalData, scope: _Scope, layer: int,
                  pool: _Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost (J,) in ms, memory (J, N) in fractions of each device and messages (J,) of every configuration in `pool`."""
    t, n = data.terms, pool.n
    J, N = n.shape
    out = _head_outputs(t, scope.K)[np.arange(N)[None], pool.q[:, None], n]  # (J, N)
    compute = t["group"][layer][None] * n
    t_in = t["t_in"] if scope.sends_input else np.zeros((N, N))
    recv, used = t_in[pool.u], n > 0
    if scope.shared:
        stage = compute.max(axis=1) + np.where(used, recv + out, 0.0).sum(axis=1)
    else:
        stage = np.where(used, recv + out + compute, 0.0).max(axis=1)
    cost = stage + t["proj"][layer][pool.q] + t["t_hidden"][pool.q, pool.v] + t["ffn"][layer][pool.v]
    eye = np.eye(N)
    memory = n * data.group_mem[layer] + eye[pool.q] * data.projection_mem[layer] + eye[pool.v] * data.ffn_mem[layer]
    devices = np.arange(N)[None]
    messages = (used & (devices != pool.u[:, None])).sum(1) + (used & (devices != pool.q[:, None])).sum(1) \
        + (pool.q != pool.v)
    return cost, memory, messages.astype(float)


def _ends(data: _IntervalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost (N_e, N_v, N_h) in ms, memory (N_e, N_v, N_h, N) and messages (N_e, N_v, N_h) of the embedding,
    lm_head and their transfers."""
    t, N = data.terms, len(data.embed_mem)
    cost = t["embed"][:, None, None] + t["t_lm"][None] + t["lm"][None, None] + t["t_token"].T[:, None, :]
    eye = np.eye(N)
    memory = (eye[:, None, None, :] * data.embed_mem + eye[None, None, :, :] * data.lm_head_mem
              - (np.eye(N)[:, None, :, None] * eye[:, None, None, :]) * data.shared_saving)
    e, v, h = np.indices((N, N, N))
    return cost, np.broadcast_to(memory, (N, N, N, N)), ((v != h).astype(float) + (h != e))


def _master(datas: list[_IntervalData], scope: _Scope, pools: dict, *, integer: bool, slack_cost: float):
    """The configuration master over `datas` (one interval: the LP; several: one placement for all).

    Costs are summed over `datas`; the memory and devices rows are the last interval's,
    where every block is at least as large as before (caches only grow), so one
    placement that fits them fits every interval.

    Columns: ``w[l, j]`` (layer ``l`` takes configuration ``j`` of its class), ``z[e, v, h]``
    (embedding on ``e``, last layer's output on ``v``, lm_head on ``h``) and, when
    `slack_cost` > 0, memory slack. Rows: ``flow[l, u]`` (the configurations of layer ``l``
    with input on ``u`` are the layer ``l−1`` ones with output on ``u``), ``one``,
    ``memory[k, m]`` and ``devices[k]`` (at least as many messages as devices needed).
    """
    L, N = len(scope.labels), len(datas[0].embed_mem)
    R = 1
    mem_row = lambda r, m: (L + 1) * N + 1 + r * N + m  # noqa: E731
    msg_row = (L + 1) * N + 1 + R * N  # + r
    rows, cols, vals, cost, column_of = [], [], [], [], []
    start = 0
    for l, cls in enumerate(scope.labels):
        pool = pools[int(cls)]
        J = len(pool.u)
        priced = [_config_costs(d, scope, l, pool) for d in datas]
        cost.append(sum(c for c, _, _ in priced))
        index = start + np.arange(J)
        rows += [l * N + pool.u, (l + 1) * N + pool.v]
        cols += [index, index]
        vals += [np.ones(J), -np.ones(J)]
        for r, (_, memory, messages) in enumerate(priced[-1:]):
            jj, mm = np.nonzero(memory)
            rows += [mem_row(r, mm), np.full(J, msg_row + r)]
            cols += [start + jj, index]
            vals += [memory[jj, mm], messages]
        column_of.append(index)
        start += J
    ends = [_ends(d) for d in datas]
    e, v, h = (a.ravel() for a in np.indices((N, N, N)))
    z = start + np.arange(N ** 3)
    cost.append(sum(c for c, _, _ in ends).ravel())
    rows += [e, L * N + v, np.full(N ** 3, (L + 1) * N)]
    cols += [z, z, z]
    vals += [-np.ones(N ** 3), np.ones(N ** 3), np.ones(N ** 3)]
    for r, (_, memory, messages) in enumerate(ends[-1:]):
        zz, mm = np.nonzero(memory.reshape(N ** 3, N))
        rows += [mem_row(r, mm), np.full(N ** 3, msg_row + r)]
        cols += [start + zz, z]
        vals += [memory.reshape(N ** 3, N)[zz, mm], messages.ravel()]
    n_cols = start + N ** 3
    if slack_cost > 0:
        slack = n_cols + np.arange(R * N)
        rows.append(mem_row(0, 0) + np.arange(R * N))
        cols.append(slack)
        vals.append(-np.ones(R * N))
        cost.append(np.full(R * N, slack_cost))
        n_cols += R * N
    n_rows = (L + 1) * N + 1 + R * N + R
    matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_cols))
    # a margin below each device's memory keeps a solver's tolerance from packing a few bytes over it
    upper_memory = 1.0 - (1e-7 if integer else 0.0)
    # a placement on two or more devices sends at least as many messages as it uses devices (docs/milp.md)
    needed = [d.devices_needed if d.devices_needed >= 2 else 0 for d in datas[-1:]]
    row_lower = np.concatenate([np.zeros((L + 1) * N), [1.0], np.full(R * N, -np.inf), needed])
    row_upper = np.concatenate([np.zeros((L + 1) * N), [1.0], np.full(R * N, upper_memory), np.full(R, np.inf)])
    whole = np.zeros(n_cols, bool)
    whole[:start + N ** 3] = integer
    problem = LinearProblem(np.concatenate(cost), matrix, row_lower, row_upper, np.zeros(n_cols),
                            np.ones(n_cols) if integer else np.full(n_cols, np.inf), whole)
    return problem, column_of, z


def _initial_pools(datas: list[_IntervalData], scope: _Scope, start: list[Placement] | None) -> dict:
    """Every arc's cheapest configuration without memory prices, and the configurations of `start`."""
    N = len(datas[0].embed_mem)
    pools = {}
    for data in datas:
        prices = _price(data, scope, np.zeros(N), 0.0)
        for cls, (q, counts) in prices.choice.items():
            uu, vv = (a.ravel() for a in np.indices((N, N)))
            qq = q[uu, vv]
            new = (uu, qq, vv, counts[uu, qq])
            pools[cls] = pools[cls].add(*new) if cls in pools else _Pool(*new).add(*new)
    for placement in start or []:
        u, q, v, n = _configurations(placement, N)
        for cls in np.unique(scope.labels):
            at = scope.labels == cls
            pools[int(cls)] = pools[int(cls)].add(u[at], q[at], v[at], n[at])
    return pools


def _configurations(placement: Placement, N: int):
    """Each layer's (input device, projection device, FFN device, group counts) in `placement`."""
    L = placement.attention.shape[0]
    v = placement.ffn.argmax(axis=1)
    u = np.concatenate([[placement.embed], v[:-1]])
    n = np.zeros((L, N), dtype=np.int64)
    np.add.at(n, (np.arange(L)[:, None], placement.attention), 1)
    return u, placement.projection.argmax(axis=1), v, n


def _generate(data: _IntervalData, scope: _Scope, pools: dict, deadline_s: float, slack_cost: float) -> tuple[float, dict]:
    """Column generation on one interval's configuration LP; returns the best Lagrangian bound (ms) and the pools."""
    L, N = len(scope.labels), len(data.embed_mem)
    best = -np.inf
    while True:
        problem, _, _ = _master([data], scope, pools, integer=False, slack_cost=slack_cost)
        solved = solve_lp_duals(problem, time_limit=max(deadline_s - time.perf_counter(), 0.01))
        pi = np.zeros(N) if solved is None else np.maximum(-solved[1][(L + 1) * N + 1:(L + 2) * N + 1], 0.0)
        sigma = 0.0 if solved is None or data.devices_needed < 2 else max(float(solved[1][(L + 2) * N + 1]), 0.0)
        prices = _price(data, scope, pi, sigma)
        best = max(best, _lagrangian(data, scope, pi, sigma, prices))
        if solved is None or time.perf_counter() > deadline_s:
            return best, pools
        if solved[2] - best <= 1e-9 * max(abs(solved[2]), 1e-9):
            return best, pools  # the LP optimum is reached: no column prices out
        flow = solved[1][:(L + 1) * N].reshape(L + 1, N)
        added = 0
        for cls in np.unique(scope.labels):  # every arc that prices out for some layer of the class
            layers = np.flatnonzero(scope.labels == cls)
            reduced = (prices.arcs[int(cls)][None] - flow[layers][:, :, None] + flow[layers + 1][:, None, :]).min(axis=0)
            u, v = np.nonzero(reduced < -1e-9 * max(abs(solved[2]), 1.0))
            if len(u):
                q, counts = prices.choice[int(cls)]
                before = len(pools[int(cls)].u)
                pools[int(cls)] = pools[int(cls)].add(u, q[u, v], v, counts[u, q[u, v]])
                added += len(pools[int(cls)].u) - before
        if not added:
            return best, pools


def _restricted_plan(instance: Instance, datas: list[_IntervalData], scope: _Scope, pools: dict,
                     time_limit_s: float) -> Plan | None:
    """Price-and-branch: the best single placement for every interval among the generated configurations."""
    problem, column_of, z = _master(datas, scope, pools, integer=True, slack_cost=0.0)
    outcome = solve_problem(problem, "highs", time_limit=max(time_limit_s, 0.01), gap=1e-5,  # a plan, not a proof
                            presolve=False)
    if outcome.x is None:
        return None
    x, N = np.rint(outcome.x), len(datas[0].embed_mem)
    attention, projection, ffn = [], np.zeros((len(scope.labels), N)), np.zeros((len(scope.labels), N))
    for l, cls in enumerate(scope.labels):
        j = int(np.argmax(x[column_of[l]]))
        pool = pools[int(cls)]
        attention.append(np.repeat(np.arange(N), pool.n[j]))
        projection[l, pool.q[j]] = ffn[l, pool.v[j]] = 1.0
    e, _, h = np.unravel_index(int(np.argmax(x[z])), (N, N, N))
    placement = Placement(np.stack(attention), projection, ffn, int(e), int(h))
    return Plan(instance.cluster.names, [placement] * len(datas), method="milp")


def _sequenced_plan(instance: Instance, datas: list[_IntervalData], scope: _Scope, pools: dict,
                    deadline_s: float) -> Plan | None:
    """A plan that changes placement as the caches grow: each interval's best placement among the columns,
    kept over a run of intervals ending at its own, the runs chosen by a DP over the evaluator's figures.

    Placement ``P_j`` (the restricted MILP of interval ``j`` alone) fits every interval up to
    ``j`` (memory only grows), so a plan is a rising sequence ``j_1 < j_2 < … = I−1`` with
    ``P_{j_s}`` on intervals ``j_{s−1}+1 … j_s``; the DP weighs each run's decode time and
    each switch's migration, both from the evaluator.
    """
    I, names = len(datas), instance.cluster.names
    steps = instance.workload.interval_of_step()
    placements = []
    for j, data in enumerate(datas):
        if time.perf_counter() > deadline_s:
            return None
        share = (deadline_s - time.perf_counter()) / (2 * (I - j))  # half the time for the plans, half for the DP
        plan = _restricted_plan(instance, [data], scope, pools, share)
        if plan is None:
            return None
        placements.append(plan.intervals[0])
    reports = [evaluate(instance, Plan(names, [p] * I)) for p in placements]
    decode = np.array([np.bincount(steps, weights=r.decode_s, minlength=I) for r in reports])  # (j, k)
    best = np.array([reports[j].ttft_s + decode[j, :j + 1].sum() for j in range(I)])
    came = np.full(I, -1)
    for j in range(1, I):
        for a in range(j):
            if time.perf_counter() > deadline_s:
                break
            switch = evaluate(instance, Plan(names, [placements[a]] * (a + 1) + [placements[j]] * (I - a - 1)))
            value = best[a] + float(switch.migration_s[a + 1]) + decode[j, a + 1:j + 1].sum()
            if value < best[j]:
                best[j], came[j] = value, a
    runs, j = [], I - 1
    while j >= 0:
        start = came[j] + 1
        runs = [placements[j]] * (j - start + 1) + runs
        j = came[j]
    return Plan(names, runs, method="milp")


def configuration_bound(instance: Instance, *, time_limit_s: float, upper_bound_s: float | None = None,
                        start: list[Placement] | None = None) -> ConfigurationBound | None:
    """The configuration LP's bound by column generation, and the best plan over the generated configurations.

    Parameters
    ----------
    instance : Instance
    time_limit_s : float
        Seconds for the whole call: about 70 % for column generation (shared by the
        intervals in turn), the rest for the restricted MILPs (one over every interval,
        then, with several intervals, one per interval for `_sequenced_plan`).
    upper_bound_s : float, optional
        Total latency of a known feasible plan, seconds: sets the price of memory slack.
    start : list of Placement, optional
        A plan's placements whose configurations seed the pools.

    Returns
    -------
    ConfigurationBound or None
        None when the instance is out of scope: a cluster too large for the pricing DP
        (`pricing_work` above 10⁹, or two rounds of pricing not fitting `time_limit_s`),
        or a three-phase profile whose inputs travel.
    """
    started = time.perf_counter()
    shared, sends_input = instance.cluster.network == "shared", profile_sends_input(instance)
    labels = layer_classes(instance)
    rounds = 2 * (int(labels.max()) + 1) * instance.workload.n_intervals
    if pricing_work(instance) > _WORK_LIMIT or rounds * pricing_work(instance) / _OPS_PER_S > time_limit_s:
        return None
    route, varies = output_routes(instance)
    datas = [_interval_data(instance, k, route, varies) for k in range(instance.workload.n_intervals)]
    if any(d.terms["sum_gather"] for d in datas):
        if sends_input and not shared:
            return None
        shared = True  # the three-phase model adds the outputs up, like a shared network
    scope = _Scope(labels, shared, sends_input, instance.model.kv_heads)
    pools = _initial_pools(datas, scope, start)
    slack_cost = 1e3 * max(1.0, (upper_bound_s or 1.0) / SECONDS_PER_UNIT)
    total = 0.0
    for k, data in enumerate(datas):
        share = started + 0.7 * time_limit_s * (k + 1) / len(datas)
        value, pools = _generate(data, scope, pools, share, slack_cost)
        total += value
    end = started + time_limit_s
    plan = _restricted_plan(instance, datas, scope, pools, 0.5 * (end - time.perf_counter()))
    report = None if plan is None else evaluate(instance, plan)
    if len(datas) > 1:
        sequenced = _sequenced_plan(instance, datas, scope, pools, end)
        sequenced_report = None if sequenced is None else evaluate(instance, sequenced)
        if sequenced_report is not None and sequenced_report.feasible and (
                report is None or not report.feasible or sequenced_report.total_s < report.total_s):
            plan, report = sequenced, sequenced_report
    feasible = report is not None and report.feasible
    return ConfigurationBound(max(total, 0.0) * SECONDS_PER_UNIT * (1 - _ROUNDING), plan if feasible else None,
                              report.total_s if feasible else None, sum(len(p.u) for p in pools.values()),
                              int(labels.max()) + 1)
