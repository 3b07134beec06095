"""Routed experts placed by the MILP (holding patterns) and moved by myopic+, against brute force and by hand.

The tiny model has one MoE layer (D=256, one KV head of 2 query heads, 4 experts of width
2,048, top-2) so that every placement of every block and every holding of the experts
can be enumerated and judged by the evaluator.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brute_force import enumerate_space  # noqa: E402

from placement import Plan, evaluate, solve  # noqa: E402
from placement.instance import instance_from_dict  # noqa: E402
from placement.plan import Placement  # noqa: E402
from placement.solvers.milp_experts import expert_space  # noqa: E402

MODEL = {"name": "moe1", "layers": 1, "hidden": 256, "heads": 2, "kv_heads": 1, "ffn_hidden": 256, "gated_ffn": True,
         "vocab": 64, "tied_embeddings": False, "experts": 4, "experts_per_token": 2, "expert_ffn_hidden": 2048}


def _instance(seed: int, n: int, *, network: str = "switched"):
    rng = np.random.default_rng(seed)
    devices = [{"name": f"d{i}", "memory": f"{rng.uniform(7, 16):.2f} MiB",
                "peak_flops": f"{rng.uniform(0.5, 2):.3f} TFLOPS", "memory_bandwidth": f"{rng.uniform(1, 3):.3f} GB/s"}
               for i in range(n)]
    links = [{"between": [f"d{i}", f"d{j}"], "bandwidth": f"{rng.choice([1, 10, 40])} Gbit/s",
              "latency": f"{rng.uniform(5, 200):.1f} us"} for i in range(n) for j in range(i + 1, n)]
    return instance_from_dict({"model": MODEL, "devices": devices, "links": links, "network": network,
                               "workload": {"prompt_tokens": 4, "generate_tokens": 3}}, check_capacity=False)


def _brute_force(instance) -> tuple[float, np.ndarray]:
    """The best feasible total over every placement and every holding of the experts, by the evaluator."""
    space, N, E = enumerate_space(instance), instance.n_devices, instance.model.experts
    holdings = [c for c in itertools.product(range(E + 1), repeat=N) if sum(c) == E]
    best, where = np.inf, None
    for i in range(len(space)):
        p = space.placement(i, N)
        for h in holdings:
            experts = np.repeat(np.arange(N), h)[None]
            plan = Plan(instance.cluster.names, [Placement(p.attention, p.projection, p.ffn, p.embed, p.lm_head, None,
                                                           experts)])
            report = evaluate(instance, plan)
            if report.feasible and report.total_s < best:
                best, where = report.total_s, experts
    return best, where


def _check_milp(instance) -> None:
    optimum, _ = _brute_force(instance)
    result = solve(instance, method="milp")
    assert result.status == "optimal", result.message
    assert result.objective == pytest.approx(optimum, rel=1e-9)
    assert result.backend_objective == pytest.approx(result.report.total_s, rel=1e-9)  # its own figure is the evaluator's
    assert result.bound <= optimum * (1 + 1e-9)  # a bound never above a feasible plan's figure
    assert result.plan.intervals[0].experts is not None and "expert_space" in result.stats


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_milp_equals_brute_force_on_two_devices(seed: int) -> None:
    _check_milp(_instance(seed, 2))


@pytest.mark.parametrize("seed,network", [(4, "switched"), (5, "shared")])
def test_milp_equals_brute_force_on_three_devices(seed: int, network: str) -> None:
    _check_milp(_instance(seed, 3, network=network))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 16))
def test_milp_equals_brute_force_randomized(seed: int) -> None:
    _check_milp(_instance(seed, 2 + seed % 2, network=("switched", "shared")[seed % 3 == 0]))


def test_milp_spreads_experts_when_one_device_cannot_hold_them() -> None:
    # d0 and d1 hold 8 MiB each; the 4 experts (3*256*2048 weights at 2 bytes = 3 MiB each) cannot
    # sit together anywhere, so no plan keeps them with the FFN: the MILP still solves it
    devices = [{"name": f"d{i}", "memory": "8 MiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "2 GB/s"}
               for i in range(2)]
    inst = instance_from_dict({"model": MODEL, "devices": devices,
                               "links": [{"between": ["d0", "d1"], "bandwidth": "10 Gbit/s", "latency": "20 us"}],
                               "workload": {"prompt_tokens": 4, "generate_tokens": 3}}, check_capacity=False)
    assert solve(inst, method="pipeline-dp").status == "infeasible"
    result = solve(inst, method="milp")
    assert result.status == "optimal" and result.report.feasible
    assert sorted(np.bincount(result.plan.intervals[0].experts[0], minlength=2)) == [2, 2]
    assert result.objective == pytest.approx(_brute_force(inst)[0], rel=1e-9)
    from placement.report.summary import device_blocks
    words = device_blocks(inst, result.plan)
    assert all(text.endswith("layer 0: 2/4 experts") or "+ FFN + 2/4 experts" in text for text in words.values())


def _two_intervals(network: str, d1_bandwidth: str):
    # d0 (6.83 MB) holds the pinned blocks, the router and two experts while the cache is short: blocks
    # 262,144 + 131,072 + 2*32,768 + 2,048 router + 2*3,145,728 = 6,752,256 bytes, plus 512 bytes of
    # cache per token: 6,805,504 at context 104 (interval 0), 6,856,704 at 204 (interval 1) > 6.83 MB
    return instance_from_dict({"model": MODEL, "devices": [
        {"name": "d0", "memory": "6.83 MB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "3 GB/s"},
        {"name": "d1", "memory": "16 MiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": d1_bandwidth}],
        "links": [{"between": ["d0", "d1"], "bandwidth": "10 Gbit/s", "latency": "20 us"}], "network": network,
        "workload": {"prompt_tokens": 4, "generate_tokens": 200, "interval": 100}}, check_capacity=False)


def _brute_force_two_intervals(instance) -> float:
    """Every FFN device and every expert's device in both intervals (the other blocks on d0), by the evaluator."""
    states = [(h, o) for h in range(2) for o in itertools.product(range(2), repeat=4)]

    def placement(state):
        return Placement(np.array([[0]]), np.array([[1.0, 0.0]]), np.eye(2)[[state[0]]], 0, 0, None,
                         np.array([state[1]]))

    totals = [evaluate(instance, Plan(instance.cluster.names, [placement(a), placement(b)]))
              for a in states for b in states]
    return min(r.total_s for r in totals if r.feasible)


PIN_BUT_FFN = {"attention": "d0", "projection": "d0", "embed": "d0", "lm_head": "d0"}


def _check_two_intervals(network: str, d1_bandwidth: str):
    inst = _two_intervals(network, d1_bandwidth)
    result = solve(inst, method="milp", pin=PIN_BUT_FFN)
    assert result.status == "optimal", result.message
    assert result.objective == pytest.approx(_brute_force_two_intervals(inst), rel=1e-9)
    assert result.backend_objective == pytest.approx(result.report.total_s, rel=1e-9)
    return result


def test_milp_migrates_an_expert_when_the_cache_grows() -> None:
    # with d1 slower (2 GB/s) two experts stay on d0 for interval 0, and one moves to d1 when the
    # cache grows: the optimum pays one expert's message (3 MiB over 10 Gbit/s + 20 us = 2.5366 ms)
    result = _check_two_intervals("switched", "2 GB/s")
    assert result.report.migration_s.sum() == pytest.approx(20e-6 + 3145728 * 8 / 10e9, rel=1e-9)
    held = [np.bincount(p.experts[0], minlength=2).tolist() for p in result.plan.intervals]
    assert held == [[2, 2], [1, 3]]


@pytest.mark.slow
@pytest.mark.parametrize("network,bandwidth", [("switched", "6 GB/s"), ("shared", "6 GB/s"), ("shared", "2 GB/s")])
def test_milp_two_intervals_equals_brute_force(network: str, bandwidth: str) -> None:
    _check_two_intervals(network, bandwidth)


def _count_holdings(units: int, n: int, most: int) -> int:
    return sum(1 for c in itertools.product(range(units + 1), repeat=n) if sum(c) == units and np.count_nonzero(c) <= most)


@pytest.mark.parametrize("model,n,unit,most", [("mixtral-8x7b", 4, 1, 4), ("mixtral-8x7b", 8, 1, 2),
                                                ("qwen3-30b-a3b", 4, 16, 4), ("qwen3-30b-a3b", 8, 16, 2)])
def test_expert_space_for_the_moe_table(model: str, n: int, unit: int, most: int) -> None:
    from placement.experiments.moe_table import moe_instance
    space = expert_space(moe_instance(model, n))
    assert (space.unit, space.max_devices) == (unit, most)
    # every holding once, in multiples of the unit, summing to E
    units = space.holdings // unit
    assert len(space.holdings) == _count_holdings(8, n, most) == len({tuple(h) for h in units})
    assert (space.holdings % unit == 0).all() and (space.holdings.sum(axis=1) == 8 * unit).all()


# --- myopic+ moves experts ---------------------------------------------------------------

TWO = {"name": "moe2", "layers": 1, "hidden": 256, "heads": 2, "kv_heads": 1, "ffn_hidden": 256, "gated_ffn": True,
       "vocab": 64, "tied_embeddings": False, "experts": 2, "experts_per_token": 1, "expert_ffn_hidden": 2048}


def _big_and_small(link: str, latency: str):
    return instance_from_dict({"model": TWO, "devices": [
        {"name": "big", "memory": "64 MiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "1 GB/s"},
        {"name": "small", "memory": "3.5 MiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "10 GB/s"}],
        "links": [{"between": ["big", "small"], "bandwidth": link, "latency": latency}],
        "workload": {"prompt_tokens": 4, "generate_tokens": 3}}, check_capacity=False)


def test_myopic_plus_moves_an_expert_when_it_pays() -> None:
    # One expert: 3*256*2048 = 1,572,864 weights, 3,145,728 bytes, memory-bound everywhere:
    # 3.145728 ms on big (1 GB/s), 0.3145728 ms on small (10 GB/s). The FFN (6 MiB) fits only on
    # big; small (3.5 MiB) holds one expert, not two. Top-1 of 2 experts, one on each device:
    # half the tokens stay on big (3.145728 ms), half go to small and back, 2*(10 us + 512*8 bits /
    # 10 Gbit/s) = 20.8192 us plus 0.3145728 ms: expected 1.740560 ms against 3.145728 ms with both
    # on big, a gain of 1.405168 ms per decode token.
    inst = _big_and_small("10 Gbit/s", "10 us")
    result = solve(inst, method="myopic+")
    p = result.plan.intervals[0]
    assert p.ffn.argmax(axis=1).tolist() == [0] and sorted(p.experts[0].tolist()) == [0, 1]
    kept = evaluate(inst, result.plan.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed,
                                                                   p.lm_head)]))
    assert kept.mean_token_s - result.report.mean_token_s == pytest.approx(1.405168e-3, rel=1e-9)
    assert result.objective == result.report.total_s


def test_myopic_plus_keeps_experts_home_when_the_link_is_slow() -> None:
    # at 1 Mbit/s and 5 ms a round trip (10 ms + 2*4.096 ms) costs more than the 3.15 ms it saves
    result = solve(_big_and_small("1 Mbit/s", "5 ms"), method="myopic+")
    assert result.plan.intervals[0].experts is None
