"""Each model's generation as a DAG of tasks per step: head-level static plans.

A head-level plan spreads a layer's attention groups over several devices (``c_m``
groups on device ``m``) and runs the projection, the FFN, ``embed`` and ``lm_head``
each whole on one device, one placement for the whole generation. One forward step
is then a DAG, built by the rules of the single-model evaluator (`placement.evaluate`):

``embed`` → per layer: the hidden state from the previous FFN's device to every group
device ``m`` → the ``c_m`` groups on ``m`` (one task) → their head outputs to the
projection's device → projection → the hidden state to the FFN's device → FFN → … →
the last hidden state to ``lm_head`` → ``lm_head`` → the token id back to ``embed``.

- ``switched`` network: each group device is its own chain (receive, compute, send);
  transfers take no shared resource; the projection waits for the latest arrival.
- ``shared`` network (or a cost model whose gathers add up, ``sum_gather``): the
  evaluator's stages are synchronous — every layer input arrives, then the groups
  compute, then the head outputs go one after another. The DAG holds a zero-length
  barrier after the receives and after the computes, and chains the sends; on a
  ``shared`` network every transfer also needs the one medium.

A model alone on the cluster therefore takes exactly its `placement.evaluate` total
(a test checks it on random plans). Durations come from the cost layer's tables
(`placement.cost.tables.phase_tables`). Transfers between a device and itself are
omitted (zero seconds, no medium).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from placement.cost.tables import phase_tables, prefill_step_costs, step_costs, transfer_times
from placement.errors import PlanError
from placement.instance import Instance
from placement.multi.chains import NETWORK, Chain
from placement.plan import Plan

__all__ = ["Dag", "NONE", "static_arrays", "head_dag", "chain_dag"]

NONE = -2  # resource id of a task that needs no resource (a transfer on a switched network, a barrier)


@dataclass(frozen=True, eq=False)
class Dag:
    """One model's generation: the same task graph at every step, step ``s+1`` after step ``s``'s last task.

    Attributes
    ----------
    resource : ndarray of int, shape (T,)
        Device index of each task of a step, `NETWORK` (the shared medium) or `NONE`.
    preds : tuple of tuple of int
        Task indices each task waits for within its step (task 0 waits for the previous step's last task).
    duration_s : ndarray, shape (steps, T)
        Seconds of each task at each step (step 0: the prefill).
    """

    resource: np.ndarray
    preds: tuple[tuple[int, ...], ...]
    duration_s: np.ndarray


def static_arrays(instance: Instance, plan: Plan):
    """`placement.evaluate.check_plan`'s arrays of a plan the joint evaluator simulates.

    Parameters
    ----------
    instance : Instance
    plan : Plan

    Returns
    -------
    PlanArrays

    Raises
    ------
    PlanError
        On several intervals, windows, a client, precision overrides, placed experts or a split projection or FFN.
    """
    from placement.evaluate import check_plan  # checks devices, shapes and shares

    if not plan.static or plan.windows or plan.client is not None or plan.intervals[0].precision:
        raise PlanError("a joint plan gives every model one static plan (one interval, no windows, client or "
                        "precision overrides); see docs/parallel.md")
    arrays = check_plan(instance, plan)
    if arrays.experts is not None:
        raise PlanError("a joint plan keeps MoE experts with their FFN (no `experts` placement); see docs/parallel.md")
    for what, shares in (("projection", arrays.projection[0]), ("ffn", arrays.ffn[0])):
        split = np.flatnonzero((shares > 0).sum(axis=-1) > 1)
        if split.size:
            raise PlanError(f"layer {int(split[0])}: a joint plan runs the {what} whole on one device (split blocks "
                            "are not simulated); see docs/parallel.md")
    return arrays


class _Builder:
    """Appends tasks of one step: resources, predecessors and (steps,) durations."""

    def __init__(self) -> None:
        self.resource: list[int] = []
        self.preds: list[tuple[int, ...]] = []
        self.cols: list[np.ndarray] = []

    def add(self, resource: int, preds, seconds) -> int:
        self.resource.append(resource), self.preds.append(tuple(preds)), self.cols.append(seconds)
        return len(self.resource) - 1


def _layer(b: _Builder, prev: int, src: int, t, out, l: int, counts: np.ndarray, proj: int, ffn: int,
           net: int, synchronous: bool, zero: np.ndarray) -> int:
    """Tasks of layer ``l``; returns the FFN task."""
    group_devices = np.flatnonzero(counts)

    def send(u: int, v: int, table: np.ndarray, after: int) -> int:
        return after if u == v else b.add(net, (after,), table[:, u, v])

    recvs = [send(src, int(m), t.layer_in_s, prev) for m in group_devices]
    before = b.add(NONE, recvs, zero) if synchronous else None
    comps = [b.add(int(m), (before if synchronous else r,), counts[m] * t.group_s[:, l, m])
             for m, r in zip(group_devices, recvs)]
    after = b.add(NONE, comps, zero) if synchronous else None
    arrivals = []
    for m, c in zip(group_devices, comps):
        arrival = send(int(m), proj, out[int(counts[m])], after if synchronous else c)
        if synchronous:
            after = arrival  # the head outputs go one after another
        arrivals.append(arrival)
    p = b.add(proj, arrivals, t.projection_s[:, l, proj])
    return b.add(ffn, (send(proj, ffn, t.hidden_s, p),), t.ffn_s[:, l, ffn])


def _phase(instance: Instance, arrays, costs, shared: bool) -> _Builder:
    t, n = phase_tables(instance, costs), len(costs.embed_read)

    def steps(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(x, (n,) + x.shape[1:])

    tables = replace(t, layer_in_s=steps(t.layer_in_s), hidden_s=steps(t.hidden_s))
    counts, proj, ffn = arrays.counts[0], arrays.projection[0].argmax(axis=-1), arrays.ffn[0].argmax(axis=-1)
    out = {int(c): steps(transfer_times(instance.cluster, np.asarray(costs.group_out_bytes) * c))
           for c in np.unique(counts[counts > 0])}
    embed, lm_head, net = int(arrays.embed[0]), int(arrays.lm_head[0]), NETWORK if shared else NONE
    b, zero = _Builder(), np.zeros(n)
    last = b.add(embed, (), t.embed_s[:, embed])
    src = embed
    for l in range(instance.model.layers):
        last = _layer(b, last, src, tables, out, l, counts[l], int(proj[l]), int(ffn[l]), net,
                      shared or costs.sum_gather, zero)
        src = int(ffn[l])
    if src != lm_head:
        last = b.add(net, (last,), steps(t.lm_head_in_s)[:, src, lm_head])
    last = b.add(lm_head, (last,), t.lm_head_s[:, lm_head])
    if lm_head != embed:
        b.add(net, (last,), np.broadcast_to(t.token_s[lm_head, embed], (n,)))
    return b


def head_dag(instance: Instance, plan: Plan) -> Dag:
    """The task DAG of a static head-level plan's whole generation.

    Parameters
    ----------
    instance : Instance
    plan : Plan
        One static placement; projections and FFNs whole on one device each.

    Returns
    -------
    Dag

    Raises
    ------
    PlanError
        On several intervals, windows, a client, precision overrides, placed experts or split blocks.
    """
    arrays = static_arrays(instance, plan)
    shared, precision = instance.cluster.network == "shared", arrays.precision[0]
    parts = [_phase(instance, arrays, c, shared) for c in
             (prefill_step_costs(instance, precision), step_costs(instance, precision, instance.workload.contexts()))]
    if parts[0].resource != parts[1].resource:
        raise PlanError("the prefill and decode steps gather differently; joint head-level plans need one rule")
    duration = np.concatenate([np.stack(p.cols, axis=1) for p in parts])
    return Dag(np.array(parts[0].resource, dtype=np.int64), tuple(parts[0].preds), duration)


def chain_dag(c: Chain, steps: int) -> Dag:
    """A layer plan's chain (`placement.multi.chains.chain`) as a DAG of ``len(c) / steps`` tasks per step.

    Parameters
    ----------
    c : Chain
    steps : int

    Returns
    -------
    Dag
    """
    T = len(c.resource) // steps
    return Dag(c.resource[:T].copy(), tuple(() if i == 0 else (i - 1,) for i in range(T)), c.duration_s.reshape(steps, T))
