"""Split computing with one-point split compression (Sung et al., arXiv 2511.04002).

A memory-poor **device** runs the embedding and layers ``0 … ℓ-1``; a **server** runs
layers ``ℓ … L-1`` and the output head, and sends each sampled token back. The two
segments have their own weight bits (``w1``, ``w2``: one-point split compression,
OPSC) and KV-cache bits (``c1``, ``c2``); the hidden state crossing the split is
compressed by threshold splitting (a fraction ``f`` of outlier elements kept at 16
bits with their positions) and token-wise quantization of the rest to ``b`` bits
(TAB-Q). ``ℓ = L`` runs everything on the device; ``ℓ = 0`` only the embedding.

Back ends (plain functions returning a `Result`, objective = the evaluator's total):

- `solve_split`: exact search over every ``(ℓ, w1, c1, w2, c2, b, f)`` of the
  discrete space, vectorised with NumPy. The total latency of a split plan is a sum
  of terms (front segment, back segment, crossing) that come from the evaluator's
  own cost functions, so the search's value is the evaluator's figure and its
  argmin the proven optimum of the discrete problem. With ``baseline=`` it gives a
  baseline instead (see `BASELINES`).
- `solve_split_adaptive`: the split layer may change at every re-decision interval
  of the instance (layers move with their KV caches; migration as the evaluator
  charges it); exact over split sequences by dynamic programming for every
  precision setting whose lower bound beats the incumbent (the static optimum).

The cost model of the split, the formulation and the accuracy proxy: docs/split.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from placement.cost.accuracy import AccuracyModel, DistortionProxy, TableAccuracy
from placement.cost.tolerances import MEMORY_RTOL
from placement.cost.tables import block_memory, block_times, prefill_step_costs, step_costs, usable_bytes
from placement.cost.precision import Precision
from placement.cost.units import format_bytes, format_seconds
from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.result import Result

__all__ = [
    "solve_split",
    "solve_split_adaptive",
    "split_plan",
    "effective_activation_bits",
    "SplitConfig",
    "BASELINES",
    "DEFAULT_WEIGHT_BITS",
    "DEFAULT_KV_BITS",
    "DEFAULT_ACTIVATION_BITS",
    "DEFAULT_OUTLIER_FRACTIONS",
]

DEFAULT_WEIGHT_BITS = (2, 3, 4, 8, 16)
DEFAULT_KV_BITS = (4, 8, 16)
DEFAULT_ACTIVATION_BITS = (2, 4, 8, 16)
DEFAULT_OUTLIER_FRACTIONS = (0.0, 0.001, 0.005, 0.01)

# name -> (weight bits, kv bits, activation bits, outlier fraction or "share"), or a special layout.
BASELINES: dict[str, Any] = {
    "device-only": "device",  # everything on the device, 16 bits
    "server-only": "server",  # everything on the server (the embedding too), 16 bits
    "w16a16": (16, 16, 16, 0.0),
    "w8a8": (8, 16, 8, 0.0),  # SmoothQuant-like: per-token 8-bit activations, no outlier split
    "w4a16": (4, 16, 16, 0.0),  # OmniQuant-like weight-only
    "w4a4": (4, 4, 4, "share"),  # Atom-like: 4-bit weights, KV and activations, outliers kept apart
    "neurosurgeon": "neurosurgeon",  # 16 bits, split by first-token latency, memory checked at the prompt only
}



def effective_activation_bits(bits: float, outlier_fraction: float, hidden: int) -> float:
    """Bits per element of the hidden state crossing the split after TS + TAB-Q.

    ``(1-f)·b + f·(16 + ⌈log2 D⌉) + 32/D``: the inliers at ``b`` bits, each outlier at
    16 bits with its position in the token's ``D`` elements, and one 16-bit scale and
    zero point per token. At 16 bits nothing is compressed: 16.
    """
    if bits >= 16:
        return 16.0
    return (1 - outlier_fraction) * bits + outlier_fraction * (16 + math.ceil(math.log2(hidden))) + 32 / hidden


@dataclass(frozen=True)
class SplitConfig:
    """One point of the discrete space (bits per element; ``split`` = layers on the device)."""

    device: int
    server: int
    split: int
    w_front: float
    kv_front: float
    w_back: float
    kv_back: float
    act_bits: float
    outlier_fraction: float
    effective_bits: float

    def describe(self, layers: int) -> str:
        if self.split == layers:
            return f"all {layers} layers on the device, W{self.w_front:g} KV{self.kv_front:g}"
        act = "A16" if self.act_bits >= 16 else f"A{self.act_bits:g} (TS {self.outlier_fraction:g}, {self.effective_bits:.3g} b/elem)"
        return (f"split after layer {self.split} of {layers}: front W{self.w_front:g} KV{self.kv_front:g}, "
                f"back W{self.w_back:g} KV{self.kv_back:g}, {act}")


# ============================================================================= plans
def split_plan(instance: Instance, config: SplitConfig, *, method: str = "split",
               extras: dict[str, Any] | None = None) -> Placement:
    """The placement of a split configuration: embed + layers ``< ℓ`` on the device, the rest on the server.

    Returns a `Placement` whose ``precision`` carries the segment bits and the
    crossing's effective activation bits.
    """
    model = instance.model
    L, l = model.layers, config.split
    layer_devices = np.array([config.device] * l + [config.server] * (L - l))
    head = config.server if l < L else config.device
    placement = Placement.by_layer(layer_devices, model.kv_heads, instance.n_devices, embed=config.device, lm_head=head)
    weights = [config.w_front] * l + [config.w_back] * (L - l)
    kv = [config.kv_front] * l + [config.kv_back] * (L - l)
    precision = {"attention": weights, "projection": weights, "ffn": weights, "kv": kv,
                 "embed": config.w_front, "lm_head": config.w_back if l < L else config.w_front,
                 "activation": config.effective_bits if l < L else float(instance.precision.activation)}
    return dataclasses.replace(placement, precision=precision)


def _config_extras(instance: Instance, config: SplitConfig, error: float | None, max_context: float | None) -> dict:
    names = instance.cluster.names
    return {
        "device": names[config.device], "server": names[config.server], "split_layer": config.split,
        "layers": instance.model.layers,
        "weight_bits_front": config.w_front, "weight_bits_back": config.w_back,
        "kv_bits_front": config.kv_front, "kv_bits_back": config.kv_back,
        "activation": {"scheme": "TS+TAB-Q" if config.act_bits < 16 else "none", "bits": config.act_bits,
                       "outlier_fraction": config.outlier_fraction, "effective_bits": config.effective_bits},
        "distortion": error,
        "max_context_tokens": max_context,
    }


def _errors(error: float | None) -> dict[str, float]:
    return {} if error is None or not np.isfinite(error) else {"distortion": float(error)}


# ============================================================================= options
def _endpoints(instance: Instance, device: str | None, server: str | None) -> tuple[int, int]:
    cluster = instance.cluster
    memory = usable_bytes(instance)
    dev = cluster.index(device) if device is not None else int(np.argmin(memory))
    if server is not None:
        srv = cluster.index(server)
    elif instance.n_devices == 1:
        srv = dev
    else:
        others = np.where(np.arange(instance.n_devices) == dev, -np.inf, memory)
        srv = int(np.argmax(others))
    return dev, srv


def _bits(values: Any, name: str) -> np.ndarray:
    try:
        array = np.unique(np.asarray(values, dtype=float).ravel())
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a list of bit widths such as (4, 8, 16), got {values!r}") from None
    if array.size == 0 or not np.all((array > 0) & (array <= 64)):
        raise InputError(f"`{name}` must be a non-empty list of bit widths in (0, 64], got {values!r}")
    return array


def _accuracy_model(accuracy: Any) -> AccuracyModel:
    if accuracy is None:
        return DistortionProxy()
    if isinstance(accuracy, (str, Path)):
        return TableAccuracy(accuracy)
    if hasattr(accuracy, "error"):
        return accuracy
    raise InputError(f"`accuracy` must be None (the distortion proxy), a CSV path, or an accuracy model "
                     f"(placement.cost.accuracy), got {accuracy!r}")


def _activation_settings(bits: np.ndarray, fractions: np.ndarray, hidden: int) -> list[tuple[float, float, float]]:
    """(bits, outlier fraction, effective bits); at 16 bits only f = 0 (nothing to split off)."""
    if not np.all((fractions >= 0) & (fractions < 1)):
        raise InputError(f"`outlier_fractions` must lie in [0, 1), got {fractions.tolist()}")
    out = []
    for b in bits:
        for f in (fractions if b < 16 else [0.0]):
            out.append((float(b), float(f), effective_activation_bits(b, f, hidden)))
    return out


# ============================================================================= cost tables
@dataclass
class _Tables:
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


def _tables(instance: Instance, dev: int, srv: int, weights: np.ndarray, kvs: np.ndarray,
            acts: list[tuple[float, float, float]]) -> _Tables:
    """Every term from the evaluator's own cost functions (`step_costs`, `prefill_step_costs`, `block_memory`)."""
    model, workload, cluster = instance.model, instance.workload, instance.cluster
    K, I = model.kv_heads, workload.n_intervals
    nW, nC = len(weights), len(kvs)
    w_grid, c_grid = np.repeat(weights, nC), np.tile(kvs, nW)
    J = len(w_grid)
    # One "layer" per (weight, KV) pair: the per-layer costs do not depend on L.
    combos = dataclasses.replace(instance, model=dataclasses.replace(model, layers=J))
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

    # embed and lm_head at every weight width: one call per width (they hold one scalar precision).
    embed_s, embed_last, head_s, head_last = (np.zeros((I, nW)), np.zeros((I, nW)), np.zeros((I, nW, 2)), np.zeros((I, nW, 2)))
    embed_bytes, head_bytes = np.zeros(nW), np.zeros(nW)
    one = dataclasses.replace(instance, model=dataclasses.replace(model, layers=1))
    for i, w in enumerate(weights):
        p = Precision.uniform(1, w, kvs[0], 1.0)
        d_costs, p_costs = step_costs(one, p, contexts), prefill_step_costs(one, p)
        e = times(d_costs.embed_read * 0, d_costs.embed_read, d_costs.roofline)[:, 0]
        h = times(d_costs.lm_head_flops, d_costs.lm_head_read, d_costs.roofline)
        embed_s[:, i] = np.add.reduceat(e, starts)
        embed_s[0, i] += times(p_costs.embed_read * 0, p_costs.embed_read, p_costs.roofline)[0, 0]
        embed_last[:, i] = e[lasts]
        head_s[:, i] = np.add.reduceat(h, starts, axis=0)
        head_s[0, i] += times(p_costs.lm_head_flops, p_costs.lm_head_read, p_costs.roofline)[0]
        head_last[:, i] = h[lasts]
        m = block_memory(one, p, np.array([workload.prompt_tokens]))
        embed_bytes[i], head_bytes[i] = m.embed[0], m.lm_head[0]

    # The crossing (device -> server) and the token back (server -> device).
    reachable = dev != srv and np.isfinite(cluster.route_bandwidth_bytes_per_s[dev, srv]) \
        and np.isfinite(cluster.route_latency_s[dev, srv])
    lat = float(cluster.route_latency_s[dev, srv]) if reachable else np.inf
    bw = float(cluster.route_bandwidth_bytes_per_s[dev, srv]) if reachable else 1.0
    one_route = bool(np.all(cluster.candidate_bandwidth_bytes_per_s[:, dev, srv] <= bw))

    def sent(sizes, u, v):  # each message on the route fastest for its size
        sizes = np.asarray(sizes, dtype=float)
        if not reachable:
            return np.where(sizes > 0, np.inf, 0.0)
        return cluster.route_time_s(sizes.ravel())[:, u, v].reshape(sizes.shape)

    eff = np.array([a[2] for a in acts])
    d_in = np.broadcast_to(np.asarray(decode.layer_input_bytes, dtype=float), (len(contexts),))  # bytes per bit of activation
    p_in = float(np.asarray(prefill.layer_input_bytes, dtype=float).reshape(-1)[0])
    hop_steps = sent(d_in[:, None] * eff[None, :], dev, srv)  # (T, nA)
    hop_s = np.add.reduceat(hop_steps, starts, axis=0)
    hop_s[0] += sent(p_in * eff, dev, srv)
    token_steps = sent(np.full(len(contexts), decode.token_bytes), srv, dev)
    token_s = np.add.reduceat(token_steps, starts)
    token_s[0] += float(sent(prefill.token_bytes, srv, dev))

    # Memory of one whole layer: at each interval's largest context, one token later, at interval starts, at the prompt.
    ends = workload.interval_max_context()
    move_at = workload.prompt_tokens + np.arange(I) * workload.tau
    at = np.concatenate([ends, [ends[-1] + 1], move_at, [workload.prompt_tokens]])
    m = block_memory(combos, precision, at)
    layer_mem = m.layer  # (len(at), J)
    return _Tables(
        layer_s=layer_s, layer_last_s=per_step[lasts],
        embed_s=embed_s, embed_last_s=embed_last, head_s=head_s, head_last_s=head_last,
        hop_s=hop_s, hop_last_s=hop_steps[lasts], token_s=token_s, token_last_s=float(token_steps[-1]),
        layer_bytes=layer_mem[:I], layer_growth_bytes=layer_mem[I] - layer_mem[I - 1],
        layer_move_bytes=layer_mem[I + 1:2 * I + 1], layer_prompt_bytes=layer_mem[-1],
        embed_bytes=embed_bytes, head_bytes=head_bytes, blocks_per_layer=K + 2,
        route_latency_s=lat, route_bandwidth=bw, reachable=bool(reachable), one_route=one_route,
    )


# ============================================================================= the static grid
_AXES = 6  # (ℓ, w1, c1, w2, c2, activation)


def _axis(values, axis: int) -> np.ndarray:
    shape = [1] * _AXES
    shape[axis] = -1
    return np.asarray(values).reshape(shape)


def _grid(instance: Instance, t: _Tables, nW: int, nC: int, nA: int, row: int | None, workspace: float):
    """Total latency, worst decode step, device and server bytes of every static configuration.

    ``row=None``: the whole generation (memory at the last interval's end); an int: interval
    ``row`` only. Arrays broadcast to (L+1, nW, nC, nW, nC, nA).
    """
    model = instance.model
    L = model.layers
    l = _axis(np.arange(L + 1), 0)
    full = l == L
    pick = (lambda x: x.sum(axis=0)) if row is None else (lambda x: x[row])
    last = -1 if row is None else row
    w1 = lambda x: _axis(x, 1)  # noqa: E731
    w2 = lambda x: _axis(x, 3)  # noqa: E731

    def total(lt, emb, head, hop, tok):
        lt = lt.reshape(nW, nC, 2)
        front = w1(emb) + l * lt[:, :, 0][None, :, :, None, None, None] + np.where(full, w1(head[:, 0]), 0.0)
        back = (L - l) * lt[:, :, 1][None, None, None, :, :, None] + w2(head[:, 1]) + tok + _axis(hop, 5)
        return front + np.where(full, 0.0, back)

    total_s = total(pick(t.layer_s), pick(t.embed_s), pick(t.head_s), pick(t.hop_s), pick(t.token_s))
    worst_s = total(t.layer_last_s[last], t.embed_last_s[last], t.head_last_s[last], t.hop_last_s[last], t.token_last_s)
    mem = t.layer_bytes[last].reshape(nW, nC)
    device_head = np.zeros(nW) if model.tied_embeddings else t.head_bytes  # ℓ = L: same device, same bits
    device_bytes = w1(t.embed_bytes) + l * mem[None, :, :, None, None, None] + np.where(full, w1(device_head), 0.0) + workspace
    server_bytes = np.where(full, 0.0, (L - l) * mem[None, None, None, :, :, None] + w2(t.head_bytes) + workspace)
    return total_s, worst_s, device_bytes, server_bytes


def _error_grid(instance: Instance, accuracy: AccuracyModel, weights, kvs, acts) -> np.ndarray:
    L = instance.model.layers
    bits = np.array([a[0] for a in acts])
    fractions = np.array([a[1] for a in acts])
    error = accuracy.error(L, _axis(np.arange(L + 1), 0), _axis(weights, 1), _axis(kvs, 2), _axis(weights, 3),
                           _axis(kvs, 4), _axis(bits, 5), _axis(fractions, 5))
    return np.broadcast_to(np.asarray(error, dtype=float), (L + 1, len(weights), len(kvs), len(weights), len(kvs), len(acts)))


def _prune_activations(accuracy: AccuracyModel, acts: list) -> tuple[list, int]:
    """Drop activation settings another beats in both bytes and error (proxy only: its term is split-independent)."""
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
class _Search:
    """The outcome of a static search."""

    config: SplitConfig | None
    value_s: float
    error: float | None
    max_context: float | None
    message: str
    stats: dict[str, Any]
    index: tuple = ()


def _limits(instance: Instance, dev: int, srv: int) -> tuple[float, float]:
    return instance.devices[dev].usable_bytes, instance.devices[srv].usable_bytes


def _config(dev, srv, index, weights, kvs, acts, layers: int) -> SplitConfig:
    """The configuration at a grid index; settings that cannot matter are shown canonically.

    With ``ℓ = L`` there is no back segment and no crossing (back = front, 16-bit
    activations); with ``ℓ = 0`` the front holds only the embedding (its KV bits = the back's).
    """
    l, i1, k1, i2, k2, a = (int(x) for x in index)
    b, f, eff = acts[a]
    w1, c1, w2, c2 = float(weights[i1]), float(kvs[k1]), float(weights[i2]), float(kvs[k2])
    if l == layers:
        w2, c2, b, f, eff = w1, c1, 16.0, 0.0, 16.0
    elif l == 0:
        c1 = c2
    return SplitConfig(dev, srv, l, w1, c1, w2, c2, b, f, eff)


def _max_context(instance: Instance, t: _Tables, cfg: SplitConfig, device_bytes: float, server_bytes: float,
                 weights, kvs) -> float | None:
    """Largest context both devices hold with this configuration (None: the KV cache does not limit it)."""
    nC = len(kvs)
    end = float(instance.workload.interval_max_context()[-1])
    dev_limit, srv_limit = _limits(instance, cfg.device, cfg.server)
    j1 = int(np.flatnonzero(weights == cfg.w_front)[0]) * nC + int(np.flatnonzero(kvs == cfg.kv_front)[0])
    j2 = int(np.flatnonzero(weights == cfg.w_back)[0]) * nC + int(np.flatnonzero(kvs == cfg.kv_back)[0])
    L = instance.model.layers
    best = np.inf
    for slack, growth in ((dev_limit - device_bytes, cfg.split * t.layer_growth_bytes[j1]),
                          (srv_limit - server_bytes, (L - cfg.split) * t.layer_growth_bytes[j2])):
        if growth > 0:
            best = min(best, end + np.floor(max(slack, 0.0) / growth))
    return None if not np.isfinite(best) else float(best)


def _search(instance: Instance, dev: int, srv: int, weights, kvs, acts, accuracy: AccuracyModel,
            max_distortion: float | None, latency_budget_s: float | None, workspace: float,
            t: _Tables | None = None) -> _Search:
    """Exact search of the static problem; the message explains an infeasible one."""
    L = instance.model.layers
    if t is None:
        t = _tables(instance, dev, srv, weights, kvs, acts)
    total, worst, dev_bytes, srv_bytes = _grid(instance, t, len(weights), len(kvs), len(acts), None, workspace)
    error = _error_grid(instance, accuracy, weights, kvs, acts)
    shape = error.shape
    dev_limit, srv_limit = _limits(instance, dev, srv)
    split_ok = _axis(np.arange(L + 1) == L, 0) | t.reachable
    mem_ok = (dev_bytes <= dev_limit * (1 + MEMORY_RTOL)) & (srv_bytes <= srv_limit * (1 + MEMORY_RTOL)) & split_ok
    acc_ok = np.ones(shape, dtype=bool) if max_distortion is None else error <= max_distortion * (1 + 1e-9) + 1e-300
    lat_ok = True if latency_budget_s is None else worst <= latency_budget_s
    ok = np.broadcast_to(mem_ok & acc_ok & lat_ok, shape)
    value = np.where(ok, total, np.inf)
    flat = int(np.argmin(value))
    stats: dict[str, Any] = {"configurations": int(np.prod(shape)), "feasible_configurations": int(ok.sum())}
    if not np.isfinite(value.flat[flat]):
        message = _diagnose(instance, dev, srv, t, weights, kvs, acts, total, worst, dev_bytes, srv_bytes, error,
                            mem_ok, acc_ok, lat_ok, max_distortion, latency_budget_s, workspace, split_ok)
        return _Search(None, np.inf, None, None, message, stats)
    index = np.unravel_index(flat, shape)
    cfg = _config(dev, srv, index, weights, kvs, acts, L)
    err = float(error[index])
    dev_b = float(np.broadcast_to(dev_bytes, shape)[index])
    srv_b = float(np.broadcast_to(srv_bytes, shape)[index])
    return _Search(cfg, float(value.flat[flat]), err if np.isfinite(err) else None,
                   _max_context(instance, t, cfg, dev_b, srv_b, weights, kvs), "", stats, tuple(int(x) for x in index))


def _diagnose(instance, dev, srv, t, weights, kvs, acts, total, worst, dev_bytes, srv_bytes, error,
              mem_ok, acc_ok, lat_ok, max_distortion, latency_budget_s, workspace, split_ok) -> str:
    """Why nothing is feasible, and the smallest change that would make something feasible."""
    names = instance.cluster.names
    shape = error.shape
    dev_limit, srv_limit = _limits(instance, dev, srv)
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
        cfg = _config(dev, srv, index, weights, kvs, acts, instance.model.layers)
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


# ============================================================================= back ends
def _options(instance, device, server, weight_bits, kv_bits, activation_bits, outlier_fractions, accuracy,
             max_distortion, latency_budget_s, workspace_bytes):
    dev, srv = _endpoints(instance, device, server)
    weights, kvs = _bits(weight_bits, "weight_bits"), _bits(kv_bits, "kv_bits")
    acts = _activation_settings(_bits(activation_bits, "activation_bits"),
                                np.unique(np.asarray(outlier_fractions, dtype=float).ravel()), instance.model.hidden)
    model = _accuracy_model(accuracy)
    if max_distortion is None:
        if not isinstance(model, DistortionProxy):
            raise InputError("`max_distortion` is required with a measured accuracy table: give the largest error "
                             "(perplexity, or -accuracy) a configuration may have")
        max_distortion = reference_distortion(instance, model)
    elif not (isinstance(max_distortion, (int, float)) and not isinstance(max_distortion, bool)):
        raise InputError(f"`max_distortion` must be a number, got {max_distortion!r}")
    if latency_budget_s is not None and not (isinstance(latency_budget_s, (int, float)) and latency_budget_s > 0):
        raise InputError(f"`latency_budget_s` must be a positive number of seconds, got {latency_budget_s!r}")
    workspace = default_workspace_bytes(instance) if workspace_bytes is None else float(workspace_bytes)
    if not workspace >= 0:
        raise InputError(f"`workspace_bytes` must be zero or more, got {workspace_bytes!r}")
    return dev, srv, weights, kvs, acts, model, float(max_distortion), workspace


def reference_distortion(instance: Instance, accuracy: DistortionProxy) -> float:
    """The default accuracy budget: the proxy's error of 4-bit weights everywhere, 16-bit KV and activations (W4A16)."""
    L = instance.model.layers
    return float(accuracy.error(L, L, 4.0, 16.0, 4.0, 16.0, 16.0, 0.0))


def default_workspace_bytes(instance: Instance) -> float:
    """Transient activations the search keeps free on each device: ``2·B·P·(D + F)`` bytes.

    The prefill's hidden states and FFN intermediates for the whole prompt at 16 bits
    (the largest transient of a forward pass; attention scores are assumed streamed).
    """
    model, workload = instance.model, instance.workload
    return 2.0 * workload.batch * workload.prompt_tokens * (model.hidden + model.ffn_hidden)


def _finish(instance: Instance, placements: list[Placement], method: str, extras: dict, error: float | None,
            status: str, message: str, value: float, stats: dict, start: float, client: str | None = None) -> Result:
    plan = Plan(devices=instance.cluster.names, intervals=placements, method=method,
                extras={"split": extras, "errors": _errors(error)}, client=client)
    stats = {**stats, "decision_time_s": time.perf_counter() - start}
    report = evaluate(instance, plan)
    if not report.feasible:
        worst = max(report.violations, key=lambda v: v.over_bytes)
        return Result("infeasible", f"{message}, but it does not fit: {worst}", plan, report,
                      objective=report.total_s, stats=stats, backend_objective=value)
    return Result(status, message, plan, report, objective=report.total_s, stats=stats, backend_objective=value)


def solve_split(instance: Instance, *, device: str | None = None, server: str | None = None,
                weight_bits=DEFAULT_WEIGHT_BITS, kv_bits=DEFAULT_KV_BITS, activation_bits=DEFAULT_ACTIVATION_BITS,
                outlier_fractions=DEFAULT_OUTLIER_FRACTIONS, accuracy=None, max_distortion: float | None = None,
                latency_budget_s: float | None = None, workspace_bytes: float | None = None,
                baseline: str | None = None) -> Result:
    """Device/server split with one-point split compression: the exact optimum of the discrete problem.

    Chooses the split layer ``ℓ ∈ {0 … L}``, front and back weight bits, KV-cache
    bits per segment and the compression of the hidden state at the split (TS outlier
    fraction and TAB-Q bits) to minimise the evaluator's total latency (prefill +
    every decode step, seconds), subject to: both devices' memory at the final
    context (weights + KV cache + `workspace_bytes`), the error of the accuracy model
    at most `max_distortion`, and, if given, every decode step within
    `latency_budget_s`. Every configuration of the grid is evaluated (vectorised);
    the argmin is the proven optimum.

    Parameters
    ----------
    instance : Instance
    device, server : str, optional
        Device names; default the device with the least usable memory and the one
        with the most (another one).
    weight_bits, kv_bits, activation_bits : sequence of float
        The bit widths to choose from (16 = uncompressed).
    outlier_fractions : sequence of float
        Threshold-splitting fractions of elements kept at 16 bits (0 = none).
    accuracy : None, str or accuracy model
        None: `placement.cost.accuracy.DistortionProxy`; a CSV path: a measured
        `TableAccuracy`; or any object with its ``error`` method.
    max_distortion : float, optional
        Accuracy budget in the model's units; default (proxy only) the proxy's error
        of W4A16 (4-bit weights, 16-bit KV and activations) everywhere.
    latency_budget_s : float, optional
        Largest decode-step latency allowed, seconds.
    workspace_bytes : float, optional
        Memory kept free on each device for transient activations (default
        `default_workspace_bytes`).
    baseline : str, optional
        One of `BASELINES` instead of the search: ``device-only``, ``server-only``,
        uniform-precision splits ``w16a16``, ``w8a8``, ``w4a16``, ``w4a4`` (the best
        split for that precision; no accuracy budget, their error is reported), or
        ``neurosurgeon`` (16 bits, the latency-optimal split with memory judged at
        the prompt only, as profiles without a growing KV cache do).

    Returns
    -------
    Result
        ``optimal`` with the plan (``plan.extras["split"]``: split layer, bits,
        compression, distortion, largest context the memory allows), objective = the
        evaluator's total, seconds; ``infeasible`` with the reason and the smallest
        change that would help; baselines ``feasible`` or ``infeasible``.

    Raises
    ------
    InputError
        On an unknown device, baseline or a bad option value.
    """
    start = time.perf_counter()
    dev, srv, weights, kvs, acts, model, budget, workspace = _options(
        instance, device, server, weight_bits, kv_bits, activation_bits, outlier_fractions, accuracy,
        max_distortion, latency_budget_s, workspace_bytes)
    if baseline is not None:
        return _baseline(instance, baseline, dev, srv, model, workspace, start)
    acts, pruned = _prune_activations(model, acts)
    found = _search(instance, dev, srv, weights, kvs, acts, model, budget, latency_budget_s, workspace)
    stats = {**found.stats, "pruned_activation_settings": pruned}
    if found.config is None:
        stats["decision_time_s"] = time.perf_counter() - start
        return Result("infeasible", found.message, None, None, stats=stats)
    cfg = found.config
    extras = _config_extras(instance, cfg, found.error, found.max_context)
    return _finish(instance, [split_plan(instance, cfg)], "split", extras, found.error, "optimal",
                   f"{cfg.describe(instance.model.layers)} (exact over {found.stats['configurations']} configurations)",
                   found.value_s, stats, start)


def _baseline(instance: Instance, name: Any, dev: int, srv: int, model: AccuracyModel, workspace: float,
              start: float) -> Result:
    key = str(name).lower()
    if key not in BASELINES:
        raise InputError(f"unknown `baseline` {name!r}; baselines are {', '.join(BASELINES)}")
    L, K, N = instance.model.layers, instance.model.kv_heads, instance.n_devices
    spec = BASELINES[key]
    method = f"split:{key}"
    sixteen = np.array([16.0])
    if spec in ("device", "server"):
        where = dev if spec == "device" else srv
        placement = Placement.by_layer(np.full(L, where), K, N)
        bits = {"attention": 16.0, "projection": 16.0, "ffn": 16.0, "kv": 16.0, "embed": 16.0, "lm_head": 16.0}
        placement = dataclasses.replace(placement, precision=bits)
        err = float(model.error(L, L, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0))
        cfg = SplitConfig(where, where, L, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0, 16.0)
        extras = {**_config_extras(instance, cfg, err if np.isfinite(err) else None, None), "baseline": key}
        note = f"every block on {instance.cluster.names[where]!r} at 16 bits"
        if spec == "server":
            note += f", serving {instance.cluster.names[dev]!r} (prompt uploaded, tokens streamed back)"
        return _finish(instance, [placement], method, extras, err if np.isfinite(err) else None, "feasible",
                       note, float("nan"), {}, start, client=instance.cluster.names[dev])
    if spec == "neurosurgeon":
        acts = [(16.0, 0.0, 16.0)]
        t = _tables(instance, dev, srv, sixteen, sixteen, acts)
        total, _, _, _ = _grid(instance, t, 1, 1, 1, None, 0.0)
        prompt = t.layer_prompt_bytes.reshape(1, 1)
        l = np.arange(L + 1)
        dev_limit, srv_limit = _limits(instance, dev, srv)
        dev_need = t.embed_bytes[0] + l * prompt[0, 0] + np.where(l == L, 0.0 if instance.model.tied_embeddings else t.head_bytes[0], 0.0)
        srv_need = np.where(l == L, 0.0, (L - l) * prompt[0, 0] + t.head_bytes[0])
        fits = (dev_need <= dev_limit) & (srv_need <= srv_limit) & ((l == L) | t.reachable)
        value = np.where(fits, total.reshape(L + 1), np.inf)
        if not np.isfinite(value).any():
            return Result("infeasible", "no 16-bit split fits even at the prompt", None, None,
                          stats={"decision_time_s": time.perf_counter() - start})
        best = int(np.argmin(value))
        cfg = SplitConfig(dev, srv, best, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0, 16.0)
        err = float(model.error(L, best, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0))
        extras = {**_config_extras(instance, cfg, err if np.isfinite(err) else None, None), "baseline": key}
        return _finish(instance, [split_plan(instance, cfg)], method, extras, err if np.isfinite(err) else None,
                       "feasible", f"Neurosurgeon-style: {cfg.describe(L)} (memory judged at the prompt)",
                       float(value[best]), {}, start)
    w, c, a, f = spec
    if f == "share":
        f = model.outlier_share if isinstance(model, DistortionProxy) else 0.005
    acts = [(float(a), float(f) if a < 16 else 0.0, effective_activation_bits(a, f, instance.model.hidden))]
    found = _search(instance, dev, srv, np.array([float(w)]), np.array([float(c)]), acts, model, None, None, workspace)
    if found.config is None:
        return Result("infeasible", f"{key}: {found.message}", None, None,
                      stats={**found.stats, "decision_time_s": time.perf_counter() - start})
    extras = {**_config_extras(instance, found.config, found.error, found.max_context), "baseline": key}
    return _finish(instance, [split_plan(instance, found.config)], method, extras, found.error, "feasible",
                   f"{key}: {found.config.describe(L)}", found.value_s, found.stats, start)


# ============================================================================= adaptive
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
    if not (isinstance(chunk, int) and chunk >= 1):
        raise InputError(f"`chunk` must be a positive whole number, got {chunk!r}")
    dev, srv, weights, kvs, acts, model, budget, workspace = _options(
        instance, device, server, weight_bits, kv_bits, activation_bits, outlier_fractions, accuracy,
        max_distortion, latency_budget_s, workspace_bytes)
    acts, pruned = _prune_activations(model, acts)
    L, I = instance.model.layers, instance.workload.n_intervals
    t = _tables(instance, dev, srv, weights, kvs, acts)
    static = _search(instance, dev, srv, weights, kvs, acts, model, budget, latency_budget_s, workspace, t)
    nW, nC, nA = len(weights), len(kvs), len(acts)
    error = _error_grid(instance, model, weights, kvs, acts)
    shape = error.shape
    dev_limit, srv_limit = _limits(instance, dev, srv)
    split_ok = _axis(np.arange(L + 1) == L, 0) | t.reachable
    acc_ok = error <= budget * (1 + 1e-9) + 1e-300
    cost = np.empty((I,) + shape)
    for k in range(I):
        total, worst, dev_b, srv_b = _grid(instance, t, nW, nC, nA, k, workspace)
        ok = (dev_b <= dev_limit * (1 + MEMORY_RTOL)) & (srv_b <= srv_limit * (1 + MEMORY_RTOL)) \
            & split_ok & acc_ok
        if latency_budget_s is not None:
            ok = ok & (worst <= latency_budget_s)
        cost[k] = np.where(ok, total, np.inf)
    S = int(np.prod(shape[1:]))
    cost = cost.reshape(I, L + 1, S)
    bound = cost.min(axis=1).sum(axis=0)  # (S,)
    incumbent = static.value_s if static.config is not None else np.inf
    order = np.argsort(bound, kind="stable")
    order = order[bound[order] < incumbent * (1 - 1e-12)] if np.isfinite(incumbent) else order[np.isfinite(bound[order])]
    stats: dict[str, Any] = {"configurations": static.stats["configurations"], "pruned_activation_settings": pruned,
                             "settings": S, "settings_searched": 0, "static_objective_s": static.value_s}

    # Migration of n layers at interval k: per setting, bytes of one layer at the destination precision.
    i1, k1, i2, k2, _ = np.unravel_index(np.arange(S), shape[1:])
    j_front, j_back = i1 * nC + k1, i2 * nC + k2
    lat, bw, blocks = t.route_latency_s, t.route_bandwidth, t.blocks_per_layer
    prev = np.arange(L + 1)[:, None, None]
    nxt = np.arange(L + 1)[None, :, None]
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
            down = np.maximum(prev - nxt, 0)  # layers moving device -> server
            up = np.maximum(nxt - prev, 0)
            head_down = (prev == L) & (nxt < L)
            head_up = (nxt == L) & (prev < L)
            move_bytes = (down * t.layer_move_bytes[k][j_back[ids]] + head_down * t.head_bytes[i2[ids]]
                          + up * t.layer_move_bytes[k][j_front[ids]] + head_up * t.head_bytes[i1[ids]])
            count = (down + up) * blocks + head_down + head_up
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
        cfg = _config(dev, srv, (splits[0], a, b, c, d, e), weights, kvs, acts, L)
        setting_index = (a, b, c, d, e)
    configs = [_config(dev, srv, (s,) + tuple(int(x) for x in setting_index), weights, kvs, acts, L) for s in splits]
    errors = [float(error[(s,) + tuple(int(x) for x in setting_index)]) for s in splits]
    worst_error = max(errors)
    extras = _config_extras(instance, cfg, worst_error if np.isfinite(worst_error) else None, None)
    extras.update({"split_layer": splits[0], "split_layers": splits, "distortion_per_interval": errors})
    placements = [split_plan(instance, c) for c in configs] if I > 1 else [split_plan(instance, configs[0])]
    moves = sum(a != b for a, b in zip(splits, splits[1:]))
    message = (f"split layers {splits} over {I} interval(s) ({moves} move(s)); {cfg.describe(instance.model.layers)}"
               f" [first interval]; DP over {stats['settings_searched']} of {S} precision settings")
    if not t.one_route:  # the DP prices moves on the minimum-latency route; the evaluator routes each block by size
        message += "; migration priced on the minimum-latency route (optimality not proven)"
    return _finish(instance, placements, "split-adaptive", extras, worst_error if np.isfinite(worst_error) else None,
                   "optimal" if t.one_route else "feasible", message, best_value, stats, start)

