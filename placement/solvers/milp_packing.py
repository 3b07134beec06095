"""A packing bound for clusters on one shared medium: whole blocks packed into each device, every message counted.

The device-class bound (`placement.solvers.milp_classes`) is a Lagrangian of the
configuration LP: it fills the fast devices' memory with fractions of layers. On a
shared Wi-Fi channel that is most of its gap, because every layer the fast devices
cannot hold runs several times slower on a small board. This bound keeps memory
integral instead: per interval, a small integer program chooses how many of each
block every device holds (whole FFNs, projections, attention groups, ``embed``,
``lm_head``; docs/milp.md, "A packing bound on a shared medium") and charges

- every block's compute at the device's rate; the attention stages at least the
  projection devices' own groups, and at least a floor that falls as the groups spread
  over more devices (each extra device sends a head-output message);
- every message a plan with those holdings must send, at the least time any plan could
  give it: per device, at least ``(layers with groups here) − (layers whose input is
  here)`` layer inputs received, ``(FFNs here) − (projections here)`` hidden states,
  ``(layers with groups here) − (projections here)`` head outputs sent, and, when no
  device can hold the whole model, at least one message sent and one received by every
  device in use. On a shared medium every transfer takes its turn, so their times add.

A message's time ``T[u, v]`` is split into a sender's part and a receiver's part with
``s_u + r_v ≤ T[u, v]`` (`_split`); a message counted by its receiver is charged
``r`` there and, through a count of the messages each device sends, ``s`` at a sender.
Every plan is feasible for the integer program at no more than its evaluator total
(the proof is in docs/milp.md), so the integer program's dual bound (HiGHS, any time it
stops) is a lower bound.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from placement.cost.tables import block_memory, heads_share_memory, usable_bytes
from placement.instance import Instance
from placement.solvers.milp_bounds import layer_classes
from placement.solvers.milp_model import SECONDS_PER_UNIT, Phase, output_routes, phase_terms
from placement.solvers.milp_pricing import head_outputs

__all__ = ["packing_bound"]

# Per device, in this order: FFNs, projections, embed, lm_head, groups in layers whose projection is here
# (aq) and elsewhere (ao), layers with groups here (b) and with groups but not the projection (bo), layer
# inputs (si), hidden states (sh), lm_head inputs (sl), token ids (st) and head outputs (so) received,
# the same four kinds sent (xi, xh, xl, xt), in use (z), embed and lm_head together (w: tied embeddings
# stored once).
_NAMES = ("f", "p", "e", "h", "aq", "ao", "b", "bo", "si", "sh", "sl", "st", "so", "xi", "xh", "xl", "xt", "z", "w")
# The transfer kinds counted by their receiver, their time tables in `phase_terms`, and their count by sender.
_RECEIVED = {"si": ("t_in", "xi"), "sh": ("t_hidden", "xh"), "sl": ("t_lm", "xl"), "st": ("t_token", "xt")}
# The bound given up to cover rounding in the sums of many small times and HiGHS's tolerances.
_ROUNDING = 1e-7


def _split(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sender and receiver parts ``s, r ≥ −∞`` with ``s_u + r_v ≤ times[u, v]`` for every ``u ≠ v``.

    Coordinate ascent from ``r = 0``: each pass takes the largest ``s`` the current ``r``
    allows and then the largest ``r``; the inequality holds after every pass by
    construction. On a star whose time is a sum of two hops it gives the hops exactly.
    """
    off = np.where(np.eye(len(times), dtype=bool), np.inf, times)
    r = np.zeros(len(times))
    for _ in range(3):
        s = (off - r[None]).min(axis=1)
        r = (off - s[:, None]).min(axis=0)
    return s, r


def _coefficients(instance: Instance, k: int) -> dict:
    """Each variable's time per unit (ms, summed over interval `k`'s tokens and the prefill in interval 0), (N,),
    and ``fastest_group``: the least time of one group on any device (ms)."""
    N, K = instance.n_devices, instance.model.kv_heads
    route, varies = output_routes(instance)
    steps = np.flatnonzero(instance.workload.interval_of_step() == k)
    coef = {name: np.zeros(N) for name in _NAMES}
    coef["fastest_group"] = 0.0  # the least time of one group on any device, summed over the phases
    count = np.arange(1, K + 1)[:, None, None]
    off = ~np.eye(N, dtype=bool)
    for phase in ([Phase(0, None)] if k == 0 else []) + [Phase(0, steps)]:
        t = phase_terms(instance, phase, route, varies)
        for name in ("f", "p", "aq"):
            coef[name] += t[{"f": "ffn", "p": "proj", "aq": "group"}[name]][0]
        coef["e"] += t["embed"]
        coef["fastest_group"] += float(t["group"][0].min())
        coef["h"] += t["lm"]
        # head outputs of j groups: at least `ell + j·beta` from each sender (beta 0 where a route varies by size)
        out = np.moveaxis(head_outputs(t), -1, 0)[1:]  # (j, m, q) for j = 1 … K groups
        beta = np.where(varies.any(axis=1), 0.0, np.where(off, t["out_per_group"], np.inf).min(axis=1))
        s_out, r_out = _split((out - count * beta[None, :, None]).min(axis=0))
        coef["ao"] += beta
        coef["bo"] += s_out
        coef["so"] += r_out
        for name, (key, sender) in _RECEIVED.items():
            s, r = _split(t[key])
            coef[name] += r
            coef[sender] += s
    return coef


def _program(instance: Instance, k: int) -> tuple[np.ndarray, list, np.ndarray, np.ndarray] | None:
    """Interval `k`'s integer program: costs (V·N+1,), constraint rows (matrix, lower, upper), upper bounds, and
    the figures it depends on (its costs, group times and block sizes) for `packing_bound`'s dominance test."""
    N, L, K = instance.n_devices, instance.model.layers, instance.model.kv_heads
    V, at = len(_NAMES), {name: i for i, name in enumerate(_NAMES)}
    coef = _coefficients(instance, k)
    memory = block_memory(instance, instance.precision, instance.workload.interval_max_context()[k:k + 1])
    size = {name: float(np.ravel(getattr(memory, key))[0]) for name, key in
            (("f", "ffn"), ("p", "projection"), ("aq", "group"), ("ao", "group"), ("e", "embed"), ("h", "lm_head"))}
    size["w"] = -size["e"] if heads_share_memory(instance.model, instance.precision) else 0.0
    rows, lower, upper = [], [], []

    def row(terms: dict[str, float | np.ndarray], lo: float, hi: float, m: int | None = None) -> None:
        v = np.zeros(V * N + 1)  # the last column: the attention stages' total (ms)
        for name, weight in terms.items():
            if name == "A":
                v[-1] += weight
            elif m is None:
                v[at[name] * N:(at[name] + 1) * N] += weight
            else:
                v[at[name] * N + m] += weight
        rows.append(v)
        lower.append(lo)
        upper.append(hi)

    # every block placed once; every head output and every message received has a sender
    for terms, n in (({"f": 1}, L), ({"p": 1}, L), ({"aq": 1, "ao": 1}, L * K), ({"e": 1}, 1), ({"h": 1}, 1)):
        row(terms, n, n)
    row({"so": 1, "bo": -1}, 0, 0)
    # the attention stages: at least the projection devices' own groups, and at least K·ĝ/d per layer whose
    # groups span d devices, where Σ(d − 1) ≤ Σ bo; by Jensen Σ_l K·ĝ/d_l ≥ L·K·ĝ / (1 + Σbo/L), convex and
    # decreasing in Σbo: its tangents are valid cuts
    row({"A": 1, "aq": -coef["aq"]}, 0, np.inf)
    floor = L * K * coef["fastest_group"]
    for x0 in L * (2.0 ** np.arange(8) - 1):
        value, slope = floor / (1 + x0 / L), -floor / L / (1 + x0 / L) ** 2
        row({"A": 1, "bo": -slope}, value - slope * x0, np.inf)
    for name, (_, sender) in _RECEIVED.items():
        row({sender: 1, name: -1}, 0, 0)
    usable = usable_bytes(instance)
    whole = L * (size["f"] + size["p"] + K * size["aq"]) + size["e"] + size["h"] + size["w"]
    alone = bool((usable >= whole * (1 - 1e-9)).any())
    for m in range(N):
        row(size, -np.inf, usable[m], m)
        row({"aq": 1, "p": -K}, -np.inf, 0, m)  # groups beside their projection: at most K per projection
        row({"b": K, "aq": -1, "ao": -1}, 0, np.inf, m)
        row({"bo": K, "ao": -1}, 0, np.inf, m)
        row({"bo": 1, "b": -1, "p": 1}, 0, np.inf, m)  # layers with groups here, projection elsewhere
        row({"b": 1, "aq": -1, "ao": -1}, -np.inf, 0, m)  # and no more of them than there are
        row({"bo": 1, "b": -1}, -np.inf, 0, m)
        row({"bo": 1, "ao": -1}, -np.inf, 0, m)
        row({"si": 1, "b": -1, "f": 1, "e": 1}, 0, np.inf, m)  # a layer's input is here for at most f + e layers
        row({"sh": 1, "f": -1, "p": 1}, 0, np.inf, m)
        row({"sl": 1, "h": -1, "f": 1}, 0, np.inf, m)
        row({"st": 1, "e": -1, "h": 1}, 0, np.inf, m)
        row({"so": 1, "p": -min(K, N - 1)}, -np.inf, 0, m)  # a projection hears from at most K others
        # who sends: layer inputs the holders of an FFN or embed (to at most min(K, N−1) group devices each),
        # hidden states the projections' devices, the lm_head input an FFN's, the token lm_head's
        row({"xi": 1, "f": -min(K, N - 1), "e": -min(K, N - 1)}, -np.inf, 0, m)
        row({"xh": 1, "p": -1}, -np.inf, 0, m)
        row({"xl": 1, "f": -1}, -np.inf, 0, m)
        row({"xt": 1, "h": -1}, -np.inf, 0, m)
        row({"w": 1, "e": -1}, -np.inf, 0, m)
        row({"w": 1, "h": -1}, -np.inf, 0, m)
        for name, most in (("f", L), ("p", L), ("aq", L * K), ("ao", L * K), ("e", 1), ("h", 1)):
            row({name: 1, "z": -most}, -np.inf, 0, m)
        if not alone:  # two devices or more are in use: each receives and sends at least one message
            row({"si": 1, "sh": 1, "sl": 1, "st": 1, "so": 1, "z": -1}, 0, np.inf, m)
            row({"xi": 1, "xh": 1, "xl": 1, "xt": 1, "bo": 1, "z": -1}, 0, np.inf, m)
    most = {"f": L, "p": L, "aq": L * K, "ao": L * K, "e": 1, "h": 1, "b": L, "bo": L, "si": L, "sh": L, "sl": 1,
            "st": 1, "so": N * L, "xi": K * (L + 1), "xh": L, "xl": 1, "xt": 1, "z": 1, "w": 1}
    costs = np.concatenate([np.zeros(N) if name == "aq" else coef[name] for name in _NAMES] + [[1.0]])
    if not np.isfinite(costs).all():
        return None  # a pair without a route: no finite part to charge
    upper_bounds = np.concatenate([np.full(N, most[n]) for n in _NAMES] + [[np.inf]])
    # what an interval's program depends on, all non-decreasing in its tightness (`packing_bound`'s dominance)
    key = np.concatenate([costs, coef["aq"], [coef["fastest_group"]], [size[n] for n in ("f", "p", "aq", "e", "h")]])
    return costs, [np.array(rows), np.array(lower), np.array(upper)], upper_bounds, key


def packing_bound(instance: Instance, *, time_limit_s: float) -> float | None:
    """A lower bound on every feasible plan's total latency on a shared medium: whole blocks, every message.

    Parameters
    ----------
    instance : Instance
    time_limit_s : float
        Seconds for the whole call, shared by the intervals in turn (the first decode
        interval and the last first); the bound is valid whenever it stops: an interval
        counts its integer program's dual bound so far, or, not reached, the best bound of
        a solved interval whose program it dominates (every cost and block size at least
        as large: every point feasible for it is feasible there at no higher cost), else 0.

    Returns
    -------
    float or None
        Seconds; None where the bound does not apply: a switched network (transfers
        overlap there), the three-phase profile, a mixture-of-experts model, or layers of
        more than one class.
    """
    if (instance.cluster.network != "shared" or instance.workload.profile == "kafetzis2025"
            or instance.model.is_moe or layer_classes(instance).max() > 0):
        return None
    started = time.perf_counter()
    I = instance.workload.n_intervals
    # the first decode interval and the last first: by dominance their bounds cover the others (below)
    order = list(dict.fromkeys([0, min(1, I - 1), I - 1] + list(range(I))))
    solved: dict[int, tuple[float, np.ndarray]] = {}
    for done, k in enumerate(order):
        left = (started + time_limit_s - time.perf_counter()) / (len(order) - done)
        if left <= 0:
            break
        program = _program(instance, k)
        if program is None:
            return None
        costs, (matrix, lower, upper), most, key = program
        integer = np.r_[np.ones(len(costs) - 1), 0.0]
        result = milp(costs, constraints=LinearConstraint(matrix, lower, upper), integrality=integer,
                      bounds=Bounds(0, most), options={"time_limit": left})
        dual = getattr(result, "mip_dual_bound", None)
        solved[k] = (max(float(dual), 0.0) if dual is not None and np.isfinite(dual) else 0.0, key)
    total = 0.0
    for k in range(I):
        # an interval whose program is dominated by a solved one's (every cost and block size at least as
        # large, so every point feasible for it is feasible there at no higher cost) has at least its bound
        program = None if k in solved else _program(instance, k)
        if k not in solved and program is None:
            continue  # counts 0
        key = solved[k][1] if k in solved else program[3]
        total += max([value for value, other in solved.values() if (key >= other).all()], default=0.0)
    return total * SECONDS_PER_UNIT * (1 - _ROUNDING)
