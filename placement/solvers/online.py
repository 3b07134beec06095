"""The online loop shared by the myopic back ends: one decision per interval, from the previous one.

`run_online` times every decision and counts the blocks that move between intervals;
`check_current` checks the placement a running system starts from.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from placement.errors import InputError
from placement.instance import Instance
from placement.plan import Placement, Plan

__all__ = ["check_current", "moves", "run_online"]


def check_current(instance: Instance, current: Placement | Plan | None) -> Placement | None:
    """The placement an online run starts from, checked against the instance.

    Parameters
    ----------
    instance : Instance
    current : Placement or Plan or None
        Where the blocks are now (a Plan gives its last interval).

    Returns
    -------
    Placement or None

    Raises
    ------
    InputError
        Naming the field that does not match the instance.
    """
    if current is None:
        return None
    L, K, N = instance.model.layers, instance.model.kv_heads, instance.n_devices
    if isinstance(current, Plan):
        if tuple(current.devices) != tuple(instance.cluster.names):
            raise InputError(f"`current` plan has devices {', '.join(current.devices)}; the instance has "
                             f"{', '.join(instance.cluster.names)} (in this order)")
        current = current.intervals[-1]
    if not isinstance(current, Placement):
        raise InputError("`current` must be a Placement (or a Plan, whose last interval is used), "
                         f"got {type(current).__name__}")
    att = np.asarray(current.attention)
    if att.shape != (L, K) or not np.issubdtype(att.dtype, np.integer) or att.min() < 0 or att.max() >= N:
        raise InputError(f"`current.attention` must be whole device indices 0..{N - 1} of shape ({L}, {K}), "
                         f"got shape {att.shape}")
    for name in ("projection", "ffn"):
        rows = np.asarray(getattr(current, name), dtype=float)
        if rows.shape != (L, N):
            raise InputError(f"`current.{name}` must have shape ({L}, {N}) (shares per layer and device), "
                             f"got {rows.shape}")
    for name in ("embed", "lm_head"):
        if not 0 <= int(getattr(current, name)) < N:
            raise InputError(f"`current.{name}` must be a device index 0..{N - 1}, got {getattr(current, name)!r}")
    return current


def moves(a: Placement, b: Placement) -> int:
    """Blocks whose device differs between two placements of whole blocks.

    Parameters
    ----------
    a, b : Placement

    Returns
    -------
    int
        Attention groups, projections, FFNs, ``embed`` and ``lm_head`` that change device.
    """
    return int((np.asarray(a.attention) != np.asarray(b.attention)).sum()
               + (np.asarray(a.projection).argmax(axis=1) != np.asarray(b.projection).argmax(axis=1)).sum()
               + (np.asarray(a.ffn).argmax(axis=1) != np.asarray(b.ffn).argmax(axis=1)).sum()
               + (a.embed != b.embed) + (a.lm_head != b.lm_head))


def run_online(instance: Instance, start: Placement | None, decide_one) -> tuple[list, list[Placement], dict]:
    """One decision per interval, each from the previous placement; timed.

    Parameters
    ----------
    instance : Instance
    start : Placement or None
        Where the blocks are before interval 0 (None: nowhere yet).
    decide_one : callable
        ``decide_one(k, previous)`` returns an object with a ``placement``.

    Returns
    -------
    decisions, placements, stats
        The decisions, their placements and the statistics every online method reports:
    ``decision_time_median_s``, ``decision_time_max_s``, ``decision_times_s`` (seconds),
    ``blocks_moved`` (between intervals), ``intervals`` and, when the run starts from
    a placement in use, ``blocks_moved_from_current``.
    """
    decisions, elapsed = [], []
    previous = start
    for k in range(instance.workload.n_intervals):
        began = time.perf_counter()
        decision = decide_one(k, previous)
        elapsed.append(time.perf_counter() - began)
        decisions.append(decision)
        previous = decision.placement
    placements = [d.placement for d in decisions]
    stats = {
        "decision_time_median_s": float(np.median(elapsed)),
        "decision_time_max_s": float(np.max(elapsed)),
        "decision_times_s": [float(t) for t in elapsed],
        "blocks_moved": sum(moves(a, b) for a, b in itertools.pairwise(placements)),
        "intervals": len(decisions),
    }
    if start is not None:
        stats["blocks_moved_from_current"] = moves(start, placements[0])
    return decisions, placements, stats
