"""The baselines (placement/solvers/baselines.py): plans judged by the evaluator, and the pipeline DP's exactness.

- Every baseline's plan is valid for its instance (the evaluator accepts it, it
  survives a JSON round trip) and its objective is the evaluator's total.
- ``pipeline-dp``: the DP's own value equals the evaluator's total for the plan it
  returns (rel 1e-9), and equals a brute force over every contiguous partition and
  device order on tiny instances (3 devices, 4 layers; 4 devices, 5 layers); its
  restricted-order fallback equals a brute force over the subsequences of its two
  orders; it is never worse than ``memory-proportional`` when both fit.
- ``greedy``'s memory accounting is the evaluator's; ``round-robin`` cycles;
  ``static`` keeps one placement.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from placement import Plan, evaluate, instance_names, load_instance, solve
from placement.errors import InputError
from placement.instance import Instance, instance_from_dict
from placement.plan import Placement
from placement.result import STATUSES
from placement.solvers.baselines import (
    solve_greedy,
    solve_memory_proportional,
    solve_pipeline_dp,
    solve_round_robin,
)
from placement.solvers.static import solve_static
from placement.solvers.reference import pipeline_plan, solve_pipeline

REL = 1e-9

SHIPPED = [name for name in instance_names() if name.startswith("edge/")] + [
    "milp/llama-3.2-1b-6dev",
    "milp/llama-3.2-1b-6dev-tight",
    "paper-small/h8-3dev-low-s1-roofline",
    "paper-small/h8-4dev-medium-s1-kafetzis",
    "paper-small/h16-4dev-low-s1-roofline",
]

BACK_ENDS = {
    "pipeline-dp": solve_pipeline_dp,
    "memory-proportional": solve_memory_proportional,
    "round-robin": solve_round_robin,
    "greedy": solve_greedy,
}


# ----------------------------------------------------------------------------- tiny instances
def tiny(seed: int, *, devices: int = 3, layers: int = 4, network: str = "switched", topology: str = "mesh",
         tied: bool = False, profile: str = "roofline", interval: int | None = None, generate: int = 6) -> Instance:
    """A tiny multi-layer model on random devices (fixed seed); about 72 KiB per layer at 16 bits."""
    rng = np.random.default_rng(seed)
    names = [f"d{i}" for i in range(devices)]
    data: dict[str, Any] = {
        "name": f"tiny-{seed}",
        "model": {"name": "tiny-pipe", "layers": layers, "hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16,
                  "ffn_hidden": 128, "gated_ffn": True, "vocab": 256, "tied_embeddings": tied},
        "devices": [{"name": n, "memory": f"{rng.uniform(110, 330):.1f} KiB",
                     "peak_flops": f"{rng.uniform(0.5, 8):.2f} GFLOPS",
                     "memory_bandwidth": f"{rng.uniform(0.3, 4):.2f} GB/s"} for n in names],
        "network": network,
        "workload": {"prompt_tokens": 8, "generate_tokens": generate, "profile": profile,
                     **({"interval": interval} if interval else {})},
    }
    if topology == "mesh":
        data["links"] = [{"between": [u, v], "bandwidth": f"{rng.uniform(20, 400):.0f} Mbit/s",
                          "latency": f"{rng.uniform(0, 0.5):.2f} ms"} for u, v in itertools.combinations(names, 2)]
    else:  # a switch in the middle
        data["switches"] = ["sw"]
        data["links"] = [{"between": [n, "sw"], "bandwidth": f"{rng.uniform(50, 400):.0f} Mbit/s",
                          "latency": "0.1 ms"} for n in names]
    return instance_from_dict(data, source=f"tiny-{seed}", check_capacity=False)


TINY: dict[str, dict[str, Any]] = {
    "mesh": {},
    "tied": {"tied": True},
    "shared": {"network": "shared"},
    "switch": {"topology": "switch"},
    "intervals": {"interval": 2},
    "kafetzis": {"profile": "kafetzis2025"},
}


def chains(devices: list[int], layers: int):
    """Every pipeline of whole layers: an ordered sequence of distinct devices and a composition of the layers."""
    for k in range(1, min(len(devices), layers) + 1):
        for order in itertools.permutations(devices, k):
            for cuts in itertools.combinations(range(1, layers), k - 1):
                bounds = (0, *cuts, layers)
                yield np.concatenate([np.full(bounds[s + 1] - bounds[s], order[s]) for s in range(k)])


def subsequence_chains(order: list[int], layers: int):
    for k in range(1, min(len(order), layers) + 1):
        for sub in itertools.combinations(order, k):
            for cuts in itertools.combinations(range(1, layers), k - 1):
                bounds = (0, *cuts, layers)
                yield np.concatenate([np.full(bounds[s + 1] - bounds[s], sub[s]) for s in range(k)])


def best_chain(inst: Instance, candidates) -> float:
    """The least evaluator total among memory-feasible whole-layer pipelines (inf when none fits)."""
    best = np.inf
    for layer_devices in candidates:
        plan = Plan(devices=inst.cluster.names,
                    intervals=[Placement.by_layer(layer_devices, inst.model.kv_heads, inst.n_devices)])
        report = evaluate(inst, plan)
        if report.feasible:
            best = min(best, report.total_s)
    return best


def check_result(inst: Instance, result) -> None:
    """The checks every baseline passes: status vocabulary, a valid plan, the evaluator's verdict on it."""
    assert result.status in STATUSES and result.status in ("feasible", "infeasible", "error", "time_limit")
    assert isinstance(result.message, str) and result.message
    assert result.stats["decision_time_s"] >= 0
    if result.plan is None:
        assert result.status != "feasible"
        return
    report = evaluate(inst, result.plan)
    assert result.status == ("feasible" if report.feasible else "infeasible")
    if not report.feasible:
        assert "does not fit: device" in result.message
    assert len(result.plan.intervals) == 1
    again = Plan.from_json(result.plan.to_json())
    assert evaluate(inst, again).total_s == pytest.approx(report.total_s, rel=1e-12)


# ----------------------------------------------------------------------------- every baseline, judged
@pytest.fixture(scope="module", params=SHIPPED)
def shipped(request):
    return load_instance(request.param)


@pytest.mark.parametrize("method", list(BACK_ENDS))
def test_shipped_plans_are_valid_and_judged_by_the_evaluator(shipped, method):
    check_result(shipped, BACK_ENDS[method](shipped))


@pytest.mark.parametrize("case", list(TINY))
@pytest.mark.parametrize("method", list(BACK_ENDS))
def test_tiny_plans_are_valid_and_judged_by_the_evaluator(case, method):
    for seed in range(3):
        inst = tiny(seed, **TINY[case])
        check_result(inst, BACK_ENDS[method](inst))


# ----------------------------------------------------------------------------- pipeline DP
def test_pipeline_dp_value_is_the_evaluators_on_shipped(shipped):
    result = solve_pipeline_dp(shipped)
    if result.stats["stages"]:
        assert result.backend_objective == pytest.approx(result.objective, rel=REL)
    else:
        assert result.status == "infeasible" and result.backend_objective is None


@pytest.mark.parametrize("case", list(TINY))
def test_pipeline_dp_equals_brute_force_3dev_4layers(case):
    found = 0
    for seed in range(6):
        inst = tiny(seed, **TINY[case])
        result = solve_pipeline_dp(inst)
        truth = best_chain(inst, chains(list(range(3)), 4))
        if np.isfinite(truth):
            found += 1
            assert result.status == "feasible"
            assert result.objective == pytest.approx(truth, rel=REL)
            assert result.backend_objective == pytest.approx(result.objective, rel=REL)
        else:
            assert result.status == "infeasible" and result.backend_objective is None
    assert found >= 2, "the tiny instances should mostly admit a pipeline"


def test_pipeline_dp_equals_brute_force_4dev_5layers():
    for seed in (11, 12):
        inst = tiny(seed, devices=4, layers=5)
        truth = best_chain(inst, chains(list(range(4)), 5))
        assert np.isfinite(truth)
        result = solve_pipeline_dp(inst)
        assert result.objective == pytest.approx(truth, rel=REL)
        assert result.backend_objective == pytest.approx(truth, rel=REL)


@pytest.mark.parametrize("case", ["mesh", "shared", "tied"])
def test_pipeline_dp_restricted_orders_equal_their_brute_force(case):
    """Beyond `max_exact_devices`: the best subsequence of the bandwidth order or the index order."""
    for seed in range(4):
        inst = tiny(seed, devices=4, layers=5, **TINY[case])
        result = solve_pipeline_dp(inst, max_exact_devices=3)
        assert not result.stats["exact"]
        bandwidth = [d.bytes_per_s for d in inst.devices]
        by_bandwidth = sorted(range(4), key=lambda n: (-bandwidth[n], n))
        truth = min(best_chain(inst, subsequence_chains(by_bandwidth, 5)),
                    best_chain(inst, subsequence_chains(list(range(4)), 5)))
        exact = solve_pipeline_dp(inst)
        if np.isfinite(truth):
            assert result.objective == pytest.approx(truth, rel=REL)
            assert result.backend_objective == pytest.approx(truth, rel=REL)
            assert exact.objective <= result.objective * (1 + REL)
        else:
            assert result.status == "infeasible"


def test_pipeline_dp_never_worse_than_memory_proportional(shipped):
    dp, proportional = solve_pipeline_dp(shipped), solve_memory_proportional(shipped)
    if proportional.status == "feasible":
        assert dp.status == "feasible"
        assert dp.objective <= proportional.objective * (1 + REL)
    restricted = solve_pipeline_dp(shipped, max_exact_devices=1)
    if proportional.status == "feasible":
        assert restricted.objective <= proportional.objective * (1 + REL)
        assert dp.objective <= restricted.objective * (1 + REL)


def test_pipeline_dp_never_worse_than_memory_proportional_tiny():
    for case, seed in itertools.product(TINY, range(4)):
        inst = tiny(seed, **TINY[case])
        dp, proportional = solve_pipeline_dp(inst), solve_memory_proportional(inst)
        if proportional.status == "feasible":
            assert dp.status == "feasible" and dp.objective <= proportional.objective * (1 + REL)


def test_pipeline_dp_whole_layers_and_ends():
    inst = load_instance("edge/llama-3.1-8b-8dev")
    result = solve_pipeline_dp(inst)
    p = result.plan.intervals[0]
    layer_devices = p.attention[:, 0]
    assert (p.attention == layer_devices[:, None]).all()
    assert (p.projection.argmax(axis=1) == layer_devices).all() and (p.projection.max(axis=1) == 1).all()
    assert (p.ffn.argmax(axis=1) == layer_devices).all() and (p.ffn.max(axis=1) == 1).all()
    assert p.embed == layer_devices[0] and p.lm_head == layer_devices[-1]
    # contiguous, each device used at most once
    runs = [int(d) for d, _ in itertools.groupby(layer_devices)]
    assert len(runs) == len(set(runs))
    assert result.plan.method == "pipeline-dp"


def test_pipeline_dp_infeasible_names_the_violation():
    # paper-small models are one layer that no device holds alone
    inst = load_instance("paper-small/h8-3dev-low-s1-roofline")
    result = solve_pipeline_dp(inst)
    assert result.status == "infeasible"
    assert "no chain of whole layers fits" in result.message and "does not fit: device" in result.message
    with pytest.raises(InputError, match="max_exact_devices"):
        solve_pipeline_dp(inst, max_exact_devices=0)


@pytest.mark.slow
def test_pipeline_dp_ten_devices_exact_and_fast_enough():
    inst = tiny(5, devices=10, layers=16)
    result = solve_pipeline_dp(inst)
    assert result.stats["exact"]
    assert result.stats["decision_time_s"] < 5
    if result.stats["stages"]:
        assert result.backend_objective == pytest.approx(result.objective, rel=REL)


# ----------------------------------------------------------------------------- the simple layouts
def test_memory_proportional_is_the_reference_pipeline():
    inst = load_instance("edge/llama-3.1-8b-4dev")
    result = solve_memory_proportional(inst)
    reference = solve_pipeline(inst)
    assert result.plan.method == "memory-proportional"
    assert (result.plan.intervals[0].attention == pipeline_plan(inst).intervals[0].attention).all()
    assert result.objective == reference.objective


def test_round_robin_cycles():
    for inst in (load_instance("edge/llama-3.1-8b-8dev"), tiny(0, devices=3, layers=4)):
        result = solve_round_robin(inst)
        p, L, N = result.plan.intervals[0], inst.model.layers, inst.n_devices
        expected = np.arange(L) % N
        assert (p.attention == expected[:, None]).all()
        assert (p.projection.argmax(axis=1) == expected).all() and (p.ffn.argmax(axis=1) == expected).all()
        assert p.embed == 0 and p.lm_head == (L - 1) % N


def test_greedy_memory_is_the_evaluators(shipped):
    result = solve_greedy(shipped)
    peak = result.report.peak_memory_bytes.max(axis=0)
    assert peak == pytest.approx(np.array(result.stats["memory_bytes"]), rel=1e-9)
    if not result.stats["overflows"]:  # every block fitted where the rule put it
        assert result.status == "feasible"
    else:
        assert result.status == "infeasible"


def test_greedy_fits_when_its_rule_fits_tiny():
    for case, seed in itertools.product(TINY, range(4)):
        inst = tiny(seed, **TINY[case])
        result = solve_greedy(inst)
        assert (result.status == "feasible") == (not result.stats["overflows"])
        assert result.report.peak_memory_bytes.max(axis=0) == pytest.approx(result.stats["memory_bytes"], rel=1e-9)


def test_greedy_rule_most_free_memory_first():
    """Re-play the rule: each block on the device with the most free memory (lowest index on ties)."""
    from placement.cost.tables import block_memory

    for tied in (False, True):
        inst = tiny(3, tied=tied)
        p = solve_greedy(inst).plan.intervals[0]
        w = inst.workload
        memory = block_memory(inst, inst.precision, np.array([w.prompt_tokens + w.generate_tokens]))
        free = np.array([d.usable_bytes for d in inst.devices])

        def take(device: int, nbytes: float, free: np.ndarray = free) -> None:
            assert device == int(np.argmax(free))
            free[device] -= nbytes

        take(p.embed, memory.embed[0])
        for l in range(inst.model.layers):
            for g in range(inst.model.kv_heads):
                take(p.attention[l, g], memory.group[0, l])
            take(int(p.projection[l].argmax()), memory.projection[0, l])
            take(int(p.ffn[l].argmax()), memory.ffn[0, l])
        take(p.lm_head, 0.0 if tied and p.lm_head == p.embed else memory.lm_head[0])


# ----------------------------------------------------------------------------- static
def test_static_keeps_the_first_placement_of_another_method():
    inst = load_instance("edge/llama-3.1-8b-4dev")
    inner = solve_pipeline(inst)
    result = solve_static(inst, base="pipeline")
    check_result(inst, result)
    assert result.plan.static and result.plan.method == "static"
    assert (result.plan.intervals[0].attention == inner.plan.intervals[0].attention).all()
    assert result.plan.extras["static_of"] == "pipeline"


def test_static_milp_first_interval():
    inst = load_instance("milp/llama-3.2-1b-6dev")
    result = solve_static(inst, time_limit=60)
    check_result(inst, result)
    assert result.plan.static and result.stats["inner_status"] in ("optimal", "feasible", "time_limit")
    assert result.stats["decision_time_s"] > 0


def test_static_on_tiny_multi_interval():
    inst = tiny(1, interval=2)
    assert inst.workload.n_intervals == 3
    for method in ("milp", "single", "pipeline"):
        result = solve_static(inst, base=method)
        check_result(inst, result)
        assert len(result.plan.intervals) == 1


def test_static_rejects_itself_and_unknown_options():
    inst = tiny(0)
    with pytest.raises(InputError, match=r"`base` of `static` must be another method, not 'static'"):
        solve_static(inst, base="static")
    with pytest.raises(InputError, match=r"method 'static' does not take option\(s\) mode; its options are: base, time_limit"):
        solve(inst, method="static", mode="horizon")


@pytest.mark.parametrize("tied", [True, False])
def test_pipeline_dp_counts_a_tied_head_once_on_one_device(tied):
    """A fast device that holds the whole model only when the tied embedding and head count once."""
    from placement.cost.tables import block_memory

    probe = tiny(7, devices=2, layers=3, tied=True)
    w = probe.workload
    memory = block_memory(probe, probe.precision, np.array([w.prompt_tokens + w.generate_tokens]))
    once = float(memory.total[0])  # tied: embed and lm_head counted once
    fast_memory = once + 0.5 * float(memory.embed[0])

    def build(tied_embeddings: bool, slow_memory: float) -> Instance:
        model = {"name": "tiny-pipe", "layers": 3, "hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16,
                 "ffn_hidden": 128, "gated_ffn": True, "vocab": 256, "tied_embeddings": tied_embeddings}
        return instance_from_dict({
            "model": model,
            "devices": [{"name": "slow", "memory": f"{slow_memory:.0f} B", "peak_flops": "0.2 GFLOPS",
                         "memory_bandwidth": "0.1 GB/s"},
                        {"name": "fast", "memory": f"{fast_memory:.0f} B", "peak_flops": "8 GFLOPS",
                         "memory_bandwidth": "4 GB/s"}],
            "links": [{"between": ["slow", "fast"], "bandwidth": "100 Mbit/s", "latency": "1 ms"}],
            "workload": {"prompt_tokens": 8, "generate_tokens": 6},
        }, check_capacity=False)

    inst = build(tied, slow_memory=3 * once)
    result = solve_pipeline_dp(inst)
    truth = best_chain(inst, chains([0, 1], 3))
    assert result.objective == pytest.approx(truth, rel=REL)
    assert (result.stats["stages"] == [("fast", 0, 2)]) == tied
    # with nothing else to hold the rest, an untied model fits nowhere
    small = build(tied, slow_memory=0.25 * float(memory.embed[0]))
    small_result = solve_pipeline_dp(small)
    assert small_result.status == ("feasible" if tied else "infeasible")
    assert np.isfinite(best_chain(small, chains([0, 1], 3))) == tied
