"""Each model's generation as DAGs of tasks, built by the single-model evaluator's rules.

Any plan `placement.evaluate` accepts (several intervals, split projections and FFNs,
placed experts, precision overrides, every collective) except sliding windows and a
client becomes a sequence of *segments*: the prefill (interval 0's placement), then
for every run of intervals with one placement the DAG of one decode step replayed at
each of its steps, with a one-step migration segment between runs whose placements
differ. A step's DAG follows the evaluator (`placement.evaluate`, DESIGN.md "One decode
step"):

``embed`` → per layer: the hidden state from the nearest holder (the previous FFN's
device, or a device a split FFN's collective leaves it on) to every group device ``m``
→ the ``c_m`` groups on ``m`` (with ``m``'s share of a split projection: one task) →
their head outputs to a whole projection's device → projection, or a split
projection's all-reduce → the hidden state to every FFN device → its FFN share (or
the router and the experts on the FFN device, then the expected expert stage) → a
split FFN's all-reduce → … → ``lm_head`` → the token id back to ``embed``.

- ``switched`` network: each group (or FFN) device is its own chain (receive, compute,
  send); the next block waits for the latest arrival. A transfer holds the directed
  links of its route (`placement.multi.schedule` says how models share them).
- ``shared`` network, or a cost model whose gathers add up (``sum_gather``): the
  evaluator's stages are synchronous — every input arrives, then the blocks compute,
  then the head outputs go one after another. Zero-length barriers copy that; on a
  ``shared`` network every transfer also needs the one medium.
- An all-reduce is one transfer task of the collective's time (`placement.collectives.
  all_reduce`) holding the medium, or the links of every pair it sends between.
- Placed experts: the evaluator's expected expert stage (`placement.experts.
  layer_expert_stage`): its compute part on the FFN device with the router, the rest
  (dispatch, remote experts, combine) one task that holds no device.
- Migration: every pair of devices that moves blocks is one transfer task of the
  pair's migration time (`placement.cost.tables.migration_times`); on a ``shared``
  network they follow one another, on a ``switched`` one they run in parallel.

A model alone therefore takes exactly its `placement.evaluate` total (a test checks it
on random plans of every kind). Transfers between a device and itself, and of zero
seconds, are omitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from placement.collectives import all_reduce, collective_context
from placement.cost.tables import migration_times, phase_tables, prefill_step_costs, step_costs, transfer_times
from placement.errors import PlanError
from placement.evaluate import PlanArrays, check_plan, migration_messages
from placement.experts import layer_expert_stage
from placement.instance import Instance
from placement.multi.chains import NETWORK, Chain, directed_links
from placement.plan import Plan

__all__ = ["Dag", "NONE", "static_arrays", "model_dags", "compact", "chain_dags"]

NONE = -2  # resource id of a task that needs no device and not the medium (a switched transfer, a barrier)


@dataclass(frozen=True, eq=False)
class Dag:
    """One segment of a model's generation: the same task graph at every step, step ``s+1`` after step ``s``.

    Attributes
    ----------
    resource : ndarray of int, shape (T,)
        Device index of each task of a step, `NETWORK` (the shared medium) or `NONE`.
    preds : tuple of tuple of int
        Task indices each task waits for within its step, all lower than its own; task
        0 waits for the previous step's (or segment's) last task, which every task precedes.
    duration_s : ndarray, shape (steps, T)
        Seconds of each task at each step.
    links : tuple of tuple of int
        The directed links (`placement.multi.chains.directed_links`) each task holds; empty: none (the default).
    """

    resource: np.ndarray
    preds: tuple[tuple[int, ...], ...]
    duration_s: np.ndarray
    links: tuple[tuple[int, ...], ...] = ()


def static_arrays(instance: Instance, plan: Plan):
    """`placement.evaluate.check_plan`'s arrays of a static plan with whole blocks (a layer plan, or a head-level one).

    The joint evaluator takes any plan (`model_dags`); this narrower check tells layer
    plans apart (`placement.multi.chains.layer_devices`) and serves the head-level MILP.

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
    """Appends the tasks of one step: resources, predecessors, (steps,) durations and held links."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.resource: list[int] = []
        self.preds: list[tuple[int, ...]] = []
        self.cols: list[np.ndarray] = []
        self.links: list[tuple[int, ...]] = []

    def add(self, resource: int, preds, seconds, links: tuple[int, ...] = ()) -> int:
        self.resource.append(resource), self.preds.append(tuple(dict.fromkeys(preds))), self.links.append(links)
        self.cols.append(np.broadcast_to(np.asarray(seconds, dtype=float), (self.steps,)))
        return len(self.resource) - 1

    def join(self, preds) -> tuple[int, ...]:
        """One zero-length barrier after `preds` (none needed for a single task)."""
        preds = tuple(dict.fromkeys(preds))
        return preds if len(preds) <= 1 else (self.add(NONE, preds, 0.0),)

    def dag(self) -> Dag:
        """The step as a `Dag`, with a final barrier when several tasks end it."""
        has_succ = {p for preds in self.preds for p in preds}
        sinks = [t for t in range(len(self.resource)) if t not in has_succ]
        if len(sinks) > 1 or sinks[-1] != len(self.resource) - 1:
            self.add(NONE, sinks, 0.0)
        links = tuple(self.links) if any(self.links) else ()
        return Dag(np.array(self.resource, dtype=np.int64), tuple(self.preds), np.stack(self.cols, axis=1), links)


@dataclass(frozen=True, eq=False)
class _Step:
    """What one step's tasks read: the plan row, the phase's costs and tables, how transfers are held."""

    instance: Instance
    arrays: PlanArrays
    k: int  # the plan row (interval)
    costs: object  # StepCosts of the segment's steps
    tables: object  # PhaseTables: groups at every step, the rest at the first (at every step when sizes vary)
    shared: bool
    routes: dict = field(default_factory=dict)  # message bytes → (N, N) candidate route index, filled on use
    outs: dict = field(default_factory=dict)  # groups → (R, N, N) seconds of their head outputs, filled on use

    def send(self, b: _Builder, u: int, v: int, seconds: np.ndarray, nbytes: float, preds) -> tuple[int, ...]:
        """A transfer task from `u` to `v` after `preds` (none when it takes no time); the receiver's predecessors."""
        seconds = np.broadcast_to(seconds, (b.steps,))
        if u == v or not seconds.any():
            return tuple(preds)
        if self.shared:
            return (b.add(NETWORK, preds, seconds),)
        return (b.add(NONE, preds, seconds, self.links(u, v, nbytes)),)

    def links(self, u: int, v: int, nbytes: float) -> tuple[int, ...]:
        key = float(np.ravel(nbytes)[0])
        if key not in self.routes:
            self.routes[key] = self.instance.cluster.route_index(key)
        return directed_links(self.instance.cluster, u, v, int(self.routes[key][u, v]))

    def receive(self, b: _Builder, holders: np.ndarray, m: int, table: np.ndarray, nbytes, preds) -> tuple[int, ...]:
        """Data held by `holders` to device `m`, from the nearest holder (the evaluator's `_receive` rule)."""
        table = np.broadcast_to(table, (b.steps,) + table.shape[1:])
        sender = int(holders[np.argmin(table[0, holders, m])])
        return self.send(b, sender, m, table[:, sender, m], nbytes, preds)

    def reduce(self, b: _Builder, shares: np.ndarray, preds) -> tuple[np.ndarray, tuple[int, ...]]:
        """A split block's all-reduce after `preds`: the devices holding the result and the task to wait for."""
        a, cluster = self.arrays, self.instance.cluster
        root = int(np.argmax(shares)) if a.root is None else a.root
        hidden = np.broadcast_to(np.asarray(self.costs.hidden_bytes, dtype=float), (b.steps,))
        sizes, which = np.unique(hidden, return_inverse=True)
        costs = [all_reduce(a.collective, shares > 0, root, h, cluster, ota=a.ota) for h in sizes]
        seconds = np.array([x.time_s for x in costs])[which]
        cost = costs[which[0]]
        holders = np.flatnonzero(cost.holders)
        if not seconds.any():
            return holders, tuple(preds)
        if self.shared:
            return holders, (b.add(NETWORK, preds, seconds),)
        pairs = zip(*np.nonzero(cost.pair_bytes))
        links = tuple(sorted({e for u, v in pairs for e in self.links(int(u), int(v), cost.message_bytes)}))
        return holders, (b.add(NONE, preds, seconds, links),)


def _attention(c: _Step, b: _Builder, l: int, holders: np.ndarray, after) -> tuple[np.ndarray, tuple[int, ...]]:
    """Layer ``l``'s groups and projection after `after`: who holds the hidden state next, and the task(s) to wait for."""
    a, t, k = c.arrays, c.tables, c.k
    counts, shares = a.counts[k, l], a.projection[k, l]
    split, proj = (shares > 0).sum() > 1, int(shares.argmax())
    synchronous = c.shared or c.costs.sum_gather
    devices = [int(m) for m in np.flatnonzero(counts)]
    recvs = [c.receive(b, holders, m, t.layer_in_s, c.costs.layer_input_bytes, after) for m in devices]
    gate = b.join([p for r in recvs for p in r]) if synchronous else None
    comps = [b.add(m, gate if synchronous else r,
                   counts[m] * t.group_s[:, l, m] + (shares[m] * t.projection_s[:, l, m] if split else 0.0))
             for m, r in zip(devices, recvs)]
    if split:
        return c.reduce(b, shares, comps)
    out_bytes = np.asarray(c.costs.group_out_bytes, dtype=float)
    arrivals, last = [], b.join(comps) if synchronous else None
    for m, task in zip(devices, comps):
        if counts[m] not in c.outs:
            c.outs[counts[m]] = transfer_times(c.instance.cluster, np.ravel(out_bytes * counts[m]))
        seconds = c.outs[counts[m]][:, m, proj]
        arrival = c.send(b, m, proj, seconds, out_bytes * counts[m], last if synchronous else (task,))
        if synchronous:
            last = arrival  # the head outputs go one after another
        arrivals.extend(arrival)
    return np.array([proj]), (b.add(proj, arrivals, t.projection_s[:, l, proj]),)


def _ffn(c: _Step, b: _Builder, l: int, holders: np.ndarray, after) -> tuple[np.ndarray, tuple[int, ...]]:
    """Layer ``l``'s FFN (shares, or the router and placed experts) after `after`; holders and task(s) as `_attention`."""
    a, t, k = c.arrays, c.tables, c.k
    shares = a.ffn[k, l]
    if a.experts is not None and a.experts[k, l, 0] >= 0:  # placed experts: the evaluator's stage on the FFN's device
        f = int(shares.argmax())
        total, part, _, _ = layer_expert_stage(c.instance, c.costs, t, 0, 0, l, f, a.experts[k, l])
        compute = b.add(f, c.receive(b, holders, f, t.hidden_s, c.costs.hidden_bytes, after),
                        t.ffn_fixed_s[:, l, f] + part)
        return np.array([f]), (b.add(NONE, (compute,), total - part),)
    devices = [int(f) for f in np.flatnonzero(shares > 0)]
    recvs = [c.receive(b, holders, f, t.hidden_s, c.costs.hidden_bytes, after) for f in devices]
    gate = b.join([p for r in recvs for p in r]) if c.shared else None
    comps = [b.add(f, gate if c.shared else r, shares[f] * t.ffn_s[:, l, f]) for f, r in zip(devices, recvs)]
    if len(devices) > 1:
        return c.reduce(b, shares, comps)
    return np.array(devices), tuple(comps)


def _step_dag(c: _Step, steps: int) -> Dag:
    """One forward step of plan row ``c.k``, at each of `steps` steps."""
    a, t = c.arrays, c.tables
    embed, lm_head = int(a.embed[c.k]), int(a.lm_head[c.k])
    b = _Builder(steps)
    holders, after = np.array([embed]), (b.add(embed, (), t.embed_s[:, embed]),)
    for l in range(c.instance.model.layers):
        holders, after = _attention(c, b, l, holders, after)
        holders, after = _ffn(c, b, l, holders, after)
    after = c.receive(b, holders, lm_head, t.lm_head_in_s, c.costs.lm_head_in_bytes, after)
    head = b.add(lm_head, after, t.lm_head_s[:, lm_head])
    c.send(b, lm_head, embed, t.token_s[lm_head, embed], c.costs.token_bytes, (head,))
    return b.dag()


def _migration_dag(instance: Instance, arrays: PlanArrays, k: int, shared: bool) -> Dag | None:
    """The blocks moved at the start of interval ``k`` as one step (None when nothing moves)."""
    src, dst, size = migration_messages(instance, arrays, k)
    if not len(src):
        return None
    cluster = instance.cluster
    pair_s = migration_times(cluster, src, dst, size)
    b = _Builder(1)
    start = b.add(NONE, (), 0.0)
    route = cluster.route_index(size[:, None, None])  # (M, N, N): each message's fastest route for its size
    for u, v in zip(*np.nonzero(pair_s)):
        mine = (src == u) & (dst == v)
        links = tuple(sorted({e for r in route[mine, u, v] for e in directed_links(cluster, int(u), int(v), int(r))}))
        b.add(NETWORK, (start,), pair_s[u, v]) if shared else b.add(NONE, (start,), pair_s[u, v], links)
    return b.dag()


def model_dags(instance: Instance, plan: Plan) -> tuple[Dag, ...]:
    """The segments of a plan's whole generation: prefill, every run of intervals, migrations between runs.

    Parameters
    ----------
    instance : Instance
    plan : Plan
        Any plan `placement.evaluate` accepts, without sliding windows or a client.

    Returns
    -------
    tuple of Dag
        In time order; a model alone takes their summed longest paths, its `placement.evaluate` total.

    Raises
    ------
    PlanError
        As `placement.evaluate`, and on windows or a client.
    """
    if plan.windows or plan.client is not None:
        raise PlanError("a joint plan has no sliding `windows` and no `client` (their disk reads and token deliveries "
                        "are not simulated); see docs/parallel.md")
    arrays = check_plan(instance, plan)
    context = collective_context(instance, plan)
    if context is not None:
        arrays = replace(arrays, ota=context)
    shared, workload = instance.cluster.network == "shared", instance.workload
    interval, contexts = workload.interval_of_step(), workload.contexts()

    def step(k: int, costs) -> _Step:  # the evaluator tabulates all but the groups once per run, unless sizes vary
        at = np.array([0]) if np.ndim(costs.hidden_bytes) == 0 else None
        return _Step(instance, arrays, k, costs, phase_tables(instance, costs, at), shared)

    segments = [_step_dag(step(0, prefill_step_costs(instance, arrays.precision[0])), 1)]  # compacted at the end
    first = 0
    for k in range(1, workload.n_intervals + 1):
        if k < workload.n_intervals and _same_row(arrays, first, k):
            continue
        mask = (interval >= first) & (interval < k)
        segments.append(_step_dag(step(first, step_costs(instance, arrays.precision[first], contexts[mask])),
                                  int(mask.sum())))
        if k < workload.n_intervals:
            move = _migration_dag(instance, arrays, k, shared)
            segments.extend([move] if move is not None else [])
            first = k
    return tuple(compact(d) for d in segments)


def _same_row(arrays: PlanArrays, i: int, k: int) -> bool:
    """Intervals `i` and `k` place and store everything alike (one segment may cover both)."""
    same = all(np.array_equal(getattr(arrays, f)[i], getattr(arrays, f)[k])
               for f in ("counts", "attention", "projection", "ffn", "embed", "lm_head"))
    experts = arrays.experts is None or np.array_equal(arrays.experts[i], arrays.experts[k])
    return same and experts and arrays.precision[i] is arrays.precision[k]


def compact(dag: Dag) -> Dag:
    """Merge every device task into its predecessor on the same device when each is the other's only link.

    Such blocks run back to back, as consecutive blocks on one device do in a layer
    plan's chain (`placement.multi.chains`): a model alone takes the same time, and the
    simulation has fewer tasks.

    Parameters
    ----------
    dag : Dag

    Returns
    -------
    Dag
    """
    T = len(dag.resource)
    links = dag.links or ((),) * T
    succ = [[] for _ in range(T)]
    for t, preds in enumerate(dag.preds):
        for p in preds:
            succ[p].append(t)
    into = list(range(T))  # the task each task is merged into
    for t in range(1, T):
        preds = dag.preds[t]
        if len(preds) == 1 and len(succ[preds[0]]) == 1 and dag.resource[t] >= 0 \
                and dag.resource[t] == dag.resource[preds[0]] and not links[t] and not links[preds[0]]:
            into[t] = into[preds[0]]
    keep = [t for t in range(T) if into[t] == t]
    index = {t: i for i, t in enumerate(keep)}
    new = lambda t: index[into[t]]  # noqa: E731
    duration = np.zeros((dag.duration_s.shape[0], len(keep)))
    np.add.at(duration.T, [new(t) for t in range(T)], dag.duration_s.T)
    preds = tuple(tuple(dict.fromkeys(new(p) for p in dag.preds[t] if new(p) != index[t])) for t in keep)
    kept_links = tuple(links[t] for t in keep) if dag.links else ()
    return Dag(dag.resource[keep], preds, duration, kept_links)


def chain_dags(c: Chain, links, steps: int, shared: bool) -> tuple[Dag, Dag]:
    """A layer plan's chain (`placement.multi.chains.chain`) as its prefill and decode segments.

    Parameters
    ----------
    c : Chain
    links : tuple of two tuples
        `placement.multi.chains.chain_links` of the plan.
    steps : int
        Forward steps of the chain (the prefill and every decode step).
    shared : bool
        A ``shared`` network: transfers take the medium; otherwise they hold their links.

    Returns
    -------
    tuple of Dag
        The same tasks as `model_dags` gives the plan (compacted).
    """
    T = len(c.resource) // steps
    resource = c.resource[:T] if shared else np.where(c.resource[:T] == NETWORK, NONE, c.resource[:T])
    preds = tuple(() if i == 0 else (i - 1,) for i in range(T))
    duration = c.duration_s.reshape(steps, T)
    return tuple(Dag(resource, preds, d, () if shared else ls) for d, ls in ((duration[:1], links[0]), (duration[1:], links[1])))
