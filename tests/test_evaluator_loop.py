"""The vectorized evaluator against an independent per-token loop (tests/reference_loop.py).

1. Random small instances and plans (hypothesis): decode trace, time to first token,
   migration, peak memory and feasibility must agree.
2. Monotonicity: a static plan's decode latency never decreases along the trace; a
   strictly faster device never makes a plan slower.
3. A fully hand-worked two-device example with exact numbers.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_loop import reference_evaluate  # noqa: E402

from placement.evaluate import evaluate  # noqa: E402
from placement.instance import instance_from_dict  # noqa: E402
from placement.plan import Placement, Plan  # noqa: E402

RTOL = 1e-9


# ----------------------------------------------------------------------------- strategies
def _positive(lo: float, hi: float):
    """Log-uniform-ish positive floats in [lo, hi]."""
    return st.floats(math.log10(lo), math.log10(hi), allow_nan=False).map(lambda e: float(10.0 ** e))


@st.composite
def instances(draw):
    n_dev = draw(st.integers(1, 4))
    names = [f"dev{i}" for i in range(n_dev)]
    K = draw(st.integers(1, 3))
    r = draw(st.integers(1, 3))
    model = {
        "name": "rand",
        "layers": draw(st.integers(1, 3)),
        "hidden": draw(st.integers(2, 16)),
        "heads": K * r,
        "kv_heads": K,
        "head_dim": draw(st.integers(1, 4)),
        "ffn_hidden": draw(st.integers(1, 32)),
        "gated_ffn": draw(st.booleans()),
        "vocab": draw(st.integers(2, 20)),
        "tied_embeddings": draw(st.booleans()),
    }
    devices = []
    for name in names:
        dev = {
            "name": name,
            # Small memories on purpose: some plans must be infeasible.
            "memory": draw(_positive(2e2, 2e4)),
            "peak_flops": draw(_positive(1e3, 1e6)),
            "memory_bandwidth": draw(_positive(1e2, 1e5)),
        }
        if draw(st.booleans()):
            dev["compute_efficiency"] = draw(st.floats(0.1, 1.0))
            dev["memory_efficiency"] = draw(st.floats(0.1, 1.0))
        if draw(st.booleans()):
            dev["reserved_memory"] = dev["memory"] * draw(st.floats(0.0, 0.5))
        devices.append(dev)
    data = {"model": model, "devices": devices,
            "network": draw(st.sampled_from(["switched", "shared"]))}

    def link(u, v):
        return {"between": [u, v], "bandwidth": draw(_positive(1e2, 1e5)), "latency": draw(st.floats(0.0, 0.05))}

    topology = draw(st.sampled_from(["mesh", "links", "switch"])) if n_dev > 1 else "mesh"
    if topology == "mesh":
        data["mesh"] = {"bandwidth": draw(_positive(1e2, 1e5)), "latency": draw(st.floats(0.0, 0.05))}
    elif topology == "links":
        # A random spanning tree, plus some extra edges.
        links, have = [], set()
        order = draw(st.permutations(names))
        for i in range(1, n_dev):
            parent = order[draw(st.integers(0, i - 1))]
            links.append(link(parent, order[i]))
            have.add(frozenset((parent, order[i])))
        for u in names:
            for v in names:
                if u < v and frozenset((u, v)) not in have and draw(st.booleans()):
                    links.append(link(u, v))
                    have.add(frozenset((u, v)))
        data["links"] = links
    else:
        # A switch joined to every device, sometimes with direct links beside it.
        data["switches"] = ["ap"]
        links = [link(u, "ap") for u in names]
        for i, u in enumerate(names):
            for v in names[i + 1:]:
                if draw(st.integers(0, 3)) == 0:
                    links.append(link(u, v))
        data["links"] = links
    T = draw(st.integers(1, 8))
    data["workload"] = {
        "prompt_tokens": draw(st.integers(1, 6)),
        "generate_tokens": T,
        "batch": draw(st.integers(1, 2)),
        "interval": draw(st.one_of(st.none(), st.integers(1, T))),
        "precision": {
            "weights": draw(st.sampled_from([16.0, 8.0, 4.0])),
            "kv_cache": draw(st.sampled_from([16.0, 8.0])),
            "activations": draw(st.sampled_from([16.0, 8.0, 32.0])),
        },
    }
    return instance_from_dict(data, check_capacity=False)


PRECISION_OVERRIDES = [None, None, None, {"ffn": 8}, {"attention": 4, "kv": 8}, {"embed": 8, "lm_head": 4},
                       {"activation": 8}, {"projection": 4, "ffn": 4, "kv": 4}, {"lm_head": 8}]


def _random_shares(draw, n_dev: int) -> np.ndarray:
    members = sorted(draw(st.sets(st.integers(0, n_dev - 1), min_size=2, max_size=n_dev)))
    weights = [draw(st.integers(1, 4)) for _ in members]
    row = np.zeros(n_dev)
    for m, wgt in zip(members, weights):
        row[m] = wgt / sum(weights)
    return row


@st.composite
def instance_and_plan(draw):
    inst = draw(instances())
    n_dev, L, K = inst.n_devices, inst.model.layers, inst.model.kv_heads
    n_int = inst.workload.n_intervals
    # Plan devices in the instance's order or permuted (the evaluator must map names).
    order = list(draw(st.permutations(range(n_dev))))
    plan_names = tuple(inst.devices[i].name for i in order)
    dev = st.integers(0, n_dev - 1)  # indices into plan_names

    # Whether a layer's projection / FFN is split is fixed for the plan; a split block
    # (and, for a split projection, its layer's groups) is the same in every interval,
    # since the specification does not say how a split block migrates.
    split_proj = [n_dev > 1 and draw(st.integers(0, 3)) == 0 for _ in range(L)]
    split_ffn = [n_dev > 1 and draw(st.integers(0, 2)) == 0 for _ in range(L)]
    fixed_groups = [[draw(dev) for _ in range(K)] if split_proj[l] else None for l in range(L)]
    fixed_ffn = [_random_shares(draw, n_dev) if split_ffn[l] else None for l in range(L)]

    def placement() -> Placement:
        attention = np.zeros((L, K), dtype=np.int64)
        projection = np.zeros((L, n_dev))
        ffn = np.zeros((L, n_dev))
        for l in range(L):
            row = fixed_groups[l] if split_proj[l] else [draw(dev) for _ in range(K)]
            attention[l] = row
            if split_proj[l]:
                for g in row:
                    projection[l, g] += 1.0 / K
            else:
                projection[l, draw(dev)] = 1.0
            if split_ffn[l]:
                ffn[l] = fixed_ffn[l]
            else:
                ffn[l, draw(dev)] = 1.0
        return Placement(attention, projection, ffn, embed=draw(dev), lm_head=draw(dev),
                         precision=draw(st.sampled_from(PRECISION_OVERRIDES)))

    static = n_int == 1 or draw(st.booleans())
    if static:
        intervals = [placement()]
    else:
        # Repeat a placement sometimes, so that some boundaries move nothing.
        intervals = []
        for k in range(n_int):
            intervals.append(intervals[-1] if k and draw(st.integers(0, 3)) == 0 else placement())
    collective = draw(st.sampled_from(["ring", "star", "gather"]))

    # A named root must take part in every split block.
    root = None
    participants = None
    for p in intervals:
        for l in range(L):
            for row in (p.projection[l], p.ffn[l]):
                members = set(np.flatnonzero(row))
                if len(members) > 1:
                    participants = members if participants is None else participants & members
    if participants and draw(st.booleans()):
        root = plan_names[draw(st.sampled_from(sorted(participants)))]
    plan = Plan(devices=plan_names, intervals=intervals, collective=collective, root=root)
    return inst, plan


# ----------------------------------------------------------------------------- 1. random agreement
def _compare(inst, plan):
    report = evaluate(inst, plan)
    ref = reference_evaluate(inst, plan)
    T = inst.workload.generate_tokens
    assert report.decode_s.shape == (T,)
    np.testing.assert_allclose(report.decode_s, ref.decode_s, rtol=RTOL, atol=0)
    np.testing.assert_allclose(report.ttft_s, ref.ttft_s, rtol=RTOL, atol=0)
    np.testing.assert_allclose(report.migration_s, ref.migration_s, rtol=RTOL, atol=1e-300)
    # Peak memory in the instance's device order (report.devices says the order).
    names = [d.name for d in inst.devices]
    columns = [list(report.devices).index(n) for n in names]
    np.testing.assert_allclose(np.asarray(report.peak_memory_bytes)[:, columns], ref.peak_memory_bytes, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(report.memory_limit_bytes)[columns], ref.memory_limit_bytes, rtol=RTOL)
    assert report.feasible == ref.feasible
    assert sorted((v.device, v.interval) for v in report.violations) == sorted(ref.violations)
    np.testing.assert_allclose(report.total_s, ref.total_s, rtol=RTOL)
    return report, ref


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(instance_and_plan())
def test_evaluator_matches_loop(case):
    inst, plan = case
    _compare(inst, plan)


# ----------------------------------------------------------------------------- 2. monotonicity
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(instance_and_plan())
def test_static_plan_decode_never_gets_faster(case):
    inst, plan = case
    plan = plan.replace(intervals=plan.intervals[:1])
    trace = evaluate(inst, plan).decode_s
    ref = np.asarray(reference_evaluate(inst, plan).decode_s)
    assert np.all(np.diff(trace) >= -1e-12 * trace[:-1])
    assert np.all(np.diff(ref) >= -1e-12 * ref[:-1])


def _speed_up(inst, device: int, flops_factor: float, bw_factor: float):
    from dataclasses import replace

    from placement.cost.hardware import Cluster

    devices = list(inst.cluster.devices)
    d = devices[device]
    devices[device] = replace(d, peak_flops_per_s=d.peak_flops_per_s * flops_factor,
                              memory_bandwidth_bytes_per_s=d.memory_bandwidth_bytes_per_s * bw_factor)
    c = inst.cluster
    cluster = Cluster(devices=tuple(devices), links=c.links, network=c.network, switches=c.switches)
    return replace(inst, cluster=cluster)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(instance_and_plan(), st.data())
def test_faster_device_is_never_slower(case, data):
    inst, plan = case
    device = data.draw(st.integers(0, inst.n_devices - 1))
    flops_factor = data.draw(st.floats(1.0, 10.0))
    bw_factor = data.draw(st.floats(1.0, 10.0))
    assume(flops_factor > 1.0 or bw_factor > 1.0)
    fast = _speed_up(inst, device, flops_factor, bw_factor)
    slow_r, fast_r = evaluate(inst, plan), evaluate(fast, plan)
    tol = 1e-12
    assert fast_r.ttft_s <= slow_r.ttft_s * (1 + tol)
    assert np.all(fast_r.decode_s <= slow_r.decode_s * (1 + tol))
    assert fast_r.total_s <= slow_r.total_s * (1 + tol)
    np.testing.assert_allclose(fast_r.migration_s, slow_r.migration_s, rtol=RTOL)


# ----------------------------------------------------------------------------- 3. hand-worked example
# Tiny model: L=1, D=8, H=4, K=2 (r=2), d=2, F=16 gated, V=10, untied, 16-bit everywhere, B=1.
#   group params   params_g = D*d*(r+2) = 8*2*4 = 64
#   projection     H*d*D = 4*2*8 = 64
#   FFN            3*D*F = 3*8*16 = 384
#   embed/lm_head  V*D = 80
# Devices: A (1000 FLOP/s, 1000 B/s), B (2000 FLOP/s, 500 B/s), memory 10 000 B each.
# One link A-B: 100 B/s, 0.01 s.  P = 2, T = 2 (tau = 2, one interval).
# Plan: group 0 on A, group 1 on B, projection on A, FFN on B, embed on A, lm_head on B.
HAND = {
    "model": {"name": "tiny", "layers": 1, "hidden": 8, "heads": 4, "kv_heads": 2, "ffn_hidden": 16,
              "gated_ffn": True, "vocab": 10, "tied_embeddings": False},
    "devices": [
        {"name": "A", "memory": 10000.0, "peak_flops": 1000.0, "memory_bandwidth": 1000.0},
        {"name": "B", "memory": 10000.0, "peak_flops": 2000.0, "memory_bandwidth": 500.0},
    ],
    "links": [{"between": ["A", "B"], "bandwidth": 100.0, "latency": 0.01}],
    "network": "switched",
    "workload": {"prompt_tokens": 2, "generate_tokens": 2},
}


def _hand_plan(collective="ring", ffn=(0.0, 1.0)):
    return Plan(
        devices=("A", "B"),
        intervals=[Placement(attention=np.array([[0, 1]]), projection=np.array([[1.0, 0.0]]),
                             ffn=np.array([list(ffn)]), embed=0, lm_head=1)],
        collective=collective,
    )


# Decode token at context S (B=1, 16 bit -> 2 bytes/element):
#   embed on A: read B*D*2 = 16 B; 16/1000 = 0.016 s
#   group: flops 2*64 + 4*2*2*S = 128 + 16S; read 64*2 + 2*2*S*2 = 128 + 8S
#     S=3: flops 176, read 152.  A: max(176/1000, 152/1000) = 0.176;  B: max(176/2000, 152/500) = 0.304
#     S=4: flops 192, read 160.  A: 0.192;                           B: max(0.096, 0.32) = 0.32
#   hidden h = 8*2 = 16 B; group output o = 2*2*2 = 8 B
#   transfer A->B of n bytes: 0.01 + n/100:  16 B -> 0.17 s; 8 B -> 0.09 s; 4 B -> 0.05 s
#   attention stage (switched), holders {A}:
#     A: recv 0 + 0.176 + out 0          = 0.176   (S=3)   0.192 (S=4)
#     B: recv 0.17 + 0.304 + out 0.09    = 0.564   (S=3)   0.17+0.32+0.09 = 0.58 (S=4)
#     projection on A: flops 2*64 = 128, read 128 -> 0.128 s
#     stage = 0.564 + 0.128 = 0.692 (S=3);  0.58 + 0.128 = 0.708 (S=4); holders {A}
#   FFN stage on B: recv 0.17; flops 2*384 = 768 -> 0.384 s, read 768 -> 1.536 s -> 1.536
#     stage = 0.17 + 1.536 = 1.706; holders {B}
#   lm stage on B: recv 0 (B holds it); flops 2*10*8 = 160 -> 0.08, read 160 -> 0.32 -> 0.32;
#     token 4 B B->A: 0.05.  stage = 0.37
#   token S=3: 0.016 + 0.692 + 1.706 + 0.37 = 2.784
#   token S=4: 0.016 + 0.708 + 1.706 + 0.37 = 2.800
# Prefill (P=2):
#   embed read 2*16 = 32 -> 0.032
#   group flops P*2B*params_g + 2B*r*d*P*(P+1) = 2*128 + 2*1*2*2*2*3 = 256 + 48 = 304
#         read params_g*2 + 2B*d*P*c/8 = 128 + 2*1*2*2*2 = 144
#     A: max(304/1000, 144/1000) = 0.304;  B: max(304/2000, 144/500) = max(0.152, 0.288) = 0.288
#   h = 2*16 = 32 B -> A->B 0.01 + 0.32 = 0.33;  o = 2*8 = 16 B -> 0.01 + 0.16 = 0.17
#   attention: A 0.304; B 0.33 + 0.288 + 0.17 = 0.788 -> max 0.788
#   projection flops 2*128 = 256 -> 0.256, read 128 -> 0.128 -> 0.256;  stage 1.044
#   FFN: recv 0.33; flops 2*768 = 1536 -> 0.768 on B, read 768 -> 1.536 -> 1.536; stage 1.866
#   lm (last position only, B holds it): recv 0, 0.32, token 0.05 -> 0.37
#   ttft = 0.032 + 1.044 + 1.866 + 0.37 = 3.312
# Memory at S = P + T = 4:
#   A: group 128 + KV 2*2*4*2 = 32 -> 160; projection 128; embed 160          -> 448
#   B: group 160; FFN 768; lm_head 160                                         -> 1088
HAND_DECODE = [2.784, 2.800]
HAND_TTFT = 3.312
HAND_MEMORY = [448.0, 1088.0]


def test_hand_worked_two_devices():
    inst = instance_from_dict(HAND)
    report = evaluate(inst, _hand_plan())
    ref = reference_evaluate(inst, _hand_plan())
    np.testing.assert_allclose(report.decode_s, HAND_DECODE, rtol=1e-12)
    np.testing.assert_allclose(ref.decode_s, HAND_DECODE, rtol=1e-12)
    assert report.ttft_s == pytest.approx(HAND_TTFT, rel=1e-12)
    assert ref.ttft_s == pytest.approx(HAND_TTFT, rel=1e-12)
    np.testing.assert_allclose(report.peak_memory_bytes[0], HAND_MEMORY, rtol=1e-12)
    np.testing.assert_allclose(ref.peak_memory_bytes[0], HAND_MEMORY, rtol=1e-12)
    assert report.feasible and ref.feasible
    assert report.total_s == pytest.approx(HAND_TTFT + sum(HAND_DECODE), rel=1e-12)


# Same instance, the network shared: only the attention stage changes
#   (one transfer on each side: sum recv = 0.17, max compute = 0.304, sum out = 0.09):
#   S=3: 0.17 + max(0.176, 0.304) + 0.09 + 0.128 = 0.692   (same as switched here)
#   S=4: 0.17 + max(0.192, 0.32) + 0.09 + 0.128 = 0.708
# so the trace equals the switched one.  FFN split 1/2 : 1/2 over A and B, ring, switched:
#   after the projection holders {A}; recv A 0, B 0.17;
#   FFN share time A: 0.5 * max(768/1000, 768/1000) = 0.384;  B: 0.5 * 1.536 = 0.768
#   switched: max(0 + 0.384, 0.17 + 0.768) = 0.938
#   ring, n=2: 2 steps, each A->B and B->A of 16/2 = 8 B: 0.01 + 0.08 = 0.09 -> 2*0.09 = 0.18
#   FFN stage = 1.118, holders {A, B}; lm on B: recv 0 -> lm stage 0.37
#   token S=3: 0.016 + 0.692 + 1.118 + 0.37 = 2.196;  S=4: 0.016 + 0.708 + 1.118 + 0.37 = 2.212
#   star (root = largest share, tie -> lowest index A): 0.17 (B->A) + 0.17 (A->B) = 0.34
#     -> S=3: 0.016 + 0.692 + 0.938 + 0.34 + 0.37 = 2.356
#   gather (root A): 0.17, holders {A} -> lm recv A->B 0.17:
#     S=3: 0.016 + 0.692 + 0.938 + 0.17 + 0.17 + 0.37 = 2.356
@pytest.mark.parametrize("network", ["switched", "shared"])
def test_hand_worked_shared_equals_switched_here(network):
    inst = instance_from_dict({**HAND, "network": network})
    np.testing.assert_allclose(evaluate(inst, _hand_plan()).decode_s, HAND_DECODE, rtol=1e-12)


@pytest.mark.parametrize("collective, first", [("ring", 2.196), ("star", 2.356), ("gather", 2.356)])
def test_hand_worked_split_ffn(collective, first):
    inst = instance_from_dict(HAND)
    plan = _hand_plan(collective, ffn=(0.5, 0.5))
    report = evaluate(inst, plan)
    ref = reference_evaluate(inst, plan)
    assert report.decode_s[0] == pytest.approx(first, rel=1e-12)
    assert ref.decode_s[0] == pytest.approx(first, rel=1e-12)
    if collective == "ring":
        assert report.decode_s[1] == pytest.approx(2.212, rel=1e-12)


# Migration: two intervals (tau = 1); interval 1 moves group 1 from B to A and the FFN from B to A.
#   Sb = P + 1*tau = 3; group: weights 128 + KV 2*2*3*2 = 24 -> 152 B; FFN 768 B; both B->A:
#   one pair (B, A): 2 * 0.01 + (152 + 768)/100 = 0.02 + 9.2 = 9.22 s
def test_hand_worked_migration():
    inst = instance_from_dict({**HAND, "workload": {"prompt_tokens": 2, "generate_tokens": 2, "interval": 1}})
    p0 = _hand_plan().intervals[0]
    p1 = Placement(attention=np.array([[0, 0]]), projection=np.array([[1.0, 0.0]]),
                   ffn=np.array([[1.0, 0.0]]), embed=0, lm_head=1)
    plan = Plan(devices=("A", "B"), intervals=[p0, p1])
    report = evaluate(inst, plan)
    ref = reference_evaluate(inst, plan)
    np.testing.assert_allclose(report.migration_s, [0.0, 9.22], rtol=1e-12)
    np.testing.assert_allclose(ref.migration_s, [0.0, 9.22], rtol=1e-12)
    # Interval 0's token is the hand-worked one at S=3.
    assert report.decode_s[0] == pytest.approx(HAND_DECODE[0], rel=1e-12)


@pytest.mark.parametrize("network", ["switched", "shared"])
def test_hand_worked_client(network):
    """Everything on B, the user on A: 1 ms and 1 MB/s between them, P = 8, T = 3, B = 1.

    The prompt's 8 token ids (32 B) go A → B: 1 ms + 32 µs; the first token B → A: 1 ms + 4 µs;
    both in the time to first token. Later tokens overlap the next step when switched, and
    add 1.004 ms to every step on a shared medium. 32 + 4·4 = 48 bytes cross the link.
    """
    inst = instance_from_dict({
        "model": {"name": "tiny", "layers": 1, "hidden": 64, "heads": 2, "kv_heads": 1, "ffn_hidden": 64,
                  "gated_ffn": False, "vocab": 64, "tied_embeddings": True},
        "devices": [{"name": "A", "memory": "1 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"},
                    {"name": "B", "memory": "1 GiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"}],
        "links": [{"between": ["A", "B"], "bandwidth": "1 MB/s", "latency": "1 ms"}],
        "network": network,
        "workload": {"prompt_tokens": 8, "generate_tokens": 3},
    })
    on_b = Plan(devices=("A", "B"), intervals=[Placement.by_layer(np.array([1]), 1, 2, embed=1, lm_head=1)])
    alone = evaluate(inst, on_b)
    served = evaluate(inst, on_b.replace(client="A"))
    assert served.ttft_s - alone.ttft_s == pytest.approx(2.036e-3, rel=RTOL)
    step = 1.004e-3 if network == "shared" else 0.0
    np.testing.assert_allclose(served.decode_s - alone.decode_s, step, atol=1e-15)
    assert served.breakdown_s["client"] == pytest.approx(2.036e-3 + 3 * step, rel=RTOL)
    assert served.link_bytes.sum() - alone.link_bytes.sum() == pytest.approx(48)
    assert evaluate(inst, on_b.replace(client="B")).total_s == alone.total_s  # the client holds embed: nothing
    assert Plan.from_json(on_b.replace(client="A").to_json()).client == "A"
