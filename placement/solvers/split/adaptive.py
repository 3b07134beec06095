"""Split computing: the `split-adaptive` back end (the split layer may change at every interval).

The method: `placement.solvers.split`; the formulation: docs/split.md.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from placement.cost.tolerances import MEMORY_RTOL
from placement.errors import InputError
from placement.instance import Instance
from placement.result import Result
from placement.solvers.split.configuration import DEFAULT_ACTIVATION_BITS, DEFAULT_KV_BITS, DEFAULT_OUTLIER_FRACTIONS, DEFAULT_WEIGHT_BITS, check_options, config_extras, split_plan
from placement.solvers.split.tables import mixed_layers_message, split_tables
from placement.solvers.split.search import axis, config_at, error_grid, finish, grid, limits, prune_activations, search

__all__ = ["solve_split_adaptive"]


def solve_split_adaptive(instance: Instance, *, device: str | None = None, server: str | None = None,
                         weight_bits=DEFAULT_WEIGHT_BITS, kv_bits=DEFAULT_KV_BITS,
                         activation_bits=DEFAULT_ACTIVATION_BITS, outlier_fractions=DEFAULT_OUTLIER_FRACTIONS,
                         accuracy=None, max_distortion: float | None = None, latency_budget_s: float | None = None,
                         workspace_bytes: float | None = None, chunk: int = 256) -> Result:
    """Split computing whose split layer may change at every re-decision interval of the instance.

    As the context grows, the device may hand layers (with their KV caches) to the
    server, or take some back, at the start of an interval; the move is charged as
    the evaluator charges migration (one transfer per moved block: its weights at the
    destination's precision and its KV cache at that moment). The precision setting
    ``(w1, c1, w2, c2, b, f)`` is fixed for the generation; the split sequence
    ``ℓ_0 … ℓ_{I-1}`` is chosen by dynamic programming over intervals, exactly, for
    every setting whose lower bound (each interval at its own best split, no
    migration) beats the incumbent, starting from the static optimum (`solve_split`).
    So the result is the proven optimum over fixed-precision split sequences. Memory
    is judged at every interval's largest context; the accuracy and latency budgets
    hold in every interval.

    Parameters
    ----------
    instance : Instance
        Its ``workload.interval`` sets the re-decision points.
    chunk : int
        Precision settings per vectorised DP batch (memory: ``chunk·(L+1)²`` floats).
    Other parameters
        As `solve_split`.

    Returns
    -------
    Result
        ``optimal`` with one placement per interval (``plan.extras["split"]["split_layers"]``),
        objective = the evaluator's total (migration included), seconds; ``infeasible``
        with the reason when no sequence fits.
    """
    start = time.perf_counter()
    mixed = mixed_layers_message(instance, "split-adaptive")
    if mixed is not None:
        return Result("error", mixed, None, None)
    if not (isinstance(chunk, int) and chunk >= 1):
        raise InputError(f"`chunk` must be a positive whole number, got {chunk!r}")
    dev, srv, weights, kvs, acts, model, budget, workspace = check_options(
        instance, device, server, weight_bits, kv_bits, activation_bits, outlier_fractions, accuracy,
        max_distortion, latency_budget_s, workspace_bytes)
    acts, pruned = prune_activations(model, acts)
    L, I = instance.model.layers, instance.workload.n_intervals
    t = split_tables(instance, dev, srv, weights, kvs, acts)
    static = search(instance, dev, srv, weights, kvs, acts, model, budget, latency_budget_s, workspace, t)
    nW, nC, nA = len(weights), len(kvs), len(acts)
    error = error_grid(instance, model, weights, kvs, acts)
    shape = error.shape
    S = int(np.prod(shape[1:]))
    cost = _interval_costs(instance, t, (dev, srv), (nW, nC, nA), error <= budget * (1 + 1e-9) + 1e-300,
                           latency_budget_s, workspace).reshape(I, L + 1, S)
    bound = cost.min(axis=1).sum(axis=0)  # (S,)
    incumbent = static.value_s if static.config is not None else np.inf
    order = np.argsort(bound, kind="stable")
    order = order[bound[order] < incumbent * (1 - 1e-12)] if np.isfinite(incumbent) else order[np.isfinite(bound[order])]
    stats: dict[str, Any] = {"configurations": static.stats["configurations"], "pruned_activation_settings": pruned,
                             "settings": S, "settings_searched": 0, "static_objective_s": static.value_s}

    best_value, best = _sequences(t, cost, order, bound, incumbent, np.unravel_index(np.arange(S), shape[1:]), nC,
                                  chunk, stats)
    if best is None and static.config is None:
        stats["decision_time_s"] = time.perf_counter() - start
        return Result("infeasible", static.message.replace("at the final context", "in some interval"), None, None,
                      stats=stats)
    if best is None:  # the static optimum is optimal among split sequences too
        cfg = static.config
        splits = [cfg.split] * I
        setting_index = static.index[1:]
    else:
        setting, splits = best
        a, b, c, d, e = np.unravel_index(setting, shape[1:])
        cfg = config_at(dev, srv, (splits[0], a, b, c, d, e), weights, kvs, acts, L)
        setting_index = (a, b, c, d, e)
    configs = [config_at(dev, srv, (s,) + tuple(int(x) for x in setting_index), weights, kvs, acts, L) for s in splits]
    errors = [float(error[(s,) + tuple(int(x) for x in setting_index)]) for s in splits]
    worst_error = max(errors)
    extras = config_extras(instance, cfg, worst_error if np.isfinite(worst_error) else None, None)
    extras.update({"split_layer": splits[0], "split_layers": splits, "distortion_per_interval": errors})
    placements = [split_plan(instance, c) for c in configs] if I > 1 else [split_plan(instance, configs[0])]
    moves = sum(a != b for a, b in zip(splits, splits[1:]))
    message = (f"split layers {splits} over {I} interval(s) ({moves} move(s)); {cfg.describe(instance.model.layers)}"
               f" [first interval]; DP over {stats['settings_searched']} of {S} precision settings")
    if not t.one_route:  # the DP prices moves on the minimum-latency route; the evaluator routes each block by size
        message += "; migration priced on the minimum-latency route (optimality not proven)"
    return finish(instance, placements, "split-adaptive", extras, worst_error if np.isfinite(worst_error) else None,
                   "optimal" if t.one_route else "feasible", message, best_value, stats, start)


def _interval_costs(instance: Instance, t, endpoints: tuple[int, int], sizes: tuple[int, int, int], acc_ok: np.ndarray,
                    latency_budget_s: float | None, workspace: float) -> np.ndarray:
    """Seconds of every configuration in every interval (inf where memory, accuracy or latency rule it out)."""
    dev, srv = endpoints
    L, I = instance.model.layers, instance.workload.n_intervals
    dev_limit, srv_limit = limits(instance, dev, srv)
    split_ok = axis(np.arange(L + 1) == L, 0) | t.reachable
    cost = np.empty((I,) + acc_ok.shape)
    for k in range(I):
        total, worst, dev_b, srv_b = grid(instance, t, *sizes, k, workspace)
        ok = (dev_b <= dev_limit * (1 + MEMORY_RTOL)) & (srv_b <= srv_limit * (1 + MEMORY_RTOL)) & split_ok & acc_ok
        if latency_budget_s is not None:
            ok = ok & (worst <= latency_budget_s)
        cost[k] = np.where(ok, total, np.inf)
    return cost


def _sequences(t, cost: np.ndarray, order: np.ndarray, bound: np.ndarray, incumbent: float, index, nC: int,
               chunk: int, stats: dict) -> tuple[float, tuple[int, list[int]] | None]:
    """The best split sequence over the settings in `order` (chunks of `chunk`), by dynamic programming.

    Migration of n layers at interval k: per setting, bytes of one layer at the destination
    precision, on the minimum-latency route. Returns the best total and (setting, splits),
    or the incumbent and None when no setting beats it.
    """
    I, L = cost.shape[0], cost.shape[1] - 1
    i1, k1, i2, k2, _ = index
    j_front, j_back = i1 * nC + k1, i2 * nC + k2
    lat, bw, blocks = t.route_latency_s, t.route_bandwidth, t.blocks_per_layer
    prev, nxt = np.arange(L + 1)[:, None, None], np.arange(L + 1)[None, :, None]
    down, up = np.maximum(prev - nxt, 0), np.maximum(nxt - prev, 0)  # layers moving device -> server, and back
    head_down, head_up = (prev == L) & (nxt < L), (nxt == L) & (prev < L)
    count = (down + up) * blocks + head_down + head_up
    best_value, best = incumbent, None
    for begin in range(0, len(order), chunk):
        ids = order[begin:begin + chunk]
        ids = ids[bound[ids] < best_value * (1 - 1e-12)] if np.isfinite(best_value) else ids
        if not len(ids):
            break
        stats["settings_searched"] += len(ids)
        value = cost[0][:, ids]  # (L+1, n)
        back_pointers = []
        for k in range(1, I):
            move_bytes = (down * t.layer_move_bytes[k][j_back[ids]] + head_down * t.head_bytes[i2[ids]]
                          + up * t.layer_move_bytes[k][j_front[ids]] + head_up * t.head_bytes[i1[ids]])
            migration = np.where(count > 0, count * lat + move_bytes / bw, 0.0)  # (L+1, L+1, n)
            candidate = value[:, None, :] + migration
            pointer = candidate.argmin(axis=0)  # (L+1, n)
            value = np.take_along_axis(candidate, pointer[None], axis=0)[0] + cost[k][:, ids]
            back_pointers.append(pointer)
        end = value.argmin(axis=0)
        finals = value[end, np.arange(len(ids))]
        which = int(np.argmin(finals))
        if finals[which] < best_value * (1 - 1e-12) or (best is None and np.isfinite(finals[which])
                                                          and not np.isfinite(best_value)):
            splits = [int(end[which])]
            for pointer in reversed(back_pointers):
                splits.append(int(pointer[splits[-1], which]))
            best_value, best = float(finals[which]), (int(ids[which]), splits[::-1])
    return best_value, best
