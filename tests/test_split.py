"""Split computing with one-point split compression (`placement.solvers.split`).

The exhaustive search must agree with a brute-force Python loop through the
evaluator on tiny inline models (with budgets that bind: some cases are infeasible, some
move the optimum); what it believes is the evaluator's total; memory,
accuracy and latency budgets hold on the evaluated plan; more bandwidth never makes
the optimum slower; infeasible cases say why.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from placement import InputError, evaluate
from placement.cost.accuracy import DistortionProxy, TableAccuracy
from placement.instance import instance_from_dict
from placement.solvers.split import (
    BASELINES,
    SplitConfig,
    effective_activation_bits,
    solve_split,
    solve_split_adaptive,
    split_plan,
)
from placement.plan import Plan

TINY = {"name": "tiny-split", "layers": 3, "hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16,
        "ffn_hidden": 128, "gated_ffn": True, "vocab": 256, "tied_embeddings": False}

W, C, A, F = (4, 8, 16), (8, 16), (4, 16), (0.0, 0.01)


def tiny(*, device_memory="120 KiB", bandwidth="20 Mbit/s", network="switched", prompt=8, generate=6,
         interval=None, model=None, server_flops="2 GFLOPS"):
    workload = {"prompt_tokens": prompt, "generate_tokens": generate}
    if interval:
        workload["interval"] = interval
    return instance_from_dict({
        "name": "tiny-split",
        "model": model or TINY,
        "devices": [{"name": "server", "memory": "4 MiB", "peak_flops": server_flops, "memory_bandwidth": "1 GB/s"},
                    {"name": "edge", "memory": device_memory, "peak_flops": "4 GFLOPS", "memory_bandwidth": "2 GB/s"}],
        "links": [{"between": ["edge", "server"], "bandwidth": bandwidth, "latency": "0.1 ms"}],
        "network": network,
        "workload": workload,
    }, check_capacity=False)


def brute_force(inst, budget, accuracy=DistortionProxy(), latency_budget_s=None):
    """Every configuration through the evaluator, in a plain loop; the best total (inf if none)."""
    L, hidden = inst.model.layers, inst.model.hidden
    best = np.inf
    dev, srv = inst.cluster.index("edge"), inst.cluster.index("server")
    acts = [(b, f) for b in A for f in (F if b < 16 else (0.0,))]
    for l, w1, c1, w2, c2, (b, f) in itertools.product(range(L + 1), W, C, W, C, acts):
        cfg = SplitConfig(dev, srv, l, w1, c1, w2, c2, b, f, effective_activation_bits(b, f, hidden))
        error = float(accuracy.error(L, l, w1, c1, w2, c2, b, f))
        if error > budget * (1 + 1e-9):
            continue
        report = evaluate(inst, Plan(devices=inst.cluster.names, intervals=[split_plan(inst, cfg)]))
        if not report.feasible:
            continue
        if latency_budget_s is not None and report.decode_s.max() > latency_budget_s:
            continue
        best = min(best, report.total_s)
    return best


OPTIONS = dict(device="edge", server="server", weight_bits=W, kv_bits=C, activation_bits=A, outlier_fractions=F,
               workspace_bytes=0)


@pytest.mark.parametrize("kwargs", [
    {},
    {"network": "shared", "bandwidth": "2 Mbit/s"},
    {"device_memory": "60 KiB", "interval": 3},
    {"device_memory": "400 KiB", "bandwidth": "1 Mbit/s"},
])
@pytest.mark.parametrize("budget", [0.05, 0.5, 3.0])
def test_exhaustive_search_agrees_with_brute_force(kwargs, budget):
    inst = tiny(**kwargs)
    expected = brute_force(inst, budget)
    result = solve_split(inst, max_distortion=budget, **OPTIONS)
    if not np.isfinite(expected):
        assert result.status == "infeasible" and result.plan is None
        return
    assert result.status == "optimal", result.message
    assert result.objective == pytest.approx(expected, rel=1e-9)
    assert result.backend_objective == pytest.approx(expected, rel=1e-9)  # the search's own value


def test_latency_budget_agrees_with_brute_force():
    # A fast server wins the long prefill and the edge wins decode: a budget on the
    # per-token latency moves the optimum off the unconstrained one (all on the server).
    inst = tiny(server_flops="40 GFLOPS", prompt=64, generate=4, device_memory="400 KiB")
    free = solve_split(inst, max_distortion=3.0, **OPTIONS)
    budget = free.report.decode_s.max() * 0.5
    expected = brute_force(inst, 3.0, latency_budget_s=budget)
    assert np.isfinite(expected) and expected > free.objective * (1 + 1e-6)  # the budget binds and can be met
    result = solve_split(inst, max_distortion=3.0, latency_budget_s=budget, **OPTIONS)
    assert result.status == "optimal", result.message
    assert result.objective == pytest.approx(expected, rel=1e-9)
    assert result.report.decode_s.max() <= budget
    impossible = 1e-6  # seconds per token: below any configuration's decode step here
    assert not np.isfinite(brute_force(inst, 3.0, latency_budget_s=impossible))
    result = solve_split(inst, max_distortion=3.0, latency_budget_s=impossible, **OPTIONS)
    assert result.status == "infeasible" and "latency budget" in result.message


def test_memory_within_the_limit_at_every_interval():
    inst = tiny(device_memory="90 KiB", generate=24, interval=4)
    result = solve_split(inst)  # default grid and workspace
    assert result.status == "optimal", result.message
    report = result.report
    assert report.peak_memory_bytes.shape[0] == inst.workload.n_intervals
    assert np.all(report.peak_memory_bytes <= report.memory_limit_bytes[None, :])
    extras = result.plan.extras["split"]
    assert extras["max_context_tokens"] is None or extras["max_context_tokens"] >= 8 + 24


def test_objective_is_the_evaluators_total_and_extras_carry_the_configuration():
    inst = tiny()
    result = solve_split(inst)
    assert result.objective == result.report.total_s
    split = result.plan.extras["split"]
    for key in ("split_layer", "weight_bits_front", "weight_bits_back", "kv_bits_front", "kv_bits_back", "activation"):
        assert key in split
    assert split["distortion"] > 0
    # The evaluator reports only figures it computes: the back end's distortion stays in the plan's extras.
    assert "distortion" not in result.report.errors
    again = Plan.from_json(result.plan.to_json())
    assert evaluate(inst, again).total_s == pytest.approx(result.objective, rel=1e-12)


def test_more_bandwidth_never_slower():
    previous = np.inf
    for rate in ("0.5 Mbit/s", "2 Mbit/s", "10 Mbit/s", "100 Mbit/s", "1 Gbit/s"):
        result = solve_split(tiny(bandwidth=rate))
        assert result.status == "optimal"
        assert result.objective <= previous * (1 + 1e-12)
        previous = result.objective


@pytest.mark.parametrize("budget", [0.01, 0.1, 1.0, 10.0])
def test_accuracy_budget_respected(budget):
    result = solve_split(tiny(), max_distortion=budget)
    if result.status == "infeasible":
        assert "max_distortion" in result.message or "memory" in result.message
        return
    assert result.plan.extras["split"]["distortion"] <= budget * (1 + 1e-9)
    assert result.plan.extras["split"]["distortion"] <= budget * (1 + 1e-9)


def test_tighter_budget_never_faster():
    times = [solve_split(tiny(device_memory="1 MiB"), max_distortion=b).objective for b in (10.0, 1.0, 0.1, 0.01)]
    assert all(a <= b * (1 + 1e-12) for a, b in zip(times, times[1:]))


def test_infeasible_cases_give_the_reason():
    small = solve_split(tiny(device_memory="2 KiB"))
    assert small.status == "infeasible" and "cannot hold even the embedding" in small.message
    assert "give it at least" in small.message
    unmet = solve_split(tiny(), max_distortion=-1.0)
    assert unmet.status == "infeasible" and "raise `max_distortion`" in unmet.message
    slow = solve_split(tiny(), latency_budget_s=1e-9)
    assert slow.status == "infeasible" and "raise `latency_budget_s`" in slow.message
    alone = instance_from_dict({
        "model": TINY, "devices": [{"name": "edge", "memory": "60 KiB", "peak_flops": "1 GFLOPS",
                                    "memory_bandwidth": "0.5 GB/s"}],
        "workload": {"prompt_tokens": 8, "generate_tokens": 6}}, check_capacity=False)
    lonely = solve_split(alone)
    assert lonely.status == "infeasible" and "unreachable" in lonely.message and "more" in lonely.message


def test_bad_options_are_input_errors():
    inst = tiny()
    with pytest.raises(InputError, match="unknown `baseline` 'smoothquant'; baselines are"):
        solve_split(inst, baseline="smoothquant")
    with pytest.raises(InputError, match="`weight_bits` must be"):
        solve_split(inst, weight_bits=(0, 4))
    with pytest.raises(InputError, match="unknown device 'phone'"):
        solve_split(inst, device="phone")
    with pytest.raises(InputError, match="`outlier_fractions` must lie in"):
        solve_split(inst, outlier_fractions=(1.5,))
    with pytest.raises(InputError, match="`accuracy` must be"):
        solve_split(inst, accuracy=3)


@pytest.mark.parametrize("baseline", list(BASELINES))
def test_baselines_through_the_evaluator(baseline):
    inst = tiny(device_memory="1 MiB")
    result = solve_split(inst, baseline=baseline)
    assert result.status in ("feasible", "infeasible")
    if result.plan is not None:
        assert result.objective == pytest.approx(evaluate(inst, result.plan).total_s, rel=1e-12)
        assert result.plan.extras["split"]["baseline"] == baseline


def test_the_search_beats_every_baseline_within_its_budget():
    inst = tiny(device_memory="1 MiB")
    for baseline in BASELINES:
        base = solve_split(inst, baseline=baseline)
        if base.plan is None or not base.report.feasible or baseline == "server-only":
            continue
        error = base.plan.extras["split"]["distortion"]
        best = solve_split(inst, max_distortion=error)
        assert best.objective <= base.objective * (1 + 1e-9), baseline


def test_table_accuracy_interpolates_and_never_invents(tmp_path):
    path = tmp_path / "ppl.csv"
    path.write_text("split,w_front,w_back,perplexity\n0,4,16,6.0\n3,4,16,7.0\n0,16,16,5.0\n3,16,16,5.0\n")
    table = TableAccuracy(path)
    assert table.error(3, 1.5, 4, 16, 16, 16, 16, 0) == pytest.approx(6.5)
    assert np.isnan(table.error(3, 1, 8, 16, 16, 16, 16, 0))
    inst = tiny(device_memory="1 MiB")
    result = solve_split(inst, accuracy=str(path), max_distortion=5.5, weight_bits=(4, 8, 16))
    assert result.status == "optimal"
    split = result.plan.extras["split"]
    assert split["weight_bits_front"] in (4.0, 16.0) and split["weight_bits_back"] == 16.0
    assert split["distortion"] <= 5.5
    with pytest.raises(InputError, match="`max_distortion` is required"):
        solve_split(inst, accuracy=str(path))


SIXTEEN = dict(OPTIONS, weight_bits=(16,), kv_bits=(16,), activation_bits=(16,), outlier_fractions=(0,),
               max_distortion=100.0)


def adaptive_instance(bandwidth="100 Mbit/s"):
    """All three layers fit on the device early; the growing KV caches push one to the server later."""
    return tiny(device_memory="450 KiB", generate=800, interval=200, prompt=4, bandwidth=bandwidth)


def test_adaptive_agrees_with_brute_force_over_split_sequences():
    inst = adaptive_instance()
    dev, srv = inst.cluster.index("edge"), inst.cluster.index("server")
    L, I = inst.model.layers, inst.workload.n_intervals
    best = np.inf
    for splits in itertools.product(range(L + 1), repeat=I):
        configs = [SplitConfig(dev, srv, s, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0, 16.0) for s in splits]
        report = evaluate(inst, Plan(devices=inst.cluster.names, intervals=[split_plan(inst, c) for c in configs]))
        if report.feasible:
            best = min(best, report.total_s)
    result = solve_split_adaptive(inst, **SIXTEEN)
    assert result.status == "optimal", result.message
    assert result.objective == pytest.approx(best, rel=1e-9)
    assert result.backend_objective == pytest.approx(result.objective, rel=1e-9)
    static = solve_split(inst, **SIXTEEN)
    assert result.objective < static.objective  # moving a layer later pays here
    assert result.report.migration_s.sum() > 0


def test_adaptive_never_worse_than_static_and_matches_the_evaluator():
    for inst in (adaptive_instance("10 Mbit/s"), tiny(device_memory="75 KiB", generate=24, interval=6)):
        static = solve_split(inst, **OPTIONS, max_distortion=3.0)
        adaptive = solve_split_adaptive(inst, **OPTIONS, max_distortion=3.0)
        assert adaptive.status == "optimal", adaptive.message
        assert adaptive.objective == pytest.approx(evaluate(inst, adaptive.plan).total_s, rel=1e-12)
        assert adaptive.backend_objective == pytest.approx(adaptive.objective, rel=1e-9)
        if static.plan is not None:
            assert adaptive.objective <= static.objective * (1 + 1e-9)
        assert np.all(adaptive.report.peak_memory_bytes <= adaptive.report.memory_limit_bytes[None, :])
        assert adaptive.plan.extras["split"]["distortion"] <= 3.0 * (1 + 1e-9)
