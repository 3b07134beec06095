"""Split computing: the exhaustive search over the static grid, its diagnosis, and the result it reports.

The method: `placement.solvers.split`; the formulation: docs/split.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from placement.cost.accuracy import AccuracyModel, DistortionProxy
from placement.cost.tolerances import MEMORY_RTOL
from placement.cost.units import format_bytes, format_seconds
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.result import Result
from placement.solvers.split.configuration import SplitConfig, error_figures
from placement.solvers.split.tables import SplitTables, split_tables

__all__ = ["AXES", "axis", "grid", "error_grid", "prune_activations", "SearchResult", "limits", "config_at", "max_context", "search", "diagnose", "finish"]


AXES = 6  # (ℓ, w1, c1, w2, c2, activation)


def axis(values, axis: int) -> np.ndarray:
    """`values` as an array along grid axis `axis` (of the six: ℓ, w1, c1, w2, c2, activation).

    Parameters
    ----------
    values : array_like
    axis : int

    Returns
    -------
    ndarray
        Shape 1 on every other axis.
    """
    shape = [1] * AXES
    shape[axis] = -1
    return np.asarray(values).reshape(shape)


def grid(instance: Instance, t: SplitTables, nW: int, nC: int, nA: int, row: int | None, workspace: float):
    """Total latency, worst decode step, device and server bytes of every static configuration.

    Parameters
    ----------
    instance : Instance
    t : SplitTables
    nW, nC, nA : int
        Weight, KV and activation settings in the grid.
    row : int or None
        None: the whole generation (memory at the last interval's end); an int: interval `row` only.
    workspace : float
        Bytes kept free on each device.

    Returns
    -------
    total_s, worst_s, device_bytes, server_bytes : ndarray
        Broadcast to (L+1, nW, nC, nW, nC, nA); seconds and bytes.
    """
    model = instance.model
    L = model.layers
    l = axis(np.arange(L + 1), 0)
    full = l == L
    pick = (lambda x: x.sum(axis=0)) if row is None else (lambda x: x[row])
    last = -1 if row is None else row
    w1 = lambda x: axis(x, 1)  # noqa: E731
    w2 = lambda x: axis(x, 3)  # noqa: E731

    def total(lt, emb, head, hop, tok):
        lt = lt.reshape(nW, nC, 2)
        front = w1(emb) + l * lt[:, :, 0][None, :, :, None, None, None] + np.where(full, w1(head[:, 0]), 0.0)
        back = (L - l) * lt[:, :, 1][None, None, None, :, :, None] + w2(head[:, 1]) + tok + axis(hop, 5)
        return front + np.where(full, 0.0, back)

    total_s = total(pick(t.layer_s), pick(t.embed_s), pick(t.head_s), pick(t.hop_s), pick(t.token_s))
    worst_s = total(t.layer_last_s[last], t.embed_last_s[last], t.head_last_s[last], t.hop_last_s[last], t.token_last_s)
    mem = t.layer_bytes[last].reshape(nW, nC)
    device_head = np.zeros(nW) if model.tied_embeddings else t.head_bytes  # ℓ = L: same device, same bits
    device_bytes = w1(t.embed_bytes) + l * mem[None, :, :, None, None, None] + np.where(full, w1(device_head), 0.0) + workspace
    server_bytes = np.where(full, 0.0, (L - l) * mem[None, None, None, :, :, None] + w2(t.head_bytes) + workspace)
    return total_s, worst_s, device_bytes, server_bytes


def error_grid(instance: Instance, accuracy: AccuracyModel, weights, kvs, acts) -> np.ndarray:
    """The accuracy model's error of every configuration of the grid.

    Parameters
    ----------
    instance : Instance
    accuracy : AccuracyModel
    weights, kvs : ndarray
        Bit widths.
    acts : list of (bits, outlier fraction, effective bits)

    Returns
    -------
    ndarray, shape (L+1, nW, nC, nW, nC, nA)
    """
    L = instance.model.layers
    bits = np.array([a[0] for a in acts])
    fractions = np.array([a[1] for a in acts])
    error = accuracy.error(L, axis(np.arange(L + 1), 0), axis(weights, 1), axis(kvs, 2), axis(weights, 3),
                           axis(kvs, 4), axis(bits, 5), axis(fractions, 5))
    return np.broadcast_to(np.asarray(error, dtype=float), (L + 1, len(weights), len(kvs), len(weights), len(kvs), len(acts)))


def prune_activations(accuracy: AccuracyModel, acts: list) -> tuple[list, int]:
    """Drop activation settings another beats in both bytes and error (proxy only: its term is split-independent).

    Parameters
    ----------
    accuracy : AccuracyModel
    acts : list of (bits, outlier fraction, effective bits)

    Returns
    -------
    (list, int)
        The settings kept, and how many were dropped.
    """
    if not isinstance(accuracy, DistortionProxy) or len(acts) < 2:
        return acts, 0
    eff = np.array([a[2] for a in acts])
    err = accuracy.activation_error([a[0] for a in acts], [a[1] for a in acts])
    keep = []
    for i in range(len(acts)):
        better = (eff <= eff[i]) & (err <= err[i]) & ((eff < eff[i]) | (err < err[i]))
        if not better.any():
            keep.append(acts[i])
    return keep, len(acts) - len(keep)


@dataclass
class SearchResult:
    """The outcome of a static search."""

    config: SplitConfig | None
    value_s: float
    error: float | None
    max_context: float | None
    message: str
    stats: dict[str, Any]
    index: tuple = ()


def limits(instance: Instance, dev: int, srv: int) -> tuple[float, float]:
    """Usable bytes of the device and of the server.

    Parameters
    ----------
    instance : Instance
    dev, srv : int

    Returns
    -------
    (float, float)
    """
    return instance.devices[dev].usable_bytes, instance.devices[srv].usable_bytes


def config_at(dev, srv, index, weights, kvs, acts, layers: int) -> SplitConfig:
    """The configuration at a grid index; settings that cannot matter are shown canonically.

    With ``ℓ = L`` there is no back segment and no crossing (back = front, 16-bit
    activations); with ``ℓ = 0`` the front holds only the embedding (its KV bits = the back's).

    Parameters
    ----------
    dev, srv : int
    index : tuple of int
        ``(ℓ, w1, c1, w2, c2, activation)`` indices.
    weights, kvs, acts
        The grid's settings.
    layers : int

    Returns
    -------
    SplitConfig
    """
    l, i1, k1, i2, k2, a = (int(x) for x in index)
    b, f, eff = acts[a]
    w1, c1, w2, c2 = float(weights[i1]), float(kvs[k1]), float(weights[i2]), float(kvs[k2])
    if l == layers:
        w2, c2, b, f, eff = w1, c1, 16.0, 0.0, 16.0
    elif l == 0:
        c1 = c2
    return SplitConfig(dev, srv, l, w1, c1, w2, c2, b, f, eff)


def max_context(instance: Instance, t: SplitTables, cfg: SplitConfig, device_bytes: float, server_bytes: float,
                 weights, kvs) -> float | None:
    """Largest context both devices hold with this configuration.

    Parameters
    ----------
    instance : Instance
    t : SplitTables
    cfg : SplitConfig
    device_bytes, server_bytes : float
        What the configuration needs at the final context.
    weights, kvs
        The grid's settings.

    Returns
    -------
    float or None
        Tokens; None when the KV cache does not limit it.
    """
    nC = len(kvs)
    end = float(instance.workload.interval_max_context()[-1])
    dev_limit, srv_limit = limits(instance, cfg.device, cfg.server)
    j1 = int(np.flatnonzero(weights == cfg.w_front)[0]) * nC + int(np.flatnonzero(kvs == cfg.kv_front)[0])
    j2 = int(np.flatnonzero(weights == cfg.w_back)[0]) * nC + int(np.flatnonzero(kvs == cfg.kv_back)[0])
    L = instance.model.layers
    best = np.inf
    for slack, growth in ((dev_limit - device_bytes, cfg.split * t.layer_growth_bytes[j1]),
                          (srv_limit - server_bytes, (L - cfg.split) * t.layer_growth_bytes[j2])):
        if growth > 0:
            best = min(best, end + np.floor(max(slack, 0.0) / growth))
    return None if not np.isfinite(best) else float(best)


def search(instance: Instance, dev: int, srv: int, weights, kvs, acts, accuracy: AccuracyModel,
            max_distortion: float | None, latency_budget_s: float | None, workspace: float,
            t: SplitTables | None = None) -> SearchResult:
    """Exact search of the static problem; the message explains an infeasible one.

    Parameters
    ----------
    instance : Instance
    dev, srv : int
    weights, kvs, acts
        The grid's settings.
    accuracy : AccuracyModel
    max_distortion, latency_budget_s : float or None
        Budgets (error; seconds per decode step).
    workspace : float
        Bytes kept free on each device.
    t : SplitTables, optional
        Tables already built.

    Returns
    -------
    SearchResult
    """
    L = instance.model.layers
    if t is None:
        t = split_tables(instance, dev, srv, weights, kvs, acts)
    total, worst, dev_bytes, srv_bytes = grid(instance, t, len(weights), len(kvs), len(acts), None, workspace)
    error = error_grid(instance, accuracy, weights, kvs, acts)
    shape = error.shape
    dev_limit, srv_limit = limits(instance, dev, srv)
    split_ok = axis(np.arange(L + 1) == L, 0) | t.reachable
    mem_ok = (dev_bytes <= dev_limit * (1 + MEMORY_RTOL)) & (srv_bytes <= srv_limit * (1 + MEMORY_RTOL)) & split_ok
    acc_ok = np.ones(shape, dtype=bool) if max_distortion is None else error <= max_distortion * (1 + 1e-9) + 1e-300
    lat_ok = True if latency_budget_s is None else worst <= latency_budget_s
    ok = np.broadcast_to(mem_ok & acc_ok & lat_ok, shape)
    value = np.where(ok, total, np.inf)
    flat = int(np.argmin(value))
    stats: dict[str, Any] = {"configurations": int(np.prod(shape)), "feasible_configurations": int(ok.sum())}
    if not np.isfinite(value.flat[flat]):
        message = diagnose(instance, dev, srv, t, weights, kvs, acts, total, worst, dev_bytes, srv_bytes, error,
                            mem_ok, acc_ok, lat_ok, max_distortion, latency_budget_s, workspace, split_ok)
        return SearchResult(None, np.inf, None, None, message, stats)
    index = np.unravel_index(flat, shape)
    cfg = config_at(dev, srv, index, weights, kvs, acts, L)
    err = float(error[index])
    dev_b = float(np.broadcast_to(dev_bytes, shape)[index])
    srv_b = float(np.broadcast_to(srv_bytes, shape)[index])
    return SearchResult(cfg, float(value.flat[flat]), err if np.isfinite(err) else None,
                   max_context(instance, t, cfg, dev_b, srv_b, weights, kvs), "", stats, tuple(int(x) for x in index))


def diagnose(instance, dev, srv, t, weights, kvs, acts, total, worst, dev_bytes, srv_bytes, error,
              mem_ok, acc_ok, lat_ok, max_distortion, latency_budget_s, workspace, split_ok) -> str:
    """Why nothing is feasible, and the smallest change that would make something feasible.

    Parameters
    ----------
    instance, dev, srv, t, weights, kvs, acts
        As in `search`.
    total, worst, dev_bytes, srv_bytes, error : ndarray
        The grid's figures.
    mem_ok, acc_ok, lat_ok, split_ok : ndarray of bool
        Which configurations meet each condition.
    max_distortion, latency_budget_s, workspace
        The budgets.

    Returns
    -------
    str
    """
    names = instance.cluster.names
    shape = error.shape
    dev_limit, srv_limit = limits(instance, dev, srv)
    lowest = float(weights.min())
    notes = []
    if not t.reachable:
        why = "the instance has a single device" if dev == srv else f"no route from {names[dev]!r} to {names[srv]!r}"
        notes.append(f"the server is unreachable ({why}), so only the whole model on the device is possible")
    embed_need = float(t.embed_bytes.min()) + workspace
    if embed_need > dev_limit * (1 + MEMORY_RTOL):
        return (f"device {names[dev]!r} cannot hold even the embedding at {lowest:g} bits: it needs "
                f"{format_bytes(embed_need)} (embedding {format_bytes(float(t.embed_bytes.min()))} + workspace "
                f"{format_bytes(workspace)}), has {format_bytes(dev_limit)}; give it at least {format_bytes(embed_need)}")
    acc_b = np.broadcast_to(acc_ok, shape)
    mem_b = np.broadcast_to(mem_ok, shape)
    if not (mem_b & acc_b).any():
        if not acc_b.any():
            reach = np.nanmin(np.where(np.isfinite(error), error, np.inf))
            return ("; ".join(notes + [f"no configuration meets the accuracy budget {max_distortion:.4g} "
                                       f"(the least error any configuration has is {reach:.4g}); raise `max_distortion` to at least {reach:.4g}"]))
        # memory: the least extra bytes over the configurations that meet the accuracy budget
        over = np.maximum(np.broadcast_to(dev_bytes, shape) - dev_limit, 0) + \
            np.maximum(np.broadcast_to(srv_bytes, shape) - srv_limit, 0)
        over = np.where(acc_b & np.broadcast_to(split_ok, shape), over, np.inf)
        index = np.unravel_index(int(np.argmin(over)), shape)
        cfg = config_at(dev, srv, index, weights, kvs, acts, instance.model.layers)
        d_over = float(np.broadcast_to(dev_bytes, shape)[index]) - dev_limit
        s_over = float(np.broadcast_to(srv_bytes, shape)[index]) - srv_limit
        parts = []
        if d_over > 0:
            parts.append(f"device {names[dev]!r} {format_bytes(d_over)} more (has {format_bytes(dev_limit)})")
        if s_over > 0:
            parts.append(f"server {names[srv]!r} {format_bytes(s_over)} more (has {format_bytes(srv_limit)})")
        budget = "" if max_distortion is None else " within the accuracy budget"
        return "; ".join(notes + [f"no configuration{budget} fits in memory at the final context "
                                  f"({int(instance.workload.interval_max_context()[-1])} tokens); the closest "
                                  f"({cfg.describe(instance.model.layers)}) needs {' and '.join(parts)}"])
    lat_b = np.broadcast_to(lat_ok, shape)
    reach = float(np.min(np.where(mem_b & acc_b, np.broadcast_to(worst, shape), np.inf)))
    if not (mem_b & acc_b & lat_b).any():
        return "; ".join(notes + [f"no configuration meets the latency budget {format_seconds(latency_budget_s)} per token "
                                  f"within memory and accuracy; the fastest worst-case token reachable is "
                                  f"{format_seconds(reach)}: raise `latency_budget_s` to at least {reach:.6g}"])
    return "; ".join(notes + ["no configuration is feasible"])  # pragma: no cover - the cases above are exhaustive


def finish(instance: Instance, placements: list[Placement], method: str, extras: dict, error: float | None,
            status: str, message: str, value: float, stats: dict, start: float, client: str | None = None) -> Result:
    """The result of a split back end: its plan judged by the evaluator.

    Parameters
    ----------
    instance : Instance
    placements : list of Placement
    method : str
    extras : dict
        ``plan.extras["split"]``.
    error : float or None
    status, message : str
    value : float
        What the search believed the total to be, seconds (`Result.backend_objective`).
    stats : dict
    start : float
        ``time.perf_counter()`` at the start of the decision.
    client : str, optional

    Returns
    -------
    Result
    """
    plan = Plan(devices=instance.cluster.names, intervals=placements, method=method,
                extras={"split": extras, "errors": error_figures(error)}, client=client)
    stats = {**stats, "decision_time_s": time.perf_counter() - start}
    report = evaluate(instance, plan)
    if not report.feasible:
        worst = max(report.violations, key=lambda v: v.over_bytes)
        return Result("infeasible", f"{message}, but it does not fit: {worst}", plan, report,
                      objective=report.total_s, stats=stats, backend_objective=value)
    return Result(status, message, plan, report, objective=report.total_s, stats=stats, backend_objective=value)
