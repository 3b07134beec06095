"""Group migration in the configuration bound: multipliers on the groups each device gains (docs/milp.md).

The configuration LP's Lagrangian bounds each interval on its own, so a plan that moves
attention groups (with their KV caches) between intervals pays nothing for it there. The
moves are charged here through multipliers on the group counts per device, which keep
every interval separable:

- at the boundary into interval ``k`` every group a device ``m`` gains arrives as one
  message from another device, at least ``c_{k,m}`` (the fastest arrival of the smallest
  group at the boundary's context, `milp_signatures.group_arrival_ms`);
- for ``μ_k ∈ [0, c_k]`` (shared network) the boundary's migration is at least
  ``Σ_m μ_{k,m} (n_{k,m} − n_{k−1,m})``, where ``n_{k,m}`` counts the groups on ``m`` in
  interval ``k`` (over every layer); on a switched network, ``μ_k = w_k c_k / (N−1)`` with
  ``w_k ≥ 0`` and ``Σ_m w_{k,m} ≤ θ`` (the rest ``1 − θ`` of the slowest pair stays with the
  FFN and ends transport of `milp_signatures`);
- summed over boundaries the charge is ``Σ_k (μ_k − μ_{k+1}) · n_k``: a price per group on
  each device in each interval (``group_shift`` of `milp_pricing.price_classes`).

Every choice of the multipliers gives a valid bound; they are chosen by projected subgradient
steps on the path bound (`migration_shifts`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from placement.instance import Instance
from placement.solvers.milp_pricing import IntervalData, Scope, cheapest_path, price_classes
from placement.solvers.milp_signatures import group_arrival_ms

__all__ = ["MigrationShifts", "SWITCHED_GROUP_SHARE", "group_caps", "migration_shifts", "shifts_of"]

# The share θ of a switched boundary's slowest pair the group moves may claim; the FFN and ends
# transport keeps 1 − θ (each is a lower bound on some pair, so any convex weighting is one too).
SWITCHED_GROUP_SHARE = 0.5
# Subgradient steps at most (each one prices every class of every interval once), in a row without
# progress before the step is halved, and before giving up (the step then halved twice).
_STEPS = 30
_STALL = 2
_IDLE = 4


@dataclass(frozen=True)
class MigrationShifts:
    """The best group migration multipliers found, as prices per group.

    Attributes
    ----------
    value_ms : float
        The path bound with the migration charge, ms (Σ over intervals of the cheapest
        priced paths).
    shifts : ndarray, shape (I, N)
        ``μ_k − μ_{k+1}``: the price of a group on each device in each interval, ms.
    transport_share : float
        The share of each boundary's slowest pair left to the FFN and ends transport (1 on
        a shared network).
    """

    value_ms: float
    shifts: np.ndarray
    transport_share: float


def group_caps(instance: Instance) -> np.ndarray:
    """The most a gained group may be charged at each boundary, per device.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    ndarray, shape (I, N)
        Row ``k`` for the boundary into interval ``k`` (row 0 zero: nothing moves before the
        prompt), ms: the fastest arrival of a group (shared network), or that over ``N − 1``
        (switched: the arrivals into a device come over at most ``N − 1`` pairs, so one of
        them carries at least that share).
    """
    I, N = instance.workload.n_intervals, instance.n_devices
    caps = np.zeros((I, N))
    for k in range(1, I):
        caps[k] = group_arrival_ms(instance, k)
    return caps if instance.cluster.network == "shared" else caps / (N - 1)


def shifts_of(weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Prices per group and interval from boundary weights: ``μ_k − μ_{k+1}`` with ``μ_k = w_k ⊙ c_k``.

    Parameters
    ----------
    weights, caps : ndarray, shape (I, N)
        Row ``k`` for the boundary into interval ``k`` (row 0 unused).

    Returns
    -------
    ndarray, shape (I, N)
        ms per group.
    """
    mu = weights * caps
    mu[0] = 0.0
    return mu - np.vstack([mu[1:], np.zeros((1, mu.shape[1]))])


def _project(weights: np.ndarray, switched: bool) -> np.ndarray:
    """Each boundary's weights onto [0, 1] (shared) or onto ``{w ≥ 0, Σ w ≤ θ}`` (switched)."""
    w = np.clip(weights, 0.0, 1.0)
    if not switched:
        return w
    for k in range(len(w)):
        if w[k].sum() > SWITCHED_GROUP_SHARE:  # Euclidean projection onto the simplex of sum θ
            v = np.sort(weights[k])[::-1]
            cum = np.cumsum(v) - SWITCHED_GROUP_SHARE
            rho = np.flatnonzero(v - cum / np.arange(1, len(v) + 1) > 0)[-1]
            w[k] = np.maximum(weights[k] - cum[rho] / (rho + 1), 0.0)
    return w


def migration_shifts(instance: Instance, datas: list[IntervalData], scope: Scope, pis: list[np.ndarray],
                     sigmas: list[float], *, target_ms: float | None, deadline_s: float) -> MigrationShifts:
    """Group migration multipliers by projected subgradient steps on the path bound with migration.

    Parameters
    ----------
    instance : Instance
    datas : list of IntervalData
    scope : Scope
    pis, sigmas : list
        Each interval's memory (N,) and devices-row multipliers, held fixed, ms.
    target_ms : float, optional
        A feasible plan's total, ms (Polyak's step aims at it; 1 % above the bound when None).
    deadline_s : float
        `time.perf_counter()` by which to stop.

    Returns
    -------
    MigrationShifts
        The best multipliers met (zero shifts when nothing migrates, as with one interval
        or two devices, whose signature counts groups itself).
    """
    I, N = len(datas), instance.n_devices
    switched = instance.cluster.network != "shared"
    caps = group_caps(instance)
    weights = np.zeros((I, N))
    best = None
    scale, stalled, idle = 1.0, 0, 0
    for _ in range(_STEPS):
        shifts = shifts_of(weights, caps)
        paths = [cheapest_path(d, scope, pi, sigma, price_classes(d, scope, pi, sigma, shift))
                 for d, pi, sigma, shift in zip(datas, pis, sigmas, shifts)]
        value = sum(v for v, _ in paths)
        if best is None or value > best.value_ms + 1e-9 * abs(best.value_ms):
            share = 1.0 - float(weights.sum(axis=1).max()) if switched else 1.0
            best, stalled, idle = MigrationShifts(value, shifts, share), 0, 0
        else:
            stalled, idle = stalled + 1, idle + 1
            if stalled >= _STALL:
                scale, stalled = scale / 2, 0
        if idle >= _IDLE:
            break
        groups = np.array([g for _, g in paths], dtype=float)
        step = np.zeros((I, N))
        step[1:] = caps[1:] * (groups[1:] - groups[:-1])  # the value's slope in each weight
        norm = float((step ** 2).sum())
        if norm == 0.0 or time.perf_counter() > deadline_s or I < 2:
            break
        aim = target_ms if target_ms is not None and target_ms > value else value + 0.01 * abs(value) + 1e-9
        weights = _project(weights + scale * (aim - value) / norm * step, switched)
    return best
