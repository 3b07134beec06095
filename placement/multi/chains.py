"""Each model's generation as a chain of tasks on devices and the network.

A *layer plan* runs each layer (its attention groups, projection and FFN) whole on one
device, ``embed`` and ``lm_head`` on one device each, one placement for the whole
generation; the joint methods search these (other plans: `placement.multi.dags`). One
forward step of such a plan is a
chain (DESIGN.md, "One decode step"): ``embed`` → the hidden state to layer 0's device
→ a run of consecutive layers on one device → the hidden state to the next run's
device → … → ``lm_head`` → the token id back to ``embed``. Consecutive blocks on one
device are one task (they run back to back); a transfer between two devices is one
task. The generation is the prefill's chain followed by the chain of every decode
step, in order. Every duration comes from the cost layer's tables
(`placement.cost.tables.phase_tables`), the ones the single-model evaluator reads, so
the sum of one model's chain is its `placement.evaluate` total (a test checks this).
Each transfer also knows the directed links of its route (`directed_links`), which it
holds on a ``switched`` network (`placement.multi.schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.cost.tables import block_memory, heads_share_memory, phase_tables, prefill_step_costs, step_costs
from placement.errors import PlanError
from placement.instance import Instance
from placement.plan import Placement, Plan

__all__ = ["ChainTables", "Chain", "chain_tables", "layer_devices", "layer_plan", "chain", "needed_bytes", "NETWORK",
           "directed_links", "chain_links"]

NETWORK = -1  # resource id of a transfer: the shared medium on a `shared` network, no resource on a `switched` one


@dataclass(frozen=True, eq=False)
class ChainTables:
    """A model's block and transfer times per step on every device, built once per model.

    Attributes
    ----------
    layer_s : ndarray, shape (steps, L, N)
        One whole layer (its ``K`` groups, projection and FFN) on each device, seconds;
        step 0 is the prefill, step ``i`` decode step ``i``.
    embed_s, lm_head_s : ndarray, shape (steps, N)
    hop_s : ndarray, shape (steps, N, N)
        The hidden state from a layer on ``u`` to the next on ``v``, seconds.
    lm_head_in_s : ndarray, shape (steps, N, N)
        The last hidden state into ``lm_head``.
    token_s : ndarray, shape (steps, N, N)
        The sampled token id from ``lm_head``'s device back to ``embed``'s.
    layer_bytes : ndarray, shape (L,)
        Resident bytes of each whole layer at the largest context (the end of the generation).
    embed_bytes, lm_head_bytes : float
    shared_heads : bool
        A tied ``embed`` and ``lm_head`` on one device are stored once.
    links : tuple of ndarray of object, shape (3, N, N)
        Prefill's and decode's directed links (`directed_links`) of the hidden state
        between layers, into ``lm_head`` and of the token id, from ``u`` to ``v``.
    """

    layer_s: np.ndarray
    embed_s: np.ndarray
    lm_head_s: np.ndarray
    hop_s: np.ndarray
    lm_head_in_s: np.ndarray
    token_s: np.ndarray
    layer_bytes: np.ndarray
    embed_bytes: float
    lm_head_bytes: float
    shared_heads: bool
    links: tuple[np.ndarray, ...] = ()


def directed_links(cluster, u: int, v: int, route: int) -> tuple[int, ...]:
    """The directed links a message from device `u` to `v` on candidate route `route` crosses.

    Parameters
    ----------
    cluster : Cluster
    u, v : int
        Device indices.
    route : int
        Index into the cluster's candidate routes (`Cluster.route_index`).

    Returns
    -------
    tuple of int
        ``2·i`` for link ``i`` crossed from its ``u`` end to its ``v`` end, ``2·i + 1`` the other way.
    """
    node, out = cluster.names[u], []
    for i in cluster.candidate_links[route, u, v]:
        link = cluster.links[i]
        out.append(2 * i if link.u == node else 2 * i + 1)
        node = link.v if link.u == node else link.u
    return tuple(out)


def _link_table(cluster, sizes) -> np.ndarray:
    """Directed links of messages of each of `sizes` (bytes) between every pair: (len(sizes), N, N) of tuples."""
    n = len(cluster.devices)
    out = np.empty((len(sizes), n, n), dtype=object)
    for k, size in enumerate(sizes):
        route = cluster.route_index(float(np.ravel(size)[0]))
        for u in range(n):
            for v in range(n):
                out[k, u, v] = directed_links(cluster, u, v, int(route[u, v]))
    return out


def _steps(x: np.ndarray, steps: int) -> np.ndarray:
    return np.broadcast_to(x, (steps,) + x.shape[1:])


def chain_tables(instance: Instance) -> ChainTables:
    """Per-step times of every layer, end block and transfer of `instance`'s model, and its memory.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    ChainTables
        Seconds per step (prefill first, then every decode step) and bytes at the largest context.
    """
    precision, K = instance.precision, instance.model.kv_heads
    parts, links = [], []
    for costs in (prefill_step_costs(instance, precision), step_costs(instance, precision, instance.workload.contexts())):
        t, n = phase_tables(instance, costs), len(costs.embed_read)
        parts.append((K * t.group_s + t.projection_s + t.ffn_s, t.embed_s, t.lm_head_s, _steps(t.layer_in_s, n),
                      _steps(t.lm_head_in_s, n), _steps(t.token_s[None], n)))
        sizes = (costs.layer_input_bytes, costs.lm_head_in_bytes, costs.token_bytes)
        links.append(_link_table(instance.cluster, sizes) if instance.cluster.network == "switched" else None)
    layer_s, embed_s, lm_head_s, hop_s, lm_head_in_s, token_s = (np.concatenate(x) for x in zip(*parts))
    memory = block_memory(instance, precision, instance.workload.interval_max_context()[-1:])
    return ChainTables(layer_s, embed_s, lm_head_s, hop_s, lm_head_in_s, token_s, memory.layer[0],
                       float(memory.embed[0]), float(memory.lm_head[0]), heads_share_memory(instance.model, precision),
                       tuple(links))


def layer_plan(instance: Instance, devices: np.ndarray, method: str = "") -> Plan:
    """The static plan running layer ``l`` whole on device ``devices[l]``, ``embed`` with layer 0, ``lm_head`` with the last.

    Parameters
    ----------
    instance : Instance
    devices : ndarray of int, shape (L,)
        Device index of every layer.
    method : str

    Returns
    -------
    Plan
    """
    placement = Placement.by_layer(np.asarray(devices), instance.model.kv_heads, instance.n_devices)
    return Plan(devices=instance.cluster.names, intervals=[placement], method=method)


def layer_devices(instance: Instance, plan: Plan) -> tuple[np.ndarray, int, int]:
    """The device of every layer, of ``embed`` and of ``lm_head`` of a layer plan, in the instance's device order.

    Parameters
    ----------
    instance : Instance
    plan : Plan

    Returns
    -------
    devices : ndarray of int, shape (L,)
    embed, lm_head : int

    Raises
    ------
    PlanError
        When the plan is not a static layer plan (docs/parallel.md, "Plans"), naming the layer.
    """
    from placement.multi.dags import static_arrays  # dags builds on this module's chains

    arrays = static_arrays(instance, plan)
    att, proj, ffn = arrays.attention[0], arrays.projection[0], arrays.ffn[0]
    devices = att[:, 0]
    for l in range(instance.model.layers):
        if (att[l] != devices[l]).any() or proj[l, devices[l]] != 1.0 or ffn[l, devices[l]] != 1.0:
            raise PlanError(f"layer {l}: a joint plan runs each layer whole on one device (all attention groups, the "
                            "projection and the FFN together); split layers are not simulated (docs/parallel.md)")
    return devices.astype(np.int64), int(arrays.embed[0]), int(arrays.lm_head[0])


@dataclass(frozen=True, eq=False)
class Chain:
    """The tasks of one model's generation, in order.

    Attributes
    ----------
    resource : ndarray of int, shape (n,)
        Device index of each task, or `NETWORK` for a transfer.
    duration_s : ndarray, shape (n,)
        Seconds of each task.
    """

    resource: np.ndarray
    duration_s: np.ndarray


def _step_tasks(t: ChainTables, devices: np.ndarray, embed: int,
                lm_head: int) -> tuple[list[int], list[np.ndarray], list[tuple[int, int, int] | None]]:
    """Resources, per-step durations (steps,) and sends ``(kind, u, v)`` of one forward step's tasks.

    Adjacent blocks on one device are merged; a send's kind indexes `ChainTables.links`
    (0: between layers, 1: into ``lm_head``, 2: the token id).
    """
    steps = np.arange(t.layer_s.shape[0])
    resources: list[int] = []
    durations: list[np.ndarray] = []
    sends: list[tuple[int, int, int] | None] = []

    def compute(device: int, seconds: np.ndarray) -> None:
        if resources and resources[-1] == device:
            durations[-1] = durations[-1] + seconds
        else:
            resources.append(device), durations.append(seconds), sends.append(None)

    def send(kind: int, u: int, v: int, seconds: np.ndarray) -> None:
        if u != v:
            resources.append(NETWORK), durations.append(seconds[:, u, v]), sends.append((kind, u, v))

    compute(embed, t.embed_s[:, embed])
    here = embed
    for l, d in enumerate(devices):
        send(0, here, int(d), t.hop_s)
        compute(int(d), t.layer_s[steps, l, d])
        here = int(d)
    send(1, here, lm_head, t.lm_head_in_s)
    compute(lm_head, t.lm_head_s[:, lm_head])
    send(2, lm_head, embed, t.token_s)
    return resources, durations, sends


def chain(t: ChainTables, devices: np.ndarray, embed: int, lm_head: int) -> Chain:
    """The tasks of a layer plan's whole generation: the prefill's step, then every decode step.

    Parameters
    ----------
    t : ChainTables
    devices : ndarray of int, shape (L,)
        Device of every layer.
    embed, lm_head : int

    Returns
    -------
    Chain
        ``steps × tasks-per-step`` tasks, step-major.
    """
    return chain_links(t, devices, embed, lm_head)[0]


def chain_links(t: ChainTables, devices: np.ndarray, embed: int,
                lm_head: int) -> tuple[Chain, tuple[tuple[tuple[int, ...], ...], ...]]:
    """A layer plan's `chain` and the directed links every task of its step holds, in the prefill and in decode.

    Parameters
    ----------
    t : ChainTables
    devices : ndarray of int, shape (L,)
    embed, lm_head : int

    Returns
    -------
    chain : Chain
    links : tuple of two tuples
        Per task of one step, its links in the prefill and in a decode step; empty on a
        ``shared`` network (transfers take the medium instead).
    """
    resources, durations, sends = _step_tasks(t, devices, embed, lm_head)
    steps = t.layer_s.shape[0]
    c = Chain(np.tile(np.array(resources, dtype=np.int64), steps), np.stack(durations, axis=1).ravel())
    return c, tuple(tuple(() if s is None or table is None else table[s] for s in sends) for table in t.links)


def needed_bytes(t: ChainTables, devices: np.ndarray, embed: int, lm_head: int, n_devices: int) -> np.ndarray:
    """Bytes a layer plan keeps on each device at the largest context: (N,).

    Parameters
    ----------
    t : ChainTables
    devices : ndarray of int, shape (L,)
    embed, lm_head : int
    n_devices : int

    Returns
    -------
    ndarray, shape (N,)
        Layers' weights and KV caches, ``embed`` and ``lm_head`` (a tied pair on one device once).
    """
    needed = np.bincount(devices, weights=t.layer_bytes, minlength=n_devices).astype(float)
    needed[embed] += t.embed_bytes
    if not (embed == lm_head and t.shared_heads):
        needed[lm_head] += t.lm_head_bytes
    return needed
