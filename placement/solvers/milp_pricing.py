"""The pricing core of the configuration LP (docs/milp.md, "Layer configurations").

One interval's summed costs and memory (`interval_data`), the cheapest configuration of
every class for every arc ``u → v`` at memory prices (`price_classes`, by a threshold
and a resource-allocation DP over devices), the costs of given
configurations (`config_costs`, `ends_table`), and the Lagrangian value of a set of
multipliers (`lagrangian`: a cheapest path over the priced arcs). `milp_bounds` runs the
column generation and the master over these; `milp_signatures` reads the priced arcs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.cost.tables import block_memory, heads_share_memory, usable_bytes
from placement.instance import Instance
from placement.plan import Placement
from placement.solvers.milp_model import Phase, output_routes, phase_terms

__all__ = ["IntervalData", "Pool", "Prices", "Scope", "attention_by_count", "attention_stage", "cheapest_path", "config_costs",
           "ends_priced", "ends_table", "head_outputs", "interval_data", "lagrangian", "path_placement", "price_classes", "pricer", "two_phase_arcs"]


@dataclass(frozen=True, eq=False)
class IntervalData:
    """One interval's summed costs (milliseconds) and memory (fractions of each device's usable memory).

    Attributes
    ----------
    terms : dict
        The interval's `phase_terms` tables summed over its tokens (the prefill too, in interval 0), ms.
    group_mem, projection_mem, ffn_mem : ndarray, shape (L, N)
        One group's, the projection's and the FFN's bytes at the interval's largest context, as
        fractions of each device's usable memory.
    embed_mem, lm_head_mem : ndarray, shape (N,)
        The embedding's and lm_head's bytes, fractions of each device's usable memory.
    shared_saving : ndarray, shape (N,)
        Memory fraction saved when a tied embedding and lm_head share the device (zeros when untied).
    devices_needed : int
        Fewest devices whose usable memory holds every block at the interval's largest context.
    alone : ndarray of bool, shape (N,)
        The device holds every block by itself.
    """

    terms: dict
    group_mem: np.ndarray  # (L, N)
    projection_mem: np.ndarray  # (L, N)
    ffn_mem: np.ndarray  # (L, N)
    embed_mem: np.ndarray  # (N,)
    lm_head_mem: np.ndarray  # (N,)
    shared_saving: np.ndarray  # (N,) memory saved when tied embed and lm_head share a device
    devices_needed: int  # fewest devices whose memory holds every block at the interval's largest context
    alone: np.ndarray  # (N,) bool: the device holds every block by itself

    @property
    def messages_needed(self) -> int:
        """Right-hand side of the devices row: a placement on two or more devices sends at least this many messages."""
        return max(self.devices_needed, 2)


def interval_data(instance: Instance, k: int, route: np.ndarray, varies: np.ndarray) -> IntervalData:
    """Interval `k`'s tokens summed into one block, and its memory at its largest context.

    Parameters
    ----------
    instance : Instance
    k : int
        Interval index.
    route, varies : ndarray
        The output routes of `milp_model.output_routes`.

    Returns
    -------
    IntervalData
        Costs in ms, memory in fractions of each device's usable memory.
    """
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
    return IntervalData(terms, per(memory.group), per(memory.projection), per(memory.ffn), embed,
                         float(np.ravel(memory.lm_head)[0]) / usable, embed if tied else np.zeros_like(embed),
                         min(needed, len(usable)), usable >= whole * (1 - 1e-9))


def head_outputs(terms: dict) -> np.ndarray:
    """Time of the head outputs of ``c`` groups from ``m`` to ``q``.

    Parameters
    ----------
    terms : dict
        One phase's `milp_model.phase_terms`.

    Returns
    -------
    ndarray, shape (N_m, N_q, K+1)
        ms, for ``c = 0 … K`` groups.
    """
    c = np.arange(terms["out_by_count"].shape[0])
    fixed = terms["out_latency"][..., None] * (c > 0) + terms["out_per_group"][..., None] * c
    return fixed + np.moveaxis(terms["out_by_count"], 0, -1)


def attention_stage(terms: dict, layer: int, n: np.ndarray, u: np.ndarray, q: np.ndarray, shared: bool,
                    sends_input: bool) -> np.ndarray:
    """The attention stage of configurations with ``n`` groups per device, input on ``u``, projection on ``q``.

    Switched: the slowest group device's chain (the input, its groups, its outputs to
    ``q``); shared: the slowest compute plus every transfer (docs/milp.md, "The attention
    stage").

    Parameters
    ----------
    terms : dict
        One phase's `milp_model.phase_terms`.
    layer : int
    n : ndarray of int, shape (..., N)
        Groups per device.
    u, q : ndarray of int
        The devices holding the layer's input and its projection, broadcastable with ``n[..., 0]``.
    shared, sends_input : bool
        The network is one shared medium; the profile sends the layer's input to group devices.

    Returns
    -------
    ndarray
        ms, the broadcast shape of ``n[..., 0]``, `u` and `q`.
    """
    N = n.shape[-1]
    out = head_outputs(terms)[np.arange(N), np.asarray(q)[..., None], n]  # (..., N)
    compute = terms["group"][layer] * n
    t_in = terms["t_in"] if sends_input else np.zeros((N, N))
    recv, used = t_in[np.asarray(u)], n > 0
    if shared:
        return compute.max(axis=-1) + np.where(used, recv + out, 0.0).sum(axis=-1)
    return np.where(used, recv + out + compute, 0.0).max(axis=-1)


def _allocate(per_count: np.ndarray, allowed: np.ndarray, K: int,
              every_total: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Least ``Σ_m per_count[..., m, n_m]`` with ``Σ_m n_m = K`` over allowed counts.

    Parameters: `per_count` and `allowed` (..., N, K+1). Returns the least cost (...)
    and the counts (..., N) that reach it (a DP over devices, counts 0…K); with
    `every_total`, the least cost of every total 0…K (..., K+1) and no counts.
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
    if every_total:
        return value, None
    counts = np.zeros(batch + (N,), dtype=np.int64)
    left = np.full(batch, K)
    for m in range(N - 1, -1, -1):
        took = np.take_along_axis(choices[m], left[..., None], axis=-1)[..., 0]
        counts[..., m] = took
        left = left - took
    return value[..., K], counts


def _stage_tables(terms: dict, layer: int, group_price: np.ndarray, sigma: float, shared: bool, sends_input: bool,
                  K: int, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The attention stage's pieces for input device `u`: every threshold ``A`` (q, A), the counts each
    device may take within it (q, A, m, c), and the additive cost of ``c`` groups on ``m`` (q, m, c), ms."""
    N = len(group_price)
    out = head_outputs(terms)  # (m, q, c)
    c = np.arange(K + 1)
    compute = terms["group"][layer][:, None] * c  # (m, c)
    t_in = terms["t_in"] if sends_input else np.zeros((N, N))
    price = group_price[:, None] * c  # (m, c)
    off = 1.0 - np.eye(N)
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
    return thresholds, allowed, per_count


def _attention(terms: dict, layer: int, group_price: np.ndarray, sigma: float, shared: bool, sends_input: bool,
               K: int) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest attention stage of one layer for every input device ``u`` and projection device ``q``.

    Memory is priced by `group_price` (N,) per group and every message (input to a
    group device, outputs to the projection) earns `sigma` (the devices-needed row).
    Returns the cost (N_u, N_q) in ms (priced) and the counts (N_u, N_q, N).
    """
    N = len(group_price)
    best = np.full((N, N), np.inf)
    counts = np.zeros((N, N, N), dtype=np.int64)
    for u in range(N):
        thresholds, allowed, per_count = _stage_tables(terms, layer, group_price, sigma, shared, sends_input, K, u)
        value, n = _allocate(np.broadcast_to(per_count[:, None], allowed.shape), allowed, K)
        total = thresholds + value  # (q, A)
        pick = total.argmin(axis=1)
        best[u] = total[np.arange(N), pick]
        counts[u] = n[np.arange(N), pick]
    return best, counts


def attention_by_count(terms: dict, layer: int, group_price: np.ndarray, sigma: float, shared: bool,
                       sends_input: bool, K: int, device: int) -> np.ndarray:
    """Cheapest attention stage of one layer with ``c`` of its groups on `device`, for every ``c``.

    The DP of `price_classes` with the other devices allocated ``K − c`` groups and
    `device` exactly ``c``, under every threshold.

    Parameters
    ----------
    terms : dict
        An interval's summed tables (`IntervalData.terms`), ms.
    layer : int
    group_price : ndarray, shape (N,)
        Price of one group on each device, ms.
    sigma : float
        Price of a message, ms.
    shared, sends_input : bool
        As in `Scope`.
    K : int
        Groups per layer.
    device : int
        The device whose count is fixed.

    Returns
    -------
    ndarray, shape (N_u, N_q, K+1)
        The priced stage, ms (``inf`` where no allocation fits a threshold).
    """
    N = len(group_price)
    others = np.flatnonzero(np.arange(N) != device)
    c = np.arange(K + 1)
    best = np.full((N, N, K + 1), np.inf)
    for u in range(N):
        thresholds, allowed, per_count = _stage_tables(terms, layer, group_price, sigma, shared, sends_input, K, u)
        cost = np.broadcast_to(per_count[:, None], allowed.shape)
        rest = _allocate(cost[..., others, :], allowed[..., others, :], K, every_total=True)[0]  # (q, A, K+1)
        own = np.where(allowed[..., device, :], cost[..., device, :], np.inf)  # (q, A, c)
        best[u] = (thresholds[..., None] + rest[..., K - c] + own).min(axis=1)
    return best


def _two_phase_attention(phases: list[dict], layer: int, shared: bool, sends_input: bool,
                         K: int) -> np.ndarray:
    """Cheapest attention stage (N_u, N_q), ms, with the prefill and the decode steps as two blocks, unpriced.

    Each phase has its own threshold (``A_p``, ``A_d``: every value a chain takes in it), and
    the counts must keep every used device's chain within both: a sum of the two phases'
    maxima, never below the one-block stage of `_attention`.
    """
    N = phases[0]["group"].shape[1]
    c = np.arange(K + 1)
    t_in = [t["t_in"] if sends_input else np.zeros((N, N)) for t in phases]
    best = np.full((N, N), np.inf)
    for u in range(N):
        chains, linear = [], np.zeros((N, N, K + 1))
        for t, tin in zip(phases, t_in):
            compute = np.broadcast_to(t["group"][layer][:, None] * c, (N, N, K + 1))  # (q, m, c)
            moved = tin[u][None, :, None] * (c > 0) + head_outputs(t).transpose(1, 0, 2)
            chains.append(compute if shared else moved + compute)
            linear = linear + (moved if shared else 0.0)
        a, b = (chain[:, :, 1:].reshape(N, -1) for chain in chains)  # (q, A) each
        allowed = ((chains[0][:, None, None] <= a[:, :, None, None, None])
                   & (chains[1][:, None, None] <= b[:, None, :, None, None])) | (c == 0)  # (q, A, B, m, c)
        value, _ = _allocate(np.broadcast_to(linear[:, None, None], allowed.shape), allowed, K)
        best[u] = (a[:, :, None] + b[:, None, :] + value).reshape(N, -1).min(axis=1)
    return best


def two_phase_arcs(instance: Instance, scope: Scope) -> tuple[np.ndarray, np.ndarray]:
    """Interval 0's unpriced arcs and ends with the prefill and the decode steps as two token blocks.

    Parameters
    ----------
    instance : Instance
    scope : Scope

    Returns
    -------
    arcs : ndarray, shape (L, N_u, N_v)
        Each layer's cheapest configuration from input device ``u`` to FFN device ``v``, ms.
    ends : ndarray, shape (N_e, N_v, N_h)
        The embedding, lm_head and their transfers, ms.
    """
    route, varies = output_routes(instance)
    steps = np.flatnonzero(instance.workload.interval_of_step() == 0)
    phases = [phase_terms(instance, phase, route, varies) for phase in (Phase(0, None), Phase(0, steps))]
    N = instance.n_devices
    arcs = np.empty((len(scope.labels), N, N))
    for cls in np.unique(scope.labels):
        layer = int(np.flatnonzero(scope.labels == cls)[0])
        att = _two_phase_attention(phases, layer, scope.shared, scope.sends_input, scope.K)
        rest = sum(t["proj"][layer][None, :, None] + t["t_hidden"][None] + t["ffn"][layer][None, None, :]
                   for t in phases)  # (1, q, v)
        arcs[scope.labels == cls] = (att[:, :, None] + rest).min(axis=1)
    ends = sum(t["embed"][:, None, None] + t["t_lm"][None] + t["lm"][None, None] + t["t_token"].T[:, None, :]
               for t in phases)
    return arcs, ends


@dataclass(frozen=True, eq=False)
class Prices:
    """The cheapest configuration of every class for every arc ``u → v`` at memory prices π.

    Attributes
    ----------
    arcs : dict
        Class → (N_u, N_v) priced cost, ms.
    choice : dict
        Class → (projection device ``q`` (N_u, N_v), group counts (N_u, N_q, N)) of those configurations.
    """

    arcs: dict
    choice: dict


@dataclass(frozen=True)
class Scope:
    """What the pricing needs to know about the instance.

    Attributes
    ----------
    labels : ndarray of int, shape (L,)
        Class of each layer (`milp_bounds.layer_classes`).
    shared : bool
        The attention stage's transfers add up (a shared network, or the three-phase profile).
    sends_input : bool
        The profile sends a layer's input to its group devices.
    K : int
        Groups (KV heads) per layer.
    """

    labels: np.ndarray
    shared: bool
    sends_input: bool
    K: int


def price_classes(data: IntervalData, scope: Scope, pi: np.ndarray, sigma: float,
                  group_shift: np.ndarray | None = None) -> Prices:
    """The cheapest configuration of every class for every arc, priced at multipliers.

    Parameters
    ----------
    data : IntervalData
    scope : Scope
    pi : ndarray, shape (N,)
        Memory prices, ms per unit of memory fraction.
    sigma : float
        Price of a message (the devices row), ms.
    group_shift : ndarray, shape (N,), optional
        A price per group on each device, ms (any sign): the migration multipliers of
        `milp_bounds` (docs/milp.md, "Group migration").

    Returns
    -------
    Prices
        Priced arc costs (ms) and the configurations that reach them.
    """
    t, N = data.terms, len(pi)
    shift = np.zeros(N) if group_shift is None else group_shift
    arcs, choice = {}, {}
    for cls in np.unique(scope.labels):
        layer = int(np.flatnonzero(scope.labels == cls)[0])
        att, counts = _attention(t, layer, pi * data.group_mem[layer] + shift, sigma, scope.shared,
                                 scope.sends_input, scope.K)
        proj = t["proj"][layer] + pi * data.projection_mem[layer]
        ffn = t["ffn"][layer] + pi * data.ffn_mem[layer]
        hidden = t["t_hidden"] - sigma * (1.0 - np.eye(N))
        through = att[:, :, None] + proj[None, :, None] + hidden[None] + ffn[None, None, :]  # (u, q, v)
        q = through.argmin(axis=1)
        arcs[int(cls)] = np.take_along_axis(through, q[:, None], axis=1)[:, 0]
        choice[int(cls)] = (q, counts)
    return Prices(arcs, choice)


def ends_priced(data: IntervalData, pi: np.ndarray, sigma: float) -> np.ndarray:
    """The priced ends: embedding on ``e``, the last layer's output on ``v``, lm_head on ``h``.

    Parameters
    ----------
    data : IntervalData
    pi : ndarray, shape (N,)
        Memory prices, ms per unit of memory fraction.
    sigma : float
        Price of a message, ms.

    Returns
    -------
    ndarray, shape (N_e, N_v, N_h)
        Their compute and transfers, priced memory and messages, and the relaxed rows'
        right-hand sides (``−Σ π + σ d``), ms.
    """
    t, N = data.terms, len(pi)
    off = 1.0 - np.eye(N)
    ends = (t["t_lm"] - sigma * off)[None] + (t["embed"] + pi * data.embed_mem)[:, None, None] \
        + (t["lm"] + pi * data.lm_head_mem)[None, None, :] + (t["t_token"].T - sigma * off)[:, None, :] \
        - np.diag(pi * data.shared_saving)[:, None, :]
    on = np.flatnonzero(data.alone)  # everything on one device that holds it: exempt from the devices row
    ends[on, on, on] -= sigma * data.messages_needed
    return ends - pi.sum() + sigma * data.messages_needed


def lagrangian(data: IntervalData, scope: Scope, pi: np.ndarray, sigma: float, prices: Prices) -> float:
    """The Lagrangian value at `pi` and `sigma`: a lower bound on the interval's cost of every feasible plan.

    Parameters
    ----------
    data : IntervalData
    scope : Scope
    pi : ndarray, shape (N,)
        Memory prices (≥ 0), ms per unit of memory fraction.
    sigma : float
        Price of a message (≥ 0), ms.
    prices : Prices
        `price_classes` at `pi` and `sigma`.

    Returns
    -------
    float
        The cheapest path embed → layers → lm_head → embed over the priced arcs, plus the
        relaxed rows' right-hand sides, ms.
    """
    return cheapest_path(data, scope, pi, sigma, prices)[0]


def cheapest_path(data: IntervalData, scope: Scope, pi: np.ndarray, sigma: float,
                  prices: Prices) -> tuple[float, np.ndarray]:
    """The Lagrangian value (`lagrangian`) and the groups each device runs on one cheapest path.

    Parameters
    ----------
    data : IntervalData
    scope : Scope
    pi : ndarray, shape (N,)
        Memory prices, ms per unit of memory fraction.
    sigma : float
        Price of a message, ms.
    prices : Prices
        `price_classes` at `pi` and `sigma` (with any group shift).

    Returns
    -------
    value : float
        ms.
    groups : ndarray of int, shape (N,)
        Groups on each device over all layers of that path (a subgradient of the value in
        the group shift).
    """
    N = len(pi)
    dists = [np.where(np.eye(N, dtype=bool), 0.0, np.inf)]  # [e, u]: cheapest path from embed e to layer input u
    for cls in scope.labels:
        dists.append((dists[-1][:, :, None] + prices.arcs[int(cls)][None]).min(axis=1))
    total = dists[-1][:, :, None] + ends_priced(data, pi, sigma)
    e, v, _ = np.unravel_index(int(np.argmin(total)), total.shape)
    groups = np.zeros(N, dtype=np.int64)
    for l in range(len(scope.labels) - 1, -1, -1):  # back along the path: the input u that reached v
        arcs = prices.arcs[int(scope.labels[l])]
        u = int(np.argmin(dists[l][e] + arcs[:, v]))
        q, counts = prices.choice[int(scope.labels[l])]
        groups += counts[u, q[u, v]]
        v = u
    return float(total.min()), groups


@dataclass(frozen=True, eq=False)
class Pool:
    """Generated configurations of one class.

    Attributes
    ----------
    u, q, v : ndarray of int, shape (J,)
        Input device, projection device and FFN device of each configuration.
    n : ndarray of int, shape (J, N)
        Its group counts per device.
    """

    u: np.ndarray
    q: np.ndarray
    v: np.ndarray
    n: np.ndarray

    def add(self, u, q, v, n) -> "Pool":
        """The pool with the new configurations that are not in it yet.

        Parameters
        ----------
        u, q, v : ndarray of int, shape (J',)
        n : ndarray of int, shape (J', N)

        Returns
        -------
        Pool
        """
        rows = np.concatenate([np.stack([self.u, self.q, self.v], 1), self.n], 1)
        new = np.concatenate([np.stack([u, q, v], 1), n], 1)
        both = np.unique(np.concatenate([rows, new]), axis=0)
        return Pool(both[:, 0], both[:, 1], both[:, 2], both[:, 3:])


def config_costs(data: IntervalData, scope: Scope, layer: int,
                  pool: Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cost, memory and messages of every configuration in `pool` for one layer.

    Parameters
    ----------
    data : IntervalData
    scope : Scope
    layer : int
    pool : Pool

    Returns
    -------
    cost : ndarray, shape (J,)
        ms.
    memory : ndarray, shape (J, N)
        Fractions of each device's usable memory.
    messages : ndarray, shape (J,)
        Messages sent (the devices row).
    """
    t, n = data.terms, pool.n
    N = n.shape[1]
    used = n > 0
    stage = attention_stage(t, layer, n, pool.u, pool.q, scope.shared, scope.sends_input)
    cost = stage + t["proj"][layer][pool.q] + t["t_hidden"][pool.q, pool.v] + t["ffn"][layer][pool.v]
    eye = np.eye(N)
    memory = n * data.group_mem[layer] + eye[pool.q] * data.projection_mem[layer] + eye[pool.v] * data.ffn_mem[layer]
    devices = np.arange(N)[None]
    messages = (used & (devices != pool.u[:, None])).sum(1) + (used & (devices != pool.q[:, None])).sum(1) \
        + (pool.q != pool.v)
    return cost, memory, messages.astype(float)


def ends_table(data: IntervalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedding, lm_head and their transfers for every (embed ``e``, last output ``v``, lm_head ``h``).

    Parameters
    ----------
    data : IntervalData

    Returns
    -------
    cost : ndarray, shape (N_e, N_v, N_h)
        ms.
    memory : ndarray, shape (N_e, N_v, N_h, N)
        Fractions of each device's usable memory.
    messages : ndarray, shape (N_e, N_v, N_h)
        Messages for the devices row (a placement wholly on a device that holds it all is exempt).
    """
    t, N = data.terms, len(data.embed_mem)
    cost = t["embed"][:, None, None] + t["t_lm"][None] + t["lm"][None, None] + t["t_token"].T[:, None, :]
    eye = np.eye(N)
    memory = (eye[:, None, None, :] * data.embed_mem + eye[None, None, :, :] * data.lm_head_mem
              - (np.eye(N)[:, None, :, None] * eye[:, None, None, :]) * data.shared_saving)
    e, v, h = np.indices((N, N, N))
    messages = (v != h).astype(float) + (h != e)
    on = np.flatnonzero(data.alone)
    messages[on, on, on] += data.messages_needed  # the devices row exempts a placement wholly on one such device
    return cost, np.broadcast_to(memory, (N, N, N, N)), messages

def pricer(data: IntervalData, scope: Scope):
    """The pricing of one interval at memory multipliers, for `milp_signatures.Refinement`.

    Parameters
    ----------
    data : IntervalData
    scope : Scope

    Returns
    -------
    callable
        ``price(pi) -> (arcs, memory, ends, prices)``: arcs (L, N, N) and ends (N, N, N) priced at
        memory multipliers `pi` (ms), the memory of each arc's configuration on every device
        (L, N, N, N, fractions) and the `Prices`.
    """
    N = len(data.embed_mem)
    eye = np.eye(N)

    def price(pi: np.ndarray):
        prices = price_classes(data, scope, pi, 0.0)
        arcs, memory = np.empty((len(scope.labels), N, N)), np.empty((len(scope.labels), N, N, N))
        for cls, (q, counts) in prices.choice.items():
            layer = int(np.flatnonzero(scope.labels == cls)[0])
            groups = np.take_along_axis(counts, q[:, :, None], axis=1)  # (u, v, m): the groups of the chosen q
            used = groups * data.group_mem[layer] + eye[q] * data.projection_mem[layer] \
                + eye[None, :, :] * data.ffn_mem[layer]
            arcs[scope.labels == cls], memory[scope.labels == cls] = prices.arcs[cls], used
        return arcs, memory, ends_priced(data, pi, 0.0), prices
    return price


def path_placement(scope: Scope, e: int, h: int, path: list[tuple[int, int]], prices: Prices) -> Placement:
    """The placement of a priced path: each layer's arc ``(u, v)`` with its cheapest configuration at `prices`.

    Parameters
    ----------
    scope : Scope
    e, h : int
        The embedding's and lm_head's devices.
    path : list of (int, int)
        Each layer's input and output device.
    prices : Prices

    Returns
    -------
    Placement
    """
    N = len(prices.choice[int(scope.labels[0])][0])
    attention, projection, ffn = [], np.zeros((len(path), N)), np.zeros((len(path), N))
    for l, (u, v) in enumerate(path):
        q, counts = prices.choice[int(scope.labels[l])]
        attention.append(np.repeat(np.arange(N), counts[u, q[u, v]]))
        projection[l, q[u, v]] = ffn[l, v] = 1.0
    return Placement(np.stack(attention), projection, ffn, e, h)
