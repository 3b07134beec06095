"""Joint methods that see contention (docs/parallel.md): the head-level MILP, contention-aware best responses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from placement.cost.tables import usable_bytes
from placement.evaluate import evaluate
from placement.multi import JointPlan, evaluate_joint, load_multi, multi_from_dict, solve
from placement.multi.chains import layer_plan
from placement.multi.evaluate import model_tables
from placement.multi.head_milp import Fixed, head_terms, plan_point, solve_head_milp
from placement.multi.random_cases import MEMORY_FACTORS, compare_methods, random_case
from placement.multi.response import best_response, busy_share, contention_priced

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_run import run_main  # noqa: E402
from test_multi import random_head_plan, random_multi  # noqa: E402

NEW = ("best-response-contention", "best-response-priced", "milp-head")


@pytest.mark.parametrize("seed", range(8))
def test_the_milp_expressions_at_a_plan_are_the_evaluator_figures(seed):
    # busy seconds and bytes exactly the evaluator's; the latency never above the time alone; the medium never above
    multi = random_multi(seed)
    rng = np.random.default_rng(seed)
    terms = tuple(head_terms(inst) for inst in multi.instances)
    plans = tuple(random_head_plan(inst, rng) for inst in multi.instances)
    report = evaluate_joint(multi, JointPlan(plans))
    points = [plan_point(multi, m, p, terms) for m, p in enumerate(plans)]
    np.testing.assert_allclose(sum(p["busy_s"] for p in points), report.busy_s, rtol=1e-9)
    assert sum(p["medium_s"] for p in points) <= report.medium_busy_s * (1 + 1e-9)
    for m, (inst, plan, point) in enumerate(zip(multi.instances, plans, points)):
        single = evaluate(inst, plan)
        assert point["latency_s"] <= single.total_s * (1 + 1e-9)
        np.testing.assert_allclose(point["bytes"], single.peak_memory_bytes.max(axis=0), rtol=1e-9)
    # a layer plan alone on a switched network: every stage a chain, the bound is the total
    if multi.cluster.network == "switched":
        plan = layer_plan(multi.instances[0], rng.integers(0, multi.n_devices, multi.instances[0].model.layers))
        assert plan_point(multi, 0, plan, terms)["latency_s"] == pytest.approx(evaluate(multi.instances[0], plan).total_s,
                                                                                rel=1e-9)


# The seeds that take about 15 s each run under `-m slow`: the default set keeps the test run under ten minutes.
@pytest.mark.parametrize("seed", [3, 4] + [pytest.param(s, marks=pytest.mark.slow) for s in (0, 1, 2, 5)])
def test_the_head_level_bound_is_below_every_plan(seed):
    multi = random_multi(seed + 40)
    terms = tuple(head_terms(inst) for inst in multi.instances)
    found = solve_head_milp(multi, tuple(range(multi.n_models)), terms, time_limit=20.0)
    assert found.bound_s is not None and found.bound_s > 0
    goal = multi.objective
    for method in ("disjoint", "local-search", "milp", "best-response", *NEW):
        result = solve(multi, method, **({"time_limit": 10.0} if method in ("milp", "milp-head") else {}))
        if result.status in ("feasible", "optimal") and result.plan.schedule == "concurrent":
            assert found.bound_s <= result.objective * (1 + 1e-7), method
    rng = np.random.default_rng(seed)
    tables, checked = model_tables(multi), 0
    for _ in range(40):
        report = evaluate_joint(multi, JointPlan(tuple(random_head_plan(i, rng) for i in multi.instances)), tables)
        if report.feasible:
            checked += 1
            assert found.bound_s <= report.objective(goal) * (1 + 1e-7)
    if found.plans is not None:  # the MILP's own plan fits the shared memory
        assert evaluate_joint(multi, JointPlan(found.plans), tables).feasible


@pytest.mark.parametrize("seed", [0, 1] + [pytest.param(s, marks=pytest.mark.slow) for s in (2, 3, 4)])  # baselines fit
def test_new_methods_never_worse_than_the_better_baseline(seed):
    multi = random_multi(seed + 80)
    results = {m: solve(multi, m, **({"time_limit": 10.0} if m == "milp-head" else {}))
               for m in ("sequential", "disjoint", *NEW)}
    best_baseline = min(r.objective for m, r in results.items() if m in ("sequential", "disjoint")
                        and r.status == "feasible")
    for method in NEW:
        assert results[method].status in ("feasible", "optimal")
        assert results[method].objective <= best_baseline * (1 + 1e-12)
    assert results["milp-head"].bound <= results["milp-head"].objective * (1 + 1e-7)


def _two_on_two() -> "placement.multi.MultiInstance":  # noqa: F821
    """Two identical 2-layer models on two identical devices; attention-heavy (512-token prompts), a fast switch."""
    def tiny(name):
        return {"name": name, "layers": 2, "hidden": 128, "heads": 4, "kv_heads": 2, "head_dim": 32,
                "ffn_hidden": 256, "gated_ffn": True, "vocab": 256, "tied_embeddings": True}
    workload = {"prompt_tokens": 512, "generate_tokens": 4}
    return multi_from_dict({"models": [{"name": "a", "model": tiny("ta"), "workload": workload},
                                       {"name": "b", "model": tiny("tb"), "workload": workload}],
                            "devices": [{"name": f"d{n}", "memory": "64 MiB", "peak_flops": "1 GFLOPS",
                                         "memory_bandwidth": "1 GB/s"} for n in range(2)],
                            "mesh": {"bandwidth": "10 Gbit/s", "latency": "0.01 ms"}}, source="two-on-two")


def test_pricing_busy_time_changes_the_response():
    # Model a runs whole on d0 for T seconds alone; b starts on d0 too (the sequential makespan 2T).
    # Blind to a's busy time, b's best placement alone splits each layer's two groups over d0 and d1
    # (alone faster than T), and the joint makespan is then above T. Priced, b's response is every
    # block on d1: the two models never meet, and the makespan is T, exactly half the sequential 2T.
    multi = _two_on_two()
    a, b = (layer_plan(inst, np.zeros(2, dtype=int)) for inst in multi.instances)
    T = evaluate(multi.instances[0], a).total_s
    start = JointPlan((a, b))
    report = evaluate_joint(multi, start)
    assert report.makespan_s == pytest.approx(2 * T, rel=1e-12)
    terms = tuple(head_terms(inst) for inst in multi.instances)
    others = report.needed_bytes[0]
    blind = solve_head_milp(multi, (1,), terms, fixed=Fixed(np.zeros(2), 0.0, others, 0.0, np.zeros(2)))
    split = blind.plans[0].intervals[0]
    assert sorted(split.attention[0]) == [0, 1]  # alone, b splits its groups
    assert evaluate(multi.instances[1], blind.plans[0]).total_s < T
    assert evaluate_joint(multi, JointPlan((a, blind.plans[0]))).makespan_s > T * (1 + 1e-6)
    busy = plan_point(multi, 0, a, terms)["busy_s"]
    np.testing.assert_allclose(busy, [T, 0.0], rtol=1e-9)  # a layer plan on one device computes all its time
    priced = solve_head_milp(multi, (1,), terms, fixed=Fixed(busy, 0.0, others, T, busy))
    p = priced.plans[0].intervals[0]
    assert (p.attention == 1).all() and p.projection.argmax(1).tolist() == [1, 1] and p.ffn.argmax(1).tolist() == [1, 1]
    assert (p.embed, p.lm_head) == (1, 1)
    plan, fresh, stats = best_response(multi, start, model_tables(multi), "contention")
    assert fresh.makespan_s == pytest.approx(T, rel=1e-12)
    assert stats["accepted"] >= 1


def test_a_priced_device_takes_its_blocks_one_over_one_minus_the_share_longer():
    multi = _two_on_two()
    inst = multi.instances[0]
    plan = layer_plan(inst, np.zeros(2, dtype=int))  # everything on d0: no transfer
    share = busy_share(np.array([3.0, 9.5]), 10.0)
    np.testing.assert_allclose(share, [0.3, 0.9])  # capped at MAX_BUSY_SHARE
    priced = contention_priced(inst, share)
    assert evaluate(priced, plan).total_s == pytest.approx(evaluate(inst, plan).total_s / 0.7, rel=1e-12)
    np.testing.assert_array_equal(usable_bytes(priced), usable_bytes(inst))


def test_best_response_time_limit():
    multi = load_multi("ppn-2x2")
    local = solve(multi, "local-search")
    for method in ("best-response", "best-response-contention", "best-response-priced"):
        result = solve(multi, method, time_limit=0.0)
        assert result.stats["stopped"] == "time_limit" and result.stats["responses"] == 0
        assert result.objective == pytest.approx(local.objective, rel=1e-12)
    proc = run_main("multi-solve", "ppn-2x2", "--method", "best-response", "--time-limit", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stats"]["stopped"] == "time_limit"


def test_random_cases_are_seeded_and_sized_by_memory():
    tight = random_case(3, network="shared", memory="tight")
    again = random_case(3, network="shared", memory="tight")
    loose = random_case(3, network="shared", memory="loose")
    assert tight.name == "random-3-shared-tight" and tight.cluster.network == "shared"
    np.testing.assert_array_equal(usable_bytes(tight.instances[0]), usable_bytes(again.instances[0]))
    ratio = usable_bytes(loose.instances[0]).sum() / usable_bytes(tight.instances[0]).sum()
    assert ratio == pytest.approx(MEMORY_FACTORS["loose"] / MEMORY_FACTORS["tight"], rel=1e-6)
    assert 2 <= tight.n_models <= 3 and 4 <= tight.n_devices <= 8


def test_compare_methods_summary():
    found = compare_methods([random_multi(1), random_multi(2)], ("local-search",), time_limit=5.0)
    summary = found["summary"]
    for row in found["rows"]:  # the better baseline is 1, every joint method at most 1
        if row["method"] == "local-search":
            assert row["ratio"] <= 1 + 1e-12
    assert min(summary["sequential"]["worst_ratio"], summary["disjoint"]["worst_ratio"]) >= 1 - 1e-12
    by_case = {}
    for row in found["rows"]:
        by_case.setdefault(row["case"], []).append(row["objective_s"])
    for method, s in summary.items():
        mine = [r for r in found["rows"] if r["method"] == method]
        assert s["beaten"] == sum(r["objective_s"] > min(by_case[r["case"]]) * (1 + 1e-9) for r in mine)
    assert found["bound_violations"] == []


@pytest.mark.parametrize("network", ["switched", "shared"])
def test_the_latency_bound_holds_when_gathers_add_up(network):
    # kafetzis2025: synchronous stages on a switched network too (receives in parallel, sends one after another)
    from test_multi import _tiny_model

    multi = multi_from_dict({"models": [{"name": "a", "model": _tiny_model("t", 3, 128, False),
                                         "workload": {"prompt_tokens": 6, "generate_tokens": 5, "profile": "kafetzis2025"}}],
                             "devices": [{"name": f"d{n}", "memory": "2 MiB", "peak_flops": f"{1 + n} GFLOPS",
                                          "memory_bandwidth": "1 GB/s"} for n in range(3)],
                             "network": network, "mesh": {"bandwidth": "100 Mbit/s", "latency": "0.2 ms"}}, source="k")
    terms = (head_terms(multi.instances[0]),)
    assert terms[0].synchronous
    rng = np.random.default_rng(1)
    for _ in range(20):
        plan = random_head_plan(multi.instances[0], rng)
        assert plan_point(multi, 0, plan, terms)["latency_s"] <= evaluate(multi.instances[0], plan).total_s * (1 + 1e-9)


def test_a_bad_time_limit_is_one_line():
    from cli_run import error_line

    line = error_line(run_main("multi-solve", "ppn-2x2", "--method", "best-response", "--time-limit", "-1"))
    assert "`time_limit` must be a number of seconds ≥ 0, got -1.0" in line


@pytest.mark.parametrize("seed", range(6))
def test_the_weighted_response_objective_charges_the_others_weight(seed):
    # At any static plan, the weighted response's objective is w_m · latency + Σ_n harm[n] · busy[n] (+ harm[N] ·
    # medium on a shared network), with latency, busy and medium the plan's own figures from `plan_point`.
    from placement.multi.head_milp import HeadMilp

    multi = random_multi(seed)
    rng = np.random.default_rng(seed)
    terms = tuple(head_terms(inst) for inst in multi.instances)
    harm = rng.uniform(0.5, 3.0, multi.n_devices + 1)
    if multi.cluster.network != "shared":
        harm[-1] = 0.0  # nothing is charged on a switched network's medium: the others hold none of it
    for m, inst in enumerate(multi.instances):
        plan = random_head_plan(inst, rng)
        model = HeadMilp(multi, (m,), terms)
        figures = plan_point(multi, m, plan, terms)
        expected = (multi.weights[m] * figures["latency_s"] + harm[:-1] @ figures["busy_s"]
                    + harm[-1] * figures["medium_s"])
        assert model.objective(True, harm=harm) @ model.point(0, plan.placement(0)) == pytest.approx(expected, rel=1e-9)
        # without harm it is the weighted latency alone
        assert model.objective(True) @ model.point(0, plan.placement(0)) == pytest.approx(
            multi.weights[m] * figures["latency_s"], rel=1e-9)


@pytest.mark.slow  # about 40 s
def test_weighted_contention_responses_are_never_worse_than_the_baselines():
    # Weighted random cases: the loop with the weighted response keeps only what the joint evaluator accepts.
    multi = random_case(2, network="switched", memory="tight", objective="weighted")
    assert multi.objective == "weighted" and not np.allclose(multi.weights, 1.0)
    result = solve(multi, "best-response-contention")
    baseline = min(solve(multi, m).objective for m in ("sequential", "disjoint"))
    assert result.objective <= baseline * (1 + 1e-12)
    assert evaluate_joint(multi, result.plan).weighted_s == pytest.approx(result.objective, rel=1e-12)
