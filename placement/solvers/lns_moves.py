"""``myopic+``'s large-neighbourhood step: a few layers re-solved exactly by the interval MILP.

When a decision is given a time budget (``lns_time_s`` > 0, or ``"auto"`` on a small
instance: `lns_budget_s`), windows of ``lns_layers``
consecutive layers are re-placed by `placement.solvers.milp.solve_milp` in its
``interval`` mode (interval ``k`` alone, the migration from the placement in use
charged). Every layer outside the window keeps its projection and FFN where they are
(pinned) and its attention groups on the devices that hold them now (the others are
forbidden: the MILP may still change how many sit on each); ``embed`` and ``lm_head``
stay unless the window holds the first or the last layer. The MILP starts from the
decision's own placement (a one-interval warm-start plan), so it never calls
``myopic+`` back. Its placement is judged by the decision's horizon cost
(`placement.solvers.interval_costs.IntervalModel.cost`) and taken, followed by local
search, only when that is lower: the MILP minimizes the coming interval alone, the
decision the horizon.
"""

from __future__ import annotations

import time

import numpy as np

from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.solvers.interval_costs import IntervalModel, State, placement_of, state_of
from placement.solvers.local_moves import local_search

__all__ = ["AUTO_LNS_CELLS", "AUTO_LNS_TIME_S", "lns_budget_s", "lns_search", "window_constraints", "windows"]

# ``lns_time_s="auto"``: the budget a decision gets, and the largest layers × attention groups ×
# devices it is given on. The random tiny instances have at most 2 × 8 × 5 = 80, paper-small
# at most 1 × 16 × 5 = 80: there the interval MILP of the whole model is proven in a median
# 0.3 s (at most 1.7 s on 20 tuning seeds, loaded machine, model building included). The
# smallest edge-real instance has 224 and llama-3.1-8b on 8 devices 2,048, where half a second
# of MILP finds nothing the moves miss and would cost the ≤ 5 ms decision.
AUTO_LNS_TIME_S = 1.0
AUTO_LNS_CELLS = 128


def lns_budget_s(instance: Instance, lns_time_s: float | str) -> float:
    """The MILP neighbourhood's wall-clock budget for each decision on `instance`.

    Parameters
    ----------
    instance : Instance
    lns_time_s : float or "auto"
        Seconds (0: off), or ``"auto"``: `AUTO_LNS_TIME_S` when layers × attention groups
        × devices is at most `AUTO_LNS_CELLS`, else 0.

    Returns
    -------
    float
        Seconds of wall clock a decision gives the MILP windows; 0 turns the step off.
    """
    if lns_time_s != "auto":
        return float(lns_time_s)
    cells = instance.model.layers * instance.model.kv_heads * instance.n_devices
    return AUTO_LNS_TIME_S if cells <= AUTO_LNS_CELLS else 0.0


def windows(L: int, size: int, k: int) -> list[tuple[int, int]]:
    """The layer windows (first, last) of decision `k`, in the order they are tried.

    Parameters
    ----------
    L : int
        Layers.
    size : int
        Layers a window holds (at least 1; all of them when at least L).
    k : int
        The interval decided: the windows start at layer ``k * size`` (mod L), so that
        successive decisions re-solve different layers first.

    Returns
    -------
    list of (int, int)
        Contiguous windows covering every layer once (the last one may be shorter).
    """
    if size >= L:
        return [(0, L - 1)]
    starts = list(range(0, L, size))
    shift = k % len(starts)
    return [(first, min(first + size, L) - 1) for first in starts[shift:] + starts[:shift]]


def window_constraints(instance: Instance, placement: Placement, first: int, last: int
                       ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``pin`` and ``forbid`` for `solve_milp` keeping every layer outside first..last as in `placement`.

    Parameters
    ----------
    instance : Instance
    placement : Placement
        Whole blocks (one device per projection and FFN).
    first, last : int
        The window re-solved (layers, inclusive).

    Returns
    -------
    pin, forbid
        Block → device name (projections, FFNs, and ``embed`` / ``lm_head`` unless the
        window holds the first / last layer) and device name → blocks (the attention of
        each kept layer on every device that holds none of its groups).
    """
    names = instance.cluster.names
    L, N = instance.model.layers, instance.n_devices
    projection, ffn = np.asarray(placement.projection).argmax(axis=1), np.asarray(placement.ffn).argmax(axis=1)
    attention = np.asarray(placement.attention)
    pin, forbid = {}, {name: [] for name in names}
    for l in range(L):
        if first <= l <= last:
            continue
        pin[f"projection[{l}]"], pin[f"ffn[{l}]"] = names[projection[l]], names[ffn[l]]
        for j in sorted(set(range(N)) - set(attention[l].tolist())):
            forbid[names[j]].append(f"attention[{l}]")
    if first > 0:
        pin["embed"] = names[int(placement.embed)]
    if last < L - 1:
        pin["lm_head"] = names[int(placement.lm_head)]
    return pin, {name: blocks for name, blocks in forbid.items() if blocks}


def lns_search(instance: Instance, iv: IntervalModel, k: int, previous: Placement | None, s: State,
               budget_s: float, size: int, max_moves: int) -> tuple[State, int, tuple[bool, ...]]:
    """Re-solve windows of `size` layers with the interval MILP while `budget_s` lasts.

    Parameters
    ----------
    instance : Instance
    iv : IntervalModel
        Interval `k`'s cost model (the horizon cost that judges every result).
    k : int
        The interval decided.
    previous : Placement or None
        The placement in use (the migration the MILP charges); None before the first interval.
    s : State
        The decision's best state so far.
    budget_s : float
        Wall-clock seconds for every MILP solve together (each gets what is left).
    size : int
        Layers a window holds.
    max_moves : int
        Cap on the local-search moves after an accepted window.

    Returns
    -------
    State, int, tuple of bool
        The best state found, the moves made (an accepted window counts as one), and for
        every window whether its MILP was proven optimal (False for one stopped by the
        budget, or never solved because the budget was spent).
    """
    from placement.solvers.milp import solve_milp  # the MILP's warm start imports myopic+: imported when used

    deadline = time.perf_counter() + budget_s
    N, K, moves, proven = instance.n_devices, instance.model.kv_heads, 0, []
    for first, last in windows(instance.model.layers, size, k):
        left = deadline - time.perf_counter()
        proven.append(False)
        if left <= 0 or moves >= max_moves:
            continue
        current = placement_of(s, previous, K)
        pin, forbid = window_constraints(instance, current, first, last)
        result = solve_milp(instance, mode="interval", interval=k, current=previous, time_limit=left,
                            warm_start=Plan(instance.cluster.names, [current], method="myopic+"),
                            pin=pin or None, forbid=forbid or None)
        proven[-1] = result.status == "optimal"
        if result.plan is None:
            continue
        trial = state_of(result.plan.placement(k), previous, N)
        if iv.better(iv.cost(trial), iv.cost(s)):
            s, more = local_search(iv, trial, max_moves - moves - 1)
            moves += 1 + more
    return s, moves, tuple(proven)
