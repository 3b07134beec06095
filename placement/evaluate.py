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

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from placement.collectives import all_reduce, collective_context
from placement.cost.blocks import StepCosts
from placement.cost.precision import Precision
from placement.cost.tables import (
    add_route_bytes, block_memory, heads_share_memory, link_bytes, migration_times, over_memory, phase_tables,
    prefill_step_costs, step_costs, transfer_times, usable_bytes,
)
from placement.cost.tolerances import SHARE_ATOL, SHARE_SUM_ATOL
from placement.cost.units import format_bytes
from placement.experts import expert_memory, expert_moves, expert_rows, expert_stages
from placement.errors import PlanError
from placement.instance import Instance
from placement.plan import COLLECTIVES, Plan

__all__ = ["evaluate", "check_plan", "migration_messages", "PlanArrays", "Report", "Violation"]


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
    decode_compute_s : ndarray, shape (T,)
        The compute along each decode step's critical path, seconds; the rest of the
        step is transfers (and, where a plan has them, disk reads and the client's
        token delivery). Sums to ``breakdown_s["decode_compute"]``.
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
    decode_compute_s: np.ndarray
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
class PlanArrays:
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
    experts: np.ndarray | None = None  # (I, L, E) device of every routed expert (-1: dense layer); None: with the FFN
    ota: Any = None  # the wireless all-reduce of an `ota` plan (`placement.collectives.collective_context`)


def check_plan(instance: Instance, plan: Plan) -> PlanArrays:
    """Check a plan against an instance and give it as arrays in the instance's device order.

    Parameters
    ----------
    instance : Instance
    plan : Plan

    Returns
    -------
    PlanArrays
        One row per interval of the instance (a one-interval plan is repeated).

    Raises
    ------
    PlanError
        Naming what does not match (a device, a shape, shares, the collective's root).
    """
    remap, root = _check_header(instance, plan)
    window = _check_windows(instance, plan)
    rows = [_interval_rows(instance, plan, remap, k, p) for k, p in enumerate(plan.intervals)]
    counts, attention, projection, ffn, embed, lm_head, precision = (list(x) for x in zip(*rows))
    experts = expert_rows(instance, plan, remap, ffn)
    if root is not None:
        split_any = [(np.asarray(x) > 0).sum(axis=-1) > 1 for x in (projection, ffn)]
        for kind, mats, split in zip(("projection", "ffn"), (projection, ffn), split_any):
            for k, l in np.argwhere(split):
                if mats[k][l, root] == 0:
                    raise PlanError(f"interval {k}, layer {l}: the collective root {plan.root!r} holds no share of the {kind}")
    repeat = instance.workload.n_intervals if len(plan.intervals) == 1 else 1
    stack = lambda xs: np.repeat(np.stack(xs), repeat, axis=0)  # noqa: E731
    return PlanArrays(
        counts=stack(counts), attention=stack(attention), projection=stack(projection), ffn=stack(ffn),
        embed=np.repeat(np.array(embed), repeat), lm_head=np.repeat(np.array(lm_head), repeat),
        precision=precision * repeat, collective=plan.collective, root=root, window=window,
        experts=None if experts is None else stack(experts),
    )


def _check_header(instance: Instance, plan: Plan) -> tuple[np.ndarray, int | None]:
    """The plan's devices in the instance's order (remap), its interval count, collective and root."""
    cluster, workload = instance.cluster, instance.workload
    remap = np.array([cluster.index(name) if name in cluster.names else -1 for name in plan.devices], dtype=np.int64)
    unknown = [name for name, i in zip(plan.devices, remap) if i < 0]
    if unknown:
        raise PlanError(
            f"plan names device(s) {', '.join(map(repr, unknown))} that the instance lacks "
            f"(devices: {', '.join(cluster.names)}); solve the plan for this instance"
        )
    if len(plan.intervals) not in (1, workload.n_intervals):
        raise PlanError(
            f"plan has {len(plan.intervals)} intervals, the instance has {workload.n_intervals} "
            f"({workload.generate_tokens} tokens every {workload.tau}); give one placement per interval, or one for all"
        )
    if plan.collective not in COLLECTIVES:
        raise PlanError(f"plan `collective` {plan.collective!r} is unknown; use one of {', '.join(COLLECTIVES)}")
    if plan.root is not None and plan.root not in cluster.names:
        raise PlanError(f"plan `root` {plan.root!r} is not a device of the instance ({', '.join(cluster.names)})")
    return remap, None if plan.root is None else cluster.index(plan.root)


def _shares(matrix: np.ndarray, what: str, k: int, remap: np.ndarray, instance: Instance) -> np.ndarray:
    """A block's shares (L, plan devices) in the instance's device order (L, N), checked."""
    L, n_devices = instance.model.layers, instance.n_devices
    if matrix.shape != (L, len(remap)):
        raise PlanError(f"interval {k}: `{what}` has {matrix.shape[0]} layers, the model has {L}")
    out = np.zeros((L, n_devices))
    np.add.at(out, (slice(None), remap), matrix)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1) | (out < 0).any(axis=1) | (np.abs(out.sum(axis=1) - 1) > SHARE_SUM_ATOL))
    if len(bad):
        raise PlanError(
            f"interval {k}, layer {bad[0]}: `{what}` shares must be non-negative and sum to 1, "
            f"got {out[bad[0]].round(6).tolist()}"
        )
    return out


def _interval_rows(instance: Instance, plan: Plan, remap: np.ndarray, k: int, p) -> tuple:
    """One interval's placement as arrays: group counts, group devices, projection and FFN shares, ends, precision."""
    L, K, N = instance.model.layers, instance.model.kv_heads, instance.n_devices
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
    proj = _shares(np.asarray(p.projection, dtype=float), "projection", k, remap, instance)
    split = (proj > 0).sum(axis=1) > 1
    misaligned = np.flatnonzero(split & (np.abs(proj - cnt / K) > SHARE_ATOL).any(axis=1))
    if len(misaligned):
        raise PlanError(
            f"interval {k}, layer {misaligned[0]}: a split projection must follow the heads (each device holds "
            f"the rows of the heads it runs: shares {(cnt[misaligned[0]] / K).round(6).tolist()}), "
            f"got {proj[misaligned[0]].round(6).tolist()}"
        )
    for name, index in (("embed", p.embed), ("lm_head", p.lm_head)):
        if not 0 <= index < len(plan.devices):
            raise PlanError(f"interval {k}: `{name}` device index {index} is out of range")
    ffn = _shares(np.asarray(p.ffn, dtype=float), "ffn", k, remap, instance)
    precision = instance.precision.with_overrides(p.precision, where=f"interval {k} precision")
    return cnt, att, proj, ffn, remap[p.embed], remap[p.lm_head], precision


def _client(instance: Instance, plan: Plan, arrays: PlanArrays, token_bytes: float,
            interval: np.ndarray) -> tuple[float, np.ndarray | float, np.ndarray]:
    """What serving a client other than the ``embed`` device adds: seconds and bytes.

    Before the prefill the prompt's ``P`` token ids (``token_bytes`` each) go from the
    client to interval 0's ``embed`` device; the first token goes from ``lm_head`` to the
    client, both in the time to first token. Each decode step's token also goes to the
    client; that delivery overlaps the next step on a switched network (every token
    arrives one delivery late, so only the first delay counts), and takes its turn
    on a shared medium (added to every step).

    Returns the seconds added to the prefill, to each decode step (scalar or (T,)),
    and the bytes sent on every candidate route (B, N, N).
    """
    cluster = instance.cluster
    pairs = np.zeros(cluster.candidate_latency_s.shape)
    if plan.client is None:
        return 0.0, 0.0, pairs
    if plan.client not in cluster.names:
        raise PlanError(f"plan `client` {plan.client!r} is not a device of the instance ({', '.join(cluster.names)})")
    client = cluster.index(plan.client)
    prompt_bytes = token_bytes * instance.workload.prompt_tokens
    upload = transfer_times(cluster, prompt_bytes)[0][client, arrays.embed[0]]
    token = transfer_times(cluster, token_bytes)[0][:, client]  # (N,) from each device to the client
    if client != arrays.embed[0]:
        add_route_bytes(pairs, cluster, [client], [arrays.embed[0]], prompt_bytes)
    heads = arrays.lm_head[interval]  # (T,) lm_head device of each decode step
    senders = np.append(heads, arrays.lm_head[0])  # every decode token, and the first token
    senders = senders[senders != client]
    add_route_bytes(pairs, cluster, senders, np.full(len(senders), client), token_bytes)
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


def _offload(instance: Instance, arrays: PlanArrays) -> tuple[np.ndarray, np.ndarray]:
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
        weights = (arrays.counts[k] * memory.group_weights[0][:, None] + arrays.projection[k] * memory.projection[0][:, None]
                   + arrays.ffn[k] * memory.ffn[0][:, None])  # (L, N) bytes of weights of each layer on each device
        for m in np.flatnonzero(np.isfinite(window)):
            layers = np.sort(weights[:, m][weights[:, m] > 0])[::-1]
            w = int(window[m])
            if w >= len(layers):
                continue
            saved[k, m] = layers[w:].sum()
            disk_s[k, m] = layers[w - 2:].sum() / instance.devices[m].disk_bandwidth_bytes_per_s
    return saved, disk_s


# ----------------------------------------------------------------------------- one forward step
def _receive(sources: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time for every device to get data held by `sources` (R, L, N), from the nearest holder.

    Returns the time (R, L, N) and the sending device (R, L, N).
    """
    candidate = np.where(sources[..., :, None], times[:, None, :, :], np.inf)
    sender = candidate.argmin(axis=-2)
    return np.take_along_axis(candidate, sender[..., None, :], axis=-2)[..., 0, :], sender


def _root(shares: np.ndarray, root: int | None) -> int:
    return int(np.argmax(shares)) if root is None else root


@dataclass
class _StepResult:
    latency: np.ndarray  # (steps,)
    compute: np.ndarray  # (steps,)
    route_bytes: np.ndarray  # (B, N, N) bytes on every candidate route, summed over steps


@dataclass(frozen=True, eq=False)
class _Rows:
    """What every stage of `_forward` reads: the plan rows, the phase's tables, message sizes per row.

    `route_bytes` (B, N, N) is the one thing the stages add to: the bytes sent on every
    candidate route, weighted by the steps of each row.
    """

    instance: Any
    cluster: Any
    shared: bool
    counts: np.ndarray  # (R, L, N)
    projection: np.ndarray  # (R, L, N)
    ffn: np.ndarray  # (R, L, N)
    embed: np.ndarray  # (R,)
    lm_head: np.ndarray  # (R,)
    row_of_step: np.ndarray  # (steps,)
    steps_per_row: np.ndarray  # (R,)
    experts: np.ndarray | None  # (R, L, E) device of every routed expert, or None
    tables: Any  # PhaseTables: groups per step, the rest per row
    costs: StepCosts
    sizes: dict[str, np.ndarray]  # bytes per row: layer_in, hidden, group_out, lm_in
    route_bytes: np.ndarray

    def send(self, src, dst, message_bytes, rows) -> None:
        """Count messages of `message_bytes` sent once per step of their rows."""
        add_route_bytes(self.route_bytes, self.cluster, src, dst, message_bytes, message_bytes * self.steps_per_row[rows])


def _rows(instance: Instance, arrays: PlanArrays, rows: np.ndarray, costs: StepCosts, row_of_step: np.ndarray) -> _Rows:
    first_step = np.unique(row_of_step, return_index=True)[1]
    R = len(rows)

    def per_row(x) -> np.ndarray:
        return np.broadcast_to(np.asarray(x if np.ndim(x) == 0 else np.asarray(x)[first_step], dtype=float), (R,))

    sizes = {"layer_in": per_row(costs.layer_input_bytes), "hidden": per_row(costs.hidden_bytes),
             "group_out": per_row(costs.group_out_bytes), "lm_in": per_row(costs.lm_head_in_bytes)}
    cluster = instance.cluster
    return _Rows(
        instance=instance, cluster=cluster, shared=cluster.network == "shared", counts=arrays.counts[rows],
        projection=arrays.projection[rows], ffn=arrays.ffn[rows], embed=arrays.embed[rows], lm_head=arrays.lm_head[rows],
        row_of_step=row_of_step, steps_per_row=np.bincount(row_of_step, minlength=R).astype(float),
        experts=None if arrays.experts is None else arrays.experts[rows],
        tables=phase_tables(instance, costs, first_step), costs=costs, sizes=sizes,
        route_bytes=np.zeros(cluster.candidate_latency_s.shape),
    )


def _collectives(x: _Rows, arrays: PlanArrays):
    """Who holds the hidden state after each layer's projection and FFN, and the all-reduce times.

    The block's device, or, for a split block, the devices its collective leaves the
    result on. Returns the holders after the projection and after the FFN (R, L, N),
    and the all-reduce seconds of split projections and FFNs (R, L).
    """
    R, L, N = x.counts.shape
    XP, XF = x.projection, x.ffn
    att_holders = np.eye(N, dtype=bool)[XP.argmax(axis=-1)]  # (R, L, N)
    ffn_holders = np.eye(N, dtype=bool)[XF.argmax(axis=-1)]
    att_reduce, ffn_reduce = np.zeros((R, L)), np.zeros((R, L))
    hidden = x.sizes["hidden"]
    cache: dict[tuple, Any] = {}
    for shares, holders, seconds in ((XP, att_holders, att_reduce), (XF, ffn_holders, ffn_reduce)):
        for r, l in zip(*np.nonzero((shares > 0).sum(axis=-1) > 1)):
            mask = shares[r, l] > 0
            key = (mask.tobytes(), _root(shares[r, l], arrays.root), hidden[r])
            if key not in cache:
                cache[key] = all_reduce(arrays.collective, mask, key[1], hidden[r], x.cluster, ota=arrays.ota)
            cost = cache[key]
            src, dst = np.nonzero(cost.pair_bytes)
            add_route_bytes(x.route_bytes, x.cluster, src, dst, cost.message_bytes,
                            cost.pair_bytes[src, dst] * x.steps_per_row[r])
            seconds[r, l], holders[r, l] = cost.time_s, cost.holders
    return att_holders, ffn_holders, att_reduce, ffn_reduce


def _attention_stage(x: _Rows, ffn_holders: np.ndarray, att_reduce: np.ndarray):
    """Receive the layer input, run the groups (and a split projection's share), send the head outputs,
    run a whole projection or all-reduce a split one. Returns compute and transfer seconds (steps, L)."""
    C, XP, t = x.counts, x.projection, x.tables
    R, L, N = C.shape
    rows, steps = np.arange(R), x.row_of_step
    proj_split = (XP > 0).sum(axis=-1) > 1  # (R, L)
    proj_dev = XP.argmax(axis=-1)  # (R, L) the device of a whole projection
    tail_compute = np.where(~proj_split, np.take_along_axis(t.projection_s, proj_dev[..., None], axis=-1)[..., 0], 0.0)
    layer_src = np.concatenate([np.eye(N, dtype=bool)[x.embed][:, None, :], ffn_holders[:, :-1]], axis=1)
    has_groups = C > 0
    recv, sender = _receive(layer_src, t.layer_in_s)
    recv = np.where(has_groups, recv, 0.0)
    # head outputs: a device with c groups sends one message of c·group_out bytes (its own route)
    group_out = x.sizes["group_out"]
    out_s = transfer_times(x.cluster, (group_out[:, None] * np.arange(int(C.max()) + 1)).ravel()).reshape(R, -1, N, N)
    count = C.astype(np.int64)
    sends = has_groups & ~proj_split[..., None] & (np.arange(N) != proj_dev[..., None])
    to_proj = out_s[rows[:, None, None], count, np.arange(N), proj_dev[..., None]]  # (R, L, N): m → projection device
    send_out = np.where(sends, to_proj, 0.0)
    compute = C[steps] * t.group_s + (np.where(proj_split[..., None], XP, 0.0) * t.projection_s)[steps]  # (steps, L, N)
    masked = np.where(has_groups[steps], compute, -np.inf)
    if x.shared or x.costs.sum_gather:
        att_compute = masked.max(axis=-1)
        att_transfer = ((recv.sum(axis=-1) if x.shared else recv.max(axis=-1)) + send_out.sum(axis=-1))[steps]
    else:
        chains = masked + (recv + send_out)[steps]
        best = chains.argmax(axis=-1)[..., None]
        att_compute = np.take_along_axis(compute, best, axis=-1)[..., 0]
        att_transfer = np.take_along_axis(chains, best, axis=-1)[..., 0] - att_compute
    # bytes: layer input to group devices, head outputs to the projection device
    r, l, m = np.nonzero(has_groups & ~layer_src)
    x.send(sender[r, l, m], m, x.sizes["layer_in"][r], r)
    r, l, m = np.nonzero(sends)
    x.send(m, proj_dev[r, l], count[r, l, m] * group_out[r], r)
    return att_compute + tail_compute[steps], att_transfer + att_reduce[steps]


def _ffn_stage(x: _Rows, att_holders: np.ndarray, ffn_reduce: np.ndarray):
    """The hidden state to the FFN device(s), the FFN, a split FFN's all-reduce: seconds (R, L), constant in the context."""
    XF = x.ffn
    in_ffn = XF > 0
    recv, sender = _receive(att_holders, x.tables.hidden_s)
    recv = np.where(in_ffn, recv, 0.0)
    compute = np.where(in_ffn, XF * x.tables.ffn_s, -np.inf)
    if x.shared:
        ffn_compute, ffn_transfer = compute.max(axis=-1), recv.sum(axis=-1) + ffn_reduce
    else:
        best = (compute + recv).argmax(axis=-1)[..., None]
        ffn_compute = np.take_along_axis(compute, best, axis=-1)[..., 0]
        ffn_transfer = np.take_along_axis(recv, best, axis=-1)[..., 0] + ffn_reduce
    r, l, m = np.nonzero(in_ffn & ~att_holders)
    x.send(sender[r, l, m], m, x.sizes["hidden"][r], r)
    if x.experts is not None:  # placed experts: the router's device dispatches to the experts' devices
        on = XF.argmax(axis=-1)
        expert_stages(x, np.take_along_axis(recv, on[..., None], axis=-1)[..., 0], ffn_compute, ffn_transfer)
    return ffn_compute, ffn_transfer


def _ends(x: _Rows, ffn_holders: np.ndarray):
    """``embed``, the last hidden state to ``lm_head``, ``lm_head``, the token id back: seconds (R,)."""
    rows, embed, lm_head = np.arange(len(x.embed)), x.embed, x.lm_head
    recv, sender = _receive(ffn_holders[:, -1:, :], x.tables.lm_head_in_s)
    recv, sender = recv[rows, 0, lm_head], sender[rows, 0, lm_head]
    compute = x.tables.embed_s[rows, embed] + x.tables.lm_head_s[rows, lm_head]
    transfer = recv + x.tables.token_s[lm_head, embed]
    moved = sender != lm_head
    x.send(sender[moved], lm_head[moved], x.sizes["lm_in"][moved], rows[moved])
    back = lm_head != embed
    x.send(lm_head[back], embed[back], np.full(back.sum(), float(x.costs.token_bytes)), rows[back])
    return compute, transfer


def _forward(instance: Instance, arrays: PlanArrays, rows: np.ndarray, costs: StepCosts, row_of_step: np.ndarray) -> _StepResult:
    """Latency of forward steps (decode tokens, or the prefill as one step).

    `rows` selects the plan rows (intervals) the evaluation works on, one per distinct
    placement the steps use; `row_of_step` maps each step to its row. Quantities that
    do not depend on the context are computed per row, the attention groups' times
    per step.
    """
    x = _rows(instance, arrays, rows, costs, row_of_step)
    att_holders, ffn_holders, att_reduce, ffn_reduce = _collectives(x, arrays)
    att_compute, att_transfer = _attention_stage(x, ffn_holders, att_reduce)
    ffn_compute, ffn_transfer = _ffn_stage(x, att_holders, ffn_reduce)
    ends_compute, ends_transfer = _ends(x, ffn_holders)
    compute_total = att_compute.sum(axis=1) + (ffn_compute.sum(axis=1) + ends_compute)[row_of_step]
    transfer_total = att_transfer.sum(axis=1) + (ffn_transfer.sum(axis=1) + ends_transfer)[row_of_step]
    return _StepResult(compute_total + transfer_total, compute_total, x.route_bytes)


# ----------------------------------------------------------------------------- costs of several intervals
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
def _memory(instance: Instance, arrays: PlanArrays) -> np.ndarray:
    """Bytes each device needs in each interval, at the interval's largest context: (I, N)."""
    model = instance.model
    S_max = instance.workload.interval_max_context()
    I, N = len(S_max), instance.n_devices
    needed = np.zeros((I, N))
    uniform = all(p is arrays.precision[0] for p in arrays.precision)
    everything = block_memory(instance, arrays.precision[0], S_max) if uniform else None
    for k in range(I):
        memory = everything.at(k) if uniform else block_memory(instance, arrays.precision[k], S_max[k:k + 1])
        needed[k] = (
            arrays.counts[k].T @ memory.group[0]
            + arrays.projection[k].T @ memory.projection[0]
            + arrays.ffn[k].T @ memory.ffn[0]
        )
        if arrays.experts is not None:
            needed[k] += expert_memory(arrays.experts[k], arrays.ffn[k], memory, N)
        needed[k, arrays.embed[k]] += memory.embed[0]
        if not (arrays.embed[k] == arrays.lm_head[k] and heads_share_memory(model, arrays.precision[k])):
            needed[k, arrays.lm_head[k]] += memory.lm_head[0]
    return needed


def _share_flows(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Fractions of a block moving from each device to each other (N, N) when shares change.

    Each device that loses share sends it to the devices that gain, in proportion to their gains.
    """
    loss = np.maximum(old - new, 0.0)
    gain = np.maximum(new - old, 0.0)
    total = gain.sum()
    return np.outer(loss, gain / total) if total > SHARE_ATOL else np.zeros((len(old), len(old)))


def migration_messages(instance: Instance, arrays: PlanArrays, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blocks moved at the start of interval ``k`` (≥ 1): one message per moved block or share.

    Parameters
    ----------
    instance : Instance
    arrays : PlanArrays
        `check_plan`'s arrays.
    k : int
        The interval that starts.

    Returns
    -------
    src, dst : ndarray of int, shape (M,)
        The device each message leaves and reaches.
    size : ndarray, shape (M,)
        Its bytes (the block's memory at the interval's first context); all empty when nothing moves.
    """
    moved = arrays.attention[k] != arrays.attention[k - 1]
    experts_moved = arrays.experts is not None and np.any(arrays.experts[k] != arrays.experts[k - 1])
    if not (moved.any() or experts_moved or np.any(arrays.projection[k] != arrays.projection[k - 1])
            or np.any(arrays.ffn[k] != arrays.ffn[k - 1]) or arrays.embed[k] != arrays.embed[k - 1]
            or arrays.lm_head[k] != arrays.lm_head[k - 1]):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    workload = instance.workload
    context = workload.prompt_tokens + k * workload.tau
    memory = block_memory(instance, arrays.precision[k], np.array([context]))
    layers, groups = np.nonzero(moved)
    src = [arrays.attention[k - 1][layers, groups]]
    dst = [arrays.attention[k][layers, groups]]
    size = [memory.group[0][layers]]
    apart = 0.0 if arrays.experts is None else instance.model.experts * memory.expert[0]  # experts move alone
    for kind, block in (("projection", memory.projection[0]), ("ffn", memory.ffn[0] - apart)):
        old, new = getattr(arrays, kind)[k - 1], getattr(arrays, kind)[k]
        for l in np.flatnonzero(np.abs(old - new).max(axis=1) > SHARE_ATOL):
            flows = _share_flows(old[l], new[l])
            u, v = np.nonzero(flows > 0)
            src.append(u), dst.append(v), size.append(flows[u, v] * block[l])
    for kind in ("embed", "lm_head"):
        a, b = getattr(arrays, kind)[k - 1], getattr(arrays, kind)[k]
        if a != b:
            src.append([a]), dst.append([b]), size.append(getattr(memory, kind)[:1])
    if arrays.experts is not None:
        for part, values in zip((src, dst, size), expert_moves(arrays.experts[k - 1], arrays.experts[k], memory)):
            part.append(values)
    src, dst = (np.concatenate(x).astype(np.int64) for x in (src, dst))
    return src, dst, np.concatenate(size).astype(float)


def _migration(instance: Instance, arrays: PlanArrays) -> tuple[np.ndarray, np.ndarray]:
    """Migration time at the start of each interval (I,) and the bytes moved on every candidate route (B, N, N)."""
    cluster = instance.cluster
    I = arrays.counts.shape[0]
    times = np.zeros(I)
    route_total = np.zeros(cluster.candidate_latency_s.shape)
    for k in range(1, I):
        src, dst, size = migration_messages(instance, arrays, k)
        if len(src):
            pair_time = migration_times(cluster, src, dst, size)
            times[k] = pair_time.sum() if cluster.network == "shared" else pair_time.max()
            add_route_bytes(route_total, cluster, src, dst, size)
    return times, route_total


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
    arrays = check_plan(instance, plan)
    errors: dict[str, float] = {}  # computed here only: a plan's extras cannot inject figures
    context = collective_context(instance, plan)
    if context is not None:  # e.g. ota: time and MSE from the transceiver design on the instance's channels
        arrays = replace(arrays, ota=context)
        errors.update(context.errors)
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
    limits = usable_bytes(instance)
    violations = [
        Violation(cluster.names[n], int(k), float(needed[k, n]), float(limits[n]))
        for k, n in zip(*np.nonzero(over_memory(needed, limits)))
    ]
    traffic = link_bytes(cluster, first.route_bytes + decode.route_bytes + migration_pairs + client_pairs)
    breakdown = {
        "prefill_compute": float(first.compute[0]),
        "prefill_transfer": float(base_first[0] - first.compute[0]),
        "decode_compute": float(decode.compute.sum()),  # == decode_compute_s.sum()
        "decode_transfer": float((base_decode - decode.compute).sum()),
        "migration": float(migration.sum()),
        "prefill_disk": float(first.latency[0] - client_first - base_first[0]),
        "decode_disk": float((decode.latency - client_step - base_decode).sum()),
        "client": float(client_first + np.sum(client_step)),
    }
    return Report(
        ttft_s=float(first.latency[0]),
        decode_s=decode.latency,
        decode_compute_s=decode.compute,
        migration_s=migration,
        breakdown_s=breakdown,
        peak_memory_bytes=needed,
        memory_limit_bytes=limits,
        link_bytes=traffic,
        violations=violations,
        errors=errors,
        devices=cluster.names,
        links=tuple((link.u, link.v) for link in cluster.links),
    )
