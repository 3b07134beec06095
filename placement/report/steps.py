"""What the report needs beyond the evaluator's `Report`: per-step compute, and one step as a timeline.

This is the ONE module of `placement.report` that reaches into the evaluator and the
cost layer (`placement.cost.tables`: `step_costs`, `phase_tables`, `transfer_times`;
`placement.collectives`); everything else in the package reads a `Report`, a `Plan`
and what this module returns. When the evaluator's internals change, only this module
follows.

Two figures come from here:

- `step_breakdown`: the compute part of every decode step's latency, the evaluator's
  own compute along the step's critical path (``Report.decode_compute_s``); the
  transfer part is the rest of the step.
- `step_timeline`: one decode step (the first of an interval) laid out as segments
  per device along the data path of docs/cost-model.md, with the critical path
  marked. Its end equals the evaluator's latency of that step for plans without
  sliding-window offload or a separate client (a test checks this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.collectives import all_reduce, collective_context
from placement.cost.tables import phase_tables, step_costs, transfer_times
from placement.evaluate import Report
from placement.instance import Instance
from placement.plan import Placement, Plan

__all__ = ["Segment", "StepBreakdown", "step_breakdown", "step_timeline", "device_arrays"]



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


def step_breakdown(report: Report, tau: int) -> StepBreakdown:
    """Split the decode trace into compute and the rest, as the evaluator's critical path does.

    Parameters
    ----------
    report : Report
        The evaluator's report of the plan.
    tau : int
        Decode steps per interval (where each interval's migration is paid).

    Returns
    -------
    StepBreakdown
        Compute is the evaluator's compute along each step's critical path
        (``report.decode_compute_s``); transfer is the rest of the step.
    """
    compute = np.asarray(report.decode_compute_s, dtype=float)
    per_step = np.zeros(len(report.decode_s))
    per_step[np.arange(len(report.migration_s)) * tau] = report.migration_s
    return StepBreakdown(compute, np.maximum(report.decode_s - compute, 0.0), per_step)


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
class _Step:
    """One decode step as the evaluator's tables give it, and what its collective needs."""

    instance: Instance
    plan: Plan
    tables: object  # placement.cost.tables.PhaseTables of this one step
    hidden_bytes: float
    group_out_bytes: float
    together: bool  # head outputs and inputs take turns (shared medium or kafetzis2025)
    ota: object  # the wireless all-reduce of an `ota` plan, else None


def _reduce(step: _Step, shares: np.ndarray):
    instance, plan = step.instance, step.plan
    root = int(np.argmax(shares)) if plan.root is None else instance.cluster.index(plan.root)
    return all_reduce(plan.collective, shares > 0, root, step.hidden_bytes, instance.cluster, ota=step.ota)


def _nearest(holders: np.ndarray, times: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Time for every device in `wanted` to receive from the nearest of `holders`, 0 elsewhere: (N,)."""
    return np.where(holders[None, :], times.T, np.inf).min(axis=1) * wanted


def _attention_layer(lanes: _Lanes, step: _Step, l: int, arrays: dict, t: float,
                     holders: np.ndarray) -> tuple[float, np.ndarray]:
    """Layer `l`'s groups (and a split projection's shares), then its projection or all-reduce."""
    cluster, names, tables = step.instance.cluster, step.instance.cluster.names, step.tables
    counts, xp = arrays["counts"][l], arrays["projection"][l]
    split = (xp > 0).sum() > 1
    proj_dev = int(np.argmax(xp))
    sends = (counts > 0) & ~split & (np.arange(len(names)) != proj_dev)
    # a device with c groups sends one message of c·group_out bytes, on the route fastest for that size
    out_s = transfer_times(cluster, counts * step.group_out_bytes)[np.arange(len(names)), :, proj_dev].diagonal()
    send = np.where(sends, out_s, 0.0)
    compute = counts * tables.group_s[0, l] + (xp * tables.projection_s[0, l] if split else 0.0)
    labels = (f"L{l} input", f"L{l} attention", f"L{l} heads → {names[proj_dev]}")
    t = _stage(lanes, t, np.flatnonzero(counts), _nearest(holders, tables.layer_in_s[0], counts > 0), compute, send,
               labels, step.together)
    if not split:
        t = lanes.add(proj_dev, "compute", f"L{l} projection", t, tables.projection_s[0, l, proj_dev], True)
        return t, np.eye(len(names), dtype=bool)[proj_dev]
    reduced = _reduce(step, xp)
    for m in np.flatnonzero(xp):
        lanes.add(m, "transfer", f"L{l} projection all-reduce", t, reduced.time_s, True)
    return t + reduced.time_s, reduced.holders


def _ffn_layer(lanes: _Lanes, step: _Step, l: int, arrays: dict, t: float,
               holders: np.ndarray) -> tuple[float, np.ndarray]:
    """Layer `l`'s FFN: the hidden state to its device(s), the FFN, and a split FFN's all-reduce."""
    xf = arrays["ffn"][l]
    members = np.flatnonzero(xf)
    shared = step.instance.cluster.network == "shared"
    t = _stage(lanes, t, members, _nearest(holders, step.tables.hidden_s[0], xf > 0), xf * step.tables.ffn_s[0, l],
               np.zeros(len(xf)), (f"L{l} hidden in", f"L{l} FFN", ""), shared)
    if len(members) == 1:
        return t, np.eye(len(xf), dtype=bool)[members[0]]
    reduced = _reduce(step, xf)
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
    tables = phase_tables(instance, costs)
    step = _Step(instance, plan, tables, _first(costs.hidden_bytes), _first(costs.group_out_bytes),
                 instance.cluster.network == "shared" or costs.sum_gather, collective_context(instance, plan))
    names = instance.cluster.names
    lanes = _Lanes(names)
    embed, lm_head = int(arrays["embed"]), int(arrays["lm_head"])
    t = lanes.add(embed, "compute", "embed", 0.0, tables.embed_s[0, embed], True)
    holders = np.eye(len(names), dtype=bool)[embed]
    for l in range(instance.model.layers):
        t, holders = _attention_layer(lanes, step, l, arrays, t, holders)
        t, holders = _ffn_layer(lanes, step, l, arrays, t, holders)
    into_head = min(tables.lm_head_in_s[0][h, lm_head] for h in np.flatnonzero(holders))
    t = lanes.add(lm_head, "transfer", "hidden → lm_head", t, into_head, True)
    t = lanes.add(lm_head, "compute", "lm_head", t, tables.lm_head_s[0, lm_head], True)
    lanes.add(lm_head, "transfer", f"token → {names[embed]}", t, tables.token_s[lm_head, embed], True)
    return lanes.segments
