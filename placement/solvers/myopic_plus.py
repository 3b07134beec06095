"""``myopic+``: migration-aware online re-partitioning with local search and compound moves.

Still online: at every interval boundary it sees where the blocks are now, the cost
model and the request's token budget, never the tokens' content. Each decision:

1. starts from the placement in use; from the paper's greedy decision too
   (`placement.solvers.myopic.decide`, Algorithm 1) when nothing is placed yet or the
   placement in use no longer fits (a fresh packing moves nearly every block, which
   pays only when it must); and from the cheap baselines (`baseline_placements`:
   every single device, the layer DP's chain, layers in proportion to memory), all
   weighed by the same cost: the first decision searches from each, a later one from
   those that start below the best found;
2. improves each start by local search on the cost of keeping the placement for the
   next ``horizon`` intervals (capped at the intervals left): their decode steps (at
   their mean context), the migration into this interval (so a move must pay for
   itself over the horizon), the prefill for the first interval, and the price of
   memory the caches will need by the horizon's end but that is not there (its bytes
   over a typical route: what moving them later would cost). Memory at the interval's
   own largest context comes first: a placement that overflows it is repaired before
   anything else, cheapest seconds per byte first. Neighbourhoods: move one attention
   group to another device (the group that migrates least: one going home, else one
   already away), relocate a projection, an FFN, ``embed`` or ``lm_head``, and, when
   memory holds back a move that would gain time, swap two groups of different layers
   between two devices. The best candidate is taken until none improves;
3. from the best result, compound moves (`_compound_search`): a range of layers whole
   to one device, two devices' loads swapped, ``embed`` with ``lm_head``; failing an
   improving one, the fastest few followed by local search (ejection chains, plateaus);
4. hands the placements to the evaluator, like every back end; a run from nothing
   commits to a static baseline instead when that is cheaper over the whole run
   (`solve_myopic_plus`).

Every one-block neighbourhood is scored for all its candidates at once with NumPy: a
group move changes one layer's attention stage, a relocation one or two stages and
the migration, so the deltas are the evaluator's formulas, exact (a test checks them
against a full recount), not estimates; only a swap's migration is estimated, and
checked exactly before it is taken. Compound candidates are scored by a full recount.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from placement.cost.blocks import StepCosts
from placement.cost.tolerances import MEMORY_RTOL
from placement.cost.tables import (
    block_memory, heads_share_memory, phase_tables, prefill_step_costs, step_costs, transfer_times, usable_bytes,
)
from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.result import Result, judged
from placement.solvers.myopic import decide
from placement.solvers.online import check_current, run_online
from placement.solvers.expert_moves import place_experts
from placement.solvers.baselines import solve_pipeline_dp
from placement.solvers.reference import pipeline_plan, single_plan

__all__ = ["DecisionPlus", "baseline_placements", "decide_plus", "solve_myopic_plus"]

# A move must lower the interval's cost by this fraction to count (floating-point noise).
_IMPROVEMENT = 1e-9


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
class _State:
    """A placement of whole blocks, with where its attention groups came from."""

    origin: np.ndarray  # (L, N, N): groups of layer l that were on device u and are now on v
    projection: np.ndarray  # (L,) device
    ffn: np.ndarray  # (L,) device
    embed: int
    lm_head: int

    @property
    def counts(self) -> np.ndarray:
        return self.origin.sum(axis=1)

    def copy(self) -> _State:
        return _State(self.origin.copy(), self.projection.copy(), self.ffn.copy(), self.embed, self.lm_head)


def _state_of(placement: Placement, before: Placement | None, N: int) -> _State:
    attention = np.asarray(placement.attention)
    L = attention.shape[0]
    was = attention if before is None else np.asarray(before.attention)
    origin = np.zeros((L, N, N), dtype=np.int64)
    np.add.at(origin, (np.repeat(np.arange(L), attention.shape[1]), was.ravel(), attention.ravel()), 1)
    return _State(origin, np.asarray(placement.projection).argmax(axis=1), np.asarray(placement.ffn).argmax(axis=1),
                  int(placement.embed), int(placement.lm_head))


def _placement_of(state: _State, before: Placement | None, K: int) -> Placement:
    """Groups keep their identity: of the groups of a layer that were on device u, the
    first ones (by index) stay, the next ones go where `state.origin` sends them, in device order."""
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
class _Interval:
    """Interval k's cost and memory as functions of a `_State`: the evaluator's formulas, incrementally."""

    def __init__(self, instance: Instance, k: int, before: Placement | None, horizon: int = 8):
        model, workload, cluster = instance.model, instance.workload, instance.cluster
        self.L, self.K, self.N = model.layers, model.kv_heads, instance.n_devices
        # The request's length is known (its token budget): nothing is kept beyond its last interval.
        horizon = min(horizon, workload.n_intervals - k)
        self.sets = _interval_cost_sets(instance, k, horizon)
        # Memory views, in order of priority: the interval's largest context (it must fit),
        # and with headroom the context `headroom` intervals later (fit it if possible).
        context = int(workload.interval_max_context()[k])
        self.views = [_view(instance, context)]
        if horizon > 1:
            self.views.append(_view(instance, context + (horizon - 1) * workload.tau))
        self.tied = heads_share_memory(model, instance.precision)
        first = self.views[0]  # bytes of the whole model at the interval's context (embed and lm_head apart)
        self.whole_bytes = float(self.K * first.group.sum() + first.projection.sum() + first.ffn.sum()
                                 + first.embed + (0.0 if self.tied else first.lm_head))
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
    def held(self, s: _State) -> np.ndarray:
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

        `counts` (L, N); `source` and `projection` (L,) or (L, J) for J alternatives at once.
        Returns seconds, (L,) or (L, J).
        """
        alternatives = np.ndim(source) == 2 or np.ndim(projection) == 2
        source, projection = np.broadcast_arrays(np.reshape(source, (self.L, -1)), np.reshape(projection, (self.L, -1)))
        counts = counts[:, None, :].astype(np.int64)  # (L, 1, N)
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

    def sources(self, s: _State) -> np.ndarray:
        return np.concatenate([[s.embed], s.ffn[:-1]])

    def latency_of(self, s: _State) -> float:
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
    def pair_times(self, s: _State) -> np.ndarray:
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

    def migration_of(self, s: _State) -> float:
        if not self.migrates:
            return 0.0
        times = self.pair_times(s)
        return float(times.sum() if self.shared else times.max())

    def cost(self, s: _State) -> tuple[float, float]:
        """(bytes over the limits at the interval's context, seconds): compared in that order.

        The seconds include the price of the horizon's overflow: what moving those bytes
        later would take.
        """
        overflow = self.overflow(self.held(s))
        seconds = self.latency_of(s) + self.migration_of(s) + self.price * overflow[1:].sum()
        return float(overflow[0]), float(seconds)

    def better(self, new: tuple[float, float], old: tuple[float, float]) -> bool:
        """Whether cost `new` is lower than `old`: less overflow, or as much and fewer seconds."""
        if abs(new[0] - old[0]) > self.tolerance:
            return new[0] < old[0]
        return new[1] < old[1] - _IMPROVEMENT * max(abs(old[1]), 1e-12)


def _max_excluding(values: np.ndarray, a, b) -> np.ndarray:
    """Max of `values` (..., M) over its entries other than the indices `a` and `b`.

    `a` and `b` broadcast against each other; the leading axes of `values` line up
    with their leading axes. -inf when nothing is left.
    """
    top = min(3, values.shape[-1])
    order = np.argsort(-values, axis=-1)[..., :top]
    best = np.take_along_axis(values, order, axis=-1)
    extra = np.broadcast(a, b).ndim - (values.ndim - 1)
    out, chosen = np.float64(-np.inf), np.bool_(False)
    for t in range(top):
        index = order[..., t].reshape(order.shape[:-1] + (1,) * extra)
        value = best[..., t].reshape(best.shape[:-1] + (1,) * extra)
        take = ~chosen & (index != a) & (index != b)
        out = np.where(take, value, out)
        chosen = chosen | take
    return out


# ----------------------------------------------------------------------------- neighbourhoods
def _migration_delta(iv: _Interval, times, current, src, old, new, table, layer=None):
    """New migration time minus the current one when one block moves from being sent src → old
    to src → new (arrays broadcast; src == old or src == new mean no transfer).

    `table` gives the block's message seconds from u to v, (N, N), or (L, N, N) indexed by `layer`."""
    if not iv.migrates:
        return np.zeros(np.broadcast_shapes(np.shape(src), np.shape(old), np.shape(new)))
    src, old, new = np.broadcast_arrays(src, old, new)
    at = (lambda u, v: table[u, v]) if layer is None else (lambda u, v: table[layer, u, v])  # noqa: E731
    leave = (src != old) * at(src, old)
    enter = (src != new) * at(src, new)
    same = old == new
    t_old = times[src, old] - leave
    t_new = times[src, new] + enter - np.where(same, leave, 0.0)
    if iv.shared:
        return np.where(same, 0.0, t_old - times[src, old] + t_new - times[src, new])
    N = iv.N
    rest = _max_excluding(times.reshape(-1), src * N + old, src * N + new)
    moved = np.maximum(np.maximum(t_old, t_new), np.maximum(rest, 0.0))
    return np.where(same, 0.0, moved - current)


def _group_moves(iv: _Interval, s: _State, held, mig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every move of one group of layer l from device a to device j: (ΔOverflow, Δseconds, origin) (L, N, N)."""
    L, N = iv.L, iv.N
    counts = s.counts
    source = iv.sources(s)
    rows = np.arange(L)
    a = np.arange(N)[None, :, None]
    j = np.arange(N)[None, None, :]
    ca = counts[:, :, None]  # count on a
    cj = counts[:, None, :]  # count on j
    dlat = np.zeros((L, N, N))
    has = counts > 0
    left, added = ca - 1, cj + 1  # groups on a after the move, on j after it
    for c in iv.sets:
        receive = c.layer_in[source]  # (L, N): the layer input to each device
        proj_of = s.projection[:, None, None]  # head outputs go from each device to the projection
        send = np.where(has, c.out[counts, np.arange(N), s.projection[:, None]], 0.0)  # (L, N)
        work = counts * c.group
        send_a = np.where(left > 0, c.out[np.maximum(left, 0), a, proj_of], 0.0)  # (L, N, 1)
        send_j = c.out[added, j, proj_of]  # (L, 1, N)
        work_a, work_j = left * c.group[:, :, None], added * c.group[:, None, :]
        recv_a, recv_j = receive[:, :, None], receive[:, None, :]
        proj = c.projection[rows, s.projection][:, None, None]
        if c.gather_sum:
            compute = np.maximum(np.maximum(np.where(left > 0, work_a, -np.inf), work_j),
                                 _max_excluding(np.where(has, work, -np.inf), a, j))
            sends = send.sum(axis=1)[:, None, None] - send[:, :, None] - send[:, None, :] + send_a + send_j
            r = np.where(has, receive, 0.0)
            if c.shared:
                recvs = (r.sum(axis=1)[:, None, None] - np.where(left > 0, 0.0, recv_a)
                         + np.where(cj > 0, 0.0, recv_j))
            else:
                recvs = np.maximum(np.maximum(np.where(left > 0, recv_a, 0.0), recv_j),
                                   np.maximum(_max_excluding(r, a, j), 0.0))
            new = compute + recvs + sends + proj
        else:
            chain = np.where(has, receive + work + send, -np.inf)
            new_a = np.where(left > 0, recv_a + work_a + send_a, -np.inf)
            new = np.maximum(np.maximum(new_a, recv_j + work_j + send_j), _max_excluding(chain, a, j)) + proj
        dlat += c.weight * (new - iv.attention(c, counts, source, s.projection)[:, None, None])
    # memory
    doverflow = iv.shift_overflow(held, a, j, [view.group[:, None, None] for view in iv.views])
    # which group moves: one going home, else one already away, else one at home
    # (where every group is from: the interval's start, or the first placement's greedy packing)
    present = s.origin > 0  # (L, u, a)
    away = present & ~np.eye(N, dtype=bool)[None]
    first_away = np.where(away.any(axis=1), away.argmax(axis=1), -1)  # (L, a)
    last_away = np.where(away.any(axis=1), N - 1 - away[:, ::-1, :].argmax(axis=1), -1)
    alt = np.where(first_away[:, :, None] != j, first_away[:, :, None], last_away[:, :, None])
    origin = np.where(alt >= 0, alt, np.broadcast_to(a, (L, N, N)))  # none away: one at home on a
    origin = np.where(np.transpose(present, (0, 2, 1)), j, origin)  # a group on a came from j
    if iv.migrates:
        times = iv.pair_times(s)
        dlat += _migration_delta(iv, times, mig, origin, a, j, iv.move_group, np.arange(L)[:, None, None])
    valid = (counts[:, :, None] > 0) & (a != j)
    return np.where(valid, doverflow, np.inf), np.where(valid, dlat, np.inf), origin


def _move_group(l: int, u: int, a: int, j: int):
    def apply(s: _State) -> _State:
        s = s.copy()
        s.origin[l, u, a] -= 1
        s.origin[l, u, j] += 1
        return s
    return apply


def _relocate(kind: str, l: int, j: int):
    def apply(s: _State) -> _State:
        s = s.copy()
        if kind in ("projection", "ffn"):
            getattr(s, kind)[l] = j
        else:
            setattr(s, kind, j)
        return s
    return apply


def _heads_memory(iv: _Interval, embed, lm_head) -> np.ndarray:
    """Bytes embed and lm_head put on each device, (J, N) for J (embed, lm_head) pairs."""
    embed, lm_head = np.broadcast_arrays(np.atleast_1d(embed), np.atleast_1d(lm_head))
    one_hot = np.eye(iv.N)
    shared = iv.tied & (embed == lm_head)
    return np.stack([one_hot[embed] * view.embed + one_hot[lm_head] * np.where(shared, 0.0, view.lm_head)[:, None]
                     for view in iv.views])


def _block_moves(iv: _Interval, s: _State, held, mig) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Relocations of a projection, an FFN, embed or lm_head to every device.

    Returns (kind, ΔOverflow, Δseconds) with arrays (L, N) (rows: layers; one row for embed and lm_head).
    """
    L, N = iv.L, iv.N
    rows, every = np.arange(L), np.arange(N)
    counts, source = s.counts, iv.sources(s)
    d_proj, d_ffn, d_embed, d_lm = np.zeros((L, N)), np.zeros((L, N)), np.zeros(N), np.zeros(N)
    next_source = np.broadcast_to(every, (L, N)).copy()  # layer l+1 fed by an FFN of layer l on j
    next_source[0] = s.embed
    for c in iv.sets:
        now = iv.attention(c, counts, source, s.projection)
        ffn_now = c.hidden[s.projection, s.ffn] + c.ffn[rows, s.ffn]
        # projection of layer l on j: its attention stage and its FFN's input change
        att_p = iv.attention(c, counts, source[:, None], np.broadcast_to(every, (L, N)))
        ffn_p = c.hidden[every[None, :], s.ffn[:, None]] + c.ffn[rows, s.ffn][:, None]
        d_proj += c.weight * (att_p - now[:, None] + ffn_p - ffn_now[:, None])
        # FFN of layer l on j: its own stage and the next layer's input (lm_head's for the last)
        ffn_f = c.hidden[s.projection[:, None], every[None, :]] + c.ffn
        nxt = np.empty((L, N))
        nxt[:-1] = (iv.attention(c, counts, next_source, s.projection[:, None]) - now[:, None])[1:]
        nxt[-1] = c.lm_in[every, s.lm_head] - c.lm_in[s.ffn[-1], s.lm_head]
        d_ffn += c.weight * (ffn_f - ffn_now[:, None] + nxt)
        # embed on j: layer 0's input and the token back; lm_head on j: its input and the token back
        first = iv.attention(c, counts, np.where(rows[:, None] == 0, every, source[:, None]), s.projection[:, None])[0]
        d_embed += c.weight * (c.embed - c.embed[s.embed] + first - now[0]
                               + c.token[s.lm_head, every] - c.token[s.lm_head, s.embed])
        d_lm += c.weight * (c.lm_head - c.lm_head[s.lm_head] + c.lm_in[s.ffn[-1], every]
                            - c.lm_in[s.ffn[-1], s.lm_head] + c.token[every, s.embed] - c.token[s.lm_head, s.embed])
    if iv.migrates:
        times = iv.pair_times(s)
        layers = np.arange(L)[:, None]
        d_proj += _migration_delta(iv, times, mig, iv.was_projection[:, None], s.projection[:, None], every,
                                   iv.move_projection, layers)
        d_ffn += _migration_delta(iv, times, mig, iv.was_ffn[:, None], s.ffn[:, None], every, iv.move_ffn, layers)
        d_embed += _migration_delta(iv, times, mig, iv.was_embed, s.embed, every, iv.move_embed)
        d_lm += _migration_delta(iv, times, mig, iv.was_lm_head, s.lm_head, every, iv.move_lm_head)
    out = []
    for kind, delta, cur in (("projection", d_proj, s.projection), ("ffn", d_ffn, s.ffn)):
        stay = every == cur[:, None]
        dov = iv.shift_overflow(held, cur[:, None], every, [getattr(view, kind)[:, None] for view in iv.views])
        out.append((kind, np.where(stay, 0.0, dov), np.where(stay, np.inf, delta)))
    heads_now = _heads_memory(iv, s.embed, s.lm_head)  # (V, 1, N)
    for kind, delta, pairs in (("embed", d_embed, (every, s.lm_head)), ("lm_head", d_lm, (s.embed, every))):
        dov = iv.overflow(held[:, None, :] - heads_now + _heads_memory(iv, *pairs)) - iv.overflow(held)[:, None]
        out.append((kind, dov[:, None, :], np.where(every == getattr(s, kind), np.inf, delta)[None, :]))
    return out


def _best(iv: _Interval, dov: np.ndarray, dcost: np.ndarray) -> tuple[tuple, tuple] | None:
    """The best improving candidate: (its index, its rank), or None.

    `dov` (V, ...) is the change of each memory view's overflow, `dcost` (...) the
    change of seconds. While the interval's memory overflows, the candidates that
    lower it compete on seconds per byte removed (a repair moves what is cheapest to
    move); otherwise the candidates that do not raise it compete on seconds gained,
    the horizon's overflow priced in. Ranks order candidates of different
    neighbourhoods the same way.
    """
    dcost = dcost + iv.price * dov[1:].sum(axis=0)
    repairs = dov[0] < -iv.tolerance
    if repairs.any():
        key = np.where(repairs, dcost / np.where(repairs, -dov[0], 1.0), np.inf)
        idx = np.unravel_index(int(np.argmin(key)), key.shape)
        return idx, (0, float(key[idx]))
    key = np.where((dov[0] <= iv.tolerance) & (dcost < -_IMPROVEMENT * iv.scale), dcost, np.inf)
    idx = np.unravel_index(int(np.argmin(key)), key.shape)
    return (idx, (1, float(key[idx]))) if np.isfinite(key[idx]) else None


# Swaps are scored over (L, N, N, L) candidates: skipped beyond this many.
_MAX_SWAP_CANDIDATES = 4_000_000


def _swaps(iv: _Interval, s: _State, held: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swap a group of layer l on a with a group of layer m on b (l != m): (ΔOverflow, Δseconds) (L, N, N, L).

    The layers' stages are independent, so the latency change is the sum of the two
    one-group moves `d` (L, from, to); so is the migration change, an estimate the
    search checks exactly before it accepts a swap.
    """
    L, N = iv.L, iv.N
    counts = s.counts
    total = d[:, :, :, None] + np.transpose(d, (2, 1, 0))[None]  # [l, a, b, m] = d[l, a, b] + d[m, b, a]
    a, b = np.arange(N)[None, :, None, None], np.arange(N)[None, None, :, None]
    # device a gives up group(l) - group(m) bytes to device b
    dov = iv.shift_overflow(held, a, b, [(v.group[:, None] - v.group[None, :])[:, None, None, :] for v in iv.views])
    layers, devices = np.arange(L), np.arange(N)
    valid = ((counts[:, :, None, None] > 0) & (counts.T[None, None, :, :] > 0)
             & (layers[:, None, None, None] != layers[None, None, None, :])
             & (devices[None, :, None, None] != devices[None, None, :, None]))
    return np.where(valid, dov, np.inf), np.where(valid, total, np.inf)


# ----------------------------------------------------------------------------- one decision
def _search(iv: _Interval, s: _State, max_moves: int) -> tuple[_State, int]:
    """Local search from `s`: the best candidate of every neighbourhood, the best rank first, until none improves."""
    cost = iv.cost(s)
    iv.scale = max(cost[1], 1e-12)
    moves = 0
    while moves < max_moves:
        held = iv.held(s)
        mig = iv.migration_of(s)
        dov, dlat, origin = _group_moves(iv, s, held, mig)
        options = []
        if hit := _best(iv, dov, dlat):
            (l, a, j), rank = hit
            options.append((rank, _move_group(int(l), int(origin[l, a, j]), int(a), int(j))))
        for kind, kdov, kd in _block_moves(iv, s, held, mig):
            if hit := _best(iv, kdov, kd):
                (l, j), rank = hit
                options.append((rank, _relocate(kind, int(l), int(j))))
        # Swaps, when no move helps but a move that would gain time is held back by memory.
        blocked = (dlat < -_IMPROVEMENT * iv.scale) & (dov[0] > iv.tolerance)
        if not options and blocked.any() and 1 < iv.L and iv.L**2 * iv.N**2 <= _MAX_SWAP_CANDIDATES:
            sdov, sd = _swaps(iv, s, held, np.where(np.isfinite(dlat), dlat, 0.0))
            if hit := _best(iv, sdov, sd):
                (l, a, b, m), rank = hit
                first = _move_group(int(l), int(origin[l, a, b]), int(a), int(b))
                second = _move_group(int(m), int(origin[m, b, a]), int(b), int(a))
                options.append((rank, lambda st, f=first, g=second: g(f(st))))
        for _, apply in sorted(options, key=lambda option: option[0]):
            trial = apply(s)
            trial_cost = iv.cost(trial)
            if iv.better(trial_cost, cost):  # exact: swaps' migration was an estimate
                s, cost = trial, trial_cost
                moves += 1
                break
        else:
            break
    return s, moves


# ----------------------------------------------------------------------------- compound moves
# Compound candidates a later decision may score (the first decision: up to _FIRST_COMPOUND_LIMIT).
_COMPOUND_LIMIT = 200
_FIRST_COMPOUND_LIMIT = 1_000
# Beyond this many layers, the layer ranges are single layers, prefixes and suffixes only.
_ALL_RANGES_LAYERS = 8
# Compound moves that do not improve at once but are tried with a local search after them
# (ejection chains, plateaus): the fastest few by seconds, whatever their memory.
_CHAINS = 4


def _layers_to(s: _State, first: int, last: int, j: int, ends: bool) -> _State:
    """Layers first..last whole (groups, projection, FFN) on device j; with `ends`, embed
    (when the range starts at layer 0) and lm_head (when it ends at the last) too."""
    s = s.copy()
    came = s.origin[first:last + 1].sum(axis=2)  # (layers, from)
    s.origin[first:last + 1] = 0
    s.origin[first:last + 1, :, j] = came
    s.projection[first:last + 1] = j
    s.ffn[first:last + 1] = j
    if ends and first == 0:
        s.embed = j
    if ends and last == len(s.projection) - 1:
        s.lm_head = j
    return s


def _swap_devices(s: _State, a: int, b: int) -> _State:
    """Every block on device a goes to b and every block on b to a."""
    s = s.copy()
    s.origin[:, :, [a, b]] = s.origin[:, :, [b, a]]
    swap = np.arange(s.origin.shape[1])
    swap[[a, b]] = [b, a]
    s.projection, s.ffn = swap[s.projection], swap[s.ffn]
    s.embed, s.lm_head = int(swap[s.embed]), int(swap[s.lm_head])
    return s


def _compound_moves(s: _State, L: int, N: int) -> list[_State]:
    """Every compound move from `s`: contiguous layer ranges (a single layer included) to one
    device, with and without the embed / lm_head at their ends, two devices' loads swapped, and
    embed and lm_head moved together."""
    out = [_layers_to(s, first, last, j, ends) for first, last in _ranges(L)
           for j in range(N) for ends in ((False, True) if first == 0 or last == L - 1 else (False,))]
    return out + [_swap_devices(s, a, b) for a in range(N) for b in range(a + 1, N)] + [_ends_to(s, j) for j in range(N)]


def _ends_to(s: _State, j: int) -> _State:
    """embed and lm_head together on device j (a tied pair shares its memory only there)."""
    s = s.copy()
    s.embed = s.lm_head = j
    return s


def _ranges(L: int) -> list[tuple[int, int]]:
    """Layer ranges (first, last) of the compound moves: all of them up to `_ALL_RANGES_LAYERS`
    layers, else single layers, prefixes and suffixes."""
    if L <= _ALL_RANGES_LAYERS:
        return [(first, last) for first in range(L) for last in range(first, L)]
    return sorted({(l, l) for l in range(L)} | {(0, l) for l in range(L)} | {(l, L - 1) for l in range(L)})


def _compound_count(L: int, N: int) -> int:
    ranges = _ranges(L)
    ends = sum(first == 0 or last == L - 1 for first, last in ranges)
    return N * (len(ranges) + ends) + N * (N - 1) // 2 + N


def _repair(iv: _Interval, s: _State, max_moves: int) -> _State:
    """Local search from `s`; when memory still overflows, the best compound move from there
    and local search again (a chain two compound moves deep)."""
    s, _ = _search(iv, s, max_moves)
    if iv.cost(s)[0] > iv.tolerance:
        s = min(_compound_moves(s, iv.L, iv.N), key=iv.cost)
        s, _ = _search(iv, s, max_moves)
    return s


def _compound_search(iv: _Interval, s: _State, max_moves: int, limit: int) -> tuple[_State, int]:
    """Local search, then compound moves while one improves: the best improving one is
    taken; failing that, the few fastest ones (those that overflow memory, or tie) are
    each followed by local search (an ejection chain: what the move pushes out goes where
    it costs least) and the first that ends better is taken; after each, local search again."""
    s, moves = _search(iv, s, max_moves)
    if _compound_count(iv.L, iv.N) > limit:
        return s, moves
    while moves < max_moves:
        cost = iv.cost(s)
        candidates = _compound_moves(s, iv.L, iv.N)
        costs = [iv.cost(c) for c in candidates]
        best = min(range(len(costs)), key=lambda i: costs[i])
        taken = candidates[best] if iv.better(costs[best], cost) else None
        if taken is None:
            # The fastest candidates whatever their memory, each followed by local search:
            # one that overflows is repaired (an ejection chain), one that ties opens a plateau.
            fastest = sorted(range(len(costs)), key=lambda i: costs[i][1])
            for i in fastest[:_CHAINS]:
                repaired = _repair(iv, candidates[i], max_moves - moves)
                if iv.better(iv.cost(repaired), cost):
                    taken = repaired
                    break
        if taken is None:
            break
        s, more = _search(iv, taken, max_moves - moves - 1)
        moves += 1 + more
    return s, moves


def _check_options(horizon, max_moves, compound_limit) -> None:
    for name, value, least in (("horizon", horizon, 1), ("max_moves", max_moves, 0),
                               ("compound_limit", compound_limit, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InputError(f"`{name}` must be a whole number, at least {least}, got {value!r}")


@dataclass(frozen=True, eq=False)
class DecisionPlus:
    """One ``myopic+`` decision.

    Attributes
    ----------
    placement : Placement
        Whole blocks, the instance's precision.
    start : str
        Where the search that won began: ``"current"`` (the placement in use),
        ``"greedy"`` (Algorithm 1's decision) or a baseline of `baseline_placements`
        (``"single:<device>"``, ``"pipeline-dp"``, ``"memory-proportional"``).
    moves : int
        Improving moves the local search and the compound moves made.
    cost_s : float
        The cost the search minimized, seconds: the horizon's decode steps (at their
        mean context), the migration into the interval, the prefill for interval 0,
        and the price of the memory missing by the horizon's end.
    overflow_bytes : float
        Memory over the devices' limits at the interval's largest context (0 when it fits).
    """

    placement: Placement
    start: str
    moves: int
    cost_s: float
    overflow_bytes: float


def _device_of(name: str, instance: Instance) -> int:
    """The device index of a ``single:<device>`` baseline."""
    return instance.cluster.index(name.removeprefix("single:"))


def baseline_placements(instance: Instance) -> dict[str, Placement]:
    """The cheap baselines' placements every decision weighs: static plans of whole blocks.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    dict of str to Placement
        ``single:<device>`` for every device (everything on it), ``pipeline-dp`` (the
        layer DP's chain, `placement.solvers.baselines.solve_pipeline_dp`) and
        ``memory-proportional`` (contiguous layers in proportion to memory).
    """
    out = {f"single:{name}": single_plan(instance, j).intervals[0] for j, name in enumerate(instance.cluster.names)}
    out["pipeline-dp"] = solve_pipeline_dp(instance).plan.intervals[0]
    out["memory-proportional"] = pipeline_plan(instance).intervals[0]
    return out


def decide_plus(instance: Instance, k: int, previous: Placement | None = None, *, horizon: int = 8,
                max_moves: int = 10_000, baselines: dict[str, Placement] | None = None,
                compound_limit: int = _COMPOUND_LIMIT) -> DecisionPlus:
    """One ``myopic+`` decision for interval `k`, from the placement in use (`previous`).

    Parameters
    ----------
    instance : Instance
    k : int
        The interval decided.
    previous : Placement, optional
        Where the blocks are now; None before the first interval.
    horizon, max_moves, compound_limit
        As in `solve_myopic_plus`.
    baselines : dict of str to Placement, optional
        The baselines weighed (`baseline_placements`, computed when not given).

    Returns
    -------
    DecisionPlus

    Raises
    ------
    InputError
        On a `k` outside the instance's intervals, a bad option, or a `previous`
        placement that does not fit the instance.
    """
    previous = check_current(instance, previous)
    _check_options(horizon, max_moves, compound_limit)
    if not 0 <= k < instance.workload.n_intervals:
        raise InputError(f"`k` must be an interval of the instance, 0..{instance.workload.n_intervals - 1}, got {k!r}")
    N, K = instance.n_devices, instance.model.kv_heads
    iv = _Interval(instance, k, previous, horizon)
    starts = [] if previous is None else [("current", _state_of(previous, previous, N))]
    # A fresh greedy packing migrates nearly every block: it is a start only when nothing
    # is placed yet or the placement in use no longer fits.
    if not starts or iv.cost(starts[0][1])[0] > iv.tolerance:
        greedy = decide(instance, k, previous, scoring="max", weights=(0.4, 0.3, 0.3)).placement
        starts.append(("greedy", _state_of(greedy, previous, N)))
    searched = [(name, *_search(iv, state, max_moves)) for name, state in starts]
    # The baselines, by the same horizon cost. The first decision searches from each (of the
    # single-device plans, the best one); later ones from those that start below the best so far.
    baselines = baseline_placements(instance) if baselines is None else baselines
    best = min(iv.cost(item[1]) for item in searched)
    raw = []
    for name, placement in baselines.items():
        if best[0] <= iv.tolerance and name.startswith("single:") and iv.whole_bytes > iv.limit[_device_of(name, instance)]:
            continue  # cannot beat a placement that fits
        state = _state_of(placement, previous, N)
        raw.append((iv.cost(state), name, state))
    raw.sort(key=lambda item: item[0])
    single_seen = False
    for cost, name, state in raw:
        first = previous is None and not (single_seen and name.startswith("single:"))
        single_seen |= name.startswith("single:")
        if first or iv.better(cost, best):
            searched.append((name, *_search(iv, state, max_moves)))
            best = min(best, iv.cost(searched[-1][1]))
    name, state, moves = min(searched, key=lambda item: iv.cost(item[1]))
    # Compound moves from the best of them (the first decision may score more candidates).
    limit = _FIRST_COMPOUND_LIMIT if previous is None else compound_limit
    state, more = _compound_search(iv, state, max_moves - moves, limit)
    moves += more
    overflow, cost = iv.cost(state)
    return DecisionPlus(_placement_of(state, previous, K), name, moves, cost, overflow)


def solve_myopic_plus(instance: Instance, *, current: Placement | Plan | None = None,
                      horizon: int = 8, max_moves: int = 10_000, compound_limit: int = _COMPOUND_LIMIT) -> Result:
    """Re-decide every interval from the current state: greedy start, migration-aware local search.

    Parameters
    ----------
    instance : Instance
    current : Placement or Plan, optional
        Where the blocks are before the first interval (a running system); the
        evaluator does not charge the moves out of it (``stats["blocks_moved_from_current"]``
        counts them).
    horizon : int
        Intervals a decision assumes its placement is kept for (at least 1): it
        amortizes migration over them and prices the memory their caches will need.
        ``1`` looks at the coming interval alone. The default, 8, was chosen on
        ``paper-small`` (docs/methods.md has the sensitivity).
    max_moves : int
        Cap on each decision's improving moves (default: effectively none).
    compound_limit : int
        Decisions after the first make compound moves (layer ranges, device swaps,
        embed with lm_head, ejection chains) only when a round has at most this many
        candidates; the first decision makes them up to 1,000 (docs/methods.md has the
        count). 0 turns them off after the first decision.

    Returns
    -------
    Result
        One placement per interval, judged by `placement.evaluate`; objective
        ``report.total_s``; status ``feasible`` or ``infeasible`` (the worst violation
        named). ``stats``: ``decision_time_median_s`` / ``decision_time_max_s`` (one
        decision's wall-clock seconds), ``decision_times_s``, ``moves`` (local-search
        and compound moves per decision), ``starts`` (per decision: ``current``,
        ``greedy`` or a baseline's name, ``single:<device>``, ``pipeline-dp``,
        ``memory-proportional``), ``blocks_moved`` (between intervals, charged by the
        evaluator), ``horizon``, ``static`` (the baseline kept for the whole run when it
        beat re-deciding, else None).

    Raises
    ------
    InputError
        On a `horizon` below 1, a negative `max_moves`, or a `current` placement
        that does not fit the instance.

    Examples
    --------
    >>> from placement import load_instance
    >>> result = solve_myopic_plus(load_instance("paper-small/h8-3dev-low-s1-kafetzis"))
    >>> result.objective == result.report.total_s
    True
    """
    previous = check_current(instance, current)
    _check_options(horizon, max_moves, compound_limit)
    baselines: dict[str, Placement] = {}

    def one(k: int, before: Placement | None) -> DecisionPlus:
        if not baselines:  # computed within the first decision, whose time they count in
            baselines.update(baseline_placements(instance))
        return place_experts(instance, k, decide_plus(instance, k, before, horizon=horizon, max_moves=max_moves,
                                                      baselines=baselines, compound_limit=compound_limit), before, horizon)

    decisions, placements, stats = run_online(instance, previous, one)
    plan = Plan(devices=instance.cluster.names, intervals=placements, method="myopic+")
    stats.update(moves=[d.moves for d in decisions], starts=[d.start for d in decisions], horizon=horizon,
                 static=None)
    note = (f"myopic+: {len(decisions)} decision(s), {sum(stats['moves'])} local-search move(s), "
            f"{stats['blocks_moved']} block move(s) between intervals")
    result = judged(instance, plan, note, stats)
    if previous is not None:
        return result
    # The run is deterministic given the cost model and the token budget, so the first decision
    # can foresee its total: it commits to a static baseline when one is cheaper (its time is
    # counted in the first decision's).
    began = time.perf_counter()
    static = _cheaper_static(instance, baselines, result)
    stats["decision_times_s"][0] += time.perf_counter() - began
    stats["decision_time_max_s"] = max(stats["decision_times_s"])
    stats["decision_time_median_s"] = float(np.median(stats["decision_times_s"]))
    if static is None:
        return result
    name, static_plan = static
    stats.update(static=name, blocks_moved=0)
    return judged(instance, static_plan, f"myopic+: the static {name} plan, cheaper over the whole run than "
                  f"re-deciding ({result.objective:.6g} s)", stats)


def _cheaper_static(instance: Instance, baselines: dict[str, Placement], online: Result) -> tuple[str, Plan] | None:
    """The cheapest feasible baseline kept for the whole run, if it beats the online plan's total."""
    best, limit = None, online.objective * (1 - _IMPROVEMENT) if online.report.feasible else np.inf
    for name, placement in baselines.items():
        report = evaluate(instance, Plan(devices=instance.cluster.names, intervals=[placement], method="myopic+"))
        if report.feasible and report.total_s < limit:
            best, limit = (name, Plan(devices=instance.cluster.names, intervals=[placement], method="myopic+")), report.total_s
    return best
