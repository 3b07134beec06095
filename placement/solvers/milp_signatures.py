"""A stronger Lagrangian bound: placements told apart by where their largest blocks are (docs/milp.md).

The configuration LP's Lagrangian (`milp_bounds`) prices a placement as a cheapest path
over the layers, each interval on its own, with memory only in the priced rows. Here the
same priced paths are kept apart by their *signature*: how many FFNs each (tracked) device
holds, the embedding's device and the output head's device, and on two devices also the
memory units (groups, projections) on the first. Two things follow that the plain path
cannot see:

- **memory that fits**: a signature whose blocks alone overflow a device is no placement
  at all, so its paths are left out (a path wholly on a small fast device is what the LP
  mixes in otherwise);
- **migration**: between consecutive intervals the FFNs (and units) a device gains must
  arrive from elsewhere, one message each, and a moved embedding or output head is one
  message on a known pair; a DP over the intervals' signatures charges this transport.

Every set of multipliers bounds each signature's plans below, so several sets are combined
signature by signature. The result is never below the plain bound at the same multipliers
and never above a feasible plan's total (docs/milp.md, "Signatures").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from math import comb

import numpy as np

from placement.cost.tables import block_memory
from placement.instance import Instance
from placement.solvers.milp_model import SECONDS_PER_UNIT

__all__ = ["FIT_TOLERANCE", "SignatureTables", "Refinement", "group_arrival_ms", "signature_bound", "refined_bound",
           "tracked_devices"]

# Most elements of one array of the path DP (count vectors × N³): about 80 MB of float64.
_PATH_WORK = 1e7
# Most elementary steps of one boundary of the DP over intervals (N² S² + N⁴ S).
_TRANSPORT_WORK = 3e7
FIT_TOLERANCE = 1e-9  # a memory fraction this far over 1 still counts as fitting (rounding of the fractions)
_SWITCHED_SHARES = 9  # λ = 0, ⅛, …, 1 on a switched two-device network (includes ½, 0 and 1: never below the old three)


@dataclass(frozen=True)
class SignatureTables:
    """The priced pieces of every interval's Lagrangian, as the configuration LP leaves them.

    Attributes
    ----------
    arcs : list of ndarray, each (L, N, N)
        Per interval, the priced cost of layer ``l`` taking its input on ``u`` and leaving its
        output (its FFN) on ``v``, ms, at that interval's multipliers.
    ends : ndarray, shape (I, N, N, N)
        Priced ends ``[e, v, h]`` (embedding, last layer's output, lm_head), ms, with the
        relaxed rows' right-hand sides included (`milp_bounds`).
    ffn_memory : ndarray, shape (I, N)
        The smallest FFN of any layer as a fraction of each device's usable memory.
    ends_memory : ndarray, shape (I, N, N, N)
        ``[e, h, m]``: the embedding on ``e`` and lm_head on ``h`` as fractions of device ``m``.
    group_arcs : list of ndarray, each (L, 2, 2, K·R+P+1), or None
        On two devices: the priced arcs by the memory units a layer puts on device 0
        (``R`` per group there, ``P`` for its projection there), ``[l, u, v, c]``, ms.
    group_memory : ndarray, shape (I, N), or None
        The smallest group (with its cache) of any layer as a fraction of each device.
    group_units : int
        ``R``: memory units per group (a unit is a group's bytes divided by ``R``).
    projection_units : int
        ``P``: units every projection holds at least, at every interval.
    """

    arcs: list
    ends: np.ndarray
    ffn_memory: np.ndarray
    ends_memory: np.ndarray
    group_arcs: list | None = None
    group_memory: np.ndarray | None = None
    group_units: int = 1
    projection_units: int = 0


def tracked_devices(ffn_memory: np.ndarray, layers: int, limit: float) -> np.ndarray:
    """The devices whose FFN counts the signature keeps (the rest are counted together).

    Devices that could not hold every FFN come first, the tightest first, as long as the
    number of count vectors (compositions of `layers` into the kept devices and one part
    for the rest) stays within `limit`.

    Parameters
    ----------
    ffn_memory : ndarray, shape (N,)
        One FFN as a fraction of each device's usable memory.
    layers : int
    limit : float
        Most count vectors (also capped so that one array of the path DP, count vectors × N³,
        stays within 10⁷ elements).

    Returns
    -------
    ndarray of int
        Indices of the kept devices, in increasing order.
    """
    N = len(ffn_memory)
    limit = min(limit, _PATH_WORK / N ** 3)
    order = np.argsort(-ffn_memory, kind="stable")
    kept: list[int] = []
    for m in order:
        parts = len(kept) + 1 + (1 if len(kept) + 1 < N else 0)
        if comb(layers + parts - 1, parts - 1) > limit:
            break
        kept.append(int(m))
    return np.sort(np.array(kept, dtype=np.int64))


def _compositions(layers: int, parts: int) -> list[np.ndarray]:
    """Count vectors of every length ``l = 0 … layers``: ``(S_l, parts)``, rows in increasing code order."""
    levels = [np.zeros((1, parts), dtype=np.int64)]
    eye = np.eye(parts, dtype=np.int64)
    for _ in range(layers):
        grown = np.unique((levels[-1][:, None, :] + eye[None]).reshape(-1, parts), axis=0)
        levels.append(grown[np.argsort(_codes(grown, layers + 1))])
    return levels


def _codes(vectors: np.ndarray, base: int) -> np.ndarray:
    return vectors @ (base ** np.arange(vectors.shape[1], dtype=np.int64))


def _path_values(arcs: np.ndarray, ends: np.ndarray, part: np.ndarray, levels: list[np.ndarray]) -> np.ndarray:
    """Cheapest priced path of every signature: ``[e, s, h]`` (ms), ``s`` a count vector of the last level."""
    L, N = arcs.shape[0], arcs.shape[1]
    base = L + 1
    dist = np.full((N, 1, N), np.inf)  # [e, s, u]: embed on e, counts s so far, the current output on u
    dist[np.arange(N), 0, np.arange(N)] = 0.0
    for l in range(L):
        step = (dist[:, :, :, None] + arcs[l][None, None]).min(axis=2)  # [e, s, v]
        after = levels[l + 1]
        codes_after = _codes(after, base)
        new = np.full((N, len(after), N), np.inf)
        for v in range(N):
            grown = levels[l].copy()
            grown[:, part[v]] += 1
            new[:, np.searchsorted(codes_after, _codes(grown, base)), v] = step[:, :, v]
        dist = new
    return (dist[:, :, :, None] + ends[:, None]).min(axis=2)  # [e, s, h]


def _fits(counts: np.ndarray, part: np.ndarray, ffn_memory: np.ndarray, ends_memory: np.ndarray) -> np.ndarray:
    """Whether a signature's FFNs and ends fit every device: ``[e, s, h]`` booleans.

    A kept device must hold its own count; the devices counted together must have room
    for their joint count (each device holding as many whole FFNs as fit beside its ends).
    """
    N = len(part)
    room = 1.0 + FIT_TOLERANCE - ends_memory  # [e, h, m]
    fits = np.ones((N, len(counts), N), dtype=bool)
    for p in range(counts.shape[1]):
        members = np.flatnonzero(part == p)
        if len(members) == 1:
            m = members[0]
            need = counts[:, p][None, :, None] * ffn_memory[m]
            fits &= need <= room[:, None, :, m]
        else:
            capacity = np.floor(np.maximum(room[..., members], 0.0) / ffn_memory[members]).sum(-1)  # [e, h]
            fits &= counts[:, p][None, :, None] <= capacity[:, None, :]
    return fits


def _boundary_memory(instance: Instance, k: int):
    """The blocks' bytes at the boundary into interval `k`, at its context (as the evaluator moves them)."""
    workload = instance.workload
    return block_memory(instance, instance.precision, np.array([workload.prompt_tokens + k * workload.tau]))


def group_arrival_ms(instance: Instance, k: int) -> np.ndarray:
    """The least time of one group arriving at each device at the boundary into interval `k`.

    Parameters
    ----------
    instance : Instance
    k : int
        The interval the boundary leads into (1 … I−1).

    Returns
    -------
    ndarray, shape (N,)
        Over every other device as the source, the message time of the smallest group of
        any layer (its weights and its KV cache at the boundary's context), ms.
    """
    memory = _boundary_memory(instance, k)
    group = instance.cluster.message_time_s(float(np.min(memory.group[0]))) / SECONDS_PER_UNIT
    return np.where(np.eye(instance.n_devices, dtype=bool), np.inf, group).min(axis=0)


def _arrival_costs(instance: Instance, k: int, part: np.ndarray, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """At the boundary into interval `k`: the least time (ms) of one FFN arriving in each part, and of
    the embedding and lm_head moving between each pair of devices (2, N, N)."""
    memory = _boundary_memory(instance, k)
    cluster, N = instance.cluster, instance.n_devices
    ffn = cluster.message_time_s(float(np.min(memory.ffn[0]))) / SECONDS_PER_UNIT
    into = np.where(np.eye(N, dtype=bool), np.inf, ffn).min(axis=0)  # fastest source to each device
    per_part = np.array([into[part == p].min() for p in range(parts)])
    ends = np.stack([cluster.message_time_s(float(np.ravel(getattr(memory, kind))[0])) for kind in ("embed", "lm_head")])
    return per_part, ends / SECONDS_PER_UNIT


def _ends_moves(ends_time: np.ndarray, shared: bool) -> np.ndarray:
    """Migration of the embedding and lm_head from ``(e, h)`` to ``(e', h')``: ``[e, h, e', h']``, ms.

    Shared network: the two messages add up. Switched: messages on one pair follow one
    another, different pairs overlap, so it is the larger unless both take the same pair.
    """
    embed, head = ends_time[0][:, None, :, None], ends_time[1][None, :, None, :]
    if shared:
        return embed + head
    N = ends_time.shape[1]
    e, h, e2, h2 = np.indices((N, N, N, N))
    same_pair = (e == h) & (e2 == h2)
    return np.where(same_pair, embed + head, np.maximum(embed, head))


def _ffn_moves(counts: np.ndarray, per_part: np.ndarray, sources: np.ndarray, shared: bool) -> np.ndarray:
    """Least migration of FFNs from count vector ``s`` to ``s'``: ``[s, s']``, ms.

    Every FFN a part gains arrives as one message from another device. Shared network:
    all add up. Switched: the ``a`` arrivals into a part come over at most `sources` pairs,
    so one pair carries at least ``⌈a / sources⌉`` of them, one after another.
    """
    gain = np.maximum(counts[None, :, :] - counts[:, None, :], 0)  # [s, s', p]
    if shared:
        return (gain * per_part).sum(-1)
    return (np.ceil(gain / sources) * per_part).max(-1)


def _two_device_values(arcs: np.ndarray, ends: np.ndarray, ffn_memory: np.ndarray, unit_memory: np.ndarray,
                       ends_memory: np.ndarray) -> np.ndarray:
    """On two devices, the cheapest priced path of every signature ``[e, f, g, h]`` (ms): ``f`` FFNs and ``g``
    memory units (`SignatureTables.group_units` per group, `projection_units` per projection) on device 0,
    the rest on device 1; ``inf`` where the FFNs, units and ends overflow a device."""
    L, W = arcs.shape[0], arcs.shape[3] - 1  # W: the units one layer puts on the two devices together
    G = L * W + 1
    dist = [np.full((2, L + 1, G), np.inf) for _ in range(2)]  # dist[u][e, f, g]: the current output on u
    dist[0][0, 0, 0] = dist[1][1, 0, 0] = 0.0
    for l in range(L):
        new = [np.full((2, L + 1, G), np.inf) for _ in range(2)]
        f, g = l + 1, l * W + 1  # the counts reachable after l layers: f ≤ l, g ≤ l·W
        for v in range(2):
            df = 1 if v == 0 else 0
            for c in np.flatnonzero(np.isfinite(arcs[l, :, v]).any(axis=0)):
                step = np.minimum(dist[0][:, :f, :g] + arcs[l, 0, v, c], dist[1][:, :f, :g] + arcs[l, 1, v, c])
                target = new[v][:, df:f + df, c:g + c]
                np.minimum(target, step, out=target)
        dist = new
    values = np.minimum(dist[0][..., None] + ends[:, None, None, 0], dist[1][..., None] + ends[:, None, None, 1])
    f, g = np.arange(L + 1), np.arange(G)
    room = 1.0 + FIT_TOLERANCE - ends_memory  # [e, h, m]
    load0 = f[:, None] * ffn_memory[0] + g[None, :] * unit_memory[0]
    load1 = (L - f)[:, None] * ffn_memory[1] + (G - 1 - g)[None, :] * unit_memory[1]
    fits = (load0[None, :, :, None] <= room[:, None, None, :, 0]) & (load1[None, :, :, None] <= room[:, None, None, :, 1])
    return np.where(fits, values, np.inf)


def _sweep(values: np.ndarray, axis: int, up: float, down: float) -> np.ndarray:
    """``min_x values[x] + up·(x'−x)⁺ + down·(x−x')⁺`` along `axis`: the least cost of reaching each ``x'``.

    Moving up from ``x`` to ``x'`` costs ``up·x' − up·x``, so the best start below ``x'`` is a
    running minimum of ``values − up·x``; likewise downwards from the other end.
    """
    x = np.arange(values.shape[axis], dtype=float).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    rising = np.minimum.accumulate(np.where(np.isfinite(values), values - up * x, np.inf), axis=axis) + up * x
    flipped = np.flip(np.where(np.isfinite(values), values + down * x, np.inf), axis=axis)
    falling = np.flip(np.minimum.accumulate(flipped, axis=axis), axis=axis) - down * x
    return np.minimum(rising, falling)


def _two_device_moves(instance: Instance, k: int, group_units: int,
                      projection_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """At the boundary into interval `k`, in ms: one FFN's message time and the least time per memory unit (a
    group's share, or a projection's) towards device 0 and towards device 1, (2,) each; and the embedding's
    and lm_head's message times between every pair (2, 2) each."""
    memory, cluster = _boundary_memory(instance, k), instance.cluster
    ffn, group, projection = (cluster.message_time_s(float(np.min(block))) / SECONDS_PER_UNIT
                              for block in (memory.ffn[0], memory.group[0], memory.projection[0]))
    unit = group / group_units
    if projection_units:
        unit = np.minimum(unit, projection / projection_units)
    embed, head = (cluster.message_time_s(float(np.ravel(getattr(memory, kind))[0])) / SECONDS_PER_UNIT
                   for kind in ("embed", "lm_head"))
    to = lambda t: np.array([t[1, 0], t[0, 1]])  # noqa: E731  (into device 0, into device 1)
    return to(ffn), to(unit), embed, head


def _two_device_bound(instance: Instance, tables: SignatureTables, values: list[np.ndarray], migration: bool,
                      shares: np.ndarray) -> float:
    """The signature bound on two devices, FFNs and memory units counted, their transport between intervals (ms).

    Gains of device 0 arrive from device 1 one message each, and its losses go the other
    way. Each row ``into`` of `shares` charges a move towards device ``m`` ``into[m]`` of its
    time: on a shared network every message counts (one row, (1, 1)); on a switched one the
    two directions overlap and the slower one counts, ``max(A, B) ≥ λ A + (1 − λ) B`` for
    every ``λ`` in [0, 1] (rows ``(λ, 1 − λ)``). The least over the previous signatures is
    taken under every row and the largest kept, target signature by target signature and
    boundary by boundary: ``min_σ max(A, B) ≥ max_λ min_σ (λ A + (1 − λ) B)``.
    """
    best = None
    for k, value in enumerate(values):
        if best is None or not migration:
            best = value if best is None else best.min() + value
            continue
        ffn, unit, embed, head = _two_device_moves(instance, k, tables.group_units, tables.projection_units)
        reached = None
        for into in shares:
            moved = _sweep(_sweep(best, 1, into[0] * ffn[0], into[1] * ffn[1]), 2, into[0] * unit[0], into[1] * unit[1])
            ends = (embed * into)[:, None, :, None] + (head * into)[None, :, None, :]  # [e, h, e', h']
            moved = (moved[:, :, :, :, None, None] + ends[:, None, None]).min(axis=(0, 3))  # [f, g, e', h']
            reached = moved if reached is None else np.maximum(reached, moved)
        best = value + reached.transpose(2, 0, 1, 3)
    bound = float(np.min(best))
    return bound if np.isfinite(bound) else -np.inf


def _general_values(tables: SignatureTables, k: int, part: np.ndarray, levels: list[np.ndarray]) -> np.ndarray:
    """Interval `k`'s cheapest priced path of every signature ``[e, s, h]`` (ms), ``inf`` where it overflows."""
    values = _path_values(tables.arcs[k], tables.ends[k], part, levels)
    return np.where(_fits(levels[-1], part, tables.ffn_memory[k], tables.ends_memory[k]), values, np.inf)


def _general_bound(instance: Instance, values: list[np.ndarray], part: np.ndarray, counts: np.ndarray,
                   transport: bool, transport_share: float) -> float:
    """The DP over intervals of the FFN-count signatures, with their transport when `transport` (ms), at
    `transport_share` of its time (the rest of a switched boundary is the group migration's)."""
    N, parts = instance.n_devices, counts.shape[1]
    shared = instance.cluster.network == "shared"
    sources = np.array([(N - 1) * np.sum(part == p) for p in range(parts)], dtype=float)
    best = None
    for k, value in enumerate(values):
        if best is None or not transport:
            best = value if best is None else best.min() + value
            continue
        per_part, ends_time = _arrival_costs(instance, k, part, parts)
        ffn = _ffn_moves(counts, per_part, sources, shared)
        ends = _ends_moves(ends_time, shared)
        if not shared:  # max(ffn, ends) ≥ (ffn + ends) / 2 keeps the two moves separable
            ffn, ends = ffn / 2, ends / 2
        ffn, ends = transport_share * ffn, transport_share * ends
        through = (best.transpose(0, 2, 1)[:, :, :, None] + ffn[None, None]).min(axis=2)  # [e, h, s']
        moved = (through[:, :, None, None, :] + ends[..., None]).min(axis=(0, 1))  # [e', h', s']
        best = value + moved.transpose(0, 2, 1)
    bound = float(np.min(best))
    return bound if np.isfinite(bound) else -np.inf


def signature_bound(instance: Instance, priced: list[SignatureTables], *, migration: bool = True,
                    work_limit: float = 1e8, refine: Refinement | None = None,
                    transport_share: float = 1.0) -> float:
    """The Lagrangian bound over signatures (FFN counts per device, embedding and lm_head devices), ms.

    Parameters
    ----------
    instance : Instance
    priced : list of SignatureTables
        The priced arcs and ends of every interval (`milp_bounds`), at one or more sets of
        multipliers (all with the same memory tables). Each set bounds every signature's
        plans below; the larger figure is kept signature by signature, before the least
        over signatures is taken.
    migration : bool
        Charge the transport of FFNs (and, on two devices, memory units), embedding and
        lm_head between consecutive intervals' signatures (a DP over the intervals); off:
        each interval on its own.
    refine : Refinement, optional
        With one interval (and more than two devices), refine the signatures below the
        incumbent one by one (`refined_bound`).
    work_limit : float
        Elementary operations the path DPs may take (``L N³`` per count vector, interval and
        set of multipliers): fewer devices are told apart when it is small.
    transport_share : float
        On more than two devices, the weight in [0, 1] of the FFN and ends transport: on a
        switched network the arcs may carry group migration multipliers that claim the rest
        of each boundary's slowest pair (docs/milp.md, "Group migration").

    Returns
    -------
    float
        A lower bound (ms, in the model's units) on the total latency of every feasible
        plan whose experts run with their FFN, less the rounding `milp_bounds` gives up;
        ``-inf`` when no signature fits (the caller keeps the plain bound).
    """
    first = priced[0]
    I, N = first.ends.shape[0], first.ends.shape[1]
    if first.group_arcs is not None:
        values = [np.max([_two_device_values(t.group_arcs[k], t.ends[k], t.ffn_memory[k],
                                             t.group_memory[k] / t.group_units, t.ends_memory[k]) for t in priced], axis=0)
                  for k in range(I)]
        lam = np.linspace(0.0, 1.0, _SWITCHED_SHARES)
        shares = np.array([[1.0, 1.0]]) if instance.cluster.network == "shared" else np.stack([lam, 1.0 - lam], axis=1)
        return _two_device_bound(instance, first, values, migration, shares)
    L = first.arcs[0].shape[0]
    kept = tracked_devices(first.ffn_memory.max(axis=0), L, limit=work_limit / (I * len(priced) * L * N ** 3))
    part = np.full(N, len(kept), dtype=np.int64)
    part[kept] = np.arange(len(kept))
    levels = _compositions(L, int(part.max()) + 1)
    S = len(levels[-1])
    transport = migration and I > 1 and N ** 2 * S ** 2 + N ** 4 * S <= _TRANSPORT_WORK
    values = [np.max([_general_values(t, k, part, levels) for t in priced], axis=0) for k in range(I)]
    if refine is not None and I == 1:
        return refined_bound(values[0], levels[-1], part, first.ends_memory[0], refine)
    return _general_bound(instance, values, part, levels[-1], transport, transport_share)


@dataclass(frozen=True)
class Refinement:
    """What refining single signatures needs (one interval): a pricing at any multipliers, and the incumbent.

    Attributes
    ----------
    price : callable
        ``price(pi) -> (arcs (L, N, N), arc_memory (L, N, N, N), ends (N, N, N), configs)``:
        the arcs priced at memory multipliers `pi` (ms), the memory of each arc's
        configuration on every device (fractions), the priced ends (ms, with ``−Σ π``), and
        the configuration of each arc (opaque, handed back in `found`).
    incumbent_ms : float
        Cost of a known feasible plan, ms: signatures whose bound reaches it are done.
    deadline_s : float
        ``time.perf_counter()`` value after which no further signature is refined.
    two_block : tuple of ndarray, optional
        Unpriced arcs (L, N, N) and ends (N, N, N), ms, with the prefill and the decode steps
        as two blocks: the signatures still below the incumbent after refining get the
        cheapest path at these (memory relaxed, a sum of two maxima per stage).
    found : list
        Filled with ``(e, h, path, configs)`` for every cheapest path met that fits every
        device: real placements (the caller has the evaluator judge them).
    exhaustive : bool
        Refine every signature below the incumbent, not only those below the least refined
        bound so far (for a branch over them, `milp_branching`).
    signatures : list
        Filled by `refined_bound` with ``(e, h, counts (P,), part (N,), bound ms)`` for every
        refined signature, then ``(None, None, None, part, bound ms)``: the least bound of those
        not refined.
    """

    price: object
    incumbent_ms: float
    deadline_s: float
    two_block: tuple | None = None
    found: list = field(default_factory=list)
    exhaustive: bool = False
    signatures: list = field(default_factory=list)


def _signature_path(arcs: np.ndarray, ends: np.ndarray, e: int, target: np.ndarray,
                    part: np.ndarray) -> tuple[float, list[tuple[int, int]]]:
    """The cheapest priced path from embedding `e` whose FFN counts per part are `target`, ending at `ends`
    (N_v,): its value (ms) and its arcs ``(u, v)`` layer by layer."""
    L, N = arcs.shape[0], arcs.shape[1]
    radix = np.concatenate([[1], np.cumprod(target + 1)[:-1]])
    codes = int(np.prod(target + 1))
    count = (np.arange(codes)[:, None] // radix[None]) % (target + 1)[None]  # (codes, P)
    dist = np.full((codes, N), np.inf)
    dist[0, e] = 0.0
    came = np.zeros((L, codes, N), dtype=np.int64)
    for l in range(L):
        total = dist[:, :, None] + arcs[l][None]  # [code, u, v]
        best_u = total.argmin(axis=1)
        step = np.take_along_axis(total, best_u[:, None, :], axis=1)[:, 0]  # [code, v]
        new = np.full_like(dist, np.inf)
        for v in range(N):
            room = np.flatnonzero(count[:, part[v]] < target[part[v]])
            new[room + radix[part[v]], v] = step[room, v]
            came[l, room + radix[part[v]], v] = best_u[room, v]
        dist = new
    final = dist[codes - 1] + ends
    v = int(final.argmin())
    value, code, arcs_used = float(final[v]), codes - 1, []
    for l in range(L - 1, -1, -1):
        u = int(came[l, code, v])
        arcs_used.append((u, v))
        code -= int(radix[part[v]])
        v = u
    return value, arcs_used[::-1]


def _refine_signature(refine: Refinement, e: int, h: int, target: np.ndarray, part: np.ndarray,
                      ends_memory: np.ndarray, start: float, iterations: int = 40) -> float:
    """A bound (ms) on the plans of one signature: its own memory multipliers by subgradient steps.

    Each step prices at ``π`` (every value a valid bound on the signature's plans), takes the
    cheapest path of the signature, and moves ``π`` along its memory overflow (Polyak's step
    towards the incumbent).
    """
    N = len(part)
    pi, best = np.zeros(N), start
    for _ in range(iterations):
        if time.perf_counter() > refine.deadline_s or best >= refine.incumbent_ms:
            break
        arcs, arc_memory, ends, configs = refine.price(pi)
        value, path = _signature_path(arcs, ends[e, :, h], e, target, part)
        best = max(best, value)
        used = ends_memory[e, h] + sum(arc_memory[l, u, v] for l, (u, v) in enumerate(path))
        overflow = used - 1.0
        if np.all(overflow <= -1e-7):  # a margin below each device's memory, like the restricted MILPs
            refine.found.append((e, h, path, configs))
        norm = float(np.sum(np.where((pi > 0) | (overflow > 0), overflow, 0.0) ** 2))
        if norm <= 0:
            break  # the path fits every device: at these multipliers it is the signature's optimum
        pi = np.maximum(0.0, pi + (refine.incumbent_ms - value) / norm * overflow)
    return best


def refined_bound(values: np.ndarray, counts: np.ndarray, part: np.ndarray, ends_memory: np.ndarray,
                  refine: Refinement) -> float:
    """The one-interval signature bound with the signatures below the incumbent refined one by one (ms).

    Signatures are taken by increasing bound; each gets its own multipliers
    (`_refine_signature`). The result is the least of the refined bounds and of the
    bounds of the signatures not reached before the deadline.

    Parameters
    ----------
    values : ndarray, shape (N, S, N)
        The signature bounds ``[e, s, h]``, ms (``inf`` where a signature does not fit).
    counts : ndarray, shape (S, P)
        FFN counts per part of each signature.
    part : ndarray of int, shape (N,)
        The part of each device.
    ends_memory : ndarray, shape (N, N, N)
        ``[e, h, m]``: the embedding and lm_head as fractions of each device.
    refine : Refinement

    Returns
    -------
    float
        A lower bound, ms, on every feasible plan of the interval.
    """
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    refined, rest = {}, np.inf  # signature → its refined bound; the least bound of those not reached
    for index in order:
        reach = refine.incumbent_ms if refine.exhaustive else min([refine.incumbent_ms, *refined.values()])
        if flat[index] >= reach or time.perf_counter() > refine.deadline_s:
            rest = flat[index]
            break
        e, s, h = np.unravel_index(index, values.shape)
        refined[(int(e), int(s), int(h))] = _refine_signature(refine, int(e), int(h), counts[s], part, ends_memory,
                                                              flat[index])
    if refine.two_block is not None:  # the prefill and the decode steps as two blocks, for those still open
        arcs, ends = refine.two_block
        for (e, s, h), value in refined.items():
            if value < refine.incumbent_ms:
                refined[(e, s, h)] = max(value, _signature_path(arcs, ends[e, :, h], e, counts[s], part)[0])
    refine.signatures.extend([(e, h, counts[s], part, value) for (e, s, h), value in refined.items()]
                             + [(None, None, None, part, float(rest))])
    return float(min([rest, *refined.values()]))
