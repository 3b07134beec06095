"""An independent, per-token reference implementation of the evaluator (profile ``roofline``).

Written from the specification in DESIGN.md ("The cost model", "One decode step, as the
evaluator sees it") and the test brief, in plain Python loops: one token at a time,
one layer at a time, one device at a time. It deliberately shares nothing with
``placement/evaluate.py`` or ``placement/cost/blocks.py`` except the data classes
(Instance, Plan, Placement, Precision) and the cluster's link graph: a message takes
the fastest of every simple path between its ends (summed latency + bytes / bottleneck
bandwidth), found here by enumerating the paths, not by the evaluator's thresholds.

It is slow and simple on purpose; the tests compare it with `placement.evaluate` on
small random instances.

Semantics (summary; see the functions below for details)
--------------------------------------------------------
token latency = embed + sum over layers (attention stage + FFN stage) + lm stage;
the hidden state is held by a set of devices ("holders"), initially the embed device;
every receiver fetches it from its nearest holder; a switched network takes the
slowest chain of a stage, a shared one adds the transfers of a stage up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

from placement.cost.precision import Precision
from placement.instance import Instance
from placement.plan import Plan

__all__ = ["RefReport", "reference_evaluate", "RefPlacement", "ref_placement"]


# ----------------------------------------------------------------------------- data
@dataclass
class RefPlacement:
    """One interval's placement in the *instance's* device indices, as plain Python."""

    groups: list[list[int]]              # groups[l][g] -> device
    projection: list[dict[int, float]]   # projection[l] -> {device: share > 0}
    ffn: list[dict[int, float]]          # ffn[l] -> {device: share > 0}
    embed: int
    lm_head: int
    precision: Precision


@dataclass
class RefReport:
    ttft_s: float
    decode_s: list[float]
    migration_s: list[float]
    peak_memory_bytes: list[list[float]]   # [interval][device]
    memory_limit_bytes: list[float]
    violations: list[tuple[str, int]] = field(default_factory=list)   # (device name, interval)

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def total_s(self) -> float:
        return self.ttft_s + sum(self.decode_s) + sum(self.migration_s)


def ref_placement(instance: Instance, plan: Plan, k: int) -> RefPlacement:
    """Interval `k`'s placement of `plan`, translated to instance device indices."""
    p = plan.intervals[0] if len(plan.intervals) == 1 else plan.intervals[k]
    to_inst = [instance.cluster.index(name) for name in plan.devices]
    L, K = instance.model.layers, instance.model.kv_heads
    groups = [[to_inst[int(p.attention[l][g])] for g in range(K)] for l in range(L)]

    def shares(row) -> dict[int, float]:
        out: dict[int, float] = {}
        for j in range(len(row)):
            x = float(row[j])
            if x > 0:
                out[to_inst[j]] = out.get(to_inst[j], 0.0) + x
        return out

    return RefPlacement(
        groups=groups,
        projection=[shares(p.projection[l]) for l in range(L)],
        ffn=[shares(p.ffn[l]) for l in range(L)],
        embed=to_inst[int(p.embed)],
        lm_head=to_inst[int(p.lm_head)],
        precision=instance.precision.with_overrides(p.precision),
    )


# ----------------------------------------------------------------------------- costs
@dataclass
class TokenCosts:
    """FLOPs / bytes read of every block for one forward step, and the message sizes."""

    group: list[tuple[float, float]]        # per layer: (flops, read) of ONE group
    projection: list[tuple[float, float]]   # per layer: whole block
    ffn: list[tuple[float, float]]          # per layer: whole block
    embed: tuple[float, float]
    lm_head: tuple[float, float]
    hidden: float        # hidden state into the layers / between blocks
    group_out: float     # one group's head outputs
    lm_in: float         # the hidden state sent to lm_head
    token: float         # the sampled token id


def decode_token_costs(instance: Instance, prec: Precision, S: int) -> TokenCosts:
    """One decode token at context S, written out from the specification."""
    m = instance.model
    B, D, H, K, d, F, V = instance.workload.batch, m.hidden, m.heads, m.kv_heads, m.head_dim, m.ffn_hidden, m.vocab
    r = H // K
    mats = 3 if m.gated_ffn else 2
    params_g = D * d * (r + 2)
    params_p = H * d * D
    params_f = mats * D * F
    group, proj, ffn = [], [], []
    for l in range(m.layers):
        w_att, w_proj, w_ffn, c = (float(prec.attention[l]), float(prec.projection[l]),
                                   float(prec.ffn[l]), float(prec.kv[l]))
        group.append((2 * B * params_g + 4 * B * r * d * S, params_g * w_att / 8 + 2 * B * d * S * c / 8))
        proj.append((2 * B * params_p, params_p * w_proj / 8))
        ffn.append((2 * B * params_f, params_f * w_ffn / 8))
    a = prec.activation
    return TokenCosts(
        group=group, projection=proj, ffn=ffn,
        embed=(0.0, B * D * prec.embed / 8),
        lm_head=(2 * B * V * D, V * D * prec.lm_head / 8),
        hidden=B * D * a / 8,
        group_out=B * r * d * a / 8,
        lm_in=B * D * a / 8,
        token=4 * B,
    )


def prefill_costs_ref(instance: Instance, prec: Precision) -> TokenCosts:
    """The prefill of the P-token prompt as one step, written out from the specification."""
    m = instance.model
    P = instance.workload.prompt_tokens
    B, D, H, K, d, F, V = instance.workload.batch, m.hidden, m.heads, m.kv_heads, m.head_dim, m.ffn_hidden, m.vocab
    r = H // K
    mats = 3 if m.gated_ffn else 2
    params_g = D * d * (r + 2)
    params_p = H * d * D
    params_f = mats * D * F
    group, proj, ffn = [], [], []
    for l in range(m.layers):
        w_att, w_proj, w_ffn, c = (float(prec.attention[l]), float(prec.projection[l]),
                                   float(prec.ffn[l]), float(prec.kv[l]))
        group.append((P * 2 * B * params_g + 2 * B * r * d * P * (P + 1),
                      params_g * w_att / 8 + 2 * B * d * P * c / 8))
        proj.append((P * 2 * B * params_p, params_p * w_proj / 8))
        ffn.append((P * 2 * B * params_f, params_f * w_ffn / 8))
    a = prec.activation
    return TokenCosts(
        group=group, projection=proj, ffn=ffn,
        embed=(0.0, P * B * D * prec.embed / 8),
        lm_head=(2 * B * V * D, V * D * prec.lm_head / 8),
        hidden=P * B * D * a / 8,
        group_out=P * B * r * d * a / 8,
        lm_in=B * D * a / 8,
        token=4 * B,
    )


# ----------------------------------------------------------------------------- primitives
class _Net:
    def __init__(self, instance: Instance):
        c = instance.cluster
        self.n = len(c.devices)
        names = [d.name for d in c.devices]
        self.paths = [[self._paths(c, names[i], names[j]) for j in range(self.n)] for i in range(self.n)]
        self.shared = c.network == "shared"
        self.rate = [dev.peak_flops_per_s * dev.compute_efficiency for dev in c.devices]
        self.mem_bw = [dev.memory_bandwidth_bytes_per_s * dev.memory_efficiency for dev in c.devices]

    @staticmethod
    def _paths(cluster, a: str, b: str) -> list[tuple[float, float]]:
        """(summed latency, bottleneck bandwidth) of every simple path from a to b."""
        if a == b:
            return []
        out = []
        for path in nx.all_simple_paths(cluster.graph, a, b):
            links = [cluster.links[cluster.graph.edges[x, y]["index"]] for x, y in zip(path, path[1:])]
            out.append((sum(link.latency_s for link in links), min(link.bandwidth_bytes_per_s for link in links)))
        return out

    def transfer(self, nbytes: float, u: int, v: int) -> float:
        if u == v:
            return 0.0
        return min(lat + nbytes / bw for lat, bw in self.paths[u][v])

    def block(self, flops: float, read: float, n: int) -> float:
        return max(flops / self.rate[n], read / self.mem_bw[n])

    def receive(self, nbytes: float, holders: set[int], m: int) -> float:
        if m in holders:
            return 0.0
        return min(self.transfer(nbytes, u, m) for u in holders)

    def combine(self, times: list[float]) -> float:
        """Concurrent transfers: the slowest on a switched network, their sum on a shared one."""
        if not times:
            return 0.0
        return sum(times) if self.shared else max(times)


def _root_of(shares: dict[int, float], plan_root: int | None) -> int:
    if plan_root is not None:
        return plan_root
    best = None
    for dev in sorted(shares):
        if best is None or shares[dev] > shares[best]:
            best = dev
    return best


def all_reduce_ref(net: _Net, kind: str, shares: dict[int, float], M: float, plan_root: int | None) -> tuple[float, set[int]]:
    """Time of the collective over the participants of `shares`, and the devices holding the result."""
    members = sorted(shares)
    n = len(members)
    if n <= 1:
        return 0.0, set(members)
    root = _root_of(shares, plan_root)
    if kind in ("gather", "star"):
        others = [m for m in members if m != root]
        t = net.combine([net.transfer(M, m, root) for m in others])
        if kind == "gather":
            return t, {root}
        t += net.combine([net.transfer(M, root, m) for m in others])
        return t, set(members)
    if kind == "ring":
        step = net.combine([net.transfer(M / n, members[i], members[(i + 1) % n]) for i in range(n)])
        return 2 * (n - 1) * step, set(members)
    raise ValueError(f"collective {kind!r} not modelled by the reference")


# ----------------------------------------------------------------------------- one forward step
def forward(net: _Net, pl: RefPlacement, tc: TokenCosts, collective: str, plan_root: int | None) -> float:
    """Latency of one forward step (a decode token, or the whole prefill)."""
    L = len(pl.groups)
    t = net.block(*tc.embed, pl.embed)
    holders = {pl.embed}
    for l in range(L):
        # ---- attention stage
        counts: dict[int, int] = {}
        for dev in pl.groups[l]:
            counts[dev] = counts.get(dev, 0) + 1
        G = sorted(counts)
        recv = {m: net.receive(tc.hidden, holders, m) for m in G}
        gtime = {m: counts[m] * net.block(*tc.group[l], m) for m in G}
        proj = pl.projection[l]
        if len(proj) == 1:
            (p,) = proj
            ptime = net.block(*tc.projection[l], p) * proj[p]
            out = {m: net.transfer(counts[m] * tc.group_out, m, p) for m in G}
            if net.shared:
                stage = sum(recv.values()) + max(gtime.values()) + sum(out.values()) + ptime
            else:
                stage = max(recv[m] + gtime[m] + out[m] for m in G) + ptime
            holders = {p}
        else:
            # Split projection: device m holds the rows of its own heads (share c_m / K).
            ptimes = {m: proj.get(m, 0.0) * net.block(*tc.projection[l], m) for m in G}
            reduce_t, new_holders = all_reduce_ref(net, collective, proj, tc.hidden, plan_root)
            if net.shared:
                stage = sum(recv.values()) + max(gtime[m] + ptimes[m] for m in G) + reduce_t
            else:
                stage = max(recv[m] + gtime[m] + ptimes[m] for m in G) + reduce_t
            holders = new_holders
        t += stage
        # ---- FFN stage
        ffn = pl.ffn[l]
        parts = sorted(ffn)
        recv = {m: net.receive(tc.hidden, holders, m) for m in parts}
        ftime = {m: ffn[m] * net.block(*tc.ffn[l], m) for m in parts}
        if len(parts) == 1:
            reduce_t, new_holders = 0.0, {parts[0]}
        else:
            reduce_t, new_holders = all_reduce_ref(net, collective, ffn, tc.hidden, plan_root)
        if net.shared:
            stage = sum(recv.values()) + max(ftime.values()) + reduce_t
        else:
            stage = max(recv[m] + ftime[m] for m in parts) + reduce_t
        t += stage
        holders = new_holders
    # ---- lm stage
    lm = pl.lm_head
    t += net.receive(tc.lm_in, holders, lm) + net.block(*tc.lm_head, lm) + net.transfer(tc.token, lm, pl.embed)
    return t


# ----------------------------------------------------------------------------- memory and migration
def memory_ref(instance: Instance, pl: RefPlacement, S: int) -> list[float]:
    m = instance.model
    B, D, H, K, d, F, V = instance.workload.batch, m.hidden, m.heads, m.kv_heads, m.head_dim, m.ffn_hidden, m.vocab
    r = H // K
    params_g, params_p, params_f = D * d * (r + 2), H * d * D, (3 if m.gated_ffn else 2) * D * F
    prec = pl.precision
    mem = [0.0] * len(instance.devices)
    for l in range(m.layers):
        for dev in pl.groups[l]:
            mem[dev] += params_g * float(prec.attention[l]) / 8 + 2 * B * d * S * float(prec.kv[l]) / 8
        for dev, x in pl.projection[l].items():
            mem[dev] += x * params_p * float(prec.projection[l]) / 8
        for dev, x in pl.ffn[l].items():
            mem[dev] += x * params_f * float(prec.ffn[l]) / 8
    mem[pl.embed] += V * D * prec.embed / 8
    shared_matrix = m.tied_embeddings and pl.embed == pl.lm_head and prec.embed == prec.lm_head
    if not shared_matrix:
        mem[pl.lm_head] += V * D * prec.lm_head / 8
    return mem


def migration_ref(instance: Instance, net: _Net, old: RefPlacement, new: RefPlacement, Sb: int) -> float:
    """Moving blocks from `old` to `new` at context Sb. Split blocks are not modelled (must stay put)."""
    m = instance.model
    B, D, H, K, d, F, V = instance.workload.batch, m.hidden, m.heads, m.kv_heads, m.head_dim, m.ffn_hidden, m.vocab
    r = H // K
    params_g, params_p, params_f = D * d * (r + 2), H * d * D, (3 if m.gated_ffn else 2) * D * F
    prec = new.precision
    moves: dict[tuple[int, int], float] = {}   # (u, v) -> seconds: each block one message, one after another

    def move(u: int, v: int, nbytes: float) -> None:
        if u == v:
            return
        fastest = min(lat + nbytes / bw for lat, bw in net.paths[u][v])  # an empty block still pays the latency
        moves[(u, v)] = moves.get((u, v), 0.0) + fastest

    def whole(shares: dict[int, float]) -> int | None:
        return next(iter(shares)) if len(shares) == 1 else None

    for l in range(m.layers):
        for g in range(K):
            move(old.groups[l][g], new.groups[l][g],
                 params_g * float(prec.attention[l]) / 8 + 2 * B * d * Sb * float(prec.kv[l]) / 8)
        for attr, params, bits in (("projection", params_p, prec.projection[l]), ("ffn", params_f, prec.ffn[l])):
            a, b = getattr(old, attr)[l], getattr(new, attr)[l]
            if whole(a) is not None and whole(b) is not None:
                move(whole(a), whole(b), params * float(bits) / 8)
            elif a != b:
                raise ValueError("the reference does not model the migration of split blocks")
    move(old.embed, new.embed, V * D * prec.embed / 8)
    move(old.lm_head, new.lm_head, V * D * prec.lm_head / 8)
    times = list(moves.values())
    return net.combine(times)


# ----------------------------------------------------------------------------- the whole generation
def reference_evaluate(instance: Instance, plan: Plan) -> RefReport:
    """Per-token reference of `placement.evaluate` (profile roofline, collectives ring/star/gather)."""
    if instance.workload.profile != "roofline":
        raise ValueError("the reference models the roofline profile only")
    w = instance.workload
    P, T = w.prompt_tokens, w.generate_tokens
    tau = min(w.interval_tokens or T, T)
    n_int = math.ceil(T / tau)
    net = _Net(instance)
    plan_root = None if plan.root is None else instance.cluster.index(plan.root)
    placements = [ref_placement(instance, plan, k) for k in range(n_int)]

    ttft = forward(net, placements[0], prefill_costs_ref(instance, placements[0].precision), plan.collective, plan_root)
    decode = []
    for i in range(1, T + 1):
        k = (i - 1) // tau
        pl = placements[k]
        decode.append(forward(net, pl, decode_token_costs(instance, pl.precision, P + i), plan.collective, plan_root))

    migration = [0.0]
    for k in range(1, n_int):
        migration.append(migration_ref(instance, net, placements[k - 1], placements[k], P + k * tau))

    limits = [dev.memory_bytes - dev.reserved_bytes for dev in instance.devices]
    peak, violations = [], []
    for k in range(n_int):
        S_k = P + min((k + 1) * tau, T)
        mem = memory_ref(instance, placements[k], S_k)
        peak.append(mem)
        for n, (need, have) in enumerate(zip(mem, limits)):
            if need > have:
                violations.append((instance.devices[n].name, k))
    return RefReport(ttft, decode, migration, peak, limits, violations)
