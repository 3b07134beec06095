"""Collectives that combine the shares of a split (tensor-parallel) block.

Each function takes the participating devices, the message size ``M`` in bytes (the
full hidden state every participant holds a partial sum of) and the cluster, and
returns the time in seconds, the bytes sent between every pair of devices, and the
devices that hold the result. Transfers between different pairs overlap on a
``switched`` network (the slowest counts) and follow one another on a ``shared`` one.

- ``gather``: every participant sends its partial result to the root, which sums.
- ``star``: ``gather``, then the root sends the sum back to every participant
  (TPI-LLM's star all-reduce: 2 latencies, whatever the number of devices).
- ``ring``: ``2(n-1)`` steps around the ring of participants in device order; in each
  step every participant sends ``M/n`` bytes to its successor (reduce-scatter, then
  all-gather: ``2(n-1)`` latencies).
- ``ota``: all-reduce through a wireless edge server (over the air, or a digital or
  analog-FDMA baseline); its time and error come from the plan's transceiver design
  and the instance's ``wireless`` section (`collective_context` prepares it, so that
  the evaluator imports no back end). No bytes cross the cluster's links.

`all_reduce_seconds` gives the closed forms of ``star`` and ``ring`` on a uniform mesh,
the figures `all_reduce` gives there (the tensor-parallel MILP and its tables use them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from placement.cost.hardware import Cluster
from placement.errors import InputError, PlanError

__all__ = ["CollectiveCost", "all_reduce", "collective_context", "all_reduce_seconds", "star_ring_crossover_latency_s"]


@dataclass(frozen=True, eq=False)
class CollectiveCost:
    """Time (s), bytes sent per device pair (N, N), where the result ends up (bool mask, N), and the
    size of each message it sends (bytes; it picks the messages' routes)."""

    time_s: float
    pair_bytes: np.ndarray
    holders: np.ndarray
    message_bytes: float = 0.0


def collective_context(instance, plan) -> Any:
    """What the plan's collective needs beyond the cluster's links, prepared once per evaluation.

    Parameters
    ----------
    instance : Instance
    plan : Plan

    Returns
    -------
    OtaContext or None
        For ``ota``: the wireless all-reduce (time per message and the MSE figures in its
        ``errors``) recomputed on the instance's channels from the plan's transceiver design;
        None for the wired collectives.
    """
    if plan.collective != "ota":
        return None
    from placement.ota.allreduce import ota_context  # local: only ota plans need the wireless stack

    return ota_context(instance, plan)


def _combine(times: list[float], network: str) -> float:
    if not times:
        return 0.0
    return float(sum(times)) if network == "shared" else float(max(times))


def all_reduce(kind: str, participants: np.ndarray, root: int, message_bytes: float, cluster: Cluster,
               ota=None) -> CollectiveCost:
    """Cost of combining the partial results of `participants`.

    Parameters
    ----------
    kind : {"ring", "star", "gather", "ota"}
    participants : ndarray of bool, shape (N,)
        Devices holding a share.
    root : int
        The master device for ``star`` and ``gather`` (must participate).
    message_bytes : float
        Size of one full partial result, bytes.
    cluster : Cluster
    ota : OtaContext, optional
        For ``ota``: the plan's wireless all-reduce (`placement.ota.allreduce.ota_context`).

    Returns
    -------
    CollectiveCost

    Raises
    ------
    PlanError
        For ``ota`` without its context (the instance's wireless section and the plan's design), or an unknown kind.

    Examples
    --------
    Two devices 1 ms apart at 1 MB/s, 1000-byte message: the star sends 1000 bytes
    each way, 2 × (1 ms + 1 ms) = 4 ms.
    """
    n_devices = len(participants)
    members = np.flatnonzero(participants)
    pair_bytes = np.zeros((n_devices, n_devices))
    if len(members) <= 1:
        return CollectiveCost(0.0, pair_bytes, participants.copy())
    if kind in ("gather", "star"):
        t = cluster.route_time_s(np.array([message_bytes]))[0]  # every message on its fastest route
        others = [m for m in members if m != root]
        pair_bytes[others, root] += message_bytes
        time = _combine([t[m, root] for m in others], cluster.network)
        if kind == "gather":
            holders = np.zeros(n_devices, dtype=bool)
            holders[root] = True
            return CollectiveCost(time, pair_bytes, holders, message_bytes)
        pair_bytes[root, others] += message_bytes
        time += _combine([t[root, m] for m in others], cluster.network)
        return CollectiveCost(time, pair_bytes, participants.copy(), message_bytes)
    if kind == "ring":
        n = len(members)
        chunk = message_bytes / n
        t = cluster.route_time_s(np.array([chunk]))[0]
        step_pairs = list(zip(members, np.roll(members, -1)))
        step = _combine([t[u, v] for u, v in step_pairs], cluster.network)
        for u, v in step_pairs:
            pair_bytes[u, v] += 2 * (n - 1) * chunk
        return CollectiveCost(2 * (n - 1) * step, pair_bytes, participants.copy(), chunk)
    if kind == "ota":
        if ota is None:
            raise PlanError("collective 'ota' needs the instance's `wireless` section and the plan's transceiver "
                            "design (`extras.ota`, from method 'ota'); use 'ring', 'star' or 'gather' otherwise")
        return CollectiveCost(ota.time_s(message_bytes), pair_bytes, participants.copy())
    raise PlanError(f"unknown collective {kind!r}; use 'ring', 'star', 'gather' or 'ota'")


def all_reduce_seconds(kind: str, n: int, message_bytes: float, latency_s: float, bandwidth_bytes_per_s: float,
                       network: str = "switched") -> float:
    """All-reduce time over `n` devices on a uniform mesh (every route the same latency and bandwidth).

    ``star`` (switched): ``2(α + M/β)``; ``ring``: ``2(n-1)(α + M/(nβ))``; on a
    ``shared`` network the transfers of a step add up: star ``2(n-1)(α + M/β)``, ring
    ``2(n-1)(nα + M/β)``. The same figures `all_reduce` gives.

    Parameters
    ----------
    kind : {"star", "ring"}
    n : int
        Participants.
    message_bytes : float
        ``M``.
    latency_s, bandwidth_bytes_per_s : float
        ``α`` and ``β`` of every route.
    network : {"switched", "shared"}

    Returns
    -------
    float
        Seconds.

    Examples
    --------
    >>> all_reduce_seconds("star", 4, 1e3, 1e-3, 1e6)
    0.004
    >>> round(all_reduce_seconds("ring", 4, 1e3, 1e-3, 1e6), 6)
    0.0075
    """
    if n <= 1:
        return 0.0
    alpha, beta, M = latency_s, bandwidth_bytes_per_s, message_bytes
    if kind == "star":
        return 2 * (alpha + M / beta) * ((n - 1) if network == "shared" else 1)
    if kind == "ring":
        step = n * alpha + M / beta if network == "shared" else alpha + M / (n * beta)
        return 2 * (n - 1) * step
    raise InputError(f"collective {kind!r} has no closed form here; use 'star' or 'ring'")


def star_ring_crossover_latency_s(n: int, message_bytes: float, bandwidth_bytes_per_s: float,
                                  network: str = "switched") -> float:
    """Link latency above which the star all-reduce beats the ring (uniform mesh).

    Switched: the star wins iff ``M/β < n(n-2)·α``, i.e. above ``α* = M / (β·n(n-2))``
    (never for ``n ≤ 2``: the ring's halves then beat the star's full messages).
    Shared: ``2(n-1)(α + M/β) < 2(n-1)(nα + M/β)`` whenever ``α > 0``, so ``α* = 0``.

    Parameters
    ----------
    n : int
        Participants.
    message_bytes : float
    bandwidth_bytes_per_s : float
    network : {"switched", "shared"}

    Returns
    -------
    float
        Seconds (inf: the ring always wins).

    Examples
    --------
    >>> star_ring_crossover_latency_s(4, 8192, 1e6)  # 8 KiB hidden state on 1 MB/s, 4 devices
    0.001024
    """
    if network == "shared":
        return 0.0 if n >= 2 else math.inf
    if n <= 2:
        return math.inf
    return message_bytes / (bandwidth_bytes_per_s * n * (n - 2))
