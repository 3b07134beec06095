"""The shared latency evaluator: the single source of truth for every figure.

`evaluate(instance, plan)` follows one token through the devices (DESIGN.md, "One
decode step, as the evaluator sees it"):

``embed`` → for each layer: the hidden state goes from the devices that hold it to
every device running a group of the layer → each runs its groups → each sends its
heads' outputs to the projection device → projection → hidden state to the FFN
device(s) → FFN → next layer → ``lm_head`` → the sampled token id back to ``embed``.

On a ``switched`` network each group device is its own chain (receive, compute,
send) and the latest arrival counts; on a ``shared`` network the transfers of a
stage follow one another and the computations overlap. A split block's shares run in
parallel and are combined by the plan's collective (`placement.collectives`).
Decode steps are evaluated together with NumPy; the plan may change between
intervals, and moving blocks at a boundary costs a migration. Docs:
docs/cost-model.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from placement.collectives import all_reduce
from placement.cost.blocks import StepCosts, block_memory, decode_costs, prefill_costs
from placement.cost.precision import Precision
from placement.cost.units import format_bytes
from placement.errors import PlanError
from placement.instance import Instance
from placement.plan import COLLECTIVES, Plan

__all__ = ["evaluate", "Report", "Violation"]

_SHARE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Violation:
    """A device that runs out of memory in an interval."""

    device: str
    interval: int
    needed_bytes: float
    available_bytes: float

    @property
    def over_bytes(self) -> float:
        return self.needed_bytes - self.available_bytes

    def __str__(self) -> str:
        return (
            f"device {self.device!r} in interval {self.interval} needs {format_bytes(self.needed_bytes)}, "
            f"has {format_bytes(self.available_bytes)} ({format_bytes(self.over_bytes)} over)"
        )


@dataclass(frozen=True, eq=False)
class Report:
    """What the evaluator found for a plan on an instance.

    Attributes
    ----------
    ttft_s : float
        Time to first token: the prefill, seconds.
    decode_s : ndarray, shape (T,)
        Latency of every decode step, seconds.
    migration_s : ndarray, shape (n_intervals,)
        Migration time at the start of each interval (0 for the first), seconds.
    breakdown_s : dict of str to float
        Time along the critical path by kind: ``prefill_compute``,
        ``prefill_transfer``, ``decode_compute``, ``decode_transfer``, ``migration``.
    peak_memory_bytes : ndarray, shape (n_intervals, N)
        Memory each device needs in each interval (at the interval's largest context).
    memory_limit_bytes : ndarray, shape (N,)
        Memory each device has for blocks (memory less its reservation).
    link_bytes : ndarray, shape (n_links,)
        Bytes carried by every link over the generation (prefill, decode, migration).
    violations : list of Violation
        Every (device, interval) whose memory is exceeded.
    errors : dict of str to float
        Error figures the plan carries (all-reduce MSE, quantization distortion).
    devices : tuple of str
    """

    ttft_s: float
    decode_s: np.ndarray
    migration_s: np.ndarray
    breakdown_s: dict[str, float]
    peak_memory_bytes: np.ndarray
    memory_limit_bytes: np.ndarray
    link_bytes: np.ndarray
    violations: list[Violation]
    errors: dict[str, float]
    devices: tuple[str, ...]
    links: tuple[tuple[str, str], ...] = field(default=())

    @property
    def feasible(self) -> bool:
        """True when no device runs out of memory in any interval and every figure is finite."""
        return not self.violations and bool(np.isfinite(self.total_s))

    @property
    def total_s(self) -> float:
        """Prefill + every decode step + every migration, seconds."""
        return float(self.ttft_s + self.decode_s.sum() + self.migration_s.sum())

    @property
    def mean_token_s(self) -> float:
        """Mean decode-step latency, seconds."""
        return float(self.decode_s.mean())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the trace included)."""
        return {
            "feasible": self.feasible,
            "total_s": self.total_s,
            "ttft_s": self.ttft_s,
            "mean_token_s": self.mean_token_s,
            "migration_s": float(self.migration_s.sum()),
            "breakdown_s": self.breakdown_s,
            "decode_s": self.decode_s.tolist(),
            "peak_memory_bytes": {
                name: self.peak_memory_bytes[:, i].tolist() for i, name in enumerate(self.devices)
            },
            "memory_limit_bytes": dict(zip(self.devices, self.memory_limit_bytes.tolist())),
            "link_bytes": {f"{u} <-> {v}": b for (u, v), b in zip(self.links, self.link_bytes.tolist())},
            "violations": [str(v) for v in self.violations],
            "errors": self.errors,
        }


# ----------------------------------------------------------------------------- plan checks
@dataclass(frozen=True, eq=False)
class _Arrays:
    """A plan as arrays in the instance's device order, one row per interval."""

    counts: np.ndarray  # (I, L, N) groups of each layer on each device
    attention: np.ndarray  # (I, L, K)
    projection: np.ndarray  # (I, L, N)
    ffn: np.ndarray  # (I, L, N)
    embed: np.ndarray  # (I,)
    lm_head: np.ndarray  # (I,)
    precision: list[Precision]
    collective: str
    root: int | None
    window: np.ndarray | None = None  # (N,) layers of weights each device keeps in memory (inf: all)
    ota: Any = None  # the wireless all-reduce of an `ota` plan (placement.ota.allreduce.OtaContext)


def _check_plan(instance: Instance, plan: Plan) -> _Arrays:
    model, cluster, workload = instance.model, instance.cluster, instance.workload
    L, K, N, I = model.layers, model.kv_heads, instance.n_devices, workload.n_intervals
    remap = np.array([cluster.index(name) if name in cluster.names else -1 for name in plan.devices], dtype=np.int64)
    unknown = [name for name, i in zip(plan.devices, remap) if i < 0]
    if unknown:
        raise PlanError(
            f"plan names device(s) {', '.join(map(repr, unknown))} that the instance lacks "
            f"(devices: {', '.join(cluster.names)}); solve the plan for this instance"
        )
    if len(plan.intervals) not in (1, I):
        raise PlanError(
            f"plan has {len(plan.intervals)} intervals, the instance has {I} "
            f"({workload.generate_tokens} tokens every {workload.tau}); give one placement per interval, or one for all"
        )
    if plan.collective not in COLLECTIVES:
        raise PlanError(f"plan `collective` {plan.collective!r} is unknown; use one of {', '.join(COLLECTIVES)}")
    if plan.root is not None and plan.root not in cluster.names:
        raise PlanError(f"plan `root` {plan.root!r} is not a device of the instance ({', '.join(cluster.names)})")
    root = None if plan.root is None else cluster.index(plan.root)
    window = _check_windows(instance, plan)

    def shares(matrix: np.ndarray, what: str, k: int) -> np.ndarray:
        if matrix.shape != (L, len(plan.devices)):
            raise PlanError(f"interval {k}: `{what}` has {matrix.shape[0]} layers, the model has {L}")
        out = np.zeros((L, N))
        np.add.at(out, (slice(None), remap), matrix)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1) | (out < 0).any(axis=1) | (np.abs(out.sum(axis=1) - 1) > 1e-6))
        if len(bad):
            raise PlanError(
                f"interval {k}, layer {bad[0]}: `{what}` shares must be non-negative and sum to 1, "
                f"got {out[bad[0]].round(6).tolist()}"
            )
        return out

    counts, attention, projection, ffn, precision = [], [], [], [], []
    embed, lm_head = [], []
    for k, p in enumerate(plan.intervals):
        att = np.asarray(p.attention)
        if att.shape != (L, K):
            raise PlanError(
                f"interval {k}: `attention` has shape {att.shape}, the model has {L} layers of {K} groups; "
                "give one device per (layer, group)"
            )
        if att.min() < 0 or att.max() >= len(plan.devices):
            l, g = np.argwhere((att < 0) | (att >= len(plan.devices)))[0]
            raise PlanError(f"interval {k}, layer {l}, group {g}: device index {att[l, g]} is out of range")
        att = remap[att]
        cnt = np.zeros((L, N))
        np.add.at(cnt, (np.arange(L)[:, None], att), 1.0)
        proj = shares(np.asarray(p.projection, dtype=float), "projection", k)
        split = (proj > 0).sum(axis=1) > 1
        misaligned = np.flatnonzero(split & (np.abs(proj - cnt / K) > _SHARE_TOLERANCE).any(axis=1))
        if len(misaligned):
            raise PlanError(
                f"interval {k}, layer {misaligned[0]}: a split projection must follow the heads (each device holds "
                f"the rows of the heads it runs: shares {(cnt[misaligned[0]] / K).round(6).tolist()}), "
                f"got {proj[misaligned[0]].round(6).tolist()}"
            )
        for name, index in (("embed", p.embed), ("lm_head", p.lm_head)):
            if not 0 <= index < len(plan.devices):
                raise PlanError(f"interval {k}: `{name}` device index {index} is out of range")
        counts.append(cnt)
        attention.append(att)
        projection.append(proj)
        ffn.append(shares(np.asarray(p.ffn, dtype=float), "ffn", k))
        embed.append(remap[p.embed])
        lm_head.append(remap[p.lm_head])
        precision.append(instance.precision.with_overrides(p.precision, where=f"interval {k} precision"))
    if root is not None:
        split_any = [(np.asarray(x) > 0).sum(axis=-1) > 1 for x in (projection, ffn)]
        for kind, mats, split in zip(("projection", "ffn"), (projection, ffn), split_any):
            for k, l in np.argwhere(split):
                if mats[k][l, root] == 0:
                    raise PlanError(f"interval {k}, layer {l}: the collective root {plan.root!r} holds no share of the {kind}")
    repeat = I if len(plan.intervals) == 1 else 1
    stack = lambda xs: np.repeat(np.stack(xs), repeat, axis=0)  # noqa: E731
    return _Arrays(
        counts=stack(counts), attention=stack(attention), projection=stack(projection), ffn=stack(ffn),
        embed=np.repeat(np.array(embed), repeat), lm_head=np.repeat(np.array(lm_head), repeat),
        precision=precision * repeat, collective=plan.collective, root=root, window=window,
    )


def _client(instance: Instance, plan: Plan, arrays: _Arrays, token_bytes: float,
            interval: np.ndarray) -> tuple[float, np.ndarray | float, np.ndarray]:
    """What serving a client other than the ``embed`` device adds: seconds and bytes.

    Before the prefill the prompt's ``P`` token ids (``token_bytes`` each) go from the
    client to interval 0's ``embed`` device; the first token goes from ``lm_head`` to the
    client, both in the time to first token. Each decode step's token also goes to the
    client; that delivery overlaps the next step on a switched network (every token
    arrives one delivery late, so only the first delay counts), and takes its turn
    on a shared medium (added to every step).

    Returns the seconds added to the prefill, to each decode step (scalar or (T,)),
    and the bytes sent between every pair of devices (N, N).
    """
    N = instance.n_devices
    pairs = np.zeros((N, N))
    if plan.client is None:
        return 0.0, 0.0, pairs
    cluster = instance.cluster
    if plan.client not in cluster.names:
        raise PlanError(f"plan `client` {plan.client!r} is not a device of the instance ({', '.join(cluster.names)})")
    client = cluster.index(plan.client)
    prompt_bytes = token_bytes * instance.workload.prompt_tokens
    upload = transfer_times(cluster, prompt_bytes)[0][client, arrays.embed[0]]
    token = transfer_times(cluster, token_bytes)[0][:, client]  # (N,) from each device to the client
    pairs[client, arrays.embed[0]] += prompt_bytes if client != arrays.embed[0] else 0.0
    heads = arrays.lm_head[interval]  # (T,) lm_head device of each decode step
    np.add.at(pairs, (heads[heads != client], client), token_bytes)
    if arrays.lm_head[0] != client:
        pairs[arrays.lm_head[0], client] += token_bytes
    per_step = token[heads] if instance.cluster.network == "shared" else 0.0
    return float(upload + token[arrays.lm_head[0]]), per_step, pairs


def _check_windows(instance: Instance, plan: Plan) -> np.ndarray:
    """The plan's sliding windows as (N,) layers per device (inf where all weights stay in memory)."""
    window = np.full(instance.n_devices, np.inf)
    for name, w in (plan.windows or {}).items():
        if name not in instance.cluster.names:
            raise PlanError(f"plan `windows` names device {name!r}, which the instance lacks "
                            f"(devices: {', '.join(instance.cluster.names)})")
        device = instance.devices[instance.cluster.index(name)]
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 2:
            raise PlanError(f"plan `windows.{name}` must be a whole number of layers, at least 2 "
                            f"(one layer computing, one loading), got {w!r}")
        if device.disk_bandwidth_bytes_per_s is None:
            raise PlanError(f"plan `windows.{name}`: device {name!r} has no `disk_bandwidth` to stream weights from; "
                            "give the device one (e.g. `disk_bandwidth: 2 GB/s`) or drop its window")
        window[instance.cluster.index(name)] = w
    return window


def _offload(instance: Instance, arrays: _Arrays) -> tuple[np.ndarray, np.ndarray]:
    """Sliding-window offload: weight bytes kept off memory (I, N) and disk seconds per forward step (I, N).

    A device with window ``W`` smaller than the ``n`` layers it holds weights of keeps
    at most ``W`` of them in memory (the ``W`` heaviest count toward its peak): ``W - 2``
    stay pinned (the heaviest) and two slots stream the other layers from disk, one
    loading while the other computes. Each forward step reads the weights of every
    unpinned layer, ``Σ_l w_l - Σ_{W-2 heaviest} w_l`` bytes, at the device's disk
    bandwidth. Embedding, output head and KV cache stay in memory.
    """
    I, N = arrays.counts.shape[0], instance.n_devices
    saved, disk_s = np.zeros((I, N)), np.zeros((I, N))
    window = arrays.window
    if window is None or not np.isfinite(window).any():
        return saved, disk_s
    one_context = np.array([instance.workload.prompt_tokens])
    for k in range(I):
        memory = block_memory(instance, arrays.precision[k], one_context)
        weights = (arrays.counts[k] * memory["group_weights"][0][:, None] + arrays.projection[k] * memory["projection"][0][:, None]
                   + arrays.ffn[k] * memory["ffn"][0][:, None])  # (L, N) bytes of weights of each layer on each device
        for m in np.flatnonzero(np.isfinite(window)):
            layers = np.sort(weights[:, m][weights[:, m] > 0])[::-1]
            w = int(window[m])
            if w >= len(layers):
                continue
            saved[k, m] = layers[w:].sum()
            disk_s[k, m] = layers[w - 2:].sum() / instance.devices[m].disk_bandwidth_bytes_per_s
    return saved, disk_s


# ----------------------------------------------------------------------------- one forward step
def transfer_times(cluster, nbytes) -> np.ndarray:
    """Transfer times (R or 1, N, N) for sizes that are a float or one per row.

    Nothing is sent, and no latency paid, between a device and itself or for 0 bytes.
    """
    sizes = np.asarray(nbytes, dtype=float).reshape(-1, 1, 1)
    times = cluster.route_latency_s + sizes / cluster.route_bandwidth_bytes_per_s
    times[:, np.eye(len(cluster.devices), dtype=bool)] = 0.0
    return np.where(sizes > 0, times, 0.0)


def _receive(sources: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time for every device to get data held by `sources` (R, L, N), from the nearest holder.

    Returns the time (R, L, N) and the sending device (R, L, N).
    """
    candidate = np.where(sources[..., :, None], times[:, None, :, :], np.inf)
    sender = candidate.argmin(axis=-2)
    return np.take_along_axis(candidate, sender[..., None, :], axis=-2)[..., 0, :], sender


def block_times(flops: np.ndarray, read: np.ndarray, instance: Instance, roofline: bool,
                devices: Sequence[int] | None = None) -> np.ndarray:
    """Time of a whole block on every device, seconds: FLOPs and bytes of shape (...) → (..., N).

    Roofline ``max(FLOPs/rate, bytes/bandwidth)``, or ``FLOPs/rate`` when `roofline` is False,
    plus the device's fixed `block_overhead_s` for a block that has any work. `devices`
    (indices) restricts the last axis to those devices, in that order.
    """
    chosen = instance.devices if devices is None else [instance.devices[n] for n in devices]
    flops, read = np.asarray(flops, dtype=float), np.asarray(read, dtype=float)
    rate = np.array([d.flops_per_s for d in chosen])
    time = flops[..., None] / rate
    if roofline:
        time = np.maximum(time, read[..., None] / np.array([d.bytes_per_s for d in chosen]))
    overhead = np.array([d.block_overhead_s for d in chosen])
    if overhead.any():
        time = time + np.where(((flops > 0) | (read > 0))[..., None], overhead, 0.0)
    return time


def _root(shares: np.ndarray, root: int | None) -> int:
    return int(np.argmax(shares)) if root is None else root


@dataclass
class _StepResult:
    latency: np.ndarray  # (steps,)
    compute: np.ndarray  # (steps,)
    pair_bytes: np.ndarray  # (N, N) summed over steps


def _forward(instance: Instance, arrays: _Arrays, rows: np.ndarray, costs: StepCosts, row_of_step: np.ndarray) -> _StepResult:
    """Latency of forward steps (decode tokens, or the prefill as one step).

    `rows` selects the plan rows (intervals) the evaluation works on, one per distinct
    placement the steps use; `row_of_step` maps each step to its row. Quantities that
    do not depend on the context are computed per row, the attention groups' times
    per step.
    """
    cluster, network = instance.cluster, instance.cluster.network
    shared = network == "shared"
    C = arrays.counts[rows]  # (R, L, N)
    XP, XF = arrays.projection[rows], arrays.ffn[rows]
    embed, lm_head = arrays.embed[rows], arrays.lm_head[rows]
    R, L, N = C.shape
    first_step = np.unique(row_of_step, return_index=True)[1]
    steps_per_row = np.bincount(row_of_step, minlength=R).astype(float)
    per_row = lambda x: x if np.ndim(x) == 0 else np.asarray(x)[first_step]  # noqa: E731

    # Times of whole blocks on each device.
    group_t = block_times(costs.group_flops, costs.group_read, instance, costs.roofline)  # (steps, L, N)
    proj_t = block_times(costs.projection_flops[first_step], costs.projection_read[first_step], instance, costs.roofline)  # (R, L, N)
    ffn_t = block_times(costs.ffn_flops[first_step], costs.ffn_read[first_step], instance, costs.roofline)
    lm_t = block_times(costs.lm_head_flops[first_step], costs.lm_head_read[first_step], instance, costs.roofline)  # (R, N)
    embed_t = block_times(np.zeros(R), costs.embed_read[first_step], instance, costs.roofline)  # (R, N)

    layer_in = costs.hidden_bytes if costs.layer_in_bytes is None else costs.layer_in_bytes
    t_in, t_hidden = transfer_times(cluster, per_row(layer_in)), transfer_times(cluster, per_row(costs.hidden_bytes))
    pair = np.zeros((R, N, N))
    rr = np.arange(R)

    # Who holds the hidden state after each layer's projection and FFN: the block's device,
    # or, for a split block, the devices its collective leaves the result on.
    proj_split = (XP > 0).sum(axis=-1) > 1  # (R, L)
    ffn_split = (XF > 0).sum(axis=-1) > 1
    proj_dev = XP.argmax(axis=-1)  # (R, L) the device of a whole projection
    att_holders = np.eye(N, dtype=bool)[proj_dev]  # (R, L, N)
    ffn_holders = np.eye(N, dtype=bool)[XF.argmax(axis=-1)]
    att_tail = np.zeros((R, L))  # all-reduce time of a split projection (its compute is in the chains)
    ffn_reduce = np.zeros((R, L))
    hidden_per_row = np.broadcast_to(np.asarray(per_row(costs.hidden_bytes), dtype=float), (R,))
    cache: dict[tuple, Any] = {}

    def reduce(r: int, shares: np.ndarray):
        mask = shares > 0
        key = (mask.tobytes(), _root(shares, arrays.root), hidden_per_row[r])
        if key not in cache:
            cache[key] = all_reduce(arrays.collective, mask, key[1], hidden_per_row[r], cluster, ota=arrays.ota)
        pair[r] += cache[key].pair_bytes
        return cache[key]

    for r, l in zip(*np.nonzero(proj_split)):
        result = reduce(r, XP[r, l])
        att_tail[r, l], att_holders[r, l] = result.time_s, result.holders
    for r, l in zip(*np.nonzero(ffn_split)):
        result = reduce(r, XF[r, l])
        ffn_reduce[r, l], ffn_holders[r, l] = result.time_s, result.holders
    whole_proj = ~proj_split
    att_tail_compute = np.where(whole_proj, np.take_along_axis(proj_t, proj_dev[..., None], axis=-1)[..., 0], 0.0)
    att_tail = att_tail + att_tail_compute

    # ---- attention stage: receive the layer input, run the groups (and a split projection's share), send outputs.
    layer_src = np.concatenate([np.eye(N, dtype=bool)[embed][:, None, :], ffn_holders[:, :-1]], axis=1)
    has_groups = C > 0
    recv, sender = _receive(layer_src, t_in)
    recv = np.where(has_groups, recv, 0.0)
    out_bytes = C * np.asarray(per_row(costs.group_out_bytes), dtype=float).reshape(-1, 1, 1)
    lat = cluster.route_latency_s
    bw = cluster.route_bandwidth_bytes_per_s
    to_proj_lat = lat[:, proj_dev].transpose(1, 2, 0)  # (R, L, N): route m → projection device
    to_proj_bw = bw[:, proj_dev].transpose(1, 2, 0)
    is_proj_dev = np.arange(N) == proj_dev[..., None]
    send_out = np.where(has_groups & whole_proj[..., None] & ~is_proj_dev, to_proj_lat + out_bytes / to_proj_bw, 0.0)
    split_share = np.where(proj_split[..., None], XP, 0.0)
    compute_const = split_share * proj_t  # (R, L, N), constant in the context
    compute = C[row_of_step] * group_t + compute_const[row_of_step]  # (steps, L, N)
    masked = np.where(has_groups[row_of_step], compute, -np.inf)
    if shared or costs.sum_gather:
        transfer_fixed = (recv.sum(axis=-1) if shared else recv.max(axis=-1)) + send_out.sum(axis=-1)  # (R, L)
        att_compute = masked.max(axis=-1)
        att_transfer = transfer_fixed[row_of_step]
    else:
        chains = masked + (recv + send_out)[row_of_step]
        best = chains.argmax(axis=-1)[..., None]
        att_compute = np.take_along_axis(compute, best, axis=-1)[..., 0]
        att_transfer = np.take_along_axis(chains, best, axis=-1)[..., 0] - att_compute
    att_compute = att_compute + att_tail_compute[row_of_step]
    att_transfer = att_transfer + (att_tail - att_tail_compute)[row_of_step]

    # bytes: layer input to group devices, head outputs to the projection device
    needs_input = has_groups & ~layer_src
    r_idx, l_idx, m_idx = np.nonzero(needs_input)
    np.add.at(pair, (r_idx, sender[r_idx, l_idx, m_idx], m_idx), np.broadcast_to(np.asarray(per_row(layer_in), dtype=float), (R,))[r_idx])
    sends = has_groups & whole_proj[..., None] & ~is_proj_dev
    r_idx, l_idx, m_idx = np.nonzero(sends)
    np.add.at(pair, (r_idx, m_idx, proj_dev[r_idx, l_idx]), out_bytes[r_idx, l_idx, m_idx])

    # ---- FFN stage: constant in the context.
    in_ffn = XF > 0
    f_recv, f_sender = _receive(att_holders, t_hidden)
    f_recv = np.where(in_ffn, f_recv, 0.0)
    f_compute = np.where(in_ffn, XF * ffn_t, -np.inf)
    if shared:
        ffn_compute = f_compute.max(axis=-1)
        ffn_transfer = f_recv.sum(axis=-1) + ffn_reduce
    else:
        f_chain = f_compute + f_recv
        best = f_chain.argmax(axis=-1)[..., None]
        ffn_compute = np.take_along_axis(f_compute, best, axis=-1)[..., 0]
        ffn_transfer = np.take_along_axis(f_recv, best, axis=-1)[..., 0] + ffn_reduce
    r_idx, l_idx, m_idx = np.nonzero(in_ffn & ~att_holders)
    np.add.at(pair, (r_idx, f_sender[r_idx, l_idx, m_idx], m_idx), hidden_per_row[r_idx])

    # ---- embed, lm_head and the token id back.
    lm_recv, lm_sender = _receive(ffn_holders[:, -1:, :], transfer_times(cluster, per_row(costs.lm_head_in_bytes)))
    lm_recv = lm_recv[rr, 0, lm_head]
    lm_sender = lm_sender[rr, 0, lm_head]
    token = transfer_times(cluster, costs.token_bytes)[0][lm_head, embed]
    ends_compute = embed_t[rr, embed] + lm_t[rr, lm_head]
    ends_transfer = lm_recv + token
    lm_in = np.broadcast_to(np.asarray(per_row(costs.lm_head_in_bytes), dtype=float), (R,))
    moved = lm_sender != lm_head
    np.add.at(pair, (rr[moved], lm_sender[moved], lm_head[moved]), lm_in[moved])
    back = lm_head != embed
    np.add.at(pair, (rr[back], lm_head[back], embed[back]), costs.token_bytes)

    compute_total = att_compute.sum(axis=1) + (ffn_compute.sum(axis=1) + ends_compute)[row_of_step]
    transfer_total = att_transfer.sum(axis=1) + (ffn_transfer.sum(axis=1) + ends_transfer)[row_of_step]
    weighted_pairs = (pair * steps_per_row[:, None, None]).sum(axis=0)
    return _StepResult(compute_total + transfer_total, compute_total, weighted_pairs)


# ----------------------------------------------------------------------------- costs per profile
def step_costs(instance: Instance, precision: Precision, contexts: np.ndarray) -> StepCosts:
    """Costs of decode steps at `contexts` for the instance's profile."""
    model, batch = instance.model, instance.workload.batch
    if instance.workload.profile == "kafetzis2025":
        from placement.cost.kafetzis import kafetzis_step_costs

        return kafetzis_step_costs(model, batch, precision, contexts)
    return decode_costs(model, batch, precision, contexts)


def prefill_step_costs(instance: Instance, precision: Precision) -> StepCosts:
    """Costs of the prefill as one step, for the instance's profile (``kafetzis2025``: one step at ``S = P``)."""
    workload = instance.workload
    if workload.profile == "kafetzis2025":
        return step_costs(instance, precision, np.array([workload.prompt_tokens]))
    return prefill_costs(instance.model, workload.batch, precision, workload.prompt_tokens)


def _concat_costs(parts: list[StepCosts]) -> StepCosts:
    """Costs of consecutive runs of steps as one; sizes that differ become one value per step."""
    if len(parts) == 1:
        return parts[0]
    steps = [len(p.embed_read) for p in parts]
    fields: dict[str, Any] = {}
    for name in StepCosts.__dataclass_fields__:
        values = [getattr(p, name) for p in parts]
        if name in ("roofline", "sum_gather", "token_bytes") or values[0] is None:
            fields[name] = values[0]
        elif all(np.ndim(v) == 0 for v in values) and len(set(values)) == 1:
            fields[name] = values[0]
        else:
            fields[name] = np.concatenate([np.broadcast_to(v, (n,) + np.shape(v)[1:]) if np.ndim(v) else np.full(n, v)
                                           for v, n in zip(values, steps)])
    return StepCosts(**fields)


# ----------------------------------------------------------------------------- migration and memory
def _memory(instance: Instance, arrays: _Arrays) -> np.ndarray:
    """Bytes each device needs in each interval, at the interval's largest context: (I, N)."""
    model = instance.model
    S_max = instance.workload.interval_max_context()
    I, N = len(S_max), instance.n_devices
    needed = np.zeros((I, N))
    uniform = all(p is arrays.precision[0] for p in arrays.precision)
    everything = block_memory(instance, arrays.precision[0], S_max) if uniform else None
    for k in range(I):
        memory = {key: value[k:k + 1] if value.shape[0] == I else value for key, value in everything.items()} \
            if uniform else block_memory(instance, arrays.precision[k], S_max[k:k + 1])
        needed[k] = (
            arrays.counts[k].T @ memory["group"][0]
            + arrays.projection[k].T @ memory["projection"][0]
            + arrays.ffn[k].T @ memory["ffn"][0]
        )
        needed[k, arrays.embed[k]] += memory["embed"][0]
        tied_together = model.tied_embeddings and arrays.embed[k] == arrays.lm_head[k] and \
            arrays.precision[k].embed == arrays.precision[k].lm_head
        if not tied_together:
            needed[k, arrays.lm_head[k]] += memory["lm_head"][0]
    return needed


def _share_flows(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Fractions of a block moving from each device to each other (N, N) when shares change.

    Each device that loses share sends it to the devices that gain, in proportion to their gains.
    """
    loss = np.maximum(old - new, 0.0)
    gain = np.maximum(new - old, 0.0)
    total = gain.sum()
    return np.outer(loss, gain / total) if total > _SHARE_TOLERANCE else np.zeros((len(old), len(old)))


def _migration(instance: Instance, arrays: _Arrays) -> tuple[np.ndarray, np.ndarray]:
    """Migration time at the start of each interval (I,) and the bytes moved per pair (N, N)."""
    workload, cluster = instance.workload, instance.cluster
    I, N = arrays.counts.shape[0], instance.n_devices
    times = np.zeros(I)
    pair_total = np.zeros((N, N))
    for k in range(1, I):
        moved = arrays.attention[k] != arrays.attention[k - 1]
        if not (moved.any() or np.any(arrays.projection[k] != arrays.projection[k - 1])
                or np.any(arrays.ffn[k] != arrays.ffn[k - 1]) or arrays.embed[k] != arrays.embed[k - 1]
                or arrays.lm_head[k] != arrays.lm_head[k - 1]):
            continue
        context = workload.prompt_tokens + k * workload.tau
        memory = block_memory(instance, arrays.precision[k], np.array([context]))
        pair_bytes = np.zeros((N, N))
        pair_count = np.zeros((N, N))
        layers, groups = np.nonzero(moved)
        src, dst = arrays.attention[k - 1][layers, groups], arrays.attention[k][layers, groups]
        np.add.at(pair_bytes, (src, dst), memory["group"][0][layers])
        np.add.at(pair_count, (src, dst), 1)
        for kind in ("projection", "ffn"):
            old, new = getattr(arrays, kind)[k - 1], getattr(arrays, kind)[k]
            for l in np.flatnonzero(np.abs(old - new).max(axis=1) > _SHARE_TOLERANCE):
                flows = _share_flows(old[l], new[l])
                pair_bytes += flows * memory[kind][0][l]
                pair_count += flows > 0
        for kind in ("embed", "lm_head"):
            a, b = getattr(arrays, kind)[k - 1], getattr(arrays, kind)[k]
            if a != b:
                pair_bytes[a, b] += memory[kind][0]
                pair_count[a, b] += 1
        active = pair_count > 0
        if active.any():
            pair_time = np.where(active, pair_count * cluster.route_latency_s + pair_bytes / cluster.route_bandwidth_bytes_per_s, 0.0)
            times[k] = pair_time.sum() if cluster.network == "shared" else pair_time.max()
        pair_total += pair_bytes
    return times, pair_total


def _link_bytes(instance: Instance, pair_bytes: np.ndarray) -> np.ndarray:
    cluster = instance.cluster
    out = np.zeros(len(cluster.links))
    for u, v in zip(*np.nonzero(pair_bytes)):
        for link in cluster.route_links[u, v]:
            out[link] += pair_bytes[u, v]
    return out


# ----------------------------------------------------------------------------- entry point
def evaluate(instance: Instance, plan: Plan) -> Report:
    """Judge a plan on an instance: latency of every token, migration, memory, traffic.

    Parameters
    ----------
    instance : Instance
    plan : Plan
        One placement, or one per re-decision interval of the instance.

    Returns
    -------
    Report
        Time to first token, the decode trace, migration, peak memory per device
        per interval, bytes per link and every memory violation. An infeasible
        plan is still evaluated: its violations say where and by how much.

    Raises
    ------
    PlanError
        If the plan does not match the instance (a device it lacks, a group or
        layer out of range, shares that do not sum to 1, a wrong interval count).

    Examples
    --------
    >>> from placement import load_instance
    >>> from placement.solvers.reference import pipeline_plan
    >>> inst = load_instance("edge/llama-3.2-1b-4dev")
    >>> report = evaluate(inst, pipeline_plan(inst))
    >>> report.feasible
    True
    """
    arrays = _check_plan(instance, plan)
    errors: dict[str, float] = {}  # computed here only: a plan's extras cannot inject figures
    if plan.collective == "ota":  # time and MSE from the transceiver design, recomputed on the instance's channels
        from placement.ota.allreduce import ota_context

        arrays = replace(arrays, ota=ota_context(instance, plan))
        errors.update(arrays.ota.errors)
    workload, cluster = instance.workload, instance.cluster
    I = workload.n_intervals

    # Prefill on interval 0's placement.
    prefill = prefill_step_costs(instance, arrays.precision[0])
    first = _forward(instance, arrays, np.array([0]), prefill, np.zeros(1, dtype=np.int64))

    # Decode: one row per interval whose placement differs; costs per token.
    contexts = workload.contexts()
    interval = workload.interval_of_step()
    same_precision = all(p is arrays.precision[0] for p in arrays.precision)
    if same_precision:
        costs = step_costs(instance, arrays.precision[0], contexts)
    else:
        costs = _concat_costs([step_costs(instance, arrays.precision[k], contexts[interval == k]) for k in range(I)])
    per_step_sizes = np.ndim(costs.hidden_bytes) > 0
    if per_step_sizes:
        rows, row_of_step = interval, np.arange(len(contexts))
    elif plan.static and same_precision:
        rows, row_of_step = np.array([0]), np.zeros(len(contexts), dtype=np.int64)
    else:
        rows, row_of_step = np.arange(I), interval
    decode = _forward(instance, arrays, rows, costs, row_of_step)

    # Sliding-window offload: a step takes at least the slowest device's disk reads (overlapped with the rest).
    saved, disk_s = _offload(instance, arrays)
    disk_slowest = disk_s.max(axis=1)  # (I,)
    base_first, base_decode = first.latency, decode.latency
    first.latency = np.maximum(first.latency, disk_slowest[:1])
    decode.latency = np.maximum(decode.latency, disk_slowest[interval])

    # The client: the prompt's token ids travel to `embed`, every sampled token id back to the client.
    client_first, client_step, client_pairs = _client(instance, plan, arrays, prefill.token_bytes, interval)
    first.latency = first.latency + client_first
    decode.latency = decode.latency + client_step

    migration, migration_pairs = _migration(instance, arrays)
    needed = _memory(instance, arrays) - saved
    limits = np.array([d.usable_bytes for d in instance.devices])
    violations = [
        Violation(cluster.names[n], int(k), float(needed[k, n]), float(limits[n]))
        for k, n in zip(*np.nonzero(needed > limits * (1 + 1e-12)))
    ]
    link_bytes = _link_bytes(instance, first.pair_bytes + decode.pair_bytes + migration_pairs + client_pairs)
    breakdown = {
        "prefill_compute": float(first.compute[0]),
        "prefill_transfer": float(base_first[0] - first.compute[0]),
        "decode_compute": float(decode.compute.sum()),
        "decode_transfer": float((base_decode - decode.compute).sum()),
        "migration": float(migration.sum()),
        "prefill_disk": float(first.latency[0] - client_first - base_first[0]),
        "decode_disk": float((decode.latency - client_step - base_decode).sum()),
        "client": float(client_first + np.sum(client_step)),
    }
    return Report(
        ttft_s=float(first.latency[0]),
        decode_s=decode.latency,
        migration_s=migration,
        breakdown_s=breakdown,
        peak_memory_bytes=needed,
        memory_limit_bytes=limits,
        link_bytes=link_bytes,
        violations=violations,
        errors=errors,
        devices=cluster.names,
        links=tuple((link.u, link.v) for link in cluster.links),
    )
