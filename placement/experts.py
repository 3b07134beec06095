"""Routed experts placed on their own devices: the evaluator's checks, memory, migration and stage times.

A plan may give, per interval, the device of every routed expert of every MoE layer
(`placement.plan.Placement.experts`). The layer's FFN block then holds only the router
and the shared experts, on one device ``f``; each token is routed to ``k`` experts, its
hidden state dispatched to the devices holding them and their outputs combined back
on ``f`` (`placement.cost.routing`). Without that field the experts run with the FFN
block, split like it. The formulas and their limits: docs/moe.md.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np

from placement.cost.routing import (
    device_miss_probability, elementary_symmetric, expected_expert_stage, inclusion_probabilities,
)
from placement.cost.tables import add_route_bytes, block_times, transfer_times
from placement.cost.tolerances import SHARE_ATOL
from placement.errors import PlanError

__all__ = ["expert_rows", "expert_memory", "expert_moves", "expert_stages", "expert_holdings", "layer_expert_stage"]


def expert_rows(instance, plan, remap: np.ndarray, ffn: list[np.ndarray]) -> list[np.ndarray] | None:
    """Every interval's expert devices in the instance's order (L, E), checked; None when no interval places experts.

    An interval without the field keeps each layer's experts on its FFN device.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    remap : ndarray of int
        Plan device index → instance device index.
    ffn : list of ndarray (L, N)
        Every interval's FFN shares, in the instance's order.

    Returns
    -------
    list of ndarray (L, E) or None

    Raises
    ------
    PlanError
        On a dense model given experts, a wrong shape, a device out of range, an expert
        in a dense layer or a missing one in an MoE layer, or a split FFN with placed experts.
    """
    model = instance.model
    if all(p.experts is None for p in plan.intervals):
        return None
    if not model.is_moe:
        raise PlanError(f"plan gives `experts`, but model {model.name!r} has no mixture-of-experts layers")
    if instance.workload.profile != "roofline":
        raise PlanError(f"plan gives `experts`, which the {instance.workload.profile!r} profile does not model; "
                        "use `profile: roofline` or drop `experts`")
    L, E, moe = model.layers, model.experts, model.moe_layers
    out = []
    for k, (p, shares) in enumerate(zip(plan.intervals, ffn)):
        home = shares.argmax(axis=1)
        if p.experts is None:
            out.append(np.where(moe[:, None], home[:, None], -1) * np.ones((1, E), dtype=np.int64))
            continue
        rows = np.asarray(p.experts, dtype=np.int64)
        if rows.shape != (L, E):
            raise PlanError(f"interval {k}: `experts` has shape {rows.shape}, the model has {L} layers of {E} experts")
        bad = np.argwhere((rows >= len(remap)) | (rows < -1) | ((rows < 0) & moe[:, None]) | ((rows >= 0) & ~moe[:, None]))
        if len(bad):
            l, e = bad[0]
            raise PlanError(f"interval {k}, layer {l}, expert {e}: device index {rows[l, e]} does not fit; give every "
                            f"expert of an MoE layer a device and dense layers (the first {model.dense_layers}) none")
        split = np.flatnonzero(moe & ((shares > SHARE_ATOL).sum(axis=1) > 1))
        if len(split):
            raise PlanError(f"interval {k}, layer {split[0]}: with placed experts the FFN (router and shared experts) "
                            "must run whole on one device")
        out.append(np.where(rows >= 0, remap[np.maximum(rows, 0)], -1))
    return out


def expert_holdings(experts: np.ndarray, n_devices: int) -> np.ndarray:
    """Experts of each layer on each device, (..., L, N), from expert devices (..., L, E)."""
    onehot = (experts[..., None] == np.arange(n_devices)) & (experts[..., None] >= 0)
    return onehot.sum(axis=-2)


def expert_memory(experts: np.ndarray, ffn: np.ndarray, memory, n_devices: int) -> np.ndarray:
    """The correction to each device's bytes (N,) when experts sit apart from the FFN block.

    The FFN block's share already counted the whole FFN (every expert); each expert's
    weights move to the device holding it.

    Parameters
    ----------
    experts : ndarray (L, E)
    ffn : ndarray (L, N)
        FFN shares.
    memory : BlockMemory
        At one context (first axis of length 1).
    n_devices : int

    Returns
    -------
    ndarray, shape (N,)
        Bytes to add (negative where experts left the FFN's device).
    """
    one = memory.expert[0]  # (L,)
    E = experts.shape[1]
    holdings = expert_holdings(experts, n_devices)  # (L, N)
    return holdings.T @ one - ffn.T @ (E * one)


def expert_moves(before: np.ndarray, after: np.ndarray, memory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The experts that change device at an interval boundary: sources, destinations, bytes (M,) each.

    Parameters
    ----------
    before, after : ndarray (L, E)
    memory : BlockMemory

    Returns
    -------
    tuple of ndarray
    """
    layers, experts = np.nonzero(before != after)
    return before[layers, experts], after[layers, experts], memory.expert[0][layers]


def layer_expert_stage(instance, costs, tables, step: int, row: int, layer: int, home: int,
                       owner: np.ndarray) -> tuple[float, float, np.ndarray, float]:
    """One MoE layer's expected expert stage for one forward step, with its experts on `owner`.

    The experts on the FFN device run in one block with the router and shared experts (so
    that experts all on that device cost exactly what the FFN block costs). Routing is
    uniform, or the instance's fitted weights. One routed token (batch-1 decode): the
    exact expectation over the routing outcomes; more (prefill, batches): each device's
    expected load, the slowest expected chain (docs/moe.md).

    Parameters
    ----------
    instance : Instance
    costs : StepCosts
        The phase's per-step costs (`step_costs` or `prefill_step_costs`).
    tables : PhaseTables
        `phase_tables` of `costs`; `row` indexes its per-row fields.
    step, row : int
        The step of `costs` and the row of `tables` it belongs to.
    layer, home : int
        The MoE layer and its FFN device (router, shared experts, combine).
    owner : ndarray of int, shape (E,)
        The device of each routed expert.

    Returns
    -------
    total_s : float
        Expected seconds from the router's output to the combined result on `home`.
    compute_s : float
        Its expected compute part.
    touched : ndarray, shape (N,)
        Probability (one token) or expected share of the tokens (many) sent to each device.
    hidden_bytes : float
        One hidden state, bytes.
    """
    l, r, N, cluster = layer, row, instance.n_devices, instance.cluster
    shared = cluster.network == "shared"
    holdings = np.bincount(owner, minlength=N)
    k = instance.model.experts_per_token
    fixed_flops, fixed_read = costs.ffn_fixed_flops[step, l], costs.ffn_fixed_read[step, l]
    hidden_all = np.asarray(costs.hidden_bytes, dtype=float)
    hidden = float(hidden_all if hidden_all.ndim == 0 else hidden_all[step])
    tokens, E = costs.routed_tokens, int(holdings.sum())
    weights = None if instance.expert_routing is None else instance.expert_routing[l]
    if weights is None:
        hit = 1 - np.array([comb(E - int(e), k) / comb(E, k) for e in holdings])  # P(a token uses device n)
        chosen = np.full(E, k / E)  # each expert's probability of being chosen
    else:
        hit = 1 - np.array([device_miss_probability(weights, owner, n, k) for n in range(N)])
        chosen = inclusion_probabilities(weights, k)

    def on_home(flops: float, read: float) -> float:  # the home block's seconds beyond the router's
        both = block_times(np.array([fixed_flops, fixed_flops + flops]), np.array([fixed_read, fixed_read + read]),
                           instance, costs.roofline, devices=[home])[:, 0]
        return float(both[1] - both[0])

    if tokens == 1:  # one token: the exact expectation over the routing outcomes
        hop = tables.hidden_s[min(r, len(tables.hidden_s) - 1)]
        expert_s = tables.expert_s[r, l].copy()
        expert_s[home] = on_home(costs.expert_flops[step, l], costs.expert_read[step, l])
        sigma = None if weights is None else np.array([elementary_symmetric(weights[owner == n], k) for n in range(N)])
        stage = expected_expert_stage(holdings, k, home, expert_s, hop[home], hop[:, home], shared, sigma)
        return stage.total_s, stage.compute_s, stage.touched, hidden
    # many tokens (prefill, batches): expected loads, the slowest device's expected chain
    flops = tokens * np.bincount(owner, chosen, minlength=N) * costs.expert_flops[step, l]
    read = np.bincount(owner, 1 - (1 - chosen) ** tokens, minlength=N) * costs.expert_read[step, l]
    compute = np.diagonal(block_times(flops, read, instance, costs.roofline)).copy()
    compute[home] = on_home(flops[home], read[home])
    hop = transfer_times(cluster, hit * hidden)  # (N, N, N): device n's share of the tokens, by size
    away = (holdings > 0) & (np.arange(N) != home)
    links = np.where(away, [hop[n][home, n] + hop[n][n, home] for n in range(N)], 0.0)
    if shared:
        total, part = links.sum() + compute.max(), compute.max()
    else:
        chains = np.where((holdings > 0) | (np.arange(N) == home), compute + links, -np.inf)
        best = int(chains.argmax())
        total, part = chains[best], compute[best]
    return float(total), float(part), hit, hidden


def expert_stages(x: Any, recv: np.ndarray, ffn_compute: np.ndarray, ffn_transfer: np.ndarray) -> None:
    """Replace the FFN stage of MoE layers with placed experts by router + expected expert stage, in place.

    Parameters
    ----------
    x : the evaluator's rows (plan rows, tables, sizes, the route tally)
    recv : ndarray (R, L)
        Seconds for the FFN device to receive the hidden state.
    ffn_compute, ffn_transfer : ndarray (R, L)
        Updated for MoE layers.

    Returns
    -------
    None
    """
    model = x.instance.model
    N = x.counts.shape[-1]
    holdings = expert_holdings(x.experts, N)  # (R, L, N)
    home = x.ffn.argmax(axis=-1)
    done: dict[tuple, tuple] = {}  # layers alike (same tables, same holdings) share one expectation
    for r in range(len(home)):
        for l in np.flatnonzero(model.moe_layers):
            f = int(home[r, l])
            owner = x.experts[r, l]
            spread = holdings[r, l] if x.instance.expert_routing is None else owner  # fitted routing: which experts, too
            key = (r, f, spread.tobytes(), x.tables.expert_s[r, l].tobytes(), x.tables.ffn_fixed_s[r, l].tobytes(),
                   None if x.instance.expert_routing is None else x.instance.expert_routing[l].tobytes())
            if key not in done:
                step = int(np.flatnonzero(x.row_of_step == r)[0])
                done[key] = layer_expert_stage(x.instance, x.costs, x.tables, step, r, l, f, owner)
            total, part, hit, hidden = done[key]
            ffn_compute[r, l] = x.tables.ffn_fixed_s[r, l, f] + part
            ffn_transfer[r, l] = recv[r, l] + total - part
            away = np.flatnonzero((hit > 0) & (np.arange(N) != f))
            steps = x.steps_per_row[r]
            add_route_bytes(x.route_bytes, x.cluster, np.full(len(away), f), away, hidden, hit[away] * hidden * steps)
            add_route_bytes(x.route_bytes, x.cluster, away, np.full(len(away), f), hidden, hit[away] * hidden * steps)
