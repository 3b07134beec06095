"""Branching over signatures with exact per-token costs (docs/milp.md, "Branching over signatures").

The signature bound (`milp_signatures`) splits the plans by signature — FFNs per device,
the embedding's device and `lm_head`'s — and bounds each signature's plans by a
Lagrangian over priced paths. Priced with one token block per interval, it cannot see
that the evaluator charges each token its own maximum over the chains of a layer's
group devices (docs/milp.md, "Token blocks"): on `milp/llama-3.2-1b-6dev-tight` it stops
0.06 % short. Here every configuration of a layer (input device, projection device, FFN
device, groups per device) is enumerated and costed **exactly**, token by token, as the
evaluator does; the same branch over signatures then runs on these exact costs: the
signatures are taken best bound first, each below the incumbent gets its own memory
multipliers (a Lagrangian bound on its plans), signatures whose bound reaches the
incumbent are pruned, and any cheapest path that fits every device is a real placement
whose exact cost is its evaluator figure.

The branch is for one interval (the refinement of `milp_signatures` is per interval).
With several intervals the same tables bound static plans (one placement throughout:
`static_exact_bound`) and changing plans (runs of intervals kept in one placement, each
run's bound, the least move between runs: `changing_exact_bound`) apart. All of it needs count vectors
of a layer's groups few enough to enumerate (`MAX_COMPOSITIONS`), no experts, and head
outputs not gathered in a third phase.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Callable

import numpy as np
import scipy.sparse as sp

from placement.cost.tables import block_memory, heads_share_memory, usable_bytes
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.solvers.linear import LinearProblem
from placement.solvers.milp_bounds import layer_classes
from placement.solvers.milp_model import SECONDS_PER_UNIT, Phase, output_routes, phase_terms, profile_sends_input
from placement.solvers.milp_pricing import attention_stage
from placement.solvers.milp_signatures import Refinement, SignatureTables, signature_bound

__all__ = ["ExactTables", "ExactBound", "Signature", "MAX_COMPOSITIONS", "exact_tables", "exact_signature_bound",
           "interval_exact_bound", "static_exact_bound", "least_move_s", "changing_exact_bound", "chosen_runs",
           "covered_bounds", "least_changing_total", "horizon_exact_bound", "compositions",
           "restrict_to_signature", "close_signatures"]

# Most count vectors of one layer's groups over the devices (C(K+N−1, N−1)): 6,435 for 8 groups on 8 devices.
MAX_COMPOSITIONS = 20_000
# Elementary operations a second the signature DPs get through (numpy, the loaded 2-core VM): sizes their work.
_OPS_PER_S = 3e7
# Elements of the per-token stage arrays built a second (tokens × N³ × splits; 4·10⁷ measured on the tight
# instance, loaded 2-core VM, halved for safety): tables that would take over a third of the time are declined.
_TABLE_ELEMENTS_PER_S = 2e7
_ROUNDING = 1e-9  # the bound is lowered by this (relative) for rounding, as `milp_bounds` does


def compositions(total: int, parts: int) -> np.ndarray:
    """Every vector of `parts` non-negative integers summing to `total`, shape (C(total+parts−1, parts−1), parts)."""
    rows = []
    for bars in combinations(range(total + parts - 1), parts - 1):
        edges = np.array((-1,) + bars + (total + parts - 1,))
        rows.append(np.diff(edges) - 1)
    return np.array(rows, dtype=np.int64).reshape(-1, parts)


@dataclass(frozen=True, eq=False)
class ExactTables:
    """One interval's configurations, costed token by token, and the memory of every block.

    Attributes
    ----------
    counts : ndarray of int, shape (C, N)
        Every split of a layer's groups over the devices.
    stage : ndarray, shape (classes, N_u, N_q, C)
        The attention stage summed over the interval's tokens (and the prefill), each token
        its own maximum over the chains of the group devices, ms; input on ``u``,
        projection on ``q``.
    rest : ndarray, shape (classes, N_q, N_v)
        Projection on ``q``, its output to the FFN on ``v``, the FFN: summed, ms.
    ends : ndarray, shape (N_e, N_v, N_h)
        Embedding on ``e``, the last layer's output on ``v`` sent to ``lm_head`` on ``h``,
        ``lm_head``, the token id back: summed, ms.
    group, projection, ffn : ndarray, shape (classes, N)
        One group (with its cache at the interval's largest context), the projection, the
        FFN, as fractions of each device's usable memory.
    ends_memory : ndarray, shape (N_e, N_h, N)
        The embedding and ``lm_head`` as fractions of each device (tied tables counted once).
    labels : ndarray of int, shape (L,)
        The class of each layer (`milp_bounds.layer_classes`).
    """

    counts: np.ndarray
    stage: np.ndarray
    rest: np.ndarray
    ends: np.ndarray
    group: np.ndarray
    projection: np.ndarray
    ffn: np.ndarray
    ends_memory: np.ndarray
    labels: np.ndarray


def exact_tables(instance: Instance, k: int | None = 0, time_limit_s: float | None = None, *,
                 run: tuple[int, int] | None = None) -> ExactTables | None:
    """Interval `k`'s configurations costed token by token (`ExactTables`), or None when out of scope.

    Parameters
    ----------
    instance : Instance
    k : int or None
        The interval (its decode steps; the prefill too when ``k = 0``); None: the whole
        generation, memory at its largest context (what a placement kept throughout needs).
    time_limit_s : float, optional
        Seconds the caller has: tables estimated to need more than a third of it are declined.
    run : (int, int), optional
        Intervals ``first ≤ k < stop`` together (overrides `k`): their tokens summed, memory
        at interval ``stop − 1``'s largest context (what a placement kept over the run needs).

    Returns
    -------
    ExactTables or None
        None when the group splits exceed `MAX_COMPOSITIONS`, the tables would not fit a
        third of `time_limit_s`, the model has experts, or the profile gathers head outputs
        in a third phase (``sum_gather``).
    """
    K, N = instance.model.kv_heads, instance.n_devices
    splits = comb(K + N - 1, N - 1)
    if splits > MAX_COMPOSITIONS or instance.model.is_moe:
        return None
    if run is None:
        run = (0, instance.workload.n_intervals) if k is None else (k, k + 1)
    of_step = instance.workload.interval_of_step()
    steps = np.flatnonzero((of_step >= run[0]) & (of_step < run[1]))
    phases = ([Phase(0, None)] if run[0] == 0 else []) + [Phase(0, steps[i:i + 1]) for i in range(len(steps))]
    labels = layer_classes(instance)
    work = len(phases) * (int(labels.max()) + 1) * N ** 3 * splits
    if time_limit_s is not None and work / _TABLE_ELEMENTS_PER_S > time_limit_s / 3:
        return None
    counts = compositions(K, N)
    route, varies = output_routes(instance)
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(int(labels.max()) + 1)]
    shared, sends_input = instance.cluster.network == "shared", profile_sends_input(instance)
    stage = np.zeros((len(firsts), N, N, len(counts)))
    totals: dict = {}
    for phase in phases:  # each token its own maximum: the stage is summed after the max, everything else before
        terms = phase_terms(instance, phase, route, varies)
        if terms["sum_gather"]:
            return None
        for c, layer in enumerate(firsts):
            stage[c] += attention_stage(terms, layer, counts[None, None], np.arange(N)[:, None, None],
                                        np.arange(N)[None, :, None], shared, sends_input)  # (u, q, counts)
        for key in ("proj", "ffn", "t_hidden", "embed", "t_lm", "lm", "t_token"):
            totals[key] = totals.get(key, 0.0) + terms[key]
    rest = np.stack([totals["proj"][layer][:, None] + totals["t_hidden"] + totals["ffn"][layer][None, :]
                     for layer in firsts])
    ends = totals["embed"][:, None, None] + totals["t_lm"][None] + totals["lm"][None, None] \
        + totals["t_token"].T[:, None, :]
    usable = usable_bytes(instance)
    largest = instance.workload.interval_max_context()
    memory = block_memory(instance, instance.precision, largest[run[1] - 1:run[1]])
    per = lambda a: np.asarray(a, dtype=float)[0][firsts][:, None] / usable[None, :]  # noqa: E731
    embed = float(np.ravel(memory.embed)[0]) / usable
    lm_head = float(np.ravel(memory.lm_head)[0]) / usable
    eye = np.eye(N)
    tied = heads_share_memory(instance.model, instance.precision)
    ends_memory = eye[:, None, :] * embed + eye[None, :, :] * lm_head \
        - (eye[:, :, None] * eye[:, None, :]) * (embed if tied else 0.0)
    return ExactTables(counts, stage, rest, ends, per(memory.group), per(memory.projection), per(memory.ffn),
                       ends_memory, labels)


def _pricer(tables: ExactTables):
    """``price(pi)`` for `milp_signatures.Refinement`: arcs (L, N, N) and ends (N, N, N) at memory multipliers
    `pi` (ms), each arc's memory (L, N, N, N), and the chosen configurations (for `_placement`)."""
    N = tables.counts.shape[1]
    eye = np.eye(N)

    def price(pi: np.ndarray):
        arcs, memory, choices = [], [], []
        for c in range(tables.stage.shape[0]):
            groups = tables.counts * tables.group[c]  # (C, m) memory fractions
            priced = tables.stage[c] + (groups @ pi)[None, None] + (pi * tables.projection[c])[None, :, None]
            best = priced.argmin(axis=2)  # (u, q)
            through = np.take_along_axis(priced, best[..., None], axis=2)[..., 0][:, :, None] \
                + tables.rest[c][None] + (pi * tables.ffn[c])[None, None, :]  # (u, q, v)
            q = through.argmin(axis=1)  # (u, v)
            arcs.append(np.take_along_axis(through, q[:, None], axis=1)[:, 0])
            chosen = best[np.arange(N)[:, None], q]  # (u, v): the configuration's index
            memory.append(groups[chosen] + eye[q] * tables.projection[c] + eye[None, :, :] * tables.ffn[c])
            choices.append((q, chosen))
        ends = tables.ends + np.einsum("ehm,m->eh", tables.ends_memory, pi)[:, None, :] - pi.sum()
        labels = tables.labels
        return (np.stack([arcs[c] for c in labels]), np.stack([memory[c] for c in labels]), ends, choices)
    return price


def _placement(tables: ExactTables, e: int, h: int, path: list[tuple[int, int]], choices: list) -> Placement:
    """The placement of a cheapest path: each layer's arc ``(u, v)`` with the configuration the pricing chose."""
    N = tables.counts.shape[1]
    attention, projection, ffn = [], np.zeros((len(path), N)), np.zeros((len(path), N))
    for l, (u, v) in enumerate(path):
        q, chosen = choices[int(tables.labels[l])]
        attention.append(np.repeat(np.arange(N), tables.counts[chosen[u, v]]))
        projection[l, q[u, v]] = ffn[l, v] = 1.0
    return Placement(np.stack(attention), projection, ffn, e, h)


@dataclass(frozen=True, eq=False)
class Signature:
    """What a signature fixes, and a lower bound on its plans.

    Attributes
    ----------
    embed, lm_head : int
        Devices of the embedding and of ``lm_head``.
    ffn_counts : ndarray of int, shape (P,)
        FFNs held by each part of the devices (summing to the layers).
    part : ndarray of int, shape (N,)
        The part of each device (each tracked device its own part, the untracked rest one).
    bound_s : float
        A lower bound on the total of every feasible plan of this signature, s.
    """

    embed: int
    lm_head: int
    ffn_counts: np.ndarray
    part: np.ndarray
    bound_s: float


@dataclass(frozen=True)
class ExactBound:
    """The signature bound at exact per-token costs.

    Attributes
    ----------
    bound_s : float
        A lower bound on every feasible plan, s.
    found : list of Placement
        Cheapest paths met that fit every device: real placements.
    open : list of Signature
        The refined signatures whose bound is still below the incumbent given, best first.
    unreached_s : float
        The least bound of the signatures not refined (``inf`` when every one below the
        incumbent was), s.
    """

    bound_s: float
    found: list
    open: list
    unreached_s: float


def _refined(instance: Instance, tables: ExactTables, incumbent_ms: float, deadline_s: float, work: float,
             exhaustive: bool) -> tuple[float, Refinement]:
    """The signature bound of one interval on exact tables (ms), signatures below `incumbent_ms` refined."""
    N = tables.counts.shape[1]
    price = _pricer(tables)
    arcs, _, ends, _ = price(np.zeros(N))
    free = SignatureTables([arcs], ends[None], tables.ffn[tables.labels].min(axis=0)[None], tables.ends_memory[None])
    refine = Refinement(price, incumbent_ms, deadline_s, exhaustive=exhaustive)
    return signature_bound(instance, [free], migration=False, work_limit=work, refine=refine), refine


def exact_signature_bound(instance: Instance, incumbent_s: float, *, time_limit_s: float,
                          tables: ExactTables | None = None) -> ExactBound | None:
    """A lower bound on every feasible plan at exact per-token costs, over signatures (one interval).

    Every signature below `incumbent_s` is refined (its own memory multipliers,
    `milp_signatures.refined_bound`) on the exact tables, best bound first, until
    90 % of `time_limit_s`.

    Parameters
    ----------
    instance : Instance
        One interval (``workload.n_intervals == 1``).
    incumbent_s : float
        Total of a known feasible plan, s: signatures whose bound reaches it are pruned.
    time_limit_s : float
        Seconds for the whole call; signatures not refined by then keep their bound at
        memory multipliers zero, still valid.
    tables : ExactTables, optional
        `exact_tables` of interval 0, if already built.

    Returns
    -------
    ExactBound or None
        None when out of scope (several intervals, or `exact_tables` declines, also when its
        tables would take over a third of `time_limit_s`).
    """
    started = time.perf_counter()
    if instance.workload.n_intervals != 1:
        return None
    tables = tables if tables is not None else exact_tables(instance, time_limit_s=time_limit_s)
    if tables is None:
        return None
    bound_ms, refine = _refined(instance, tables, incumbent_s / SECONDS_PER_UNIT, started + 0.9 * time_limit_s,
                                0.3 * time_limit_s * _OPS_PER_S, exhaustive=True)
    to_s = SECONDS_PER_UNIT * (1 - _ROUNDING)
    found = [_placement(tables, e, h, path, choices) for e, h, path, choices in refine.found]
    refined = [Signature(e, h, np.asarray(c), np.asarray(part), value * to_s)
               for e, h, c, part, value in refine.signatures if e is not None and value * to_s < incumbent_s]
    unreached = min([value for e, *_, value in refine.signatures if e is None], default=bound_ms)
    return ExactBound(max(bound_ms, 0.0) * to_s, found, sorted(refined, key=lambda s: s.bound_s),
                      max(unreached, 0.0) * to_s)


def interval_exact_bound(instance: Instance, interval_costs_s: np.ndarray, *,
                         time_limit_s: float) -> tuple[float, list[Placement]] | None:
    """Several intervals: the sum over intervals of each one's signature bound at exact per-token costs.

    Every interval's cost (its decode steps, and the prefill in interval 0) is bounded by
    the one-interval signature bound on its exact tables, signatures refined while below
    the known plan's cost of that interval; migration (≥ 0) is dropped. Each interval's
    placement must fit at that interval's largest context, so the sum bounds every
    feasible plan's total.

    Parameters
    ----------
    instance : Instance
    interval_costs_s : ndarray, shape (I,)
        A feasible plan's cost of each interval without migration, s: the refinement's targets
        (any values keep the bound valid; a plan's make it stop where it can no longer help).
    time_limit_s : float
        Seconds for the whole call, shared by the intervals in turn.

    Returns
    -------
    (float, list of Placement) or None
        The bound, s, and the placements of the last interval met on the way that fit every
        device there (caches only grow: they fit every interval, static plans for the
        caller to judge); None when some interval's tables are out of scope or out of time.
    """
    started, I = time.perf_counter(), instance.workload.n_intervals
    total_s, found = 0.0, []
    for k in range(I):
        done = _run_bound(instance, (k, k + 1), float(interval_costs_s[k]), started + time_limit_s * (k + 1) / I)
        if done is None:
            return None
        total_s += done[0]
        found = done[1]
    return total_s, found


def _run_bound(instance: Instance, run: tuple[int, int], target_s: float,
               deadline_s: float) -> tuple[float, list[Placement]] | None:
    """One run of intervals kept in one placement: its exact signature bound, s, and the fitting placements met."""
    tables = exact_tables(instance, time_limit_s=max(deadline_s - time.perf_counter(), 0.0), run=run)
    if tables is None:
        return None
    left = max(deadline_s - time.perf_counter(), 0.0)
    bound_ms, refine = _refined(instance, tables, target_s / SECONDS_PER_UNIT, time.perf_counter() + 0.9 * left,
                                0.3 * left * _OPS_PER_S, exhaustive=False)
    found = [_placement(tables, e, h, path, choices) for e, h, path, choices in refine.found]
    return max(bound_ms, 0.0) * SECONDS_PER_UNIT * (1 - _ROUNDING), found


def chosen_runs(n_intervals: int) -> list[tuple[int, int]]:
    """The runs ``[first, stop)`` whose bounds `changing_exact_bound` computes beyond single intervals, shortest first.

    Every run shorter than the horizon when there are at most 8 intervals (at most 35); the
    dyadic ones (``[a·2^l, (a+1)·2^l)``) otherwise, so that each length costs the tokens of one
    whole generation.
    """
    I = n_intervals
    if I <= 8:
        return [(i, i + n) for n in range(2, I) for i in range(I - n + 1)]
    runs, n = [], 2
    while n < I:
        runs += [(i, i + n) for i in range(0, I - n + 1, n)]
        n *= 2
    return runs


def covered_bounds(n_intervals: int, bounds: dict[tuple[int, int], float]) -> np.ndarray:
    """``R[i, j]``: the best bound on a run ``[i, j)`` kept in one placement from runs with known bounds, s.

    The run's cost is the sum of its pieces' costs in the same placement, each at least its
    own bound (the placement fits each piece's largest context, as it fits the run's), so the
    most any partition of ``[i, j)`` into runs of `bounds` sums to is a bound (−inf when none covers it).

    Parameters
    ----------
    n_intervals : int
    bounds : dict
        ``(first, stop) → s``, a lower bound on every placement's cost over that run.

    Returns
    -------
    ndarray, shape (I + 1, I + 1)
    """
    I = n_intervals
    cover = np.full((I + 1, I + 1), -np.inf)
    for j in range(1, I + 1):
        for i in range(j - 1, -1, -1):
            cover[i, j] = max([bounds.get((i, j), -np.inf)]
                              + [cover[i, m] + bounds[(m, j)] for m in range(i + 1, j) if (m, j) in bounds])
    return cover


def least_changing_total(cover: np.ndarray, move_s: float) -> float:
    """The least over partitions of the horizon into ≥ 2 runs of Σ ``cover[run]`` + (runs − 1)·`move_s`, s.

    Parameters
    ----------
    cover : ndarray, shape (I + 1, I + 1)
        `covered_bounds`.
    move_s : float
        The least migration at a boundary where the placement changes, s (`least_move_s`).

    Returns
    -------
    float
        inf with one interval (no plan changes).
    """
    I = cover.shape[0] - 1
    one = cover[0].copy()  # one run from 0 to j
    many = np.full(I + 1, np.inf)  # ≥ 2 runs from 0 to j
    for j in range(2, I + 1):
        many[j] = min(min(one[m], many[m]) + move_s + cover[m, j] for m in range(1, j))
    return float(many[I])


def changing_exact_bound(instance: Instance, interval_costs_s: np.ndarray, *,
                         time_limit_s: float) -> tuple[float, list[Placement]] | None:
    """A lower bound on every plan whose placement changes at some boundary, at exact per-token costs.

    Such a plan is a sequence of ≥ 2 runs of intervals, each kept in one placement, with a
    move of at least `least_move_s` between runs. Each run costs at least its `covered_bounds`
    figure, built from every interval's exact signature bound (half the time; 85 % beyond 8
    intervals) and those of the `chosen_runs` met in the rest (each run its exact tables, memory at its largest
    context); `least_changing_total` takes the cheapest partition (docs/milp.md, "Changing plans by runs").

    Parameters
    ----------
    instance : Instance
    interval_costs_s : ndarray, shape (I,)
        A feasible plan's cost of each interval without migration, s: a run's refinement
        target is their sum over it (any values keep the bound valid).
    time_limit_s : float
        Seconds for the whole call.

    Returns
    -------
    (float, list of Placement) or None
        The bound, s, and the fitting placements met on runs that end at the last interval
        (they fit every interval: static plans for the caller to judge); None when some single
        interval's tables are out of scope or out of time.
    """
    started, I = time.perf_counter(), instance.workload.n_intervals
    singles = [(k, k + 1) for k in range(I)]
    extra = chosen_runs(I)
    # Many intervals: the single intervals' refinement is what most of the bound rests on (at 32 intervals on
    # edge-real a half of the time for them lost more than the dyadic runs gained), so the runs get the leftovers.
    first = 0.5 if I <= 8 else 0.85  # of the time, for the single intervals
    bounds: dict[tuple[int, int], float] = {}
    found: list[Placement] = []
    for n, run in enumerate(singles + extra):
        share = first * (n + 1) / I if n < I else first + (1 - first) * (n + 1 - I) / len(extra)
        done = _run_bound(instance, run, float(np.sum(interval_costs_s[run[0]:run[1]])),
                          started + time_limit_s * share)
        if done is None and n < I:
            return None
        if done is not None:
            bounds[run] = done[0]
            found += done[1] if run[1] == I else []
    return least_changing_total(covered_bounds(I, bounds), least_move_s(instance)), found


def least_move_s(instance: Instance) -> float:
    """The least migration time of any plan whose placement changes at some boundary, s.

    A change moves at least one block (a group with its cache, a projection, an FFN, the
    embedding or ``lm_head``) between two devices as one message (`evaluate`'s migration
    rule); the cheapest is the smallest block at the first boundary's context on the
    fastest route between any two devices. 0 with one interval or one device.
    """
    workload, N = instance.workload, instance.n_devices
    if workload.n_intervals == 1 or N == 1:
        return 0.0
    memory = block_memory(instance, instance.precision, np.array([workload.prompt_tokens + workload.tau]))
    sizes = np.concatenate([np.ravel(memory.group), np.ravel(memory.projection), np.ravel(memory.ffn),
                            np.ravel(memory.embed), np.ravel(memory.lm_head)])
    times = instance.cluster.message_time_s(np.array([sizes.min()]))[0]
    return float(times[~np.eye(N, dtype=bool)].min())


def static_exact_bound(instance: Instance, incumbent_s: float, *,
                       time_limit_s: float) -> tuple[float, list[Placement]] | None:
    """A lower bound on every plan that keeps one placement for the whole generation, at exact per-token costs.

    Such a plan fits every interval exactly when it fits the last (caches only grow), and
    costs the sum over all tokens: one interval's signature bound on `exact_tables` of the
    whole generation (``k=None``), signatures below `incumbent_s` refined.

    Parameters
    ----------
    instance : Instance
    incumbent_s : float
        A feasible plan's total, s: the refinement's target.
    time_limit_s : float

    Returns
    -------
    (float, list of Placement) or None
        The bound, s, and the fitting placements met (static plans for the caller to
        judge); None when the tables are out of scope or out of time.
    """
    started = time.perf_counter()
    tables = exact_tables(instance, None, time_limit_s=time_limit_s)
    if tables is None:
        return None
    left = max(started + time_limit_s - time.perf_counter(), 0.0)
    bound_ms, refine = _refined(instance, tables, incumbent_s / SECONDS_PER_UNIT, time.perf_counter() + 0.9 * left,
                                0.3 * left * _OPS_PER_S, exhaustive=False)
    found = [_placement(tables, e, h, path, choices) for e, h, path, choices in refine.found]
    return max(bound_ms, 0.0) * SECONDS_PER_UNIT * (1 - _ROUNDING), found


def horizon_exact_bound(instance: Instance, plan: Plan, known_s: float, *, budget_s: float,
                        stats: dict) -> tuple[float, Plan]:
    """Several intervals: `known_s` raised to the least of a bound on static plans and one on changing plans.

    Static plans: `static_exact_bound` (half the budget). Changing plans: the cheapest
    partition into runs of their exact bounds plus a least move between runs
    (`changing_exact_bound`, the other half), or `known_s` when larger. Every plan is one
    or the other.

    Parameters
    ----------
    instance : Instance
    plan : Plan
        A feasible plan: its total and per-interval costs are the refinements' targets.
    known_s : float
        A bound on every plan already known, s (the configuration stage's).
    budget_s : float
        Seconds for the whole call.
    stats : dict
        Updated with ``static_exact_bound_s``, ``changing_exact_bound_s``, ``least_move_s``.

    Returns
    -------
    (float, Plan)
        The bound, s (never below `known_s`), and the better of `plan` and the static plans met.
    """
    I = instance.workload.n_intervals
    report = evaluate(instance, plan)
    if not report.feasible or report.total_s - known_s <= 1e-6 * report.total_s:
        return known_s, plan
    costs = np.bincount(instance.workload.interval_of_step(), weights=report.decode_s, minlength=I)
    costs[0] += report.ttft_s
    static = static_exact_bound(instance, report.total_s, time_limit_s=0.5 * budget_s)
    switching = None if static is None else changing_exact_bound(instance, costs, time_limit_s=0.5 * budget_s)
    if switching is None:
        return known_s, plan
    stats.update(static_exact_bound_s=static[0], changing_exact_bound_s=switching[0], least_move_s=least_move_s(instance))
    best, best_s = plan, report.total_s
    for placement in static[1] + switching[1]:
        candidate = Plan(instance.cluster.names, [placement] * I, method="milp")
        candidate_report = evaluate(instance, candidate)
        if candidate_report.feasible and candidate_report.total_s < best_s:
            best, best_s = candidate, candidate_report.total_s
    return max(known_s, min(static[0], max(switching[0], known_s))), best


def restrict_to_signature(problem: LinearProblem, signature: Signature) -> LinearProblem:
    """The one-interval per-layer MILP (`milp_model`) restricted to the plans of `signature`.

    Adds one row per part, ``Σ_l Σ_{v ∈ part} f[0, l, v] = ffn_counts[part]``, and fixes
    ``e[0, embed] = h[0, lm_head] = 1`` by column bounds (the assignment rows zero the rest).

    Parameters
    ----------
    problem : LinearProblem
        A formulation of one interval, with families ``f`` (1, L, N), ``e`` and ``h`` (1, N).
    signature : Signature

    Returns
    -------
    LinearProblem
        The problem with the rows appended (row family ``signature``) and the bounds fixed.
    """
    fam = problem.families
    f = fam["f"][0]  # (L, N)
    parts = len(signature.ffn_counts)
    rows = [np.full(f[:, signature.part == p].size, p) for p in range(parts)]
    cols = [f[:, signature.part == p].ravel() for p in range(parts)]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    extra = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(parts, problem.shape[1]))
    counts = np.asarray(signature.ffn_counts, dtype=float)
    lower = problem.col_lower.copy()
    lower[fam["e"][0][signature.embed]] = lower[fam["h"][0][signature.lm_head]] = 1.0
    start = problem.shape[0]
    return LinearProblem(problem.cost, sp.vstack([problem.matrix, extra], format="csr"),
                         np.concatenate([problem.row_lower, counts]), np.concatenate([problem.row_upper, counts]),
                         lower, problem.col_upper, problem.integer, problem.offset, problem.families,
                         {**problem.row_families, "signature": (start, start + parts)})


def close_signatures(bound: ExactBound, incumbent: tuple[Plan | None, float],
                     solve: Callable[[Signature, float], tuple[float, Plan | None, float | None]],
                     deadline_s: float, gap: float = 1e-6) -> tuple[float, Plan | None, float, int]:
    """Branch: each open signature, best bound first, solved exactly (`solve`) until the gap closes or time runs out.

    Parameters
    ----------
    bound : ExactBound
    incumbent : (Plan or None, float)
        The best plan known and its evaluator total, s.
    solve : callable
        ``solve(signature, deadline_s) -> (bound_s, plan, total_s)``: a lower
        bound on the signature's plans (``inf`` when it has none) and the best plan of it
        found (None) with its total; the per-layer MILP restricted to the signature (`milp`).
    deadline_s : float
        ``time.perf_counter()`` value after which no signature is started.
    gap : float
        A signature whose bound is within this relative gap of the incumbent is pruned
        (the optimality tolerance `milp` proves plans to).

    Returns
    -------
    (float, Plan or None, float, int)
        The global bound, s (the least of the incumbent, the signatures not refined and the
        open signatures' bounds), the best plan (None if none beat `incumbent`), its total,
        and how many signatures were solved.
    """
    plan, best_s = None, incumbent[1]
    lows, solved = [], 0
    for index, signature in enumerate(bound.open):
        if signature.bound_s >= best_s * (1 - gap) or time.perf_counter() > deadline_s:
            lows.append(signature.bound_s)  # the least of the rest (sorted): pruned within the gap, or not reached
            break
        low, found, total = solve(signature, deadline_s)
        solved += 1
        if found is not None and total < best_s:
            plan, best_s = found, total
        lows.append(max(signature.bound_s, low))
    return float(min([best_s, bound.unreached_s, *lows])), plan, best_s, solved
