"""The true optimum of a small instance, by enumeration through the evaluator.

The search space is the MILP's (docs/milp.md): every attention group on one device,
each layer's projection and FFN whole on one device, ``embed`` and ``lm_head`` on one
device each, per interval. Nothing here trusts the MILP; every figure that decides
the optimum comes from `placement.evaluate`:

1. Within an interval the groups of a layer are interchangeable, so placements are
   enumerated with group *counts* per layer (`enumerate_space`) and each is judged
   once by the evaluator as a static plan: time to first token, the decode latency
   of every interval, and memory feasibility in every interval (`placement_costs`).
2. Across intervals group identities matter (a group that stays does not move), so
   the states of the multi-interval search are full identity assignments. The
   evaluator's total of a plan is a chain,
   ``ttft(P0) + Σ_k decode_k(P_k) + Σ_{k≥1} migration_k(P_{k-1}, P_k)``: decode steps of
   interval ``k`` use only ``P_k``, memory is judged per interval, and the migration at
   boundary ``k`` depends only on ``P_{k-1}`` and ``P_k``. A dynamic programme over
   intervals finds the best chain; migration between every pair of states is
   computed here by the rule of DESIGN.md (`migration_matrix`), and the winning
   sequence is re-evaluated as one plan, which must give the same total.
   `chain_total` lets tests confirm the decomposition on random sequences and
   against full enumeration.

A placement whose memory clearly exceeds a device at every interval is skipped
before evaluation (`memory_needed` uses the cost model's `block_memory`, as the
evaluator does; a test compares the two on samples).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import networkx as nx
import numpy as np

from placement.cost.tables import block_memory
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan

__all__ = ["Space", "Search", "Optimum", "enumerate_space", "placement_costs", "brute_force", "migration_matrix",
           "chain_total", "plan_of", "memory_needed"]

Allow = Callable[["Space"], np.ndarray]


@dataclass(frozen=True, eq=False)
class Space:
    """Placements as arrays, one row each.

    counts (P, L, N) groups of each layer per device, or attention (P, L, K) with
    identities; projection, ffn (P, L) devices; embed, lm_head (P,) devices.
    """

    counts: np.ndarray
    projection: np.ndarray
    ffn: np.ndarray
    embed: np.ndarray
    lm_head: np.ndarray
    attention: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.embed)

    def take(self, index: np.ndarray) -> "Space":
        return Space(self.counts[index], self.projection[index], self.ffn[index], self.embed[index],
                     self.lm_head[index], None if self.attention is None else self.attention[index])

    def placement(self, i: int, n_devices: int) -> Placement:
        """Row `i` as a `Placement` (groups in device order when no identities are held)."""
        L = self.counts.shape[1]
        if self.attention is not None:
            attention = self.attention[i]
        else:
            attention = np.stack([np.repeat(np.arange(n_devices), self.counts[i, l]) for l in range(L)])
        eye = np.eye(n_devices)
        return Placement(np.asarray(attention, dtype=np.int64), eye[self.projection[i]], eye[self.ffn[i]],
                         int(self.embed[i]), int(self.lm_head[i]))


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to write `total` as an ordered sum of `parts` non-negative integers."""
    out = []
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1,) + bars + (total + parts - 1,)
        out.append(tuple(edges[i + 1] - edges[i] - 1 for i in range(parts)))
    return out


def enumerate_space(instance: Instance, allow: Allow | None = None) -> Space:
    """Every placement of one interval up to group identities (counts per layer)."""
    L, K, N = instance.model.layers, instance.model.kv_heads, instance.n_devices
    layer_counts = np.array(_compositions(K, N))  # (C, N)
    count_rows = np.array(list(itertools.product(range(len(layer_counts)), repeat=L))).reshape(-1, L)
    whole = np.array(list(itertools.product(range(N), repeat=2 * L + 2))).reshape(-1, 2 * L + 2)
    a = np.repeat(np.arange(len(count_rows)), len(whole))
    b = np.tile(np.arange(len(whole)), len(count_rows))
    space = Space(
        counts=layer_counts[count_rows[a]],
        projection=whole[b, :L], ffn=whole[b, L:2 * L], embed=whole[b, 2 * L], lm_head=whole[b, 2 * L + 1],
    )
    if allow is not None:
        space = space.take(np.flatnonzero(allow(space)))
    return space


def memory_needed(instance: Instance, space: Space) -> np.ndarray:
    """Bytes each placement needs on each device in each interval, (P, I, N), as DESIGN.md states it."""
    ends = instance.workload.interval_max_context()
    memory = block_memory(instance, instance.precision, ends)
    N = instance.n_devices
    P, L = space.projection.shape
    eye = np.eye(N)
    needed = np.einsum("pln,il->pin", space.counts.astype(float), memory.group)
    needed += np.einsum("pln,il->pin", eye[space.projection], memory.projection)
    needed += np.einsum("pln,il->pin", eye[space.ffn], memory.ffn)
    needed += (eye[space.embed] * memory.embed[0])[:, None, :]
    model, precision = instance.model, instance.precision
    shared = model.tied_embeddings and precision.embed == precision.lm_head
    separate = ~(shared & (space.embed == space.lm_head))
    needed += (eye[space.lm_head] * memory.lm_head[0] * separate[:, None])[:, None, :]
    return needed


@dataclass(frozen=True, eq=False)
class Costs:
    """Per placement: the cost of running interval k on it (ttft included for k = 0) and whether it fits."""

    space: Space
    interval_s: np.ndarray  # (P, I), inf where the placement does not fit in the interval
    evaluated: int


def placement_costs(instance: Instance, space: Space) -> Costs:
    """Judge every placement of `space` as a static plan with the evaluator."""
    I = instance.workload.n_intervals
    limits = np.array([d.usable_bytes for d in instance.devices])
    # Only placements that fit somewhere in time are worth an evaluation; the margin keeps
    # any borderline case for the evaluator to decide.
    fits = (memory_needed(instance, space) <= limits * (1 + 1e-6) + 1e-6).all(axis=2)  # (P, I)
    keep = np.flatnonzero(fits.any(axis=1))
    space = space.take(keep)
    steps = instance.workload.interval_of_step()
    cost = np.full((len(space), I), np.inf)
    names = instance.cluster.names
    for i in range(len(space)):
        report = evaluate(instance, Plan(names, [space.placement(i, instance.n_devices)]))
        per_interval = np.bincount(steps, weights=report.decode_s, minlength=I)
        per_interval[0] += report.ttft_s
        ok = np.ones(I, bool)
        for violation in report.violations:
            ok[violation.interval] = False
        cost[i] = np.where(ok, per_interval, np.inf)
    return Costs(space, cost, len(space))


def _with_identities(instance: Instance, space: Space) -> tuple[Space, np.ndarray]:
    """Every identity assignment of the groups of every placement; returns the states and their placement index."""
    L, K, N = instance.model.layers, instance.model.kv_heads, instance.n_devices
    layer_rows = np.array(list(itertools.product(range(N), repeat=K)))  # (N^K, K)
    layer_counts = np.stack([np.bincount(r, minlength=N) for r in layer_rows])
    by_counts: dict[tuple, list[int]] = {}
    for j, c in enumerate(map(tuple, layer_counts)):
        by_counts.setdefault(c, []).append(j)
    index, attention = [], []
    for i in range(len(space)):
        options = [by_counts[tuple(space.counts[i, l])] for l in range(L)]
        for combo in itertools.product(*options):
            index.append(i)
            attention.append(layer_rows[list(combo)])
    index = np.array(index, dtype=np.int64)
    states = space.take(index)
    return Space(states.counts, states.projection, states.ffn, states.embed, states.lm_head,
                 np.array(attention).reshape(len(index), L, K)), index


def _block_devices(space: Space) -> np.ndarray:
    """Device of every block, (S, L·K + 2L + 2): groups, projections, FFNs, embed, lm_head."""
    S = len(space)
    return np.concatenate([space.attention.reshape(S, -1), space.projection, space.ffn,
                           space.embed[:, None], space.lm_head[:, None]], axis=1)


def migration_matrix(instance: Instance, before: Space, after: Space, k: int) -> np.ndarray:
    """Migration time at the start of interval `k` from every state of `before` to every state of `after`, (A, B).

    DESIGN.md: each moved block is one transfer of its weights and KV cache at that
    moment (context ``P + k·tau``) on the path fastest for its size (every simple path
    enumerated here; each pays its latency); transfers between one pair serialize; on a
    switched network different pairs overlap (the slowest pair counts), on a shared
    one they all add up.
    """
    model, cluster, workload = instance.model, instance.cluster, instance.workload
    K, N = model.kv_heads, instance.n_devices
    memory = block_memory(instance, instance.precision, np.array([workload.prompt_tokens + k * workload.tau]))
    sizes = np.concatenate([np.repeat(memory.group[0], K), memory.projection[0], memory.ffn[0],
                            memory.embed, memory.lm_head])
    src, dst = _block_devices(before), _block_devices(after)
    eye = np.eye(N)
    paths = _paths(cluster)
    pair = np.zeros((len(before), len(after), N, N))
    for j, size in enumerate(sizes):
        moves = np.einsum("an,bm->abnm", eye[src[:, j]], eye[dst[:, j]])
        pair += moves * _fastest(paths, size)
    return pair.sum(axis=(2, 3)) if cluster.network == "shared" else pair.max(axis=(2, 3))


def _paths(cluster) -> dict[tuple[int, int], list[tuple[float, float]]]:
    """(summed latency, bottleneck bandwidth) of every simple path between every two devices."""
    names = cluster.names
    out = {}
    for u, v in itertools.permutations(range(len(names)), 2):
        out[u, v] = []
        for path in nx.all_simple_paths(cluster.graph, names[u], names[v]):
            links = [cluster.links[cluster.graph.edges[a, b]["index"]] for a, b in zip(path, path[1:])]
            out[u, v].append((sum(link.latency_s for link in links), min(link.bandwidth_bytes_per_s for link in links)))
    return out


def _fastest(paths, nbytes: float) -> np.ndarray:
    """Seconds of one message of `nbytes` between every two devices on its fastest path (N, N), 0 on the diagonal."""
    n = 1 + max((u for u, _ in paths), default=0)
    out = np.zeros((n, n))
    for (u, v), options in paths.items():
        out[u, v] = min(lat + nbytes / bw for lat, bw in options)
    return out


@dataclass(frozen=True, eq=False)
class Optimum:
    """The best plan found by enumeration, its total (the evaluator's) and how many placements were judged."""

    total_s: float
    plan: Plan | None
    evaluated: int
    chain_s: float  # the total the enumeration computed, before re-evaluation


def plan_of(instance: Instance, placements: list[Placement]) -> Plan:
    return Plan(instance.cluster.names, placements, method="brute-force")


class Search:
    """The enumeration of one instance, computed once and queried many times.

    Parameters
    ----------
    instance : Instance
    allow : callable, optional
        ``allow(space) -> bool array``: the placements permitted (in every interval),
        for instances solved with `pin` or `forbid`.
    """

    def __init__(self, instance: Instance, allow: Allow | None = None) -> None:
        self.instance = instance
        self.costs = placement_costs(instance, enumerate_space(instance, allow))
        self._states: tuple[Space, np.ndarray] | None = None

    @property
    def evaluated(self) -> int:
        """How many placements the evaluator judged."""
        return self.costs.evaluated

    def states(self) -> tuple[Space, np.ndarray]:
        """Placements with group identities, and their cost per interval (S, I)."""
        if self._states is None:
            states, index = _with_identities(self.instance, self.costs.space)
            self._states = states, self.costs.interval_s[index]
        return self._states

    def optimum(self) -> Optimum:
        """The minimum evaluator total over every plan; ``plan=None`` and an infinite total when none fits."""
        instance = self.instance
        N, I = instance.n_devices, instance.workload.n_intervals
        if I == 1:
            cost = self.costs.interval_s[:, 0]
            if not np.isfinite(cost).any():
                return Optimum(np.inf, None, self.evaluated, np.inf)
            best = int(np.argmin(cost))
            plan = plan_of(instance, [self.costs.space.placement(best, N)])
            return Optimum(evaluate(instance, plan).total_s, plan, self.evaluated, float(cost[best]))

        states, state_cost = self.states()
        alive = [np.flatnonzero(np.isfinite(state_cost[:, k])) for k in range(I)]
        if any(len(a) == 0 for a in alive):
            return Optimum(np.inf, None, self.evaluated, np.inf)
        value = state_cost[alive[0], 0]
        back = []
        for k in range(1, I):
            move = migration_matrix(instance, states.take(alive[k - 1]), states.take(alive[k]), k)
            total = value[:, None] + move
            arg = total.argmin(axis=0)
            back.append(arg)
            value = total[arg, np.arange(len(alive[k]))] + state_cost[alive[k], k]
        last = int(np.argmin(value))
        chain = float(value[last])
        if not np.isfinite(chain):
            return Optimum(np.inf, None, self.evaluated, np.inf)
        path = [last]
        for k in range(I - 1, 0, -1):
            path.append(int(back[k - 1][path[-1]]))
        path.reverse()
        plan = plan_of(instance, [states.placement(int(alive[k][path[k]]), N) for k in range(I)])
        return Optimum(evaluate(instance, plan).total_s, plan, self.evaluated, chain)

    def interval_optimum(self, k: int, current: Placement | None) -> tuple[float, Placement | None]:
        """The least cost of interval `k` alone (its decode steps, the migration from `current`, the prefill
        when k = 0) over placements that fit in interval `k`, and a placement reaching it."""
        N = self.instance.n_devices
        states, state_cost = self.states()
        cost = state_cost[:, k].copy()
        if current is not None and k > 0:
            cost = cost + migration_matrix(self.instance, _row(self.instance, current), states, k)[0]
        best = int(np.argmin(cost))
        if not np.isfinite(cost[best]):
            return np.inf, None
        return float(cost[best]), states.placement(best, N)


def _row(instance: Instance, p: Placement) -> Space:
    """One placement (with its group identities) as a one-row `Space`."""
    L, N = instance.model.layers, instance.n_devices
    counts = np.zeros((1, L, N), dtype=np.int64)
    np.add.at(counts[0], (np.arange(L)[:, None], np.asarray(p.attention)), 1)
    return Space(counts, np.asarray(p.projection).argmax(1)[None], np.asarray(p.ffn).argmax(1)[None],
                 np.array([p.embed]), np.array([p.lm_head]), np.asarray(p.attention)[None])


def brute_force(instance: Instance, allow: Allow | None = None) -> Optimum:
    """The minimum evaluator total over every plan of the MILP's space (see `Search.optimum`)."""
    return Search(instance, allow).optimum()


def chain_total(instance: Instance, placements: list[Placement]) -> float:
    """The chain decomposition of a plan's total, from static evaluations and `migration_matrix`.

    Tests compare it with ``evaluate(instance, plan).total_s`` to confirm the
    decomposition the dynamic programme relies on.
    """
    steps = instance.workload.interval_of_step()
    total = 0.0
    for k, p in enumerate(placements):
        report = evaluate(instance, Plan(instance.cluster.names, [p]))
        total += float(report.decode_s[steps == k].sum()) + (report.ttft_s if k == 0 else 0.0)
    for k in range(1, len(placements)):
        before, after = _row(instance, placements[k - 1]), _row(instance, placements[k])
        total += float(migration_matrix(instance, before, after, k)[0, 0])
    return total
