"""Tensor parallelism (issue 6, TPI-LLM): collectives, the `tp` solver, sliding-window offload."""

from __future__ import annotations

import numpy as np
import pytest

from placement.collectives import all_reduce, all_reduce_seconds, star_ring_crossover_latency_s
from placement.errors import InputError, PlanError
from placement.evaluate import evaluate
from placement.instance import instance_from_dict
from placement.plan import Plan
from placement.solvers.tp import even_counts, solve_tp, tp_plan

PRESETS = ["raspberry-pi-5", "raspberry-pi-4", "mini-pc-intel-n100", "jetson-orin-nano"]


def _mesh(n: int, latency: str, bandwidth: str, network: str = "switched", model: str = "llama-3.2-1b", **device):
    devices = [{"name": f"d{i}", "memory": "8 GiB", "peak_flops": "300 GFLOPS", "memory_bandwidth": "17 GB/s", **device}
               for i in range(n)]
    return instance_from_dict({"name": "mesh", "model": model, "devices": devices,
                               "mesh": {"bandwidth": bandwidth, "latency": latency}, "network": network,
                               "workload": {"prompt_tokens": 16, "generate_tokens": 8}}, check_capacity=False)


def _weak(n: int, model: str = "llama-3.2-1b", latency: str = "1 ms", bandwidth: str = "100 Mbit/s", **workload):
    devices = [{"name": f"d{i}", "preset": PRESETS[i % 4], "disk_bandwidth": "2 GB/s"} for i in range(n)]
    return instance_from_dict({"name": "weak", "model": model, "devices": devices,
                               "mesh": {"bandwidth": bandwidth, "latency": latency},
                               "workload": {"prompt_tokens": 16, "generate_tokens": 8, **workload}}, check_capacity=False)


# ----------------------------------------------------------------------------- collectives, hand-worked
# Four devices, every route 1 ms and 1 MB/s, a 1000-byte message:
#   star (switched):  gather 1 ms + 1000/1e6 = 2 ms, broadcast 2 ms            -> 4 ms
#   ring (switched):  2(n-1) = 6 steps of 1 ms + 250/1e6 = 1.25 ms             -> 7.5 ms
#   star (shared):    3 transfers of 2 ms each way, one after another         -> 12 ms
#   ring (shared):    6 steps, each 4 transfers of 1.25 ms                     -> 30 ms
@pytest.mark.parametrize("network, kind, expected", [
    ("switched", "star", 4e-3), ("switched", "ring", 7.5e-3), ("shared", "star", 12e-3), ("shared", "ring", 30e-3),
])
def test_all_reduce_hand_worked(network, kind, expected):
    inst = _mesh(4, "1 ms", "1 MB/s", network)
    cost = all_reduce(kind, np.ones(4, dtype=bool), 0, 1000.0, inst.cluster)
    assert cost.time_s == pytest.approx(expected, rel=1e-12)
    assert all_reduce_seconds(kind, 4, 1000.0, 1e-3, 1e6, network) == pytest.approx(expected, rel=1e-12)
    assert cost.holders.all()
    # bytes: the star moves M each way per non-root; the ring 2(n-1) chunks of M/n per device
    assert cost.pair_bytes.sum() == pytest.approx(6000.0 if kind == "star" else 6000.0, rel=1e-12)


@pytest.mark.parametrize("n", [3, 4, 6, 8])
def test_star_beats_ring_exactly_above_the_crossover(n):
    M, bw = 8192.0, 1e6  # a 4096-wide fp16 hidden state on 8 Mbit/s
    crossover = star_ring_crossover_latency_s(n, M, bw)
    assert crossover == pytest.approx(M / (bw * n * (n - 2)))
    for factor, star_wins in ((0.5, False), (0.99, False), (1.01, True), (20.0, True)):
        alpha = crossover * factor
        inst = _mesh(n, f"{alpha} s", f"{bw} B/s")
        star = all_reduce("star", np.ones(n, dtype=bool), 0, M, inst.cluster).time_s
        ring = all_reduce("ring", np.ones(n, dtype=bool), 0, M, inst.cluster).time_s
        assert (star < ring) is star_wins, (factor, star, ring)


def test_two_devices_ring_always_wins_and_shared_star_always_wins():
    assert star_ring_crossover_latency_s(2, 1e4, 1e6) == np.inf
    for latency in ("0.1 ms", "20 ms"):
        switched = _mesh(2, latency, "10 MB/s")
        assert all_reduce("ring", np.ones(2, bool), 0, 1e4, switched.cluster).time_s < \
            all_reduce("star", np.ones(2, bool), 0, 1e4, switched.cluster).time_s
        shared = _mesh(4, latency, "10 MB/s", "shared")
        assert all_reduce("star", np.ones(4, bool), 0, 1e4, shared.cluster).time_s < \
            all_reduce("ring", np.ones(4, bool), 0, 1e4, shared.cluster).time_s
    assert star_ring_crossover_latency_s(4, 1e4, 1e6, "shared") == 0.0


# ----------------------------------------------------------------------------- the solver
@pytest.mark.parametrize("n, latency", [(4, "0.1 ms"), (4, "10 ms"), (8, "1 ms")])
def test_objective_is_the_evaluators_total(n, latency):
    inst = _weak(n, latency=latency)
    result = solve_tp(inst)
    assert result.success
    report = evaluate(inst, result.plan)
    assert result.objective == report.total_s == result.report.total_s
    assert result.bound <= result.objective * (1 + 1e-9)
    p = result.plan.intervals[0]
    np.testing.assert_allclose(p.projection, np.bincount(p.attention[0], minlength=n)[None] / inst.model.kv_heads
                               * np.ones((inst.model.layers, 1)))


@pytest.mark.parametrize("n, latency, bandwidth", [(4, "1 ms", "100 Mbit/s"), (6, "0.1 ms", "1 Gbit/s"),
                                                   (8, "5 ms", "50 Mbit/s")])
def test_optimal_ratios_never_worse_than_even(n, latency, bandwidth):
    inst = _weak(n, latency=latency, bandwidth=bandwidth)
    optimal, even = solve_tp(inst), solve_tp(inst, shares="even")
    assert optimal.success and even.success
    assert optimal.objective <= even.objective * (1 + 1e-12)


def test_memory_bound_model_is_exact():
    """Every device memory-bound in decode: the MILP's figure equals the evaluator's for each candidate."""
    result = solve_tp(_weak(4))
    resident = [c for c in result.stats["candidates"] if not c["offload"]]
    assert resident
    for c in resident:
        assert c["model_s"] == pytest.approx(c["total_s"], rel=1e-9)
    assert result.status == "optimal"


def test_star_chosen_when_latency_dominates_ring_when_bandwidth_does():
    slow_links = solve_tp(_mesh(4, "20 ms", "1 Gbit/s"))
    assert slow_links.plan.collective == "star"
    # two devices that must share the model, joined by a thin, instant link: the ring's halves win
    fast_links = solve_tp(_mesh(2, "0 ms", "10 Mbit/s", memory="1.6 GiB"))
    assert fast_links.plan.collective == "ring" and len(set(fast_links.plan.intervals[0].attention[0])) == 2


def test_even_counts():
    np.testing.assert_array_equal(even_counts(8, np.array([True, True, True, False])), [3, 3, 2, 0])


@pytest.mark.parametrize("option, value, match", [
    ("collectives", ["tree"], r"option `collectives`.*star, ring"),
    ("collectives", [], r"option `collectives`"),
    ("shares", "uneven", r"option `shares` must be one of optimal, even"),
    ("offload", "sometimes", r"option `offload` must be one of auto, never, always"),
    ("solver", "gurobi", r"option `solver` must be one of highs, cbc, ortools"),
    ("time_limit", -1, r"option `time_limit` must be a positive number of seconds"),
])
def test_bad_options(option, value, match):
    with pytest.raises(InputError, match=match):
        solve_tp(_mesh(2, "1 ms", "1 MB/s"), **{option: value})


# ----------------------------------------------------------------------------- sliding-window offload
def _offload_instance(memory: str = "1 GiB"):
    return _mesh(2, "1 ms", "1 Gbit/s", model="llama-3.2-1b", memory=memory, disk_bandwidth="1 GB/s")


def test_window_memory_and_disk_time_hand_worked():
    inst = _offload_instance("8 GiB")
    K, L = inst.model.kv_heads, inst.model.layers
    plan = tp_plan(inst, even_counts(K, np.ones(2, bool)), np.array([0.5, 0.5]), 0, "star")
    full = evaluate(inst, plan)
    W = 4
    windowed = evaluate(inst, plan.replace(windows={"d1": W}))
    # d1 holds half of every layer: layer bytes = half of (K groups' weights + projection + FFN)
    m = inst.model
    layer = (K * m.group_params + m.projection_params + m.ffn_params) * 2 / 2  # 16-bit weights, half each
    assert windowed.peak_memory_bytes[0, 1] == pytest.approx(full.peak_memory_bytes[0, 1] - (L - W) * layer, rel=1e-9)
    assert windowed.peak_memory_bytes[0, 0] == full.peak_memory_bytes[0, 0]
    # every step reads the L - (W - 2) unpinned layers at 1 GB/s; the step takes at least that
    disk = (L - W + 2) * layer / 1e9
    np.testing.assert_allclose(windowed.decode_s, np.maximum(full.decode_s, disk), rtol=1e-12)
    assert windowed.ttft_s == pytest.approx(max(full.ttft_s, disk), rel=1e-12)
    assert windowed.breakdown_s["decode_disk"] == pytest.approx((windowed.decode_s - full.decode_s).sum(), rel=1e-9)


def test_solver_offloads_and_memory_stays_within_the_window():
    inst = _offload_instance("1 GiB")  # 2.5 GB of fp16 weights on 2 x 1 GiB: must stream
    assert not solve_tp(inst, offload="never").success
    result = solve_tp(inst)
    assert result.success and result.plan.windows
    report = result.report
    assert (report.peak_memory_bytes <= report.memory_limit_bytes * (1 + 1e-12)).all()
    assert report.breakdown_s["decode_disk"] > 0
    assert result.objective == report.total_s
    # the peak is the KV cache, the ends and the window's W heaviest layers, never more
    p = result.plan.intervals[0]
    m, L, K = inst.model, inst.model.layers, inst.model.kv_heads
    for name, W in result.plan.windows.items():
        d = inst.cluster.index(name)
        c = np.bincount(p.attention[0], minlength=2)[d]
        layer = (c * m.group_params + c / K * m.projection_params + p.ffn[0, d] * m.ffn_params) * 2
        unwindowed = evaluate(inst, result.plan.replace(windows={})).peak_memory_bytes[0, d]
        assert report.peak_memory_bytes[0, d] == pytest.approx(unwindowed - (L - W) * layer, rel=1e-9)


def test_window_errors():
    inst = _mesh(2, "1 ms", "1 Gbit/s")  # no disk
    plan = tp_plan(inst, even_counts(inst.model.kv_heads, np.ones(2, bool)), np.array([0.5, 0.5]), 0)
    with pytest.raises(PlanError, match=r"`windows.d1`: device 'd1' has no `disk_bandwidth`"):
        evaluate(inst, plan.replace(windows={"d1": 4}))
    with pytest.raises(PlanError, match=r"at least 2"):
        evaluate(_offload_instance(), plan.replace(windows={"d1": 1}))
    with pytest.raises(PlanError, match=r"names device 'x'"):
        evaluate(_offload_instance(), plan.replace(windows={"x": 4}))


def test_windows_round_trip_json():
    inst = _offload_instance()
    plan = tp_plan(inst, even_counts(inst.model.kv_heads, np.ones(2, bool)), np.array([0.5, 0.5]), 0, windows={"d1": 3})
    again = Plan.from_json(plan.to_json())
    assert again.windows == {"d1": 3}
    assert "windows" not in Plan.from_json(plan.replace(windows={}).to_json()).to_dict()
    with pytest.raises(PlanError, match=r"plan `windows.d1` must be a whole number of layers, at least 2"):
        Plan.from_dict({**plan.to_dict(), "windows": {"d1": 0}})


def test_llama_2_70b_on_eight_weak_devices_fits_with_offload():
    inst = _weak(8, model="llama-2-70b")
    result = solve_tp(inst)
    assert result.success and result.plan.windows
    assert result.objective == result.report.total_s
