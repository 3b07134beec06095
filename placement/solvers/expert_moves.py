"""Expert moves for ``myopic+``: where each MoE layer's routed experts sit, given the decided blocks.

After a ``myopic+`` decision has placed whole blocks (each MoE layer's FFN block, with
its router and shared experts, on its *home* device), `place_experts` moves the
layer's routed experts between devices by local search on

    cost = Σ_l tokens · stage_l(h_l) (+ the prefill's stage for the first interval) + migration,

with ``stage_l`` the evaluator's expected expert stage of the layer's holdings ``h_l``
(`placement.experts.layer_expert_stage`, uniform routing, the decode step at the
horizon's mean context), ``tokens`` the decode steps of the decision's horizon, and
migration the experts that leave where they were before the interval (one message
each; the slowest pair of devices on a switched network, the sum on a shared one).
Memory: the experts must fit in what the decided blocks leave free over the horizon.
Moves, per layer: one expert, half or all of one device's experts to another device,
and a re-spread of the layer's experts evenly over its home and the ``m − 1`` devices
whose dispatch, one expert and combine are quickest. The best improving move is
taken until none improves. The plan is judged by the evaluator like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from placement.cost.tables import block_memory, phase_tables, prefill_step_costs, step_costs, usable_bytes
from placement.evaluate import evaluate
from placement.experts import layer_expert_stage
from placement.instance import Instance
from placement.plan import Placement, Plan

__all__ = ["ExpertCosts", "place_experts", "expert_costs", "layer_candidates"]

# A move must gain this share of the cost: rounding noise never moves an expert.
GAIN = 1e-9


@dataclass(frozen=True, eq=False)
class ExpertCosts:
    """What the search weighs for one decision.

    Attributes
    ----------
    instance : Instance
    home : ndarray of int, shape (L,)
        Each layer's FFN device.
    before : ndarray of int, shape (L, E)
        Where the experts were before the interval (their home then when none was placed, the decided home before
        the first interval; -1 in dense layers).
    tokens : int
        Decode steps the placement is kept for (the horizon).
    prefill : bool
        Whether the prefill runs on it (the first interval).
    free_bytes : ndarray, shape (N,)
        Memory the decided blocks leave free over the horizon, counting every expert on its home.
    expert_bytes : ndarray, shape (L,)
        One routed expert's weights.
    move_s : ndarray, shape (L, N, N)
        One expert's migration message between each pair of devices (0 before the first interval).
    tables : tuple
        ``(costs, phase tables)`` of one decode step and of the prefill.
    """

    instance: Instance
    home: np.ndarray
    before: np.ndarray
    tokens: int
    prefill: bool
    free_bytes: np.ndarray
    expert_bytes: np.ndarray
    move_s: np.ndarray
    tables: tuple

    def stage_s(self, layer: int, holdings: np.ndarray, cache: dict) -> float:
        """The layer's expected expert seconds over the horizon with `holdings` (cached by layer costs and holdings)."""
        (decode, decode_t), (prefill, prefill_t) = self.tables
        key = (decode.expert_flops[0, layer], decode.expert_read[0, layer], decode.ffn_fixed_flops[0, layer],
               decode.ffn_fixed_read[0, layer], int(self.home[layer]), holdings.tobytes())
        if key not in cache:
            owner = np.repeat(np.arange(len(holdings)), holdings)
            seconds = self.tokens * layer_expert_stage(self.instance, decode, decode_t, 0, 0, layer,
                                                       int(self.home[layer]), owner)[0]
            if self.prefill:
                seconds += layer_expert_stage(self.instance, prefill, prefill_t, 0, 0, layer, int(self.home[layer]),
                                              owner)[0]
            cache[key] = seconds
        return cache[key]

    def pair_s(self, layer: int, owner: np.ndarray) -> np.ndarray:
        """Seconds of the layer's expert migration messages between each pair of devices, (N, N)."""
        N = len(self.free_bytes)
        moved = owner != self.before[layer]
        pairs = np.zeros((N, N))
        np.add.at(pairs, (self.before[layer][moved], owner[moved]), self.move_s[layer][self.before[layer][moved],
                                                                                       owner[moved]])
        return pairs


def expert_costs(instance: Instance, k: int, placement: Placement, before: Placement | None,
                 horizon: int) -> ExpertCosts:
    """The costs `place_experts` weighs for interval `k`'s decision `placement`.

    Parameters
    ----------
    instance : Instance
    k : int
        The interval decided.
    placement : Placement
        The decided blocks (whole FFN blocks).
    before : Placement or None
        The placement in use before the interval.
    horizon : int
        Intervals the decision is kept for.

    Returns
    -------
    ExpertCosts
    """
    model, workload, N = instance.model, instance.workload, instance.n_devices
    home = np.asarray(placement.ffn).argmax(axis=1)
    moe = model.moe_layers
    last = min(k + horizon, workload.n_intervals)
    steps = np.flatnonzero((workload.interval_of_step() >= k) & (workload.interval_of_step() < last))
    contexts = workload.contexts()[steps]
    decode = step_costs(instance, instance.precision, np.array([int(contexts.mean())]))
    prefill = prefill_step_costs(instance, instance.precision)
    at_home = np.where(moe[:, None], home[:, None], -1) * np.ones((1, model.experts), dtype=np.int64)
    whole = Placement(placement.attention, placement.projection, placement.ffn, placement.embed, placement.lm_head,
                      placement.precision)
    report = evaluate(instance, Plan(instance.cluster.names, [whole]))
    free = usable_bytes(instance) - report.peak_memory_bytes[k:last].max(axis=0)
    previous = at_home if before is None else (
        before.experts if before.experts is not None
        else np.where(moe[:, None], np.asarray(before.ffn).argmax(axis=1)[:, None], -1) * np.ones((1, model.experts),
                                                                                                    dtype=np.int64))
    memory = block_memory(instance, instance.precision, np.array([int(contexts.max())]))
    expert_bytes = memory.expert[0]
    # nothing is in place before the first decision: no expert pays for a move then
    move_s = instance.cluster.message_time_s(expert_bytes[:, None, None] * np.ones((1, N, N))) * (before is not None)
    return ExpertCosts(instance, home, np.asarray(previous), len(steps), k == 0, free, expert_bytes, move_s,
                       ((decode, phase_tables(instance, decode, np.array([0]))),
                        (prefill, phase_tables(instance, prefill, np.array([0])))))


def layer_candidates(owner: np.ndarray, before: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """Every neighbour of one layer's expert devices `owner` (E,).

    One expert, half or all of a device's experts to another device (those going back to
    where they were first, then those already away), and even spreads over `order`'s
    first ``m`` devices (home first).

    Parameters
    ----------
    owner : ndarray of int, shape (E,)
    before : ndarray of int, shape (E,)
        Where each expert was before the interval.
    order : ndarray of int, shape (N,)
        Devices, home first, then by one expert's round trip.

    Returns
    -------
    list of ndarray (E,)
    """
    N, E = len(order), len(owner)
    out = []
    for a in range(N):
        on_a = np.flatnonzero(owner == a)
        for b in range(N):
            if b == a or not len(on_a):
                continue
            # experts returning to b first, then those away from where they were, then the rest
            ranked = on_a[np.argsort(np.where(before[on_a] == b, 0, np.where(before[on_a] != a, 1, 2)), kind="stable")]
            for j in sorted({1, max(len(on_a) // 2, 1), len(on_a)}):
                moved = owner.copy()
                moved[ranked[:j]] = b
                out.append(moved)
    for m in range(1, N + 1):
        spread = np.repeat(order[:m], [E // m + (i < E % m) for i in range(m)])
        out.append(_keep_identities(spread, owner))
    return out


def _keep_identities(target: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Experts on the devices of `target`'s holdings, keeping as many as possible where `owner` has them."""
    N = max(int(target.max()), int(owner.max())) + 1
    want = np.bincount(target, minlength=N)
    out = np.full(len(owner), -1)
    for n in range(N):
        mine = np.flatnonzero(owner == n)[:want[n]]
        out[mine] = n
        want[n] -= len(mine)
    out[out < 0] = np.repeat(np.arange(N), want)
    return out


def place_experts(instance: Instance, k: int, decision: Any, before: Placement | None, horizon: int) -> Any:
    """`decision` with its MoE layers' routed experts moved where the horizon's cost is least.

    Parameters
    ----------
    instance : Instance
    k : int
        The interval decided.
    decision : DecisionPlus
        A ``myopic+`` decision (its ``placement`` has whole FFN blocks).
    before : Placement or None
        The placement in use before the interval.
    horizon : int

    Returns
    -------
    DecisionPlus
        Unchanged for dense models, other profiles, measured routing, or when no move
        gains; else with ``placement.experts`` set.
    """
    model = instance.model
    if not model.is_moe or instance.workload.profile != "roofline" or instance.expert_routing is not None:
        return decision
    p = decision.placement
    costs = expert_costs(instance, k, p, before, horizon)
    owner = np.where(model.moe_layers[:, None], costs.home[:, None], -1) * np.ones((1, model.experts), dtype=np.int64)
    if before is not None and before.experts is not None:
        owner = np.where(model.moe_layers[:, None], costs.before, -1)
    owner, gained = _search(costs, owner)
    if not gained and (before is None or before.experts is None):
        return decision
    return replace(decision, placement=replace(p, experts=owner))


def _search(costs: ExpertCosts, owner: np.ndarray) -> tuple[np.ndarray, bool]:
    """Best-improvement search over `layer_candidates`, layer after layer, until no move gains."""
    model, N = costs.instance.model, len(costs.free_bytes)
    cache: dict = {}
    layers = np.flatnonzero(model.moe_layers)
    held = np.stack([np.bincount(owner[l], minlength=N) for l in layers])
    extra = ((held - model.experts * np.eye(N)[costs.home[layers]]) * costs.expert_bytes[layers, None]).sum(axis=0)
    pairs = sum((costs.pair_s(l, owner[l]) for l in layers), np.zeros((N, N)))
    shared = costs.instance.cluster.network == "shared"
    migration = (lambda m: m.sum() if shared else m.max())  # noqa: E731
    hop = costs.tables[0][1].hidden_s[0]
    gained = False
    for l in layers:
        f = int(costs.home[l])
        reach = hop[f] + hop[:, f] + costs.tables[0][1].expert_s[0, l]
        reach[f] = -np.inf
        order = np.argsort(reach, kind="stable")
        while True:
            here = np.bincount(owner[l], minlength=N)
            base_pairs = pairs - costs.pair_s(l, owner[l])
            now = costs.stage_s(l, here, cache) + migration(pairs)
            best, best_cost = None, now * (1 - GAIN)
            for cand in layer_candidates(owner[l], costs.before[l], order):
                h = np.bincount(cand, minlength=N)
                more = extra + (h - here) * costs.expert_bytes[l]
                if np.any(more > np.maximum(costs.free_bytes, extra) + 1e-9):
                    continue  # a device the move would overfill (or fill further)
                cost = costs.stage_s(l, h, cache) + migration(base_pairs + costs.pair_s(l, cand))
                if cost < best_cost:
                    best, best_cost = cand, cost
            if best is None:
                break
            extra = extra + (np.bincount(best, minlength=N) - here) * costs.expert_bytes[l]
            pairs = base_pairs + costs.pair_s(l, best)
            owner = owner.copy()
            owner[l] = best
            gained = True
    return owner, gained
