"""What the report needs beyond the evaluator's `Report`: per-step compute, and one step as a timeline.

This is the ONE module of `placement.report` that reaches into the evaluator and the
cost layer (`step_costs`, `block_times`, `transfer_times`, `block_memory`); everything
else in the package reads a `Report`, a `Plan` and what this module returns. When the
evaluator's internals change, only this module follows.

Two figures come from here:

- `step_breakdown`: the compute part of every decode step's latency. It is the
  evaluator's own latency of the same plan on the same devices joined by an ideal
  network (no latency, unbounded bandwidth), so it is the evaluator's figure, not a
  second model; the transfer part is the rest of the real step.
- `step_timeline`: one decode step (the first of an interval) laid out as segments
  per device along the data path of docs/cost-model.md, with the critical path
  marked. Its end equals the evaluator's latency of that step for plans without
  sliding-window offload or a separate client (a test checks this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.collectives import all_reduce
from placement.cost.hardware import Cluster, Link
from placement.cost.tables import block_times, step_costs, transfer_times
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan

__all__ = ["Segment", "StepBreakdown", "step_breakdown", "step_timeline", "device_arrays"]

# Bandwidth of the ideal network, bytes/s: large enough that a transfer takes ~1e-20 s.
_IDEAL_BANDWIDTH_BYTES_PER_S = 1e30


@dataclass(frozen=True)
class Segment:
    """One stretch of one device's time within a decode step.

    Attributes
    ----------
    device : str
    kind : {"compute", "transfer"}
    label : str
        What runs or travels (``"L3 groups ×4"``, ``"hidden → pi-b"``).
    start_s, end_s : float
        From the start of the step, seconds.
    critical : bool
        True when the segment lies on the step's critical path.
    """

    device: str
    kind: str
    label: str
    start_s: float
    end_s: float
    critical: bool


@dataclass(frozen=True, eq=False)
class StepBreakdown:
    """Every decode step's latency split into compute and transfer, and migrations per step.

    Attributes
    ----------
    compute_s, transfer_s : ndarray, shape (T,)
        Seconds of each decode step; they add up to the report's ``decode_s``.
    migration_s : ndarray, shape (T,)
        Migration time paid before each step (non-zero at the first step of an interval).
    """

    compute_s: np.ndarray
    transfer_s: np.ndarray
    migration_s: np.ndarray


def _ideal_instance(instance: Instance) -> Instance:
    """The instance with every pair of devices joined directly by a link of no latency and unbounded bandwidth."""
    names = instance.cluster.names
    links = tuple(Link(u, v, _IDEAL_BANDWIDTH_BYTES_PER_S, 0.0) for i, u in enumerate(names) for v in names[i + 1:])
    cluster = Cluster(devices=instance.cluster.devices, links=links, network=instance.cluster.network)
    return Instance(instance.name, instance.model, cluster, instance.workload, instance.precision,
                    instance.description, instance.wireless)


def step_breakdown(instance: Instance, plan: Plan, decode_s: np.ndarray, migration_s: np.ndarray) -> StepBreakdown:
    """Split the decode trace into compute and transfer with the evaluator on an ideal network.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    decode_s : ndarray, shape (T,)
        The report's decode trace, seconds.
    migration_s : ndarray, shape (n_intervals,)
        The report's migration time per interval, seconds.

    Returns
    -------
    StepBreakdown
        Compute is the latency on the ideal network (sliding-window disk reads that
        dominate count as compute); transfer is the rest, never negative.
    """
    if instance.n_devices > 1:
        compute = np.minimum(evaluate(_ideal_instance(instance), plan).decode_s, decode_s)
    else:
        compute = np.asarray(decode_s, dtype=float).copy()
    per_step = np.zeros(len(decode_s))
    starts = np.arange(len(migration_s)) * instance.workload.tau
    per_step[starts] = migration_s
    return StepBreakdown(compute, np.maximum(decode_s - compute, 0.0), per_step)


def device_arrays(instance: Instance, placement: Placement, plan_devices: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A placement in the instance's device order.

    Parameters
    ----------
    instance : Instance
    placement : Placement
    plan_devices : tuple of str
        The plan's device names (its placements index into them).

    Returns
    -------
    dict
        ``counts`` (L, N) groups per layer and device, ``attention`` (L, K) device
        indices, ``projection`` and ``ffn`` (L, N) shares, ``embed`` and ``lm_head``
        (0-d int arrays), all in the instance's device order.
    """
    cluster = instance.cluster
    remap = np.array([cluster.index(name) for name in plan_devices])
    L, N = instance.model.layers, instance.n_devices
    attention = remap[np.asarray(placement.attention)]
    counts = np.zeros((L, N))
    np.add.at(counts, (np.arange(L)[:, None], attention), 1.0)
    shares = {}
    for kind in ("projection", "ffn"):
        out = np.zeros((L, N))
        np.add.at(out, (slice(None), remap), np.asarray(getattr(placement, kind), dtype=float))
        shares[kind] = out
    return {"counts": counts, "attention": attention, **shares,
            "embed": np.array(remap[placement.embed]), "lm_head": np.array(remap[placement.lm_head])}


class _Lanes:
    """Segments being laid out; `add` returns the end time."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names, self.segments = names, []

    def add(self, device: int, kind: str, label: str, start: float, length: float, critical: bool) -> float:
        if length > 0:
            self.segments.append(Segment(self.names[device], kind, label, float(start), float(start + length), critical))
        return start + length


def _stage(lanes: _Lanes, t0: float, members: np.ndarray, recv: np.ndarray, compute: np.ndarray, send: np.ndarray,
           labels: tuple[str, str, str], together: bool) -> float:
    """Lay out one stage (receive → compute → send on every member device); returns its end.

    `together` (shared medium, or the kafetzis2025 three-phase model): receives follow
    one another, then the devices compute in parallel, then the sends follow one another.
    Otherwise each device is its own chain and the latest arrival counts.
    """
    recv_label, compute_label, send_label = labels
    if together:
        t = t0
        for m in members:
            t = lanes.add(m, "transfer", recv_label, t, recv[m], True)
        slowest = members[np.argmax(compute[members])]
        for m in members:
            lanes.add(m, "compute", compute_label, t, compute[m], m == slowest)
        t += compute[slowest]
        for m in members:
            t = lanes.add(m, "transfer", send_label, t, send[m], True)
        return t
    chains = recv + compute + send
    slowest = members[np.argmax(chains[members])]
    for m in members:
        t = lanes.add(m, "transfer", recv_label, t0, recv[m], m == slowest)
        t = lanes.add(m, "compute", compute_label, t, compute[m], m == slowest)
        lanes.add(m, "transfer", send_label, t, send[m], m == slowest)
    return t0 + chains[slowest]


def _first(value) -> float:
    return float(np.ravel(value)[0])


@dataclass(frozen=True, eq=False)
class _StepTables:
    """One decode step's block times (s) and transfer times (s) on the instance, as the evaluator builds them."""

    instance: Instance
    plan: Plan
    group_s: np.ndarray  # (L, N) one group
    projection_s: np.ndarray  # (L, N) a whole projection
    ffn_s: np.ndarray  # (L, N) a whole FFN
    layer_in_s: np.ndarray  # (N, N) a layer's input
    hidden_s: np.ndarray  # (N, N) the hidden state
    hidden_bytes: float
    group_out_bytes: float
    together: bool  # head outputs and inputs take turns (shared medium or kafetzis2025)


def _reduce(tables: _StepTables, shares: np.ndarray):
    instance, plan = tables.instance, tables.plan
    root = int(np.argmax(shares)) if plan.root is None else instance.cluster.index(plan.root)
    ota = None
    if plan.collective == "ota":
        from placement.ota.allreduce import ota_context

        ota = ota_context(instance, plan)
    return all_reduce(plan.collective, shares > 0, root, tables.hidden_bytes, instance.cluster, ota=ota)


def _nearest(holders: np.ndarray, times: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Time for every device in `wanted` to receive from the nearest of `holders`, 0 elsewhere: (N,)."""
    return np.where(holders[None, :], times.T, np.inf).min(axis=1) * wanted


def _attention_layer(lanes: _Lanes, tables: _StepTables, l: int, arrays: dict, t: float,
                     holders: np.ndarray) -> tuple[float, np.ndarray]:
    """Layer `l`'s groups (and a split projection's shares), then its projection or all-reduce."""
    cluster, names = tables.instance.cluster, tables.instance.cluster.names
    counts, xp = arrays["counts"][l], arrays["projection"][l]
    split = (xp > 0).sum() > 1
    proj_dev = int(np.argmax(xp))
    sends = (counts > 0) & ~split & (np.arange(len(names)) != proj_dev)
    every = np.arange(len(names))  # each device's head outputs: one message, on the route fastest for its size
    send = np.where(sends, transfer_times(cluster, counts * tables.group_out_bytes)[every, every, proj_dev], 0.0)
    compute = counts * tables.group_s[l] + (xp * tables.projection_s[l] if split else 0.0)
    labels = (f"L{l} input", f"L{l} attention", f"L{l} heads → {names[proj_dev]}")
    t = _stage(lanes, t, np.flatnonzero(counts), _nearest(holders, tables.layer_in_s, counts > 0), compute, send,
               labels, tables.together)
    if not split:
        t = lanes.add(proj_dev, "compute", f"L{l} projection", t, tables.projection_s[l, proj_dev], True)
        return t, np.eye(len(names), dtype=bool)[proj_dev]
    reduced = _reduce(tables, xp)
    for m in np.flatnonzero(xp):
        lanes.add(m, "transfer", f"L{l} projection all-reduce", t, reduced.time_s, True)
    return t + reduced.time_s, reduced.holders


def _ffn_layer(lanes: _Lanes, tables: _StepTables, l: int, arrays: dict, t: float,
               holders: np.ndarray) -> tuple[float, np.ndarray]:
    """Layer `l`'s FFN: the hidden state to its device(s), the FFN, and a split FFN's all-reduce."""
    xf = arrays["ffn"][l]
    members = np.flatnonzero(xf)
    shared = tables.instance.cluster.network == "shared"
    t = _stage(lanes, t, members, _nearest(holders, tables.hidden_s, xf > 0), xf * tables.ffn_s[l],
               np.zeros(len(xf)), (f"L{l} hidden in", f"L{l} FFN", ""), shared)
    if len(members) == 1:
        return t, np.eye(len(xf), dtype=bool)[members[0]]
    reduced = _reduce(tables, xf)
    for m in members:
        lanes.add(m, "transfer", f"L{l} FFN all-reduce", t, reduced.time_s, True)
    return t + reduced.time_s, reduced.holders


def step_timeline(instance: Instance, plan: Plan, interval: int = 0) -> list[Segment]:
    """The first decode step of `interval` as segments per device, critical path marked.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    interval : int
        Which interval's placement (its first step, context ``P + interval·tau + 1``).

    Returns
    -------
    list of Segment
        In time order per device; the largest ``end_s`` is the step's latency
        without sliding-window disk reads or a separate client.
    """
    placement = plan.placement(interval)
    arrays = device_arrays(instance, placement, plan.devices)
    precision = instance.precision.with_overrides(placement.precision, where=f"interval {interval} precision")
    context = instance.workload.prompt_tokens + interval * instance.workload.tau + 1
    costs = step_costs(instance, precision, np.array([context]))
    cluster, names = instance.cluster, instance.cluster.names
    times = lambda flops, read: block_times(flops, read, instance, costs.roofline)[0]  # noqa: E731  (L, N) or (N,)
    layer_in = costs.layer_input_bytes
    tables = _StepTables(
        instance, plan, times(costs.group_flops, costs.group_read), times(costs.projection_flops, costs.projection_read),
        times(costs.ffn_flops, costs.ffn_read), transfer_times(cluster, _first(layer_in))[0],
        transfer_times(cluster, _first(costs.hidden_bytes))[0], _first(costs.hidden_bytes),
        _first(costs.group_out_bytes), cluster.network == "shared" or costs.sum_gather)
    lanes = _Lanes(names)
    embed, lm_head = int(arrays["embed"]), int(arrays["lm_head"])
    t = lanes.add(embed, "compute", "embed", 0.0, times(np.zeros(1), costs.embed_read)[embed], True)
    holders = np.eye(len(names), dtype=bool)[embed]
    for l in range(instance.model.layers):
        t, holders = _attention_layer(lanes, tables, l, arrays, t, holders)
        t, holders = _ffn_layer(lanes, tables, l, arrays, t, holders)
    lm_in = transfer_times(cluster, _first(costs.lm_head_in_bytes))[0]
    t = lanes.add(lm_head, "transfer", "hidden → lm_head", t, min(lm_in[h, lm_head] for h in np.flatnonzero(holders)), True)
    t = lanes.add(lm_head, "compute", "lm_head", t, times(costs.lm_head_flops, costs.lm_head_read)[lm_head], True)
    token = transfer_times(cluster, costs.token_bytes)[0][lm_head, embed]
    lanes.add(lm_head, "transfer", f"token → {names[embed]}", t, token, True)
    return lanes.segments
