"""The tables every consumer reads: step costs, block memory, block and transfer times per phase.

One place turns an instance's profile, devices and routes into numbers (like
networkx's ``build_residual_network``, shared by all its flow algorithms): the
evaluator and every back end call `phase_tables` (or `phase_totals`) on the step
costs of a phase, `block_memory` for resident bytes, `transfer_times` for messages
and `migration_times` for blocks moved at an interval boundary. Per-layer tables keep
a layer axis, so that layers of different types can carry different figures.
Formulas: docs/cost-model.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from placement.cost.blocks import BlockMemory, StepCosts
from placement.cost.hardware import Cluster
from placement.cost.precision import Precision
from placement.cost.profiles import PROFILES
from placement.cost.sparsity import DeltaSparsity, check_sparsity_profile
from placement.cost.tolerances import MEMORY_RTOL

__all__ = [
    "PhaseTables", "phase_tables", "phase_totals", "step_costs", "prefill_step_costs", "block_memory",
    "block_times", "transfer_times", "migration_times", "add_route_bytes", "link_bytes", "usable_bytes",
    "heads_share_memory", "over_memory",
]


def step_costs(instance, precision: Precision, contexts: np.ndarray) -> StepCosts:
    """Costs of decode steps at `contexts` under the instance's profile.

    Parameters
    ----------
    instance : Instance
    precision : Precision
    contexts : ndarray of int, shape (steps,)
        Context length ``S`` of each step.

    Returns
    -------
    StepCosts
        FLOPs, bytes read and bytes sent of every block, one row per step, with the
        instance's ``attention:`` sparsity (docs/sparsity.md) applied.
    """
    workload = instance.workload
    return PROFILES[workload.profile].decode(instance.model, workload.batch, precision, contexts,
                                             **_attention_option(instance))


def prefill_step_costs(instance, precision: Precision) -> StepCosts:
    """Costs of the prefill as one step under the instance's profile.

    Parameters
    ----------
    instance : Instance
    precision : Precision

    Returns
    -------
    StepCosts
        With one step, with the instance's ``attention:`` sparsity applied.
    """
    workload = instance.workload
    return PROFILES[workload.profile].prefill(instance.model, workload.batch, precision, workload.prompt_tokens,
                                              **_attention_option(instance))


def _attention_option(instance) -> dict[str, DeltaSparsity]:
    """The profile keyword that carries the instance's DeltaLLM sparsity; none without one."""
    sparsity = instance.attention
    if sparsity is None:
        return {}
    check_sparsity_profile(instance.workload.profile)  # loading checks it; an instance built by hand may not
    return {"sparsity": sparsity}


def block_memory(instance, precision: Precision, contexts: np.ndarray) -> BlockMemory:
    """Resident bytes of every block at `contexts` under the instance's profile.

    Parameters
    ----------
    instance : Instance
    precision : Precision
    contexts : ndarray of int, shape (n,)
        Cached positions ``S``.

    Returns
    -------
    BlockMemory
        Bytes, per-layer arrays of shape (n, L).
    """
    workload = instance.workload
    return PROFILES[workload.profile].memory(instance.model, workload.batch, precision, np.asarray(contexts),
                                             workload.prompt_tokens)


def usable_bytes(instance) -> np.ndarray:
    """Memory each device has for blocks (its memory less its reservation), bytes: (N,).

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    ndarray, shape (N,)
    """
    return np.array([d.usable_bytes for d in instance.devices], dtype=float)


def over_memory(needed_bytes: np.ndarray, limit_bytes: np.ndarray) -> np.ndarray:
    """Where `needed_bytes` exceeds `limit_bytes` beyond rounding (`MEMORY_RTOL`).

    Parameters
    ----------
    needed_bytes, limit_bytes : ndarray
        Bytes, broadcast against each other.

    Returns
    -------
    ndarray of bool
    """
    return np.asarray(needed_bytes) > np.asarray(limit_bytes) * (1 + MEMORY_RTOL)


def heads_share_memory(model, precision: Precision) -> bool:
    """True when ``embed`` and ``lm_head`` are one table in memory if they run on the same device.

    Parameters
    ----------
    model : ModelSpec
    precision : Precision

    Returns
    -------
    bool
        Tied embeddings stored at the same bits.
    """
    return bool(model.tied_embeddings and precision.embed == precision.lm_head)


def block_times(flops: np.ndarray, read: np.ndarray, instance, roofline: bool,
                devices: Sequence[int] | None = None) -> np.ndarray:
    """Time of a whole block on every device, seconds: FLOPs and bytes of shape (...) → (..., N).

    Parameters
    ----------
    flops, read : ndarray
        FLOPs and bytes read from memory of the block, same shape.
    instance : Instance
        Supplies the devices.
    roofline : bool
        True: ``max(FLOPs/rate, bytes/bandwidth)``; False: ``FLOPs/rate``.
    devices : sequence of int, optional
        Restrict the last axis to these device indices, in this order.

    Returns
    -------
    ndarray, shape (..., N)
        Seconds, plus the device's fixed `block_overhead_s` for a block with any work.
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


def transfer_times(cluster: Cluster, nbytes) -> np.ndarray:
    """Time to send messages of the given sizes from every device to every other, seconds.

    Parameters
    ----------
    cluster : Cluster
    nbytes : float or ndarray, shape (R,)
        Message size(s), bytes.

    Returns
    -------
    ndarray, shape (R or 1, N, N)
        ``latency + bytes / bandwidth`` along the route (`Cluster.route_time_s`); nothing is
        sent, and no latency paid, between a device and itself or for 0 bytes.
    """
    sizes = np.asarray(nbytes, dtype=float).reshape(-1)
    return cluster.route_time_s(sizes)


def migration_times(cluster: Cluster, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """Time to move blocks between every pair of devices at an interval boundary, seconds (N, N).

    Every moved block (or share of a split block) is one message on the route fastest
    for its size, paying that route's latency even when empty; the messages between
    one pair follow one another.

    Parameters
    ----------
    cluster : Cluster
    src, dst : ndarray of int, shape (M,)
        The devices each message leaves and reaches.
    nbytes : ndarray, shape (M,)
        Its size, bytes.

    Returns
    -------
    ndarray, shape (N, N)
        Summed message times of every pair (``count·latency + bytes/bandwidth`` when
        every message takes the same route).
    """
    n = len(cluster.devices)
    out = np.zeros((n, n))
    if len(src) == 0:
        return out
    times = _candidate_times(cluster, src, dst, nbytes).min(axis=0)
    np.add.at(out, (src, dst), np.where(src == dst, 0.0, times))
    return out


def _candidate_times(cluster: Cluster, src: np.ndarray, dst: np.ndarray, nbytes) -> np.ndarray:
    """Seconds of each message (src → dst, `nbytes`) on every candidate route: (B, M)."""
    return cluster.candidate_latency_s[:, src, dst] + np.asarray(nbytes, dtype=float) / \
        cluster.candidate_bandwidth_bytes_per_s[:, src, dst]


def add_route_bytes(route_bytes: np.ndarray, cluster: Cluster, src, dst, message_bytes, total_bytes=None) -> None:
    """Add messages to a tally of bytes per candidate route, in place.

    Parameters
    ----------
    route_bytes : ndarray, shape (B, N, N)
        Bytes sent from ``u`` to ``v`` on candidate route ``b`` (`Cluster.candidate_links`).
    cluster : Cluster
    src, dst : ndarray of int, shape (M,)
    message_bytes : ndarray, shape (M,) or float
        The size of each message, which picks its route (`Cluster.route_index`).
    total_bytes : ndarray, shape (M,) or float, optional
        Bytes to add for each (several messages of one size, or weighted by steps);
        `message_bytes` by default.

    Returns
    -------
    None
        `route_bytes` is updated.
    """
    src, dst = np.asarray(src, dtype=np.int64).ravel(), np.asarray(dst, dtype=np.int64).ravel()
    if len(src) == 0:
        return
    total = message_bytes if total_bytes is None else total_bytes
    if len(route_bytes) == 1:  # one candidate route: no choice to make
        np.add.at(route_bytes[0], (src, dst), total)
        return
    route = _candidate_times(cluster, src, dst, message_bytes).argmin(axis=0)
    np.add.at(route_bytes, (route, src, dst), total)


def link_bytes(cluster: Cluster, route_bytes: np.ndarray) -> np.ndarray:
    """Bytes every link carries, from a tally per candidate route (`add_route_bytes`).

    Parameters
    ----------
    cluster : Cluster
    route_bytes : ndarray, shape (B, N, N)

    Returns
    -------
    ndarray, shape (n_links,)
        Bytes, in the order of ``cluster.links``.
    """
    out = np.zeros(len(cluster.links))
    for b, u, v in zip(*np.nonzero(route_bytes)):
        for link in cluster.candidate_links[b, u, v]:
            out[link] += route_bytes[b, u, v]
    return out


@dataclass(frozen=True, eq=False)
class PhaseTables:
    """Block and transfer times of a phase's steps on every device, seconds.

    Attributes
    ----------
    group_s : ndarray (steps, L, N)
        One attention group of layer ``l`` on device ``n``, at every step.
    projection_s, ffn_s : ndarray (R, L, N)
        The whole block, at the selected steps (`phase_tables`'s ``at``).
    embed_s, lm_head_s : ndarray (R, N)
    layer_in_s, hidden_s, lm_head_in_s : ndarray (R or 1, N, N)
        The layer input to the attention groups, the hidden state between blocks and
        into ``lm_head``, from device ``u`` to ``v`` (first axis 1 when the size is
        the same at every step).
    token_s : ndarray (N, N)
        The sampled token id from ``lm_head``'s device back to ``embed``'s.
    expert_s, ffn_fixed_s : ndarray (R, L, N) or None
        One routed expert for one token, and the router with the shared experts (the
        whole FFN of a dense layer), when the profile has experts.
    """

    group_s: np.ndarray
    projection_s: np.ndarray
    ffn_s: np.ndarray
    embed_s: np.ndarray
    lm_head_s: np.ndarray
    layer_in_s: np.ndarray
    hidden_s: np.ndarray
    lm_head_in_s: np.ndarray
    token_s: np.ndarray
    expert_s: np.ndarray | None = None
    ffn_fixed_s: np.ndarray | None = None


def _at(size, at: np.ndarray | None):
    return size if np.ndim(size) == 0 or at is None else np.asarray(size)[at]


def phase_tables(instance, costs: StepCosts, at: np.ndarray | None = None) -> PhaseTables:
    """Every block and transfer time of a phase, built once for all consumers.

    Parameters
    ----------
    instance : Instance
    costs : StepCosts
        The phase's steps (`step_costs` or `prefill_step_costs`).
    at : ndarray of int, optional
        Step indices at which to tabulate everything but the groups (whose cost grows with
        the context and is tabulated at every step); all steps by default.

    Returns
    -------
    PhaseTables
    """
    pick = slice(None) if at is None else at
    roof, cluster = costs.roofline, instance.cluster
    return PhaseTables(
        group_s=block_times(costs.group_flops, costs.group_read, instance, roof),
        projection_s=block_times(costs.projection_flops[pick], costs.projection_read[pick], instance, roof),
        ffn_s=block_times(costs.ffn_flops[pick], costs.ffn_read[pick], instance, roof),
        embed_s=block_times(np.zeros(len(costs.embed_read[pick])), costs.embed_read[pick], instance, roof),
        lm_head_s=block_times(costs.lm_head_flops[pick], costs.lm_head_read[pick], instance, roof),
        layer_in_s=transfer_times(cluster, _at(costs.layer_input_bytes, at)),
        hidden_s=transfer_times(cluster, _at(costs.hidden_bytes, at)),
        lm_head_in_s=transfer_times(cluster, _at(costs.lm_head_in_bytes, at)),
        token_s=transfer_times(cluster, costs.token_bytes)[0],
        **_expert_tables(instance, costs, pick, roof),
    )


def _expert_tables(instance, costs: StepCosts, pick, roof: bool) -> dict[str, np.ndarray | None]:
    if costs.expert_flops is None:
        return {}
    return {"expert_s": block_times(costs.expert_flops[pick], costs.expert_read[pick], instance, roof),
            "ffn_fixed_s": block_times(costs.ffn_fixed_flops[pick], costs.ffn_fixed_read[pick], instance, roof)}


def phase_totals(instance, costs: StepCosts) -> PhaseTables:
    """`phase_tables` summed over the phase's steps: every field without its step axis.

    Parameters
    ----------
    instance : Instance
    costs : StepCosts

    Returns
    -------
    PhaseTables
        ``group_s``, ``projection_s``, ``ffn_s`` (L, N); ``embed_s``, ``lm_head_s`` (N,);
        transfers (N, N): seconds summed over every step of the phase.
    """
    steps = len(costs.embed_read)
    t = phase_tables(instance, costs)
    per_step = lambda x: np.broadcast_to(x, (steps,) + x.shape[1:]).sum(axis=0)  # noqa: E731
    return PhaseTables(
        group_s=t.group_s.sum(axis=0), projection_s=t.projection_s.sum(axis=0), ffn_s=t.ffn_s.sum(axis=0),
        embed_s=t.embed_s.sum(axis=0), lm_head_s=t.lm_head_s.sum(axis=0), layer_in_s=per_step(t.layer_in_s),
        hidden_s=per_step(t.hidden_s), lm_head_in_s=per_step(t.lm_head_in_s), token_s=per_step(t.token_s[None]),
    )
