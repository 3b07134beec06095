"""Routes fit the message (docs/cost-model.md, "Routes"): hand-worked three-device triangles.

A–B direct: 100 MB/s, 5 ms. A–C and C–B: 1 MB/s, 0.1 ms each, so A → C → B has 0.2 ms
of latency and a 1 MB/s bottleneck. A message of ``n`` bytes from A to B takes

- A → C → B: ``0.2 ms + n / 1 MB/s``, or
- A → B: ``5 ms + n / 100 MB/s``,

whichever is less; they cross at ``n* = 4.8 ms / (1 µs − 10 ns) ≈ 4848 B``. The
hidden state of a 128-wide model at 16 bits is 256 B per position: one decode
token's (256 B) goes round by C, the prefill's of a 1024-token prompt (262,144 B)
goes direct, 7.62 ms instead of 262.3 ms (the minimum-latency route would be 34x slower).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import PROBLEMS  # noqa: E402

from placement import evaluate, solve  # noqa: E402
from placement.instance import instance_from_dict  # noqa: E402
from placement.plan import Placement, Plan  # noqa: E402

DIRECT = (5e-3, 100e6)  # latency s, bandwidth B/s
ROUND = (0.2e-3, 1e6)  # A -> C -> B


def triangle(prompt: int = 1024, generate: int = 4, interval: int | None = None):
    workload = {"prompt_tokens": prompt, "generate_tokens": generate}
    if interval is not None:
        workload["interval"] = interval
    return instance_from_dict({
        "name": "triangle",
        "model": {"name": "tri", "layers": 2, "hidden": 128, "heads": 2, "kv_heads": 1, "head_dim": 64,
                  "ffn_hidden": 256, "vocab": 256, "gated_ffn": True, "tied_embeddings": False},
        "devices": [{"name": n, "memory": "1 GiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "100 GB/s"}
                    for n in ("A", "B", "C")],
        "links": [{"between": ["A", "B"], "bandwidth": "100 MB/s", "latency": "5 ms"},
                  {"between": ["A", "C"], "bandwidth": "1 MB/s", "latency": "0.1 ms"},
                  {"between": ["C", "B"], "bandwidth": "1 MB/s", "latency": "0.1 ms"}],
        "workload": workload,
    })


def by_hand(n: float) -> float:
    return min(lat + n / bw for lat, bw in (DIRECT, ROUND))


def test_small_and_large_messages_by_hand():
    cluster = triangle().cluster
    a, b = cluster.index("A"), cluster.index("B")
    times = cluster.route_time_s(np.array([256.0, 262144.0]))[:, a, b]
    assert times[0] == pytest.approx(0.2e-3 + 256 / 1e6, rel=1e-12)  # round by C: 0.456 ms
    assert times[1] == pytest.approx(5e-3 + 262144 / 100e6, rel=1e-12)  # direct: 7.62 ms
    assert (0.2e-3 + 262144 / 1e6) / times[1] > 34  # what the minimum-latency route would cost
    links = [{cluster.links[i].u, cluster.links[i].v} for i in cluster.candidate_links[cluster.route_index(262144.0)[a, b], a, b]]
    assert links == [{"A", "B"}]
    assert cluster.route_time_s(np.array([0.0]))[0, a, b] == 0.0  # nothing sent, nothing paid


def test_never_slower_than_any_path():
    # every simple path enumerated: the chosen route is the fastest of them, so never slower than the direct link
    cluster = triangle().cluster
    sizes = np.logspace(0, 8, 33)
    chosen = cluster.route_time_s(sizes)
    names = cluster.names
    for u, v in itertools.permutations(range(3), 2):
        for path in nx.all_simple_paths(cluster.graph, names[u], names[v]):
            hops = [cluster.links[cluster.graph.edges[x, y]["index"]] for x, y in zip(path, path[1:])]
            lat = sum(h.latency_s for h in hops)
            bw = min(h.bandwidth_bytes_per_s for h in hops)
            assert np.all(chosen[:, u, v] <= (lat + sizes / bw) * (1 + 1e-12))
        assert np.allclose(chosen[:, u, v], [by_hand(n) if {u, v} == {0, 1} else min(
            0.1e-3 + n / 1e6, 5.1e-3 + n / 1e6) for n in sizes], rtol=1e-12)


def pipeline(inst) -> Plan:
    """Layer 0 (and embed) on A, layer 1 (and lm_head) on B."""
    a, b = inst.cluster.index("A"), inst.cluster.index("B")
    eye = np.eye(3)
    return Plan(inst.cluster.names, [Placement(np.array([[a], [b]]), eye[[a, b]], eye[[a, b]], embed=a, lm_head=b)])


def test_the_evaluator_routes_each_message_by_its_size():
    inst = triangle()
    report = evaluate(inst, pipeline(inst))
    P, T, hidden, token = 1024, 4, 256.0, 4.0
    # prefill: the hidden state after layer 0 goes direct, the first token back round by C
    assert report.breakdown_s["prefill_transfer"] == pytest.approx(by_hand(P * hidden) + by_hand(token), rel=1e-9)
    # decode: every step's hidden state and token go round by C
    assert report.breakdown_s["decode_transfer"] == pytest.approx(T * (by_hand(hidden) + by_hand(token)), rel=1e-9)
    carried = dict(zip(report.links, report.link_bytes))
    assert carried[("A", "B")] == P * hidden
    assert carried[("A", "C")] == carried[("C", "B")] == T * hidden + (T + 1) * token


def test_migration_moves_each_block_on_its_own_route():
    # two intervals: the FFN of layer 1 (3·128·256 parameters, 196,608 B) and lm_head
    # (65,536 B) move from B to A (direct: both large); each pays its route's latency
    inst = triangle(prompt=8, generate=4, interval=2)
    first = pipeline(inst).intervals[0]
    a = inst.cluster.index("A")
    ffn = first.ffn.copy()
    ffn[1] = np.eye(3)[a]
    second = Placement(first.attention, first.projection, ffn, embed=a, lm_head=a)
    report = evaluate(inst, Plan(inst.cluster.names, [first, second]))
    assert report.migration_s[1] == pytest.approx(by_hand(196608.0) + by_hand(65536.0), rel=1e-9)


def test_milp_and_heuristics_price_the_routes_as_the_evaluator():
    # the MILP's own value is the evaluator's figure on a triangle whose head outputs change route with the count
    inst = PROBLEMS["triangle-size-routes"]()
    milp = solve(inst, method="milp")
    assert milp.status == "optimal"
    assert milp.backend_objective == pytest.approx(milp.objective, rel=1e-6)
    for method in ("myopic", "myopic+", "greedy", "tp"):  # feasible heuristics never beat the optimum
        result = solve(inst, method=method)
        if result.success:
            assert result.objective >= milp.objective * (1 - 1e-9), method
