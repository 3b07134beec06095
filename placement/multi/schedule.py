"""An event simulation of several models' task DAGs competing for devices, the shared medium and links.

Each model's generation is a sequence of DAG segments (`placement.multi.dags.Dag`),
each replayed step after step. A task is ready when every task it waits for has
ended. It needs at most one of:

- a **device**, or the **shared medium** of a ``shared`` network: one task at a
  time, without preemption;
- the **directed links** of its route (a transfer on a ``switched`` network): a
  link carries one model at a time, but a model's own transfers share it freely, as
  the single-model evaluator lets them (so a model alone is never slowed). A
  transfer starts once no other model holds any of its links;
- nothing (a barrier): it runs as soon as it is ready.

When several tasks wait for one resource the one that can start earliest goes first,
ties to the model listed first, then to the task listed first. The schedule is
work-conserving: no resource idles while a task waiting for it is ready.

Speed: a task no other model can delay (one that needs nothing, links no other model
uses, or a device no other model uses whose tasks the model's own DAG orders) is only
a delay. Each segment is therefore *compiled* once: such tasks are folded, with NumPy
over all steps, into per-step lags on the edges between the remaining tasks, and the
event loop only visits tasks another model could contend for. A model that shares
nothing costs one sum per segment. The figures are those of visiting every task.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from placement.multi.chains import NETWORK, Chain
from placement.multi.dags import NONE, Dag

__all__ = ["simulate", "simulate_dags"]


@dataclass(frozen=True, eq=False)
class _Compiled:
    """One segment reduced to the tasks other models may contend for, and the joins between them.

    ``nodes`` are those tasks; node ``len(nodes)`` is the step's end. ``start`` and
    ``out[i]`` list edges ``(node, lag column)``: the target is ready ``lag`` seconds
    after the step starts (``start``) or after node ``i`` ends. A node with resource
    `_JOIN` needs nothing: it runs as soon as its inputs are in.
    """

    steps: int
    resource: list[int]  # per node: device, medium (n_devices), _LINKS or _JOIN; then _END
    links: list[tuple[int, ...]]
    duration: list[list[float]]  # (steps, nodes)
    start: list[tuple[int, int]]
    out: list[list[tuple[int, int]]]
    n_in: list[int]  # edges into each node and into the end
    lag: list[list[float]]  # (steps, edges)
    total_s: float  # the segment's whole time when it has no nodes


_LINKS, _JOIN, _END = -1, -2, -3  # node resources: links only; nothing (a join no one can delay); the step's end


def _ancestors(dag: Dag) -> list[int]:
    """Each task's ancestors within its step, as bit sets."""
    ancestors: list[int] = []
    for preds in dag.preds:
        bits = 0
        for p in preds:
            bits |= ancestors[p] | (1 << p)
        ancestors.append(bits)
    return ancestors


def _contended(dag: Dag, resource: np.ndarray, links, shared_by_others) -> np.ndarray:
    """Which tasks another model could delay (bool, T).

    A device or the medium that only this model uses delays none of its tasks when the
    model's own DAG orders them (each an ancestor of the next): they never overlap.
    """
    out = np.array([bool(set(ls) & shared_by_others) for ls in links], dtype=bool)
    ancestors = None
    for r in np.unique(resource[resource >= 0]).tolist():
        mine = np.flatnonzero(resource == r).tolist()
        if r not in shared_by_others:
            ancestors = ancestors or _ancestors(dag)
            if all(ancestors[b] >> a & 1 for a, b in zip(mine, mine[1:])):
                continue
        out[mine] = True
    return out


def _compile(dag: Dag, n_devices: int, shared_by_others: set[int]) -> _Compiled:
    """Fold the tasks no other model can delay into lags (`_Compiled`).

    Contended tasks and joins (free tasks waiting for several) stay nodes; every other
    task has one predecessor and so one source node (or the step's start), and becomes
    part of the lag of an edge from it: one NumPy pass over the steps per task.
    """
    steps, T = dag.duration_s.shape
    resource = np.where(dag.resource == NETWORK, n_devices, dag.resource)
    links = [tuple(n_devices + 1 + e for e in ls) for ls in (dag.links or ((),) * T)]
    contended = _contended(dag, resource, links, shared_by_others)
    is_node = contended | np.array([len(p) > 1 for p in dag.preds], dtype=bool)
    node = np.cumsum(is_node) - 1
    R = int(is_node.sum())
    lags: list[np.ndarray] = []
    start: list[tuple[int, int]] = []
    out: list[list[tuple[int, int]]] = [[] for _ in range(R)]
    n_in = [0] * (R + 1)
    # source[t]: (edge list, offset of t's end after the source) for folded tasks; nodes are their own source
    source: dict[int, tuple[list, np.ndarray]] = {}
    zero = np.zeros(steps)

    def edge(edges: list, target: int, lag: np.ndarray) -> None:
        edges.append((target, len(lags)))
        lags.append(lag)
        n_in[target] += 1

    for t in range(T):
        if is_node[t]:
            for p in dag.preds[t] or (None,):
                edges, offset = (start, zero) if p is None else source[p]
                edge(edges, int(node[t]), offset)
            source[t] = (out[node[t]], zero)
            continue
        edges, offset = (start, zero) if not dag.preds[t] else source[dag.preds[t][0]]
        source[t] = (edges, offset + dag.duration_s[:, t])
    edges, offset = source[T - 1]
    edge(edges, R, offset)
    lag = np.stack(lags, axis=1)
    keep = np.flatnonzero(is_node)
    codes = [int(r) if c and r >= 0 else (_LINKS if c else _JOIN) for r, c in zip(resource[keep], contended[keep])]
    codes.append(_END)
    return _Compiled(
        steps=steps, resource=codes, links=[links[t] for t in keep], duration=dag.duration_s[:, keep].tolist(),
        start=start, out=out, n_in=n_in, lag=lag.tolist(), total_s=float(lag[:, 0].sum()) if R == 0 else 0.0)


def _segments(model: Dag | Sequence[Dag]) -> tuple[Dag, ...]:
    return (model,) if isinstance(model, Dag) else tuple(model)


def _shared_resources(models: list[tuple[Dag, ...]], n_devices: int) -> list[set[int]]:
    """For each model, the resources (devices, medium, links) some other model also uses."""
    uses = []
    for segments in models:
        used: set[int] = set()
        for d in segments:
            used.update(np.where(d.resource == NETWORK, n_devices, d.resource)[d.resource != NONE].tolist())
            used.update(n_devices + 1 + e for ls in d.links for e in ls)
        uses.append(used)
    return [set().union(*(u for j, u in enumerate(uses) if j != m)) & mine for m, mine in enumerate(uses)]


def simulate_dags(models: Sequence[Dag | Sequence[Dag]], n_devices: int) -> np.ndarray:
    """Finish time of every model when they run together from time 0, seconds.

    Parameters
    ----------
    models : sequence of Dag, or of sequences of Dag
        Each model's generation (one segment, or its segments in time order), in
        priority order (first: highest).
    n_devices : int

    Returns
    -------
    ndarray, shape (len(models),)
        When each model's last step ends, seconds.
    """
    models = [_segments(m) for m in models]
    shared = _shared_resources(models, n_devices)
    compiled = [[_compile(d, n_devices, shared[m]) for d in segs] for m, segs in enumerate(models)]
    M = len(models)
    free = [0.0] * (n_devices + 1)  # when each device (and the medium, last) is next free
    held: dict[int, list[float]] = {}  # link → until when each model holds it
    finish = np.zeros(M)
    seg, step = [0] * M, [0] * M
    current: list = [None] * M  # each model's compiled segment now running
    ready: list[list[float]] = [[] for _ in range(M)]
    left: list[list[int]] = [[] for _ in range(M)]
    heap: list[tuple[float, int, int]] = []
    push, pop = heapq.heappush, heapq.heappop
    # nodes with every input and no queue (joins, step ends): released from this list, not by recursion,
    # since a model alone on its devices is all joins and would recurse once per node of its whole generation
    pending: list[tuple[int, _Compiled, int]] = []

    def drain() -> None:
        while pending:
            release(*pending.pop())

    def links_free(m: int, links: tuple[int, ...]) -> float:
        """When no other model holds any of `links` any more."""
        return max((max(h[:m] + h[m + 1:], default=0.0) for h in (held.get(e) for e in links) if h), default=0.0)

    def begin(m: int, t0: float) -> None:
        """Start model m's current step at t0, skipping whole segments no other model can touch."""
        segments = compiled[m]
        while seg[m] < len(segments):
            c = current[m] = segments[seg[m]]
            if len(c.resource) == 1:  # no node but the end: the segment is one sum
                t0 += c.total_s
                seg[m], step[m] = seg[m] + 1, 0
                continue
            ready[m], left[m] = [0.0] * len(c.resource), list(c.n_in)
            lag = c.lag[step[m]]
            for v, e in c.start:
                arrive(m, c, v, t0 + lag[e])
            return
        finish[m] = t0

    def arrive(m: int, c: _Compiled, v: int, t: float) -> None:
        r = ready[m]
        if t > r[v]:
            r[v] = t
        left[m][v] -= 1
        if not left[m][v]:
            pending.append((m, c, v))

    def release(m: int, c: _Compiled, v: int) -> None:
        """Node v of model m has every input: queue it, run a join, or end the step."""
        kind, t = c.resource[v], ready[m][v]
        if kind >= 0:
            push(heap, (max(t, free[kind]), m, v))
        elif kind == _LINKS:
            push(heap, (max(t, links_free(m, c.links[v])), m, v))
        elif kind == _JOIN:
            end, lag = t + c.duration[step[m]][v], c.lag[step[m]]
            for w, e in c.out[v]:
                arrive(m, c, w, end + lag[e])
        else:  # the step's end
            step[m] += 1
            if step[m] == c.steps:
                seg[m], step[m] = seg[m] + 1, 0
            begin(m, t)

    for m in range(M):
        begin(m, 0.0)
    drain()
    while heap:  # the hot path: `available`, `arrive` and a device's `release` inlined
        key, m, v = pop(heap)
        c, rdy = current[m], ready[m]
        kind, start = c.resource[v], rdy[v]
        if kind >= 0:
            if free[kind] > start:
                start = free[kind]
        else:
            start = max(start, links_free(m, c.links[v]))
        if start > key:  # the resource was taken since this entry was pushed: wait again
            push(heap, (start, m, v))
            continue
        st = step[m]
        end = start + c.duration[st][v]
        if kind >= 0:
            free[kind] = end
        else:
            for e in c.links[v]:
                h = held.setdefault(e, [0.0] * M)
                h[m] = max(h[m], end)
        lag, lf, resource = c.lag[st], left[m], c.resource
        for w, e in c.out[v]:
            t = end + lag[e]
            if t > rdy[w]:
                rdy[w] = t
            lf[w] -= 1
            if not lf[w]:
                r = resource[w]
                if r >= 0:
                    t = rdy[w]
                    push(heap, (t if t > free[r] else free[r], m, w))
                else:
                    pending.append((m, c, w))
        drain()
    return finish


def simulate(chains: Sequence[Chain], n_devices: int, shared_network: bool) -> np.ndarray:
    """Finish time of every chain when they run together from time 0, seconds (`simulate_dags` on chains).

    Parameters
    ----------
    chains : sequence of Chain
        In priority order (first: highest).
    n_devices : int
    shared_network : bool
        True: every transfer needs the one medium; False: transfers need no resource.

    Returns
    -------
    ndarray, shape (len(chains),)
        When each chain's last task ends, seconds.

    Examples
    --------
    Two chains on one device: the first goes first, the second waits for it.

    >>> a = Chain(np.array([0]), np.array([2.0]))
    >>> b = Chain(np.array([0, 1]), np.array([1.0, 1.0]))
    >>> simulate([a, b], 2, False).tolist()
    [2.0, 4.0]
    """
    dags = []
    for c in chains:
        resource = np.where(c.resource == NETWORK, NETWORK if shared_network else NONE, c.resource)
        dags.append(Dag(resource, tuple(() if i == 0 else (i - 1,) for i in range(len(resource))), c.duration_s[None, :]))
    return simulate_dags(dags, n_devices)
