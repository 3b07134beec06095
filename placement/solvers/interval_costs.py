"""One interval's cost and memory as functions of a placement state (the core of ``myopic+``).

`State` is a placement of whole blocks that remembers where each layer's attention
groups came from (so a move's migration is known); `state_of` and `placement_of`
convert to and from a `Placement`. `IntervalModel` holds interval ``k``'s block
times, transfer times and memory views, built once from the cost layer's tables, and
recounts a state's cost with the evaluator's formulas: the horizon's decode steps (at
their mean context), the migration into the interval, the prefill for interval 0 and
the price of the memory the caches will need by the horizon's end. The move families
(`placement.solvers.local_moves`, `placement.solvers.compound_moves`) score their
candidates against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.cost.blocks import StepCosts
from placement.cost.tolerances import MEMORY_RTOL
from placement.cost.tables import (
    block_memory, heads_share_memory, phase_tables, prefill_step_costs, step_costs, transfer_times, usable_bytes,
)
from placement.instance import Instance
from placement.plan import Placement

__all__ = ["IMPROVEMENT", "IntervalModel", "State", "States", "concat", "placement_of", "stack", "state_of"]

# A move must lower the interval's cost by this fraction to count (floating-point noise).
IMPROVEMENT = 1e-9


# ----------------------------------------------------------------------------- the interval's costs
@dataclass(frozen=True)
class _CostSet:
    """Block times (seconds) and transfer times of one forward step, counted `weight` times."""

    weight: float
    group: np.ndarray  # (L, N) one attention group on each device
    projection: np.ndarray  # (L, N)
    ffn: np.ndarray  # (L, N)
    embed: np.ndarray  # (N,)
    lm_head: np.ndarray  # (N,)
    layer_in: np.ndarray  # (N, N) from → to: the layer input to a group device
    hidden: np.ndarray  # (N, N) projection → FFN
    lm_in: np.ndarray  # (N, N) last FFN → lm_head
    token: np.ndarray  # (N, N) lm_head → embed
    out: np.ndarray  # (K+2, N, N) head outputs of c groups, group device → projection device, by count c
    gather_sum: bool  # shared medium, or the paper's summed head → projection transfers
    shared: bool


def _cost_set(instance: Instance, costs: StepCosts, weight: float) -> _CostSet:
    cluster = instance.cluster

    def first(x) -> float:
        return float(np.asarray(x, dtype=float).reshape(-1)[0])

    tables = phase_tables(instance, costs)  # one step
    out_bytes = first(costs.group_out_bytes)
    shared = cluster.network == "shared"
    return _CostSet(
        weight=float(weight),
        group=tables.group_s[0],
        projection=tables.projection_s[0],
        ffn=tables.ffn_s[0],
        embed=tables.embed_s[0],
        lm_head=tables.lm_head_s[0],
        layer_in=tables.layer_in_s[0],
        hidden=tables.hidden_s[0],
        lm_in=tables.lm_head_in_s[0],
        token=tables.token_s,
        out=transfer_times(cluster, out_bytes * np.arange(instance.model.kv_heads + 2)),
        gather_sum=shared or costs.sum_gather,
        shared=shared,
    )


def _interval_cost_sets(instance: Instance, k: int, horizon: int) -> list[_CostSet]:
    """Decode steps from interval k's first one over `horizon` intervals, at their mean context
    (exact for one step), and the prefill for k = 0."""
    workload = instance.workload
    contexts = workload.contexts()[workload.interval_of_step() == k]
    steps = len(contexts) + (horizon - 1) * workload.tau
    mean = contexts[0] + (steps - 1) / 2
    sets = [_cost_set(instance, step_costs(instance, instance.precision, np.array([mean])), steps)]
    if k == 0:
        sets.append(_cost_set(instance, prefill_step_costs(instance, instance.precision), 1.0))
    return sets


@dataclass(frozen=True)
class _MemoryView:
    """Resident bytes of every block at one context."""

    group: np.ndarray  # (L,)
    projection: np.ndarray  # (L,)
    ffn: np.ndarray  # (L,)
    embed: float
    lm_head: float


def _view(instance: Instance, context: int) -> _MemoryView:
    memory = block_memory(instance, instance.precision, np.array([context]))
    return _MemoryView(memory.group[0], memory.projection[0], memory.ffn[0],
                       float(memory.embed[0]), float(memory.lm_head[0]))


# ----------------------------------------------------------------------------- the state
@dataclass
class State:
    """A placement of whole blocks, with where its attention groups came from."""

    origin: np.ndarray  # (L, N, N): groups of layer l that were on device u and are now on v
    projection: np.ndarray  # (L,) device
    ffn: np.ndarray  # (L,) device
    embed: int
    lm_head: int

    @property
    def counts(self) -> np.ndarray:
        return self.origin.sum(axis=1)

    def copy(self) -> State:
        return State(self.origin.copy(), self.projection.copy(), self.ffn.copy(), self.embed, self.lm_head)


@dataclass(frozen=True)
class States:
    """J placements of whole blocks at once (the fields of `State` with a leading axis J)."""

    origin: np.ndarray  # (J, L, N, N)
    projection: np.ndarray  # (J, L)
    ffn: np.ndarray  # (J, L)
    embed: np.ndarray  # (J,)
    lm_head: np.ndarray  # (J,)

    def __len__(self) -> int:
        return self.origin.shape[0]

    def state(self, j: int) -> State:
        """Candidate `j` as a `State` (copies)."""
        return State(self.origin[j].copy(), self.projection[j].copy(), self.ffn[j].copy(),
                     int(self.embed[j]), int(self.lm_head[j]))


def stack(states: list[State]) -> States:
    """`states` as one `States` batch.

    Parameters
    ----------
    states : list of State
        At least one, all of one instance.

    Returns
    -------
    States
    """
    return States(np.stack([s.origin for s in states]), np.stack([s.projection for s in states]),
                  np.stack([s.ffn for s in states]), np.array([s.embed for s in states]),
                  np.array([s.lm_head for s in states]))


def concat(batches: list[States]) -> States:
    """Batches one after the other, in order.

    Parameters
    ----------
    batches : list of States
        At least one.

    Returns
    -------
    States
    """
    return States(*(np.concatenate([getattr(b, name) for b in batches])
                    for name in ("origin", "projection", "ffn", "embed", "lm_head")))


def state_of(placement: Placement, before: Placement | None, N: int) -> State:
    """`placement` as a `State`, its groups' origins read from `before`.

    Parameters
    ----------
    placement : Placement
        Whole blocks.
    before : Placement or None
        Where the groups were (None: they start where they are).
    N : int
        Devices.

    Returns
    -------
    State
    """
    attention = np.asarray(placement.attention)
    L = attention.shape[0]
    was = attention if before is None else np.asarray(before.attention)
    origin = np.zeros((L, N, N), dtype=np.int64)
    np.add.at(origin, (np.repeat(np.arange(L), attention.shape[1]), was.ravel(), attention.ravel()), 1)
    return State(origin, np.asarray(placement.projection).argmax(axis=1), np.asarray(placement.ffn).argmax(axis=1),
                  int(placement.embed), int(placement.lm_head))


def placement_of(state: State, before: Placement | None, K: int) -> Placement:
    """`state` as a `Placement` in which groups keep their identity.

    Of the groups of a layer that were on device u, the first ones (by index) stay, the
    next ones go where `state.origin` sends them, in device order.

    Parameters
    ----------
    state : State
    before : Placement or None
        The placement the origins refer to (None: a first placement, groups in the
        order of the devices they start from).
    K : int
        Groups a layer.

    Returns
    -------
    Placement
        One-hot projection and FFN rows.
    """
    L, N = state.projection.shape[0], state.origin.shape[1]
    if before is None:  # a first placement: the groups in the order of the devices they started from
        was = np.array([np.repeat(np.arange(N), row) for row in state.origin.sum(axis=2)])
    else:
        was = np.asarray(before.attention)
    # rank of each group among its layer's groups from the same device
    one_hot = np.eye(N, dtype=np.int64)[was]  # (L, K, N)
    rank = np.take_along_axis(np.cumsum(one_hot, axis=1) - 1, was[..., None], axis=2)[..., 0]
    # destinations of the groups from device u: u itself first, then the others in order
    order = np.array([[u] + [v for v in range(N) if v != u] for u in range(N)])  # (N, N)
    ends = np.cumsum(np.take_along_axis(state.origin, np.broadcast_to(order, (L, N, N)), axis=2), axis=2)
    slot = (rank[..., None] < ends[np.arange(L)[:, None], was]).argmax(axis=2)  # (L, K)
    attention = order[was, slot]
    one_hot = np.eye(N)
    return Placement(attention=attention.reshape(L, K), projection=one_hot[state.projection],
                     ffn=one_hot[state.ffn], embed=state.embed, lm_head=state.lm_head)


# ----------------------------------------------------------------------------- the interval model
class IntervalModel:
    """Interval k's cost and memory as functions of a `State`: the evaluator's formulas, incrementally.

    Parameters
    ----------
    instance : Instance
    k : int
        The interval decided.
    before : Placement or None
        The placement in use (the migration into `k` is charged from it).
    horizon : int
        Intervals the placement is assumed kept for (capped at the intervals left).
    fit_horizon : bool
        Memory at the horizon's last context is the hard condition (else the
        interval's own, with the horizon's overflow priced).
    """

    def __init__(self, instance: Instance, k: int, before: Placement | None, horizon: int = 8,
                 fit_horizon: bool = False):
        model, workload, cluster = instance.model, instance.workload, instance.cluster
        self.L, self.K, self.N = model.layers, model.kv_heads, instance.n_devices
        # The request's length is known (its token budget): nothing is kept beyond its last interval.
        horizon = min(horizon, workload.n_intervals - k)
        self.sets = _interval_cost_sets(instance, k, horizon)
        # Memory views, in order of priority: the interval's largest context (it must fit),
        # and with headroom the context `horizon` intervals later (fit it if possible); with
        # `fit_horizon`, the latter alone, as a must (a placement kept for the whole horizon).
        context = int(workload.interval_max_context()[k])
        end = context + (horizon - 1) * workload.tau
        self.views = [_view(instance, end)] if fit_horizon else [_view(instance, context)]
        if horizon > 1 and not fit_horizon:
            self.views.append(_view(instance, end))
        self.tied = heads_share_memory(model, instance.precision)
        first = self.views[0]  # bytes of the whole model at the interval's context (embed and lm_head apart)
        self.whole_bytes = float(self.K * first.group.sum() + first.projection.sum() + first.ffn.sum()
                                 + first.embed + (0.0 if self.tied else first.lm_head))
        # bytes of the largest single block: an overflow up to this one move may clear
        self.block_bytes = float(max(first.group.max(), first.projection.max(), first.ffn.max(), first.embed,
                                     first.lm_head))
        self.limit = usable_bytes(instance) * (1 + MEMORY_RTOL)
        self.tolerance = 1e-9 * float(self.limit.max())  # bytes: floating-point noise in memory sums
        self.scale = 1.0  # seconds: the cost a search started from (improvements are relative to it)
        # Seconds per byte of the horizon's overflow: moving it later over a typical route.
        off = ~np.eye(self.N, dtype=bool)
        self.price = 1.0 / float(np.median(cluster.route_bandwidth_bytes_per_s[off])) if self.N > 1 else 0.0
        # Migration into this interval: sizes at the boundary's context (as the evaluator charges them).
        self.migrates = before is not None and k > 0
        self.before = before
        if before is not None:
            moved = block_memory(instance, instance.precision, np.array([workload.prompt_tokens + k * workload.tau]))
            # seconds to move one block from u to v: one message on the route fastest for its size
            self.move_group, self.move_projection, self.move_ffn = (
                cluster.message_time_s(x[0]) for x in (moved.group, moved.projection, moved.ffn))  # (L, N, N)
            self.move_embed, self.move_lm_head = cluster.message_time_s(moved.embed[0]), cluster.message_time_s(moved.lm_head[0])
            self.was_projection = np.asarray(before.projection).argmax(axis=1)
            self.was_ffn = np.asarray(before.ffn).argmax(axis=1)
            self.was_embed, self.was_lm_head = int(before.embed), int(before.lm_head)
        self.shared = cluster.network == "shared"

    # ---- memory
    def held(self, s: State) -> np.ndarray:
        """Bytes on each device in each memory view, (V, N)."""
        counts = s.counts
        out = np.empty((len(self.views), self.N))
        for v, view in enumerate(self.views):
            out[v] = (counts.T @ view.group + np.bincount(s.projection, view.projection, self.N)
                      + np.bincount(s.ffn, view.ffn, self.N))
            out[v, s.embed] += view.embed
            if not (self.tied and s.embed == s.lm_head):
                out[v, s.lm_head] += view.lm_head
        return out

    def overflow(self, held: np.ndarray) -> np.ndarray:
        """Bytes over the limits in each view, for `held` (V, ..., N) → (V, ...)."""
        return np.maximum(held - self.limit, 0.0).sum(axis=-1)

    def shift_overflow(self, held: np.ndarray, src, dst, sizes: list) -> np.ndarray:
        """Change of each view's overflow (V, ...) when `sizes[v]` bytes go from device `src` to `dst` (broadcast)."""
        out = []
        for h, size in zip(held, sizes):
            over = np.maximum(h - self.limit, 0.0)
            out.append(np.maximum(h[src] - size - self.limit[src], 0.0) - over[src]
                       + np.maximum(h[dst] + size - self.limit[dst], 0.0) - over[dst])
        return np.stack(np.broadcast_arrays(*out))

    # ---- latency of the attention stage of every layer
    def attention(self, c: _CostSet, counts: np.ndarray, source: np.ndarray, projection: np.ndarray) -> np.ndarray:
        """Attention stage of every layer: receive the layer input, run the groups, send, run the projection.

        `counts` (L, N), or (L, J, N) for J placements; `source` and `projection` (L,) or
        (L, J) for J alternatives at once. Returns seconds, (L,) or (L, J).
        """
        alternatives = np.ndim(source) == 2 or np.ndim(projection) == 2 or np.ndim(counts) == 3
        source, projection = np.broadcast_arrays(np.reshape(source, (self.L, -1)), np.reshape(projection, (self.L, -1)))
        counts = (counts if np.ndim(counts) == 3 else counts[:, None, :]).astype(np.int64)  # (L, J or 1, N)
        has = counts > 0
        receive = np.where(has, c.layer_in[source], 0.0)  # (L, J, N)
        send = np.where(has, c.out[counts, np.arange(self.N), projection[..., None]], 0.0)
        work = counts * c.group[:, None, :]
        proj = np.take_along_axis(c.projection, projection, axis=1)  # (L, J)
        if c.gather_sum:
            compute = np.where(has, work, -np.inf).max(axis=2)
            receive = receive.sum(axis=2) if c.shared else receive.max(axis=2)
            stage = compute + receive + send.sum(axis=2) + proj
        else:
            stage = np.where(has, receive + work + send, -np.inf).max(axis=2) + proj
        return stage if alternatives else stage[:, 0]

    def sources(self, s: State) -> np.ndarray:
        return np.concatenate([[s.embed], s.ffn[:-1]])

    def latency_of(self, s: State) -> float:
        """The interval's decode (and prefill) seconds, every cost set weighted."""
        total = 0.0
        counts, source, layers = s.counts, self.sources(s), np.arange(self.L)
        for c in self.sets:
            step = (self.attention(c, counts, source, s.projection).sum()
                    + (c.hidden[s.projection, s.ffn] + c.ffn[layers, s.ffn]).sum()
                    + c.embed[s.embed] + c.lm_head[s.lm_head] + c.lm_in[s.ffn[-1], s.lm_head]
                    + c.token[s.lm_head, s.embed])
            total += c.weight * step
        return float(total)

    # ---- migration into the interval
    def pair_times(self, s: State) -> np.ndarray:
        """Seconds of the blocks moving from each device to each other at the boundary (N, N)."""
        layers = np.arange(self.L)
        times = np.einsum("luv,luv->uv", s.origin, self.move_group)
        for was, now, table in ((self.was_projection, s.projection, self.move_projection),
                                (self.was_ffn, s.ffn, self.move_ffn)):
            np.add.at(times, (was, now), table[layers, was, now])
        for was, now, table in ((self.was_embed, s.embed, self.move_embed),
                                (self.was_lm_head, s.lm_head, self.move_lm_head)):
            times[was, now] += table[was, now]
        np.fill_diagonal(times, 0.0)
        return times

    def migration_of(self, s: State) -> float:
        if not self.migrates:
            return 0.0
        times = self.pair_times(s)
        return float(times.sum() if self.shared else times.max())

    def cost(self, s: State) -> tuple[float, float]:
        """(bytes over the limits at the interval's context, seconds): compared in that order.

        The seconds include the price of the horizon's overflow: what moving those bytes
        later would take.
        """
        overflow = self.overflow(self.held(s))
        seconds = self.latency_of(s) + self.migration_of(s) + self.price * overflow[1:].sum()
        return float(overflow[0]), float(seconds)

    def costs(self, b: States) -> tuple[np.ndarray, np.ndarray]:
        """`cost` of every placement of a batch at once: (overflow bytes (J,), seconds (J,)).

        The same formulas as `held`, `latency_of` and `migration_of`, with a leading axis J.
        """
        counts = b.origin.sum(axis=2)  # (J, L, N)
        J, one_hot = len(b), np.eye(self.N)
        held = np.empty((len(self.views), J, self.N))
        for v, view in enumerate(self.views):
            lm = np.where(self.tied & (b.embed == b.lm_head), 0.0, view.lm_head)
            held[v] = (counts.transpose(0, 2, 1) @ view.group + one_hot[b.projection].transpose(0, 2, 1) @ view.projection
                       + one_hot[b.ffn].transpose(0, 2, 1) @ view.ffn + one_hot[b.embed] * view.embed
                       + one_hot[b.lm_head] * lm[:, None])
        overflow = self.overflow(held)  # (V, J)
        layers = np.arange(self.L)
        source = np.concatenate([b.embed[:, None], b.ffn[:, :-1]], axis=1)  # (J, L)
        seconds = np.zeros(J)
        for c in self.sets:
            step = (self.attention(c, counts.transpose(1, 0, 2), source.T, b.projection.T).sum(axis=0)
                    + (c.hidden[b.projection, b.ffn] + c.ffn[layers, b.ffn]).sum(axis=1)
                    + c.embed[b.embed] + c.lm_head[b.lm_head] + c.lm_in[b.ffn[:, -1], b.lm_head]
                    + c.token[b.lm_head, b.embed])
            seconds += c.weight * step
        if self.migrates:
            times = np.einsum("jluv,luv->juv", b.origin, self.move_group)
            rows = np.arange(J)[:, None]
            for was, now, table in ((self.was_projection, b.projection, self.move_projection),
                                    (self.was_ffn, b.ffn, self.move_ffn)):
                np.add.at(times, (rows, was[None, :], now), table[layers, was, now])
            for was, now, table in ((self.was_embed, b.embed, self.move_embed),
                                    (self.was_lm_head, b.lm_head, self.move_lm_head)):
                times[np.arange(J), was, now] += table[was, now]
            times[:, np.arange(self.N), np.arange(self.N)] = 0.0
            seconds += times.sum(axis=(1, 2)) if self.shared else times.max(axis=(1, 2))
        return overflow[0], seconds + self.price * overflow[1:].sum(axis=0)

    def better(self, new: tuple[float, float], old: tuple[float, float]) -> bool:
        """Whether cost `new` is lower than `old`: less overflow, or as much and fewer seconds."""
        if abs(new[0] - old[0]) > self.tolerance:
            return new[0] < old[0]
        return new[1] < old[1] - IMPROVEMENT * max(abs(old[1]), 1e-12)
