"""Tensor parallelism with optimal shard ratios, star or ring all-reduce, and sliding-window offload.

After Li et al., "TPI-LLM: Serving 70B-scale LLMs Efficiently on Low-resource Edge
Devices" (arXiv 2410.00531). Every layer is split across the participating devices:
device ``m`` runs ``c_m`` of the layer's ``K`` attention groups with the matching rows
of the output projection (share ``c_m/K``) and a share ``x_m`` of the FFN columns; the
partial sums are combined by two all-reduces per layer (after the projection and
after the FFN). TPI-LLM splits heads evenly; here the ratios are decided optimally.

`solve_tp` enumerates the collective and its one discrete parameter (the star's
master, the ring's size), and for each solves a small MILP (the library's
`ProblemBuilder` and `solve_problem`, HiGHS by default) over the participants ``z``,
the integer group counts ``c``, the FFN shares ``x`` and the device ``e`` of the
embedding and output head, minimizing the generation's latency under memory. The
MILP follows the evaluator term by term; its one relaxation is that the per-token
maximum over devices of the attention stage is summed after, not before, the
maximum (exact when the slowest device is the same for every token, as it is when
every device is memory-bound). Its optimum is therefore a lower bound on every plan of
the class, which `Result.bound` reports. Devices with a ``disk_bandwidth`` may keep
only a window of their layers' weights in memory and stream the rest from disk
(`Plan.windows`); the evaluator charges the disk time compute and communication
cannot hide. Every candidate, and TPI-LLM's even split, goes through the evaluator,
which picks the plan returned (docs/tensor-parallel.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from placement.cost.tables import (
    block_memory, heads_share_memory, phase_totals, prefill_step_costs, step_costs, transfer_times, usable_bytes,
)
from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.result import Result
from placement.solvers.backends import SOLVERS, solve_problem
from placement.solvers.linear import ProblemBuilder
from placement.solvers.milp_model import identical_devices

__all__ = ["solve_tp", "tp_plan", "even_counts"]

TP_COLLECTIVES = ("star", "ring")
OFFLOAD_MODES = ("auto", "never", "always")
SHARE_MODES = ("optimal", "even")
# Every participant keeps at least this share of the FFN, so both all-reduces of a layer
# run over the same devices (what the MILP models).
MIN_FFN_SHARE = 1e-4
_UNIT = 1e-3  # the MILP measures time in milliseconds (as milp_model does)


# ----------------------------------------------------------------------------- plans
def even_counts(K: int, participants: np.ndarray) -> np.ndarray:
    """``K`` groups spread as evenly as possible over `participants` (lower indices get the remainder)."""
    counts = np.zeros(len(participants), dtype=np.int64)
    members = np.flatnonzero(participants)
    counts[members] = K // len(members)
    counts[members[: K % len(members)]] += 1
    return counts


def tp_plan(instance: Instance, counts: np.ndarray, ffn: np.ndarray, master: int, collective: str = "star",
            root: int | None = None, windows: dict[str, int] | None = None) -> Plan:
    """The tensor-parallel plan: every layer split alike, groups `counts` (N,), FFN shares `ffn` (N,).

    The embedding and the output head run on `master`; `root` is the star's master
    (defaults to `master`). Groups are assigned in device order (group ``g`` of every
    layer on the same device), the projection follows the groups (``counts/K``).
    """
    model, N = instance.model, instance.n_devices
    L, K = model.layers, model.kv_heads
    counts = np.asarray(counts, dtype=np.int64)
    attention = np.repeat(np.arange(N), counts)
    share = np.asarray(ffn, dtype=float)
    share = share / share.sum()
    names = instance.cluster.names
    return Plan(
        devices=names,
        intervals=[Placement(
            attention=np.tile(attention, (L, 1)), projection=np.tile(counts / K, (L, 1)), ffn=np.tile(share, (L, 1)),
            embed=int(master), lm_head=int(master),
        )],
        collective=collective,
        root=names[master if root is None else root] if collective == "star" else None,
        method="tp",
        windows=dict(windows or {}),
    )


# ----------------------------------------------------------------------------- the MILP
@dataclass
class _Terms:
    """Costs the MILP needs, from the evaluator's own cost functions (seconds, bytes)."""

    att_p: np.ndarray  # (L, N) one group + 1/K of the projection, prefill
    att_d: np.ndarray  # (L, N) same, summed over decode steps
    ffn_p: np.ndarray  # (L, N) whole FFN, prefill
    ffn_d: np.ndarray  # (L, N) summed over decode steps
    recv_p: np.ndarray  # (N, N) layer input u -> m, prefill
    recv_d: np.ndarray  # (N, N) summed over decode steps
    ends: np.ndarray  # (N,) embed + lm_head on m, prefill + decode
    message_p: float  # all-reduce message, prefill (bytes)
    message_d: float
    steps: int  # decode steps T
    layer_bytes: np.ndarray  # (3, L) weight bytes: one group, projection, FFN
    kv_bytes: np.ndarray  # (L,) one group's KV cache at the largest context
    ends_bytes: float  # embed + lm_head (tied counted once)
    usable: np.ndarray  # (N,)
    disk: np.ndarray  # (N,) disk bandwidth, nan without


def _terms(instance: Instance) -> _Terms:
    model, workload = instance.model, instance.workload
    K, precision = model.kv_heads, instance.precision
    pre = prefill_step_costs(instance, precision)
    dec = step_costs(instance, precision, workload.contexts())

    def parts(costs):
        t = phase_totals(instance, costs)
        return t.group_s + t.projection_s / K, t.ffn_s, t.layer_in_s, t.embed_s + t.lm_head_s

    att_p, ffn_p, recv_p, ends_p = parts(pre)
    att_d, ffn_d, recv_d, ends_d = parts(dec)
    memory = block_memory(instance, precision, workload.interval_max_context()[-1:])
    tied = heads_share_memory(model, precision)
    return _Terms(
        att_p=att_p, att_d=att_d, ffn_p=ffn_p, ffn_d=ffn_d, recv_p=recv_p, recv_d=recv_d, ends=ends_p + ends_d,
        message_p=float(np.max(pre.hidden_bytes)), message_d=float(np.max(dec.hidden_bytes)),
        steps=workload.generate_tokens,
        layer_bytes=np.stack([memory.group_weights[0], memory.projection[0], memory.ffn[0]]),
        kv_bytes=memory.group_kv[0],
        ends_bytes=float(memory.embed[0] + (0 if tied else memory.lm_head[0])),
        usable=usable_bytes(instance),
        disk=np.array([np.nan if d.disk_bandwidth_bytes_per_s is None else d.disk_bandwidth_bytes_per_s
                       for d in instance.devices]),
    )


@dataclass
class _Candidate:
    collective: str
    param: int  # star: root; ring: participants
    model_objective: float  # the MILP's figure (seconds)
    counts: np.ndarray
    ffn: np.ndarray
    master: int
    status: str


def _ring_between(u: int, v: int, N: int) -> list[int]:
    """Devices strictly between u and v going up the cyclic device order."""
    if u < v:
        return list(range(u + 1, v))
    return [w for w in range(N) if w > u or w < v]


def _build(instance: Instance, terms: _Terms, collective: str, param: int, offload: np.ndarray,
           even: np.ndarray | None):
    """The MILP of one collective choice; `offload` (N,) marks devices allowed to stream weights."""
    cluster, model = instance.cluster, instance.model
    N, L, K, T = instance.n_devices, model.layers, model.kv_heads, terms.steps
    shared = cluster.network == "shared"
    b = ProblemBuilder()
    z = b.variables("z", (N,), upper=1, integer=True)
    c = b.variables("c", (N,), upper=K, integer=True)
    x = b.variables("x", (N,), upper=1.0)
    e = b.variables("e", (N,), upper=1, integer=True)
    ms = 1.0 / _UNIT
    base: dict[str, tuple[list, list]] = {"p": ([], []), "d": ([], [])}

    def add(phase: str, cols, coefs) -> None:
        cols = np.asarray(cols)
        base[phase][0].append(cols.ravel())
        base[phase][1].append(np.broadcast_to(np.asarray(coefs, dtype=float), cols.shape).ravel())

    # one of each: K groups, the whole FFN, one master; participants hold a share of both blocks
    b.constraints("groups", c[None], np.ones((1, N)), lower=K, upper=K)
    b.constraints("ffn", x[None], np.ones((1, N)), lower=1, upper=1)
    b.constraints("master", e[None], np.ones((1, N)), lower=1, upper=1)
    b.constraints("groups_on", np.stack([c, z], 1), np.array([1.0, -K]), upper=0)
    b.constraints("groups_min", np.stack([c, z], 1), np.array([1.0, -1.0]), lower=0)
    b.constraints("ffn_on", np.stack([x, z], 1), np.array([1.0, -1.0]), upper=0)
    b.constraints("ffn_min", np.stack([x, z], 1), np.array([1.0, -MIN_FFN_SHARE]), lower=0)
    b.constraints("master_on", np.stack([e, z], 1), np.array([1.0, -1.0]), upper=0)
    if even is not None:  # TPI-LLM's split: fixed participants and groups, FFN as the groups
        b.constraints("even_z", z[:, None], np.ones((N, 1)), lower=even > 0, upper=even > 0)
        b.constraints("even_c", c[:, None], np.ones((N, 1)), lower=even, upper=even)
        share = (even > 0) / (even > 0).sum()
        b.constraints("even_x", x[:, None], np.ones((N, 1)), lower=share, upper=share)

    # Symmetry: identical devices (same figures, same routes) ordered by their groups. A star's
    # root stands apart; a ring's cost depends on the cyclic order of its members, so its
    # devices are ordered only when every route is alike.
    lat_off = cluster.candidate_latency_s[:, ~np.eye(N, dtype=bool)]
    bw_off = cluster.candidate_bandwidth_bytes_per_s[:, ~np.eye(N, dtype=bool)]
    uniform_routes = N < 2 or (np.all(lat_off == lat_off[:, :1]) and np.all(bw_off == bw_off[:, :1]))
    if even is None and (collective == "star" or uniform_routes):
        for members in identical_devices(instance):
            for a, d in zip(members, members[1:]):
                b.constraints("symmetry", np.array([[c[a], c[d]], [z[a], z[d]]]), np.array([[1.0, -1.0], [1.0, -1.0]]), lower=0)

    # Layers whose costs are identical share one stage variable (layer 0 stands alone: it receives the input).
    signature = np.concatenate([terms.att_p, terms.att_d, terms.ffn_p, terms.ffn_d], axis=1)
    _, first, inverse = np.unique(signature[1:], axis=0, return_index=True, return_inverse=True)
    kinds = np.concatenate([[0], first + 1])  # a representative layer of each kind
    kind_count = np.concatenate([[1.0], np.bincount(inverse.ravel(), minlength=len(first))]).astype(float)
    if L == 1:
        kinds, kind_count = np.array([0]), np.array([1.0])

    # layer 0 receives the embedding's output: w[u, m] ≥ e_u + z_m − 1
    w = b.variables("w", (N, N), upper=1.0)
    uu, mm = (a.ravel() for a in np.indices((N, N)))
    off = uu != mm
    b.constraints("recv0", np.stack([w[uu, mm], e[uu], z[mm]], 1)[off], np.array([1.0, -1.0, -1.0]), lower=-1)
    if collective == "star":  # the root, a participant; on a shared network the pairs (root, m) it exchanges with
        rho = b.variables("rho", (N,), upper=1, integer=True)
        b.constraints("root", rho[None], np.ones((1, N)), lower=1, upper=1)
        b.constraints("root_on", np.stack([rho, z], 1), np.array([1.0, -1.0]), upper=0)
        if shared:
            star_pair = b.variables("star_pair", (int(off.sum()),), upper=1.0)
            b.constraints("star_pair", np.stack([star_pair, rho[uu[off]], z[mm[off]]], 1), np.array([1.0, -1.0, -1.0]),
                          lower=-1)

    for phase, att, ffn, recv, scale in (("p", terms.att_p, terms.ffn_p, terms.recv_p, 1),
                                         ("d", terms.att_d, terms.ffn_d, terms.recv_d, T)):
        # attention stage per kind of layer: A[j] ≥ c_m·att[l, m] (+ receive for layer 0); identical layers share one
        G = len(kinds)
        A = b.variables(f"A_{phase}", (G,))
        add(phase, A, kind_count)
        jj, m = np.repeat(np.arange(G), N), np.tile(np.arange(N), G)
        rows = np.stack([A[jj], c[m]], 1)
        coefs = np.stack([np.ones(G * N), -att[kinds[jj], m] * ms], 1)
        keep = jj > 0
        b.constraints(f"att_{phase}", rows[keep], coefs[keep], lower=0)
        recv_cols = w.T  # [m, u]
        b.constraints(f"att0_{phase}", np.concatenate([np.stack([np.full(N, A[0]), c], 1), recv_cols], 1),
                      np.concatenate([np.stack([np.ones(N), -att[0] * ms], 1), -recv.T * ms], 1), lower=0)
        # FFN stage per kind of layer: F[j] ≥ x_m·ffn[l, m]
        F = b.variables(f"F_{phase}", (G,))
        add(phase, F, kind_count)
        b.constraints(f"ffn_{phase}", np.stack([F[jj], x[m]], 1), np.stack([np.ones(G * N), -ffn[kinds[jj], m] * ms], 1),
                      lower=0)
        # two all-reduces per layer
        message = terms.message_p if phase == "p" else terms.message_d
        if collective == "star":  # root rho_r: gather to it, send back; products z_m·rho_r bounded below
            sent = transfer_times(cluster, message)[0] * ms  # each message on its fastest route
            t_up = sent[mm, uu][off]  # m -> r, for (r = uu, m = mm) pairs
            t_down = sent[uu, mm][off]
            pairs_rm = np.stack([uu[off], mm[off]], 1)
            if shared:
                add(phase, star_pair, 2 * L * scale * (t_up + t_down))
            else:
                up = b.variables(f"up_{phase}", (1,))
                down = b.variables(f"down_{phase}", (1,))
                n_pairs = len(pairs_rm)
                for var, t in ((up, t_up), (down, t_down)):
                    b.constraints(f"{'up' if var is up else 'down'}_{phase}",
                                  np.stack([np.full(n_pairs, var[0]), rho[pairs_rm[:, 0]], z[pairs_rm[:, 1]]], 1),
                                  np.stack([np.ones(n_pairs), -t, -t], 1), lower=-t)
                add(phase, [up[0], down[0]], 2 * L * scale)
        elif param >= 2:
            n = param
            pairs = [(u, v) for u in range(N) for v in range(N) if u != v]
            chunk = transfer_times(cluster, message / n)[0]
            t_pair = np.array([chunk[u, v] * ms for u, v in pairs])
            step = b.variables(f"step_{phase}", (len(pairs),) if shared else (1,))
            for i, (u, v) in enumerate(pairs):
                between = _ring_between(u, v, N)
                target = step[i] if shared else step[0]
                cols = np.array([target, z[u], z[v], *z[between]])
                coefs = np.array([1.0, -t_pair[i], -t_pair[i], *([t_pair[i]] * len(between))])
                b.constraints(f"ring_{phase}", cols[None], coefs[None], lower=-t_pair[i])
            add(phase, step, 2 * (n - 1) * 2 * L * scale)
    if collective == "ring":
        b.constraints("ring_size", z[None], np.ones((1, N)), lower=param, upper=param)
    add("d", e, terms.ends * ms)  # both phases' ends, once

    # memory: KV of every layer's groups, the master's embedding and head, and the weights
    # (all of them, or a window of at least 2 layers on a device that streams)
    group_w, proj_w, ffn_w = terms.layer_bytes
    per_layer_c = group_w + proj_w / K  # (L,) bytes per group of a layer
    kv_total = terms.kv_bytes.sum()
    heavy_c, heavy_x = per_layer_c.max(), ffn_w.max()
    usable = terms.usable
    for m in range(N):
        if offload[m]:
            coefs = [kv_total + 2 * heavy_c, 2 * heavy_x, terms.ends_bytes]
        else:
            coefs = [kv_total + per_layer_c.sum(), ffn_w.sum(), terms.ends_bytes]
        b.constraints("memory", np.array([[c[m], x[m], e[m]]]), np.array([coefs]) / usable[m], upper=1.0)

    # disk: a device with window W reads (n − W + 2) layers per step; W ≈ free / layer bytes (relaxed)
    disk_rows = []
    if offload.any():
        D = b.variables("disk", (N,))
        for m in np.flatnonzero(offload):
            # D_m ≥ ((L + 2)·layer_m − free_m) / disk_m, free_m = usable − KV − ends·e_m
            per_s = ms / terms.disk[m]
            cols = np.array([D[m], c[m], x[m], e[m]])
            coefs = np.array([1.0, -(per_layer_c.sum() + 2 * heavy_c + kv_total) * per_s,
                              -(ffn_w.sum() + 2 * heavy_x) * per_s, -terms.ends_bytes * per_s])
            b.constraints("disk", cols[None], coefs[None], lower=-usable[m] * per_s)
            disk_rows.append(D[m])
    if disk_rows:
        # each phase takes at least the slowest device's disk reads (per step)
        for phase, scale in (("p", 1), ("d", T)):
            Z = b.variables(f"Z_{phase}", (1,), cost=1.0)
            cols, coefs = np.concatenate(base[phase][0]), np.concatenate(base[phase][1])
            b.constraints(f"Z_{phase}", np.concatenate([[Z[0]], cols])[None], np.concatenate([[1.0], -coefs])[None], lower=0)
            b.constraints(f"Zdisk_{phase}", np.stack([np.full(len(disk_rows), Z[0]), disk_rows], 1),
                          np.array([1.0, -scale]), lower=0)
    else:
        for phase in ("p", "d"):
            b.add_cost(np.concatenate(base[phase][0]), np.concatenate(base[phase][1]))
    return b.build(), {"z": z, "c": c, "x": x, "e": e, "rho": rho if collective == "star" else None}


def _cutoff(problem, limit: float):
    """`problem` with the row ``objective ≤ limit`` (an incumbent's value: candidates that cannot beat it become infeasible)."""
    matrix = sp.vstack([problem.matrix, sp.csr_matrix(problem.cost[None])], format="csr")
    return replace(problem, matrix=matrix, row_lower=np.append(problem.row_lower, -np.inf),
                   row_upper=np.append(problem.row_upper, limit - problem.offset))


def _ring_lower_bound(instance: Instance, terms: _Terms, n: int) -> float:
    """Seconds the two all-reduces of every layer take at least on a ring of `n` (for pruning)."""
    if n < 2:
        return 0.0
    cluster, L = instance.cluster, instance.model.layers
    off = ~np.eye(instance.n_devices, dtype=bool)
    total = 0.0
    for message, steps in ((terms.message_p, 1), (terms.message_d, terms.steps)):
        edge = transfer_times(cluster, message / n)[0][off].min()
        step = n * edge if cluster.network == "shared" else edge
        total += 2 * L * steps * 2 * (n - 1) * step
    return total


def _windows(instance: Instance, plan: Plan, offload: np.ndarray) -> dict[str, int]:
    """The largest window (layers of weights in memory) each streaming device can afford, from the evaluator's memory."""
    report = evaluate(instance, plan.replace(windows={}))
    p = plan.intervals[0]
    memory = block_memory(instance, instance.precision, instance.workload.interval_max_context()[-1:])
    weights = (np.bincount(p.attention[0], minlength=instance.n_devices)[None] * memory.group_weights[0][:, None]
               + p.projection * memory.projection[0][:, None] + p.ffn * memory.ffn[0][:, None])  # (L, N)
    windows = {}
    for m in np.flatnonzero(offload):
        need, limit = report.peak_memory_bytes[:, m].max(), report.memory_limit_bytes[m]
        if need <= limit:
            continue
        layers = np.sort(weights[:, m][weights[:, m] > 0])[::-1]
        rest = need - layers.sum()
        fits = np.flatnonzero(rest + np.cumsum(layers) <= limit)
        windows[instance.cluster.names[m]] = max(2, int(fits[-1]) + 1 if len(fits) else 2)
    return windows


# ----------------------------------------------------------------------------- entry point
def solve_tp(
    instance: Instance,
    *,
    collectives: tuple[str, ...] | list[str] = TP_COLLECTIVES,
    shares: str = "optimal",
    offload: str = "auto",
    solver: str = "highs",
    time_limit: float | None = None,
) -> Result:
    """Tensor-parallel placement: participants, shard ratios, all-reduce and offload windows.

    Parameters
    ----------
    instance : Instance
    collectives : sequence of {"star", "ring"}
        The all-reduces to consider (each with every master, or every ring size).
    shares : {"optimal", "even"}
        ``optimal``: the MILP's integer group counts and FFN shares; ``even``: TPI-LLM's
        even split over the first ``min(N, K)`` devices (the collective still chosen).
    offload : {"auto", "never", "always"}
        Whether devices with a ``disk_bandwidth`` may keep only a window of their
        layers' weights in memory: ``auto`` only when no plan fits in memory.
    solver : {"highs", "cbc", "ortools"}
    time_limit : float, optional
        Seconds for each MILP.

    Returns
    -------
    Result
        The evaluator's best candidate; ``objective`` is its ``report.total_s``;
        ``bound`` the least MILP optimum (a lower bound on every tensor-parallel plan of
        the class); ``stats["candidates"]`` every candidate's evaluated total.

    Raises
    ------
    InputError
        On an unknown option value.

    Examples
    --------
    >>> from placement import load_instance
    >>> result = solve_tp(load_instance("edge/llama-3.2-1b-4dev"))
    >>> result.objective == result.report.total_s
    True
    """
    chosen = _check_options(collectives, shares, offload, solver, time_limit)
    started = time.perf_counter()
    terms = _terms(instance)
    N, K = instance.n_devices, instance.model.kv_heads
    has_disk = ~np.isnan(terms.disk)
    modes = {"never": [False], "always": [True], "auto": [False, True]}[offload]
    best: tuple[float, Plan, Any] | None = None
    candidates: list[dict[str, Any]] = []
    bound = math.inf
    all_optimal = True
    for streaming in modes:
        if streaming and not has_disk.any():
            break
        allowed = has_disk & streaming
        splits = [even_counts(K, np.arange(N) < min(N, K))] if shares == "even" else [None]
        if shares == "optimal":  # TPI-LLM's even split too, so the optimum is never worse than it
            splits.append(even_counts(K, np.arange(N) < min(N, K)))
        for even in splits:
            choices = [("star", 0)] if "star" in chosen else []
            if "ring" in chosen:
                choices += [("ring", n) for n in (range(1, min(N, K) + 1) if even is None else [int((even > 0).sum())])]
            for kind, param in choices:
                incumbent = best[0][1] if best is not None and not best[0][0] else math.inf
                if kind == "ring" and _ring_lower_bound(instance, terms, param) >= incumbent:
                    bound = min(bound, _ring_lower_bound(instance, terms, param)) if even is None else bound
                    continue  # larger rings only cost more latency
                problem, cols = _build(instance, terms, kind, param, allowed, even)
                if math.isfinite(incumbent):  # the MILP's optimum is a lower bound: only a better plan matters
                    problem = _cutoff(problem, incumbent / _UNIT)
                outcome = solve_problem(problem, solver, time_limit=time_limit)
                if even is None:
                    all_optimal &= outcome.status in ("optimal", "infeasible")
                    if outcome.bound is not None and outcome.x is not None:
                        bound = min(bound, outcome.bound * _UNIT)
                if outcome.x is None:
                    continue
                xv = outcome.x
                counts = np.round(xv[cols["c"]]).astype(np.int64)
                ffn = np.where(counts > 0, np.maximum(xv[cols["x"]], 0.0), 0.0)
                master = int(np.argmax(xv[cols["e"]]))
                root = int(np.argmax(xv[cols["rho"]])) if kind == "star" else None
                plan = tp_plan(instance, counts, ffn, master, kind, root=root)
                if streaming:
                    plan = plan.replace(windows=_windows(instance, plan, allowed))
                report = evaluate(instance, plan)
                candidates.append({"collective": kind, "devices": int((counts > 0).sum()), "split": "even" if even is not None
                                   else "optimal", "offload": streaming, "model_s": outcome.objective * _UNIT,
                                   "total_s": report.total_s, "feasible": report.feasible})
                key = (not report.feasible, report.total_s)
                if best is None or key < best[0]:
                    best = (key, plan, report, outcome.objective * _UNIT)
        if best is not None and not best[0][0]:
            break  # a plan fits without streaming weights: offload could only add disk time
    elapsed = time.perf_counter() - started
    stats = {"candidates": candidates, "decision_time_s": elapsed}
    if best is None:
        return Result("infeasible", "no tensor-parallel plan fits in memory"
                      + ("" if has_disk.any() else "; give devices a `disk_bandwidth` to stream weights from disk"),
                      None, None, stats=stats)
    (_, total), plan, report, model_s = best
    p = plan.intervals[0]
    counts = np.bincount(p.attention[0], minlength=N)
    names = instance.cluster.names
    parts = ", ".join(f"{names[m]}: {counts[m]} groups, FFN {p.ffn[0, m]:.3f}" for m in np.flatnonzero(counts))
    what = f"{plan.collective}" + (f" (master {plan.root})" if plan.root else "") + f" over {len(np.flatnonzero(counts))} devices"
    windows = f"; windows {plan.windows}" if plan.windows else ""
    if not report.feasible:
        worst = max(report.violations, key=lambda v: v.over_bytes)
        return Result("infeasible", f"tensor parallel {what} does not fit: {worst}", plan, report,
                      objective=report.total_s, stats=stats, backend_objective=model_s)
    # The MILP's bound holds for the evaluator's figures only where its model is the evaluator's
    # (not under kafetzis2025, whose summed head transfers it approximates).
    model_exact = abs(model_s - total) <= 1e-9 * max(total, 1e-12)
    bound = min(bound, total) if model_exact and shares == "optimal" else None
    exact = all_optimal and bound is not None and abs(total - bound) <= 1e-9 * max(total, 1e-12)
    return Result("optimal" if exact else "feasible", f"tensor parallel {what} ({parts}){windows}", plan, report,
                  objective=report.total_s, bound=bound, stats=stats, backend_objective=model_s)


def _check_options(collectives, shares, offload, solver, time_limit) -> list[str]:
    if isinstance(collectives, str):
        collectives = [collectives]
    chosen = list(dict.fromkeys(collectives))
    unknown = [c for c in chosen if c not in TP_COLLECTIVES]
    if unknown or not chosen:
        raise InputError(f"option `collectives`: {unknown or 'empty'} is not supported; give one or more of "
                         f"{', '.join(TP_COLLECTIVES)} (a tree never beats the star in the cost model: docs/tensor-parallel.md)")
    if shares not in SHARE_MODES:
        raise InputError(f"option `shares` must be one of {', '.join(SHARE_MODES)}, got {shares!r}")
    if offload not in OFFLOAD_MODES:
        raise InputError(f"option `offload` must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
    if solver not in SOLVERS:
        raise InputError(f"option `solver` must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0):
        raise InputError(f"option `time_limit` must be a positive number of seconds, got {time_limit!r}")
    return chosen
