"""Split computing: every cost term of a split plan, from the shared tables (`placement.cost.tables`).

The method: `placement.solvers.split`; the formulation: docs/split.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from placement.cost.tables import block_memory, block_times, prefill_step_costs, step_costs
from placement.cost.precision import Precision
from placement.instance import Instance

__all__ = ["SplitTables", "split_tables", "mixed_layers_message"]


def mixed_layers_message(instance: Instance, method: str) -> str | None:
    """Why `method` cannot split this model, or None: its tables price copies of one layer.

    Parameters
    ----------
    instance : Instance
    method : str

    Returns
    -------
    str or None
    """
    model = instance.model
    if model.uniform_layers:
        return None
    return (f"method `{method}` prices every layer alike, and model {model.name!r} has layers of different types "
            "(sliding-window and full attention, or dense and MoE layers); use `pipeline-dp` or `milp` for it")


@dataclass
class SplitTables:
    """Terms of the evaluator's total for split plans, per interval of the instance.

    Row ``k`` sums the decode steps of interval ``k`` (row 0 also the prefill);
    ``*_last`` are the last decode step of each interval (for the latency budget). Index ``j`` runs over the (weight, KV) bit pairs,
    ``i`` over the weight bits, ``a`` over the activation settings; device 0 is the
    device, 1 the server.
    """

    layer_s: np.ndarray  # (I, J, 2)
    layer_last_s: np.ndarray  # (I, J, 2)
    embed_s: np.ndarray  # (I, nW)  on the device
    embed_last_s: np.ndarray  # (I, nW)
    head_s: np.ndarray  # (I, nW, 2)
    head_last_s: np.ndarray  # (I, nW, 2)
    hop_s: np.ndarray  # (I, nA)  device -> server
    hop_last_s: np.ndarray  # (I, nA)
    token_s: np.ndarray  # (I,)  server -> device
    token_last_s: float
    layer_bytes: np.ndarray  # (I, J) one whole layer at each interval's largest context
    layer_growth_bytes: np.ndarray  # (J,) per token of context, at the end
    layer_move_bytes: np.ndarray  # (I, J) at each interval's start context (migration)
    layer_prompt_bytes: np.ndarray  # (J,) at the prompt
    embed_bytes: np.ndarray  # (nW,)
    head_bytes: np.ndarray  # (nW,)
    blocks_per_layer: int
    route_latency_s: float  # the minimum-latency route device -> server (migration)
    route_bandwidth: float
    reachable: bool
    one_route: bool  # that route is also the widest: every message size takes it (migration is exact)


def split_tables(instance: Instance, dev: int, srv: int, weights: np.ndarray, kvs: np.ndarray,
            acts: list[tuple[float, float, float]]) -> SplitTables:
    """Every cost term of a split plan, from the shared tables (`step_costs`, `prefill_step_costs`, `block_memory`).

    Parameters
    ----------
    instance : Instance
    dev, srv : int
    weights, kvs : ndarray
        Bit widths; one "layer" of the tables per (weight, KV) pair.
    acts : list of (bits, outlier fraction, effective bits)

    Returns
    -------
    SplitTables
    """
    model, workload = instance.model, instance.workload
    K, I = model.kv_heads, workload.n_intervals
    nW, nC = len(weights), len(kvs)
    w_grid, c_grid = np.repeat(weights, nC), np.tile(kvs, nW)
    J = len(w_grid)
    # One "layer" per (weight, KV) pair: the per-layer costs do not depend on L.
    combos = dataclasses.replace(instance, model=model.with_layers(J))
    precision = Precision(w_grid, w_grid, w_grid, c_grid, 1.0, 1.0, 1.0)
    contexts = workload.contexts()
    decode, prefill = step_costs(combos, precision, contexts), prefill_step_costs(combos, precision)
    pair = [dev, srv]

    def times(flops, read, roofline):  # the evaluator's block times, for the two devices
        return block_times(flops, read, instance, roofline, devices=pair)

    def layer_times(costs):  # (steps, J, 2)
        return (K * times(costs.group_flops, costs.group_read, costs.roofline)
                + times(costs.projection_flops, costs.projection_read, costs.roofline)
                + times(costs.ffn_flops, costs.ffn_read, costs.roofline))

    starts = np.arange(I) * workload.tau
    lasts = np.minimum(starts + workload.tau, workload.generate_tokens) - 1
    per_step = layer_times(decode)
    layer_s = np.add.reduceat(per_step, starts, axis=0)
    layer_s[0] += layer_times(prefill)[0]

    ends = _ends(instance, pair, weights, kvs[0], starts, lasts)
    route, hop_s, hop_steps, token_s, token_steps = _crossing(instance, dev, srv, decode, prefill, acts, starts)
    # Memory of one whole layer: at each interval's largest context, one token later, at interval starts, at the prompt.
    largest = workload.interval_max_context()
    move_at = workload.prompt_tokens + np.arange(I) * workload.tau
    at = np.concatenate([largest, [largest[-1] + 1], move_at, [workload.prompt_tokens]])
    m = block_memory(combos, precision, at)
    layer_mem = m.layer  # (len(at), J)
    return SplitTables(
        layer_s=layer_s, layer_last_s=per_step[lasts],
        **ends,
        hop_s=hop_s, hop_last_s=hop_steps[lasts], token_s=token_s, token_last_s=float(token_steps[-1]),
        layer_bytes=layer_mem[:I], layer_growth_bytes=layer_mem[I] - layer_mem[I - 1],
        layer_move_bytes=layer_mem[I + 1:2 * I + 1], layer_prompt_bytes=layer_mem[-1],
        blocks_per_layer=K + 2, **route,
    )


def _ends(instance: Instance, pair: list[int], weights: np.ndarray, kv_bits: float, starts: np.ndarray,
          lasts: np.ndarray) -> dict[str, np.ndarray]:
    """``embed`` and ``lm_head`` at every weight width on the two devices: seconds per interval, bytes.

    One call per width (they hold one scalar precision).
    """
    workload, model = instance.workload, instance.model
    I, nW = workload.n_intervals, len(weights)
    out = {"embed_s": np.zeros((I, nW)), "embed_last_s": np.zeros((I, nW)), "head_s": np.zeros((I, nW, 2)),
           "head_last_s": np.zeros((I, nW, 2)), "embed_bytes": np.zeros(nW), "head_bytes": np.zeros(nW)}
    one = dataclasses.replace(instance, model=model.with_layers(1))
    contexts = workload.contexts()

    def times(flops, read, roofline):  # the evaluator's block times, for the two devices
        return block_times(flops, read, instance, roofline, devices=pair)

    for i, w in enumerate(weights):
        p = Precision.uniform(1, w, kv_bits, 1.0)
        d_costs, p_costs = step_costs(one, p, contexts), prefill_step_costs(one, p)
        e = times(d_costs.embed_read * 0, d_costs.embed_read, d_costs.roofline)[:, 0]
        h = times(d_costs.lm_head_flops, d_costs.lm_head_read, d_costs.roofline)
        out["embed_s"][:, i] = np.add.reduceat(e, starts)
        out["embed_s"][0, i] += times(p_costs.embed_read * 0, p_costs.embed_read, p_costs.roofline)[0, 0]
        out["embed_last_s"][:, i] = e[lasts]
        out["head_s"][:, i] = np.add.reduceat(h, starts, axis=0)
        out["head_s"][0, i] += times(p_costs.lm_head_flops, p_costs.lm_head_read, p_costs.roofline)[0]
        out["head_last_s"][:, i] = h[lasts]
        m = block_memory(one, p, np.array([workload.prompt_tokens]))
        out["embed_bytes"][i], out["head_bytes"][i] = m.embed[0], m.lm_head[0]
    return out


def _crossing(instance: Instance, dev: int, srv: int, decode, prefill, acts, starts: np.ndarray):
    """The hidden state crossing device -> server at every activation setting, and the token back.

    Returns the route fields of `SplitTables`, the crossing's seconds per interval (I, nA)
    and per decode step (T, nA), and the token's per interval (I,) and per step (T,).
    """
    cluster = instance.cluster
    reachable = dev != srv and np.isfinite(cluster.route_bandwidth_bytes_per_s[dev, srv]) \
        and np.isfinite(cluster.route_latency_s[dev, srv])
    lat = float(cluster.route_latency_s[dev, srv]) if reachable else np.inf
    bw = float(cluster.route_bandwidth_bytes_per_s[dev, srv]) if reachable else 1.0
    route = {"route_latency_s": lat, "route_bandwidth": bw, "reachable": bool(reachable),
             "one_route": bool(np.all(cluster.candidate_bandwidth_bytes_per_s[:, dev, srv] <= bw))}

    def sent(sizes, u, v):  # each message on the route fastest for its size
        sizes = np.asarray(sizes, dtype=float)
        if not reachable:
            return np.where(sizes > 0, np.inf, 0.0)
        return cluster.route_time_s(sizes.ravel())[:, u, v].reshape(sizes.shape)

    steps = len(instance.workload.contexts())
    eff = np.array([a[2] for a in acts])
    d_in = np.broadcast_to(np.asarray(decode.layer_input_bytes, dtype=float), (steps,))  # bytes per bit of activation
    p_in = float(np.asarray(prefill.layer_input_bytes, dtype=float).reshape(-1)[0])
    hop_steps = sent(d_in[:, None] * eff[None, :], dev, srv)  # (T, nA)
    hop_s = np.add.reduceat(hop_steps, starts, axis=0)
    hop_s[0] += sent(p_in * eff, dev, srv)
    token_steps = sent(np.full(steps, decode.token_bytes), srv, dev)
    token_s = np.add.reduceat(token_steps, starts)
    token_s[0] += float(sent(prefill.token_bytes, srv, dev))
    return route, hop_s, hop_steps, token_s, token_steps
