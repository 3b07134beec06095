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
from typing import Any

import numpy as np

from placement.cost.tables import block_memory
from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.result import Result
from placement.solvers.backends import SOLVERS, solve_problem
from placement.solvers.tp_model import UNIT_S, build_tp_model, ring_lower_bound_s, tp_terms, with_cutoff

__all__ = ["solve_tp", "tp_plan", "even_counts"]

TP_COLLECTIVES = ("star", "ring")
OFFLOAD_MODES = ("auto", "never", "always")
SHARE_MODES = ("optimal", "even")


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
    terms = tp_terms(instance)
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
            for kind, param in _choices(chosen, min(N, K), even):
                incumbent = best[0][1] if best is not None and not best[0][0] else math.inf
                if kind == "ring" and ring_lower_bound_s(instance, terms, param) >= incumbent:
                    bound = min(bound, ring_lower_bound_s(instance, terms, param)) if even is None else bound
                    continue  # larger rings only cost more latency
                problem, cols = build_tp_model(instance, terms, kind, param, allowed, even)
                if math.isfinite(incumbent):  # the MILP's optimum is a lower bound: only a better plan matters
                    problem = with_cutoff(problem, incumbent / UNIT_S)
                outcome = solve_problem(problem, solver, time_limit=time_limit)
                if even is None:
                    all_optimal &= outcome.status in ("optimal", "infeasible")
                    if outcome.bound is not None and outcome.x is not None:
                        bound = min(bound, outcome.bound * UNIT_S)
                if outcome.x is None:
                    continue
                plan = _read_plan(instance, outcome.x, cols, kind, allowed if streaming else None)
                report = evaluate(instance, plan)
                devices = len(np.unique(plan.intervals[0].attention[0]))  # devices holding groups
                candidates.append({"collective": kind, "devices": devices, "split": "even" if even is not None
                                   else "optimal", "offload": streaming, "model_s": outcome.objective * UNIT_S,
                                   "total_s": report.total_s, "feasible": report.feasible})
                key = (not report.feasible, report.total_s)
                if best is None or key < best[0]:
                    best = (key, plan, report, outcome.objective * UNIT_S)
        if best is not None and not best[0][0]:
            break  # a plan fits without streaming weights: offload could only add disk time
    elapsed = time.perf_counter() - started
    stats = {"candidates": candidates, "decision_time_s": elapsed}
    if best is None:
        return Result("infeasible", "no tensor-parallel plan fits in memory"
                      + ("" if has_disk.any() else "; give devices a `disk_bandwidth` to stream weights from disk"),
                      None, None, stats=stats)
    (_, total), plan, report, model_s = best
    return _verdict(instance, plan, report, total, model_s, bound if shares == "optimal" else None, all_optimal, stats)


def _choices(chosen, most: int, even: np.ndarray | None) -> list[tuple[str, int]]:
    """The collective choices to solve: the star, and rings of 1…`most` participants (the even split's own size)."""
    choices = [("star", 0)] if "star" in chosen else []
    if "ring" in chosen:
        choices += [("ring", n) for n in (range(1, most + 1) if even is None else [int((even > 0).sum())])]
    return choices


def _read_plan(instance: Instance, xv: np.ndarray, cols: dict, kind: str, streaming: np.ndarray | None) -> Plan:
    """The plan of a MILP solution: groups, FFN shares, master, root; windows on the devices that stream."""
    counts = np.round(xv[cols["c"]]).astype(np.int64)
    ffn = np.where(counts > 0, np.maximum(xv[cols["x"]], 0.0), 0.0)
    master = int(np.argmax(xv[cols["e"]]))
    root = int(np.argmax(xv[cols["rho"]])) if kind == "star" else None
    plan = tp_plan(instance, counts, ffn, master, kind, root=root)
    return plan if streaming is None else plan.replace(windows=_windows(instance, plan, streaming))


def _verdict(instance: Instance, plan: Plan, report, total: float, model_s: float, bound: float | None,
             all_optimal: bool, stats: dict) -> Result:
    """The back end's result: ``optimal`` only where its model is the evaluator's and the bound closes."""
    p = plan.intervals[0]
    counts = np.bincount(p.attention[0], minlength=instance.n_devices)
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
    bound = min(bound, total) if model_exact and bound is not None else None
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
