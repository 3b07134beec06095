"""An event simulation of several task chains competing for devices and a shared medium.

Each model is a chain of tasks (`placement.multi.chains.Chain`); a task needs one
resource (a device, or the network's one medium on a ``shared`` network) for its whole
duration, or none (a transfer on a ``switched`` network, which only takes time). A
chain's task starts when the task before it has ended and its resource is free. A
resource serves one task at a time, without preemption; when several tasks wait for
one resource, the one that can start earliest goes first, and among tasks that could
start at the same moment the model listed first (a fixed priority). The schedule is
work-conserving: no resource idles while a task waiting for it is ready.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from placement.multi.chains import NETWORK, Chain
from placement.multi.dags import NONE, Dag

__all__ = ["simulate", "simulate_dags"]


def _advance(resources: list[int], durations: list[float], i: int, ready: float, free_run: bool) -> tuple[int, float]:
    """Skip the tasks that need no resource (switched transfers): the next index and the time it is ready."""
    while free_run and i < len(resources) and resources[i] == NETWORK:
        ready += durations[i]
        i += 1
    return i, ready


def simulate(chains: Sequence[Chain], n_devices: int, shared_network: bool) -> np.ndarray:
    """Finish time of every chain when they run together from time 0, seconds.

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
    free_run = not shared_network
    medium = n_devices  # the shared medium's resource index
    free = [0.0] * (n_devices + 1)
    resources = [[medium if r == NETWORK and shared_network else int(r) for r in c.resource] for c in chains]
    durations = [c.duration_s.tolist() for c in chains]
    finish = np.zeros(len(chains))
    index, ready = [0] * len(chains), [0.0] * len(chains)
    heap = []  # (earliest start, model): one entry per unfinished chain
    for m in range(len(chains)):
        index[m], ready[m] = _advance(resources[m], durations[m], 0, 0.0, free_run)
        if index[m] < len(resources[m]):
            heap.append((max(ready[m], free[resources[m][index[m]]]), m))
        else:
            finish[m] = ready[m]
    heapq.heapify(heap)
    while heap:
        start, m = heapq.heappop(heap)
        r = resources[m][index[m]]
        actual = max(ready[m], free[r])
        if actual > start:  # the resource was taken since this entry was pushed: wait again
            heapq.heappush(heap, (actual, m))
            continue
        end = actual + durations[m][index[m]]
        free[r], ready[m] = end, end
        index[m], ready[m] = _advance(resources[m], durations[m], index[m] + 1, end, free_run)
        if index[m] < len(resources[m]):
            heapq.heappush(heap, (max(ready[m], free[resources[m][index[m]]]), m))
        else:
            finish[m] = ready[m]
    return finish


def simulate_dags(dags: Sequence[Dag], n_devices: int) -> np.ndarray:
    """Finish time of every model's task DAG when they run together from time 0, seconds.

    The rules of `simulate`, for graphs: a task is ready when every task it waits for
    has ended; a task needing no resource (`NONE`) runs as soon as it is ready; a device
    or the medium (`NETWORK`) serves one task at a time, the one that can start
    earliest first, ties to the model listed first, then to the task listed first.

    Parameters
    ----------
    dags : sequence of Dag
        In priority order (first: highest).
    n_devices : int

    Returns
    -------
    ndarray, shape (len(dags),)
        When each model's last step ends, seconds.
    """
    free = [0.0] * (n_devices + 1)  # the last entry: the shared medium
    res = [[n_devices if r == NETWORK else int(r) for r in d.resource] for d in dags]
    succ = [[[] for _ in d.preds] for d in dags]
    for m, d in enumerate(dags):
        for t, preds in enumerate(d.preds):
            for p in preds:
                succ[m][p].append(t)
    n_preds = [[len(p) for p in d.preds] for d in dags]
    dur = [d.duration_s.tolist() for d in dags]
    step, left, ready = [0] * len(dags), [list(n) for n in n_preds], [[0.0] * len(n) for n in n_preds]
    finish = np.zeros(len(dags))
    heap: list[tuple[float, int, int]] = []

    def done(m: int, t: int, end: float) -> None:
        stack = [(t, end)]
        while stack:
            t, end = stack.pop()
            if t == len(res[m]) - 1:  # the step's last task: the next step's first task is ready
                step[m] += 1
                if step[m] == len(dur[m]):
                    finish[m] = end
                    continue
                left[m], ready[m] = list(n_preds[m]), [0.0] * len(res[m])
                ready[m][0], t_next = end, [0]
            else:
                t_next = []
                for s in succ[m][t]:
                    ready[m][s] = max(ready[m][s], end)
                    left[m][s] -= 1
                    if left[m][s] == 0:
                        t_next.append(s)
            for s in t_next:
                r = res[m][s]
                if r == NONE:
                    stack.append((s, ready[m][s] + dur[m][step[m]][s]))
                else:
                    heapq.heappush(heap, (max(ready[m][s], free[r]), m, s))

    for m in range(len(dags)):
        r = res[m][0]
        if r == NONE:
            done(m, 0, dur[m][0][0])
        else:
            heapq.heappush(heap, (0.0, m, 0))
    while heap:
        start, m, t = heapq.heappop(heap)
        r = res[m][t]
        actual = max(ready[m][t], free[r])
        if actual > start:  # the resource was taken since this entry was pushed: wait again
            heapq.heappush(heap, (actual, m, t))
            continue
        end = actual + dur[m][step[m]][t]
        free[r] = end
        done(m, t, end)
    return finish
