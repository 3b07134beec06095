"""The tensor-parallel MILP (`placement.solvers.tp`): its data, built once per instance, and its rows.

As `milp_model` is for the head-level MILP: `tp_terms` gathers the costs from the
shared tables (`placement.cost.tables`), `build_tp_model` writes the problem of one
collective choice, one function per constraint family, and `placement.solvers.tp`
solves and reads it. Time is in milliseconds inside the model (``UNIT_S``).
Formulation: docs/tensor-parallel.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from placement.cost.tables import (
    block_memory, heads_share_memory, phase_totals, prefill_step_costs, step_costs, transfer_times, usable_bytes,
)
from placement.instance import Instance
from placement.solvers.linear import LinearProblem, ProblemBuilder
from placement.solvers.milp_model import identical_devices

__all__ = ["TpTerms", "tp_terms", "build_tp_model", "with_cutoff", "ring_lower_bound_s", "MIN_FFN_SHARE", "UNIT_S"]

# Every participant keeps at least this share of the FFN, so both all-reduces of a layer
# run over the same devices (what the MILP models).
MIN_FFN_SHARE = 1e-4
UNIT_S = 1e-3  # the MILP measures time in milliseconds (as milp_model does)


@dataclass(frozen=True, eq=False)
class TpTerms:
    """Costs the MILP needs, from the shared tables (seconds, bytes).

    Attributes
    ----------
    att_p, att_d : ndarray (L, N)
        One group plus ``1/K`` of the projection, prefill / summed over decode steps, seconds.
    ffn_p, ffn_d : ndarray (L, N)
        The whole FFN, seconds.
    recv_p, recv_d : ndarray (N, N)
        The layer input ``u → m``, seconds.
    ends : ndarray (N,)
        ``embed`` + ``lm_head`` on ``m``, prefill + decode, seconds.
    message_p, message_d : float
        The all-reduce message, bytes.
    steps : int
        Decode steps ``T``.
    layer_bytes : ndarray (3, L)
        Weight bytes of one group, the projection, the FFN.
    kv_bytes : ndarray (L,)
        One group's KV cache at the largest context, bytes.
    ends_bytes : float
        ``embed`` + ``lm_head`` (tied counted once), bytes.
    usable : ndarray (N,)
    disk : ndarray (N,)
        Disk bandwidth, bytes/s (nan without).
    """

    att_p: np.ndarray
    att_d: np.ndarray
    ffn_p: np.ndarray
    ffn_d: np.ndarray
    recv_p: np.ndarray
    recv_d: np.ndarray
    ends: np.ndarray
    message_p: float
    message_d: float
    steps: int
    layer_bytes: np.ndarray
    kv_bytes: np.ndarray
    ends_bytes: float
    usable: np.ndarray
    disk: np.ndarray


def tp_terms(instance: Instance) -> TpTerms:
    """The MILP's data for `instance`, from the shared tables.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    TpTerms
    """
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
    return TpTerms(
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


def _ring_between(u: int, v: int, N: int) -> list[int]:
    """Devices strictly between u and v going up the cyclic device order."""
    if u < v:
        return list(range(u + 1, v))
    return [w for w in range(N) if w > u or w < v]


@dataclass(eq=False)
class _Model:
    """The problem being written: the builder, the placement variables, each phase's cost terms."""

    instance: Instance
    terms: TpTerms
    b: ProblemBuilder
    z: np.ndarray  # (N,) participates
    c: np.ndarray  # (N,) groups
    x: np.ndarray  # (N,) FFN share
    e: np.ndarray  # (N,) master (embed and lm_head)
    base: dict[str, tuple[list, list]]

    def add(self, phase: str, cols, coefs) -> None:
        cols = np.asarray(cols)
        self.base[phase][0].append(cols.ravel())
        self.base[phase][1].append(np.broadcast_to(np.asarray(coefs, dtype=float), cols.shape).ravel())


def _assignment(m: _Model, collective: str, even: np.ndarray | None) -> None:
    """One of each: K groups, the whole FFN, one master; participants hold a share of both blocks."""
    b, z, c, x, e = m.b, m.z, m.c, m.x, m.e
    N, K = len(z), m.instance.model.kv_heads
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
    cluster = m.instance.cluster
    lat_off = cluster.candidate_latency_s[:, ~np.eye(N, dtype=bool)]
    bw_off = cluster.candidate_bandwidth_bytes_per_s[:, ~np.eye(N, dtype=bool)]
    uniform_routes = N < 2 or (np.all(lat_off == lat_off[:, :1]) and np.all(bw_off == bw_off[:, :1]))
    if even is None and (collective == "star" or uniform_routes):
        for members in identical_devices(m.instance):
            for a, d in zip(members, members[1:]):
                b.constraints("symmetry", np.array([[c[a], c[d]], [z[a], z[d]]]), np.array([[1.0, -1.0], [1.0, -1.0]]), lower=0)


def _layer_kinds(terms: TpTerms) -> tuple[np.ndarray, np.ndarray]:
    """Layers whose costs are identical share one stage variable (layer 0 stands alone: it receives the input).

    Returns a representative layer of each kind and how many layers it stands for.
    """
    if terms.att_p.shape[0] == 1:
        return np.array([0]), np.array([1.0])
    signature = np.concatenate([terms.att_p, terms.att_d, terms.ffn_p, terms.ffn_d], axis=1)
    _, first, inverse = np.unique(signature[1:], axis=0, return_index=True, return_inverse=True)
    kinds = np.concatenate([[0], first + 1])
    return kinds, np.concatenate([[1.0], np.bincount(inverse.ravel(), minlength=len(first))]).astype(float)


def _stages(m: _Model, phase: str, att: np.ndarray, ffn: np.ndarray, recv: np.ndarray, w: np.ndarray) -> None:
    """Attention stage per kind of layer, A[j] ≥ c_m·att[l, m] (+ the input for layer 0); FFN stage F[j] ≥ x_m·ffn[l, m]."""
    b, c, x, N = m.b, m.c, m.x, len(m.z)
    kinds, kind_count = _layer_kinds(m.terms)
    G, ms = len(kinds), 1.0 / UNIT_S
    A = b.variables(f"A_{phase}", (G,))
    m.add(phase, A, kind_count)
    jj, dev = np.repeat(np.arange(G), N), np.tile(np.arange(N), G)
    rows = np.stack([A[jj], c[dev]], 1)
    coefs = np.stack([np.ones(G * N), -att[kinds[jj], dev] * ms], 1)
    keep = jj > 0
    b.constraints(f"att_{phase}", rows[keep], coefs[keep], lower=0)
    b.constraints(f"att0_{phase}", np.concatenate([np.stack([np.full(N, A[0]), c], 1), w.T], 1),
                  np.concatenate([np.stack([np.ones(N), -att[0] * ms], 1), -recv.T * ms], 1), lower=0)
    F = b.variables(f"F_{phase}", (G,))
    m.add(phase, F, kind_count)
    b.constraints(f"ffn_{phase}", np.stack([F[jj], x[dev]], 1), np.stack([np.ones(G * N), -ffn[kinds[jj], dev] * ms], 1),
                  lower=0)


def _star(m: _Model, phase: str, message: float, scale: float, rho: np.ndarray, star_pair: np.ndarray | None) -> None:
    """Two star all-reduces per layer: gather to the root rho_r and send back; products z_m·rho_r bounded below."""
    b, z, N = m.b, m.z, len(m.z)
    L, ms = m.instance.model.layers, 1.0 / UNIT_S
    uu, mm = (a.ravel() for a in np.indices((N, N)))
    off = uu != mm
    sent = transfer_times(m.instance.cluster, message)[0] * ms  # each message on its fastest route
    t_up, t_down = sent[mm, uu][off], sent[uu, mm][off]  # m -> r and back, for (r = uu, m = mm) pairs
    if star_pair is not None:  # shared network: every exchange counts
        m.add(phase, star_pair, 2 * L * scale * (t_up + t_down))
        return
    pairs_rm = np.stack([uu[off], mm[off]], 1)
    for name, t in (("up", t_up), ("down", t_down)):
        var = b.variables(f"{name}_{phase}", (1,))
        b.constraints(f"{name}_{phase}", np.stack([np.full(len(pairs_rm), var[0]), rho[pairs_rm[:, 0]], z[pairs_rm[:, 1]]], 1),
                      np.stack([np.ones(len(pairs_rm)), -t, -t], 1), lower=-t)
        m.add(phase, var, 2 * L * scale)


def _ring(m: _Model, phase: str, message: float, scale: float, n: int) -> None:
    """Two ring all-reduces per layer over `n` participants in device order: 2(n−1) steps each."""
    b, z, N = m.b, m.z, len(m.z)
    L, ms, shared = m.instance.model.layers, 1.0 / UNIT_S, m.instance.cluster.network == "shared"
    pairs = [(u, v) for u in range(N) for v in range(N) if u != v]
    chunk = transfer_times(m.instance.cluster, message / n)[0]
    step = b.variables(f"step_{phase}", (len(pairs),) if shared else (1,))
    for i, (u, v) in enumerate(pairs):
        between = _ring_between(u, v, N)
        t = chunk[u, v] * ms
        cols = np.array([step[i] if shared else step[0], z[u], z[v], *z[between]])
        coefs = np.array([1.0, -t, -t, *([t] * len(between))])
        b.constraints(f"ring_{phase}", cols[None], coefs[None], lower=-t)
    m.add(phase, step, 2 * (n - 1) * 2 * L * scale)


def _memory(m: _Model, offload: np.ndarray) -> np.ndarray:
    """KV of every layer's groups, the master's embedding and head, and the weights (all of them, or a
    window of at least 2 layers on a device that streams). Returns the bytes per group of each layer."""
    terms, K = m.terms, m.instance.model.kv_heads
    group_w, proj_w, ffn_w = terms.layer_bytes
    per_layer_c = group_w + proj_w / K  # (L,) bytes per group of a layer
    kv_total = terms.kv_bytes.sum()
    for dev in range(len(m.z)):
        if offload[dev]:
            coefs = [kv_total + 2 * per_layer_c.max(), 2 * ffn_w.max(), terms.ends_bytes]
        else:
            coefs = [kv_total + per_layer_c.sum(), ffn_w.sum(), terms.ends_bytes]
        m.b.constraints("memory", np.array([[m.c[dev], m.x[dev], m.e[dev]]]), np.array([coefs]) / terms.usable[dev], upper=1.0)
    return per_layer_c


def _objective(m: _Model, offload: np.ndarray, per_layer_c: np.ndarray) -> None:
    """The phases' costs; with streaming devices, each phase takes at least the slowest device's disk reads.

    A device with window W reads (n − W + 2) layers per step; W ≈ free / layer bytes (relaxed):
    D_m ≥ ((L + 2)·layer_m − free_m) / disk_m, free_m = usable − KV − ends·e_m.
    """
    b, terms = m.b, m.terms
    if not offload.any():
        for phase in ("p", "d"):
            b.add_cost(np.concatenate(m.base[phase][0]), np.concatenate(m.base[phase][1]))
        return
    ffn_w, kv_total = terms.layer_bytes[2], terms.kv_bytes.sum()
    D = b.variables("disk", (len(m.z),))
    disk_rows = []
    for dev in np.flatnonzero(offload):
        per_s = 1.0 / UNIT_S / terms.disk[dev]
        cols = np.array([D[dev], m.c[dev], m.x[dev], m.e[dev]])
        coefs = np.array([1.0, -(per_layer_c.sum() + 2 * per_layer_c.max() + kv_total) * per_s,
                          -(ffn_w.sum() + 2 * ffn_w.max()) * per_s, -terms.ends_bytes * per_s])
        b.constraints("disk", cols[None], coefs[None], lower=-terms.usable[dev] * per_s)
        disk_rows.append(D[dev])
    for phase, scale in (("p", 1), ("d", terms.steps)):
        Z = b.variables(f"Z_{phase}", (1,), cost=1.0)
        cols, coefs = np.concatenate(m.base[phase][0]), np.concatenate(m.base[phase][1])
        b.constraints(f"Z_{phase}", np.concatenate([[Z[0]], cols])[None], np.concatenate([[1.0], -coefs])[None], lower=0)
        b.constraints(f"Zdisk_{phase}", np.stack([np.full(len(disk_rows), Z[0]), disk_rows], 1),
                      np.array([1.0, -scale]), lower=0)


def build_tp_model(instance: Instance, terms: TpTerms, collective: str, param: int, offload: np.ndarray,
                   even: np.ndarray | None) -> tuple[LinearProblem, dict[str, np.ndarray | None]]:
    """The MILP of one collective choice.

    Parameters
    ----------
    instance : Instance
    terms : TpTerms
    collective : {"star", "ring"}
    param : int
        The ring's number of participants (ignored for ``star``).
    offload : ndarray of bool, shape (N,)
        Devices allowed to stream weights from disk.
    even : ndarray of int, shape (N,), optional
        Fixed groups per device (TPI-LLM's even split); None to optimize the shares.

    Returns
    -------
    problem : LinearProblem
        Time in milliseconds (`UNIT_S`).
    columns : dict
        The column indices of ``z``, ``c``, ``x``, ``e`` (N,) and ``rho`` (star's root, else None).
    """
    N, K, shared = instance.n_devices, instance.model.kv_heads, instance.cluster.network == "shared"
    b = ProblemBuilder()
    m = _Model(instance, terms, b, z=b.variables("z", (N,), upper=1, integer=True),
               c=b.variables("c", (N,), upper=K, integer=True), x=b.variables("x", (N,), upper=1.0),
               e=b.variables("e", (N,), upper=1, integer=True), base={"p": ([], []), "d": ([], [])})
    _assignment(m, collective, even)
    # layer 0 receives the embedding's output: w[u, m] ≥ e_u + z_m − 1
    w = b.variables("w", (N, N), upper=1.0)
    uu, mm = (a.ravel() for a in np.indices((N, N)))
    off = uu != mm
    b.constraints("recv0", np.stack([w[uu, mm], m.e[uu], m.z[mm]], 1)[off], np.array([1.0, -1.0, -1.0]), lower=-1)
    rho = star_pair = None
    if collective == "star":  # the root, a participant; on a shared network the pairs (root, m) it exchanges with
        rho = b.variables("rho", (N,), upper=1, integer=True)
        b.constraints("root", rho[None], np.ones((1, N)), lower=1, upper=1)
        b.constraints("root_on", np.stack([rho, m.z], 1), np.array([1.0, -1.0]), upper=0)
        if shared:
            star_pair = b.variables("star_pair", (int(off.sum()),), upper=1.0)
            b.constraints("star_pair", np.stack([star_pair, rho[uu[off]], m.z[mm[off]]], 1), np.array([1.0, -1.0, -1.0]),
                          lower=-1)
    for phase, att, ffn, recv, message, scale in (
            ("p", terms.att_p, terms.ffn_p, terms.recv_p, terms.message_p, 1),
            ("d", terms.att_d, terms.ffn_d, terms.recv_d, terms.message_d, terms.steps)):
        _stages(m, phase, att, ffn, recv, w)
        if collective == "star":
            _star(m, phase, message, scale, rho, star_pair)
        elif param >= 2:
            _ring(m, phase, message, scale, param)
    if collective == "ring":
        b.constraints("ring_size", m.z[None], np.ones((1, N)), lower=param, upper=param)
    m.add("d", m.e, terms.ends / UNIT_S)  # both phases' ends, once
    _objective(m, offload, _memory(m, offload))
    return b.build(), {"z": m.z, "c": m.c, "x": m.x, "e": m.e, "rho": rho}


def with_cutoff(problem: LinearProblem, limit: float) -> LinearProblem:
    """`problem` with the row ``objective ≤ limit`` (an incumbent's value: candidates that cannot beat it become infeasible).

    Parameters
    ----------
    problem : LinearProblem
    limit : float
        In the problem's units (milliseconds).

    Returns
    -------
    LinearProblem
    """
    matrix = sp.vstack([problem.matrix, sp.csr_matrix(problem.cost[None])], format="csr")
    return replace(problem, matrix=matrix, row_lower=np.append(problem.row_lower, -np.inf),
                   row_upper=np.append(problem.row_upper, limit - problem.offset))


def ring_lower_bound_s(instance: Instance, terms: TpTerms, n: int) -> float:
    """Seconds the two all-reduces of every layer take at least on a ring of `n` (for pruning).

    Parameters
    ----------
    instance : Instance
    terms : TpTerms
    n : int
        Ring participants.

    Returns
    -------
    float
        Seconds.
    """
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
