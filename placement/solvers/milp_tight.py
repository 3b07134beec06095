"""The memory of one tight device held exactly in the bound, on clusters of any size (docs/milp.md).

On more than two devices the signature of `milp_signatures` counts FFNs per device, but a
device's groups and projections enter its memory only through the price ``π``. With layers
all alike, the priced cheapest path gives every layer the same configuration: it can hold
either ``c`` or ``c + 1`` groups a layer on the device, and a plan that needs ``c`` on some
layers and ``c + 1`` on others (as a device filled to its last group does) is priced only as
their mixture — the configuration LP's gap. Here the *tight device* ``d`` (the one the LP
prices highest) is tracked like device 0 of a two-device cluster:

- an arc ``[l, u, v, c]`` is the cheapest priced configuration of layer ``l`` from input
  ``u`` to FFN ``v`` with ``c`` memory units on ``d`` (``R`` per group, ``P`` for the
  projection; `milp_pricing.attention_by_count` fixes the count on ``d``);
- a DP over the layers keeps ``[e, f, g, u]``: the embedding's device, the FFNs and units on
  ``d`` so far, the current output device; a signature ``(e, f, g, h)`` whose FFNs, units and
  ends overflow ``d`` is dropped;
- the arcs are priced at the LP's multipliers and again with ``π_d = 0`` (``d``'s memory then
  held by the signature alone), the larger kept signature by signature.

Each interval is bounded on its own (no transport, no migration charge), so the bound is the
sum over intervals of the least fitting signature's value, or of the interval's path bound
where that is higher or where the time ran out. It is valid for the reason the signature bound is:
a feasible plan's configuration in interval ``k`` has some signature, which fits, and its
priced cost is at least that signature's cheapest priced path.
"""

from __future__ import annotations

import time

import numpy as np

from placement.solvers.milp_pricing import IntervalData, Scope, attention_by_count, ends_priced
from placement.solvers.milp_signatures import FIT_TOLERANCE

__all__ = ["tight_device", "tight_device_bound"]

# Element operations a second of the path DP, measured on the loaded 2-core VM (about 1.7·10⁹ on
# llama-3.1-8b-3dev-eth, taken lower for margin).
_OPS_PER_S = 1e9


def tight_device(pis: list[np.ndarray]) -> int | None:
    """The device whose memory the LP prices highest, summed over intervals (None when none is priced).

    Parameters
    ----------
    pis : list of ndarray, each (N,)
        Each interval's memory multipliers, ms per unit of memory fraction.

    Returns
    -------
    int or None
    """
    total = np.sum(pis, axis=0)
    return int(np.argmax(total)) if float(np.max(total)) > 0 else None


def _units(datas: list[IntervalData], scope: Scope, device: int, N: int, seconds: float) -> tuple[int, int] | None:
    """Units per group ``R`` (1…8) and per projection ``P`` on `device` (None: not even ``R = 1`` fits `seconds`).

    Groups, FFNs and ends are held exactly at any ``R``; only the projection is rounded down
    to ``P = ⌊R·M^p/M^g⌋`` units, so the ``R`` that fits the time and loses the least of it is
    taken. The path DP's work, per interval and multiplier set, is about
    ``N³ L³ W (W+1) / 3`` with ``W = K R + P`` (per layer ``l``: ``N (W+1)`` minima over the
    ``N² (l+1)(l W+1)`` states reached).
    """
    ratio = min(float(np.min(d.projection_mem[:, device] / d.group_mem[:, device])) for d in datas)
    L, K = len(scope.labels), scope.K
    best = None
    for R in range(1, 9):
        P = int(np.floor(R * ratio + 1e-9))  # 1e-9 of a projection is within the signature's memory tolerance
        W = K * R + P
        if 2 * len(datas) * N ** 3 * L ** 3 * W * (W + 1) / 3 > seconds * _OPS_PER_S:
            break
        if best is None or P / R > best[1] / best[0] + 1e-12:
            best = (R, P)
    return best


def _arcs(data: IntervalData, scope: Scope, pi: np.ndarray, sigma: float, device: int,
          units: tuple[int, int]) -> np.ndarray:
    """The priced arcs by the units a layer puts on `device`: ``[l, u, v, c]``, ms (``inf`` where none)."""
    t, N, (R, P) = data.terms, len(pi), units
    K = scope.K
    c = np.arange(K + 1)
    arcs = np.full((len(scope.labels), N, N, K * R + P + 1), np.inf)
    hidden = t["t_hidden"] - sigma * (1.0 - np.eye(N))
    for cls in np.unique(scope.labels):
        layer = int(np.flatnonzero(scope.labels == cls)[0])
        att = attention_by_count(t, layer, pi * data.group_mem[layer], sigma, scope.shared,
                                 scope.sends_input, K, device)  # (u, q, c)
        proj = t["proj"][layer] + pi * data.projection_mem[layer]
        ffn = t["ffn"][layer] + pi * data.ffn_mem[layer]
        table = np.full((N, N, K * R + P + 1), np.inf)
        for q in range(N):
            through = att[:, q, None, :] + (proj[q] + hidden[q])[None, :, None] + ffn[None, :, None]  # (u, v, c)
            at = R * c + (P if q == device else 0)
            table[:, :, at] = np.minimum(table[:, :, at], through)
        arcs[scope.labels == cls] = table
    return arcs


def _values(arcs: np.ndarray, ends: np.ndarray, device: int) -> np.ndarray:
    """The cheapest priced path of every signature ``[e, f, g, h]``, ms: ``f`` FFNs and ``g`` units on `device`."""
    L, N, W = arcs.shape[0], arcs.shape[1], arcs.shape[3] - 1
    G = L * W + 1
    dist = np.full((N, N, L + 1, G), np.inf)  # [u, e, f, g]: the current output on u (first: minima over u are fast)
    dist[np.arange(N), np.arange(N), 0, 0] = 0.0
    for l in range(L):
        f, g = l + 1, l * W + 1  # the counts reachable after l layers: f ≤ l, g ≤ l·W
        new = np.full_like(dist, np.inf)
        reached = dist[:, :, :f, :g]
        for v in range(N):
            df = int(v == device)
            for c in np.flatnonzero(np.isfinite(arcs[l, :, v]).any(axis=0)):
                step = (reached + arcs[l, :, v, c][:, None, None, None]).min(axis=0)  # [e, f, g]
                target = new[v, :, df:f + df, c:g + c]
                np.minimum(target, step, out=target)
        dist = new
    return (dist.transpose(1, 2, 3, 0)[..., None] + ends[:, None, None]).min(axis=3)  # [e, f, g, h]


def _fitting(values: np.ndarray, ffn_memory: float, unit_memory: float, ends_memory: np.ndarray) -> np.ndarray:
    """`values` with ``inf`` where the FFNs, units and ends (``ends_memory[e, h]``) overflow the device."""
    f = np.arange(values.shape[1])[:, None]
    g = np.arange(values.shape[2])[None, :]
    load = f * ffn_memory + g * unit_memory  # (f, g)
    fits = load[None, :, :, None] <= 1.0 + FIT_TOLERANCE - ends_memory[:, None, None, :]
    return np.where(fits, values, np.inf)


def tight_device_bound(datas: list[IntervalData], scope: Scope, pis: list[np.ndarray], sigmas: list[float],
                       interval_bounds_ms: list[float], ends_memory: np.ndarray, deadline_s: float) -> float:
    """The bound with the tight device's FFNs, groups and projections held exactly (ms).

    Parameters
    ----------
    datas : list of IntervalData
    scope : Scope
    pis, sigmas : list
        Each interval's memory (N,) and devices-row multipliers from the LP, ms.
    interval_bounds_ms : list of float
        A lower bound on each interval's cost (its path bound), ms: kept where it is higher,
        and for the intervals the deadline leaves out.
    ends_memory : ndarray, shape (I, N, N, N)
        ``[k, e, h, m]``: the embedding on ``e`` and lm_head on ``h`` as fractions of ``m``.
    deadline_s : float
        `time.perf_counter()` after which the bound is given up.

    Returns
    -------
    float
        A lower bound on every feasible plan's total without its migration (ms, less nothing
        for rounding: the caller gives that up), or ``-inf`` when no device is priced or the
        DP does not fit the time.
    """
    device = tight_device(pis)
    if device is None:
        return -np.inf
    N = len(pis[0])
    # sized for half the time: the DP usually ends early and leaves the rest to the stage's plans
    units = _units(datas, scope, device, N, 0.5 * (deadline_s - time.perf_counter()))
    if units is None:
        return -np.inf
    bounds = list(interval_bounds_ms)
    for k, data in enumerate(datas):  # each interval on its own: the intervals the time leaves out keep theirs
        own = pis[k].copy()
        own[device] = 0.0  # the signature holds this device's memory
        ffn = float(np.min(data.ffn_mem[:, device]))
        unit = float(np.min(data.group_mem[:, device])) / units[0]
        best = None
        for pi in (pis[k], own):
            if time.perf_counter() > deadline_s:
                break
            values = _values(_arcs(data, scope, pi, sigmas[k], device, units), ends_priced(data, pi, sigmas[k]), device)
            values = _fitting(values, ffn, unit, ends_memory[k][:, :, device])
            best = values if best is None else np.maximum(best, values)
        if best is not None:
            bounds[k] = max(bounds[k], float(best.min()))
    return float(sum(bounds))
