"""The exact MILP back end against the evaluator and against enumeration.

On every problem of `tests/problems.py` the MILP must be optimal, its objective the
evaluator's total for its own plan, equal to the brute-force optimum
(`tests/brute_force.py`), never above the reference plans; its three solvers, both
formulations and both token-block strategies must agree; interval mode must price
one interval as the evaluator does; pins, forbids, bad options, infeasible
instances, time limits and warm starts behave as documented in `solve_milp`.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brute_force import Search, chain_total, enumerate_space, memory_needed, plan_of  # noqa: E402
from problems import FORCED_SPLIT, MEMORY_MARGIN_BYTES, MIGRATION_FORCED, MULTI_INTERVAL, PROBLEMS  # noqa: E402

from placement import InputError, instance_names, load_instance  # noqa: E402
from placement.evaluate import evaluate  # noqa: E402
from placement.instance import instance_from_dict  # noqa: E402
from placement.plan import Placement, Plan  # noqa: E402
from placement.solvers.milp import solve_milp  # noqa: E402
from placement.solvers.reference import solve_pipeline, solve_single  # noqa: E402

REL = 1e-6
NAMES = list(PROBLEMS)
SOLVERS = ("highs", "cbc", "ortools")


# ----------------------------------------------------------------------------- shared, computed once
@functools.cache
def instance(name: str):
    """Instances are immutable: one per problem for the whole session."""
    return PROBLEMS[name]()


@functools.cache
def search(name: str) -> Search:
    return Search(instance(name))


@functools.cache
def optimum(name: str):
    return search(name).optimum()


@functools.cache
def milp(name: str, solver: str = "highs", formulation: str = "counts", token_blocks: str = "adaptive"):
    return solve_milp(instance(name), solver=solver, formulation=formulation, token_blocks=token_blocks)


def assert_judged(inst, result) -> None:
    """An optimal result: a feasible plan whose evaluator total is what the MILP's model believed."""
    assert result.status == "optimal", result.message
    report = evaluate(inst, result.plan)
    assert report.feasible, [str(v) for v in report.violations]
    assert result.report.feasible
    assert result.backend_objective == pytest.approx(report.total_s, rel=REL)
    if result.bound is not None:
        assert result.bound <= report.total_s * (1 + REL)


def interval_figure(report, workload, k: int) -> float:
    """The evaluator's cost of interval k: its decode steps, the migration into it, and the prefill for k = 0."""
    steps = workload.interval_of_step() == k
    return float(report.decode_s[steps].sum() + report.migration_s[k] + (report.ttft_s if k == 0 else 0.0))


# ----------------------------------------------------------------------------- the problems and the brute force
def test_problem_claims():
    """problems.py says which problems force a split, force migration, keep clear of memory limits; check it."""
    for name in NAMES:
        inst = instance(name)
        assert (solve_single(inst).status == "infeasible") == (name in FORCED_SPLIT), name
        assert (inst.workload.n_intervals > 1) == (name in MULTI_INTERVAL), name
        needed = memory_needed(inst, enumerate_space(inst))
        limits = np.array([d.usable_bytes for d in inst.devices])
        assert np.abs(needed - limits)[needed > 0].min() >= MEMORY_MARGIN_BYTES, name
    for name in MIGRATION_FORCED:
        cost = search(name).costs.interval_s
        myopic = int(np.argmin(cost[:, 0]))
        assert not np.isfinite(cost[myopic, 1:]).all(), f"{name}: interval 0's best placement fits throughout"
        assert evaluate(instance(name), optimum(name).plan).migration_s.sum() > 0, f"{name}: the optimum never moves"


@pytest.mark.parametrize("name", NAMES)
def test_brute_force_is_self_consistent(name):
    """The enumeration's own total equals the evaluator's total of the plan it returns."""
    best = optimum(name)
    assert best.plan is not None
    assert evaluate(instance(name), best.plan).feasible
    assert best.total_s == pytest.approx(best.chain_s, rel=1e-9)


@pytest.mark.parametrize("name", sorted(MULTI_INTERVAL))
def test_brute_force_chain_decomposition(name):
    """total = ttft + Σ decode_k(P_k) + Σ migration_k(P_{k-1}, P_k), on random sequences with group moves."""
    inst = instance(name)
    L, K, N, I = inst.model.layers, inst.model.kv_heads, inst.n_devices, inst.workload.n_intervals
    rng = np.random.default_rng(7)
    eye = np.eye(N)
    for _ in range(25):
        placements = [Placement(rng.integers(N, size=(L, K)), eye[rng.integers(N, size=L)],
                                eye[rng.integers(N, size=L)], int(rng.integers(N)), int(rng.integers(N)))
                      for _ in range(I)]
        expected = evaluate(inst, plan_of(inst, placements)).total_s
        assert chain_total(inst, placements) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_brute_force_memory_prefilter_matches_evaluator(name):
    """The memory the enumeration uses to skip placements is the evaluator's peak memory."""
    inst = instance(name)
    space = enumerate_space(inst)
    rows = np.random.default_rng(3).choice(len(space), size=min(40, len(space)), replace=False)
    needed = memory_needed(inst, space)
    for i in rows:
        report = evaluate(inst, Plan(inst.cluster.names, [space.placement(int(i), inst.n_devices)]))
        np.testing.assert_allclose(needed[i], report.peak_memory_bytes, rtol=1e-12)


@pytest.mark.slow
def test_dynamic_programme_equals_full_enumeration():
    """On the two-interval problem, every sequence of placements judged as one plan gives the same optimum."""
    name = "kv-growth-two-intervals"
    inst = instance(name)
    states, cost = search(name).states()
    first, second = np.flatnonzero(np.isfinite(cost[:, 0])), np.flatnonzero(np.isfinite(cost[:, 1]))
    best = np.inf
    for a in first:
        for b in second:
            plan = plan_of(inst, [states.placement(int(a), inst.n_devices), states.placement(int(b), inst.n_devices)])
            report = evaluate(inst, plan)
            if report.feasible:
                best = min(best, report.total_s)
    assert best == pytest.approx(optimum(name).total_s, rel=1e-12)


# ----------------------------------------------------------------------------- (a) (b) (c) the optimum
@pytest.mark.parametrize("name", NAMES)
def test_objective_is_the_evaluators(name):
    assert_judged(instance(name), milp(name))


@pytest.mark.parametrize("name", NAMES)
def test_equals_brute_force(name):
    result = milp(name)
    assert result.objective == pytest.approx(optimum(name).total_s, rel=REL)


@pytest.mark.parametrize("name", NAMES)
def test_never_above_reference_plans(name):
    result = milp(name)
    for reference in (solve_single(instance(name)), solve_pipeline(instance(name))):
        if reference.report.feasible:
            assert result.objective <= reference.objective * (1 + 1e-9), reference.message


# ----------------------------------------------------------------------------- (d) three solvers
@pytest.mark.parametrize("solver", ["cbc", "ortools"])
@pytest.mark.parametrize("name", NAMES)
def test_solvers_agree(name, solver):
    result = milp(name, solver)
    assert_judged(instance(name), result)
    assert result.objective == pytest.approx(milp(name).objective, rel=REL)


_SHIPPED = [n for n in instance_names() if n.startswith("paper-small/")]
_QUICK_SHIPPED = {"paper-small/h8-3dev-medium-s1-roofline", "paper-small/h8-3dev-medium-s1-kafetzis"}


def _shipped_params():
    for name in _SHIPPED:
        marks = [] if name in _QUICK_SHIPPED else [pytest.mark.slow]
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_shipped_params()))
def test_solvers_agree_on_shipped_instances(name):
    inst = load_instance(name)
    results = {solver: solve_milp(inst, solver=solver) for solver in SOLVERS}
    for solver, result in results.items():
        assert_judged(inst, result)
    objectives = [r.objective for r in results.values()]
    assert max(objectives) == pytest.approx(min(objectives), rel=REL), objectives


# ----------------------------------------------------------------------------- (e) (f) formulations and token blocks
@pytest.mark.parametrize("name", NAMES)
def test_per_group_formulation_gives_the_same_optimum(name):
    result = milp(name, formulation="per-group")
    assert_judged(instance(name), result)
    assert result.objective == pytest.approx(milp(name).objective, rel=REL)


@pytest.mark.parametrize("name", NAMES)
def test_exact_token_blocks_give_the_same_optimum(name):
    result = milp(name, token_blocks="exact")
    assert_judged(instance(name), result)
    assert result.objective == pytest.approx(milp(name).objective, rel=REL)
    assert result.stats["refinements"] == 0


# ----------------------------------------------------------------------------- (g) interval mode
def _currents(name: str):
    """Placements to decide from: the optimum's, and the pipeline plan's (which must usually move)."""
    inst = instance(name)
    optimal = optimum(name).plan
    pipeline = solve_pipeline(inst).plan.intervals[0]
    for k in range(inst.workload.n_intervals):
        yield k, None if k == 0 else optimal.placement(k - 1)
        if k > 0:
            yield k, pipeline


@pytest.mark.parametrize("name", sorted(MULTI_INTERVAL) + ["split-three-dev"])
def test_interval_mode_prices_the_interval_as_the_evaluator(name):
    inst = instance(name)
    workload = inst.workload
    for k, current in _currents(name):
        result = solve_milp(inst, mode="interval", interval=k, current=current)
        assert result.status == "optimal", result.message
        report = evaluate(inst, result.plan)
        cost = result.stats["interval_cost_s"]
        assert cost == pytest.approx(interval_figure(report, workload, k), rel=REL)
        # the interval decided fits (later ones keep its placement and are not part of the decision)
        assert all(v.interval != k for v in report.violations), [str(v) for v in report.violations]
        if current is not None:  # the plan holds `current` before the interval
            assert np.array_equal(result.plan.placement(k - 1).attention, current.attention)
            # never worse than staying where we are, when that fits
            stay = evaluate(inst, Plan(inst.cluster.names, [current]))
            if all(v.interval != k for v in stay.violations):
                assert cost <= interval_figure(stay, workload, k) * (1 + 1e-9)
        # and the best the enumeration finds for this interval alone
        best, _ = search(name).interval_optimum(k, current)
        assert cost == pytest.approx(best, rel=REL)


def test_interval_mode_accepts_a_plan_as_current():
    name = "kv-growth-two-intervals"
    inst = instance(name)
    plan = optimum(name).plan
    by_plan = solve_milp(inst, mode="interval", interval=1, current=plan)
    by_placement = solve_milp(inst, mode="interval", interval=1, current=plan.placement(0))
    assert by_plan.stats["interval_cost_s"] == pytest.approx(by_placement.stats["interval_cost_s"], rel=REL)
    assert by_plan.bound is None  # a bound on one interval is not a bound on the plan's total


# ----------------------------------------------------------------------------- (h) pin and forbid
def _allowed_optimum(name: str, allow) -> float:
    return Search(instance(name), allow).optimum().total_s


def test_pin_puts_blocks_there():
    name = "split-three-dev"
    inst = instance(name)
    K = inst.model.kv_heads
    B, C = inst.cluster.index("B"), inst.cluster.index("C")
    result = solve_milp(inst, pin={"embed": "C", "ffn[0]": "B", "attention[0]": "C"})
    assert_judged(inst, result)
    p = result.plan.intervals[0]
    assert p.embed == C
    assert p.ffn[0].argmax() == B and p.ffn[0].max() == 1.0
    assert np.all(p.attention[0] == C)
    expected = _allowed_optimum(name, lambda s: (s.embed == C) & (s.ffn[:, 0] == B) & (s.counts[:, 0, C] == K))
    assert result.objective == pytest.approx(expected, rel=REL)
    assert result.objective >= milp(name).objective * (1 - REL)


def test_pin_a_whole_layer():
    name = "two-layers-switch"
    inst = instance(name)
    K = inst.model.kv_heads
    A = inst.cluster.index("A")
    result = solve_milp(inst, pin={"layer[1]": "A"})
    assert_judged(inst, result)
    p = result.plan.intervals[0]
    assert np.all(p.attention[1] == A) and p.projection[1].argmax() == A and p.ffn[1].argmax() == A
    expected = _allowed_optimum(
        name, lambda s: (s.counts[:, 1, A] == K) & (s.projection[:, 1] == A) & (s.ffn[:, 1] == A))
    assert result.objective == pytest.approx(expected, rel=REL)


def test_forbid_keeps_blocks_away():
    name = "split-three-dev"
    inst = instance(name)
    A, C = inst.cluster.index("A"), inst.cluster.index("C")
    result = solve_milp(inst, forbid={"C": ["ffn", "lm_head"], "A": ["attention"]})
    assert_judged(inst, result)
    p = result.plan.intervals[0]
    assert p.ffn[:, C].sum() == 0 and p.lm_head != C
    assert not np.any(p.attention == A)
    expected = _allowed_optimum(name, lambda s: (s.ffn[:, 0] != C) & (s.lm_head != C) & (s.counts[:, 0, A] == 0))
    assert result.objective == pytest.approx(expected, rel=REL)


def test_pin_holds_in_every_interval():
    name = "kv-growth-two-intervals"
    inst = instance(name)
    B = inst.cluster.index("B")
    result = solve_milp(inst, pin={"ffn": "B", "embed": "B"})
    assert_judged(inst, result)
    for p in result.plan.intervals:
        assert p.ffn[0].argmax() == B and p.embed == B
    expected = _allowed_optimum(name, lambda s: (s.ffn[:, 0] == B) & (s.embed == B))
    assert result.objective == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize("options, match", [
    ({"pin": {"mlp": "A"}}, r"block 'mlp' is unknown; name blocks as"),
    ({"pin": {"ffn[3]": "A"}}, r"block 'ffn\[3\]': the model has layers 0 to 0"),
    ({"pin": {"embed": "Z"}}, r"unknown device 'Z'; the devices are A, B, C"),
    ({"forbid": {"Z": ["ffn"]}}, r"unknown device 'Z'"),
    ({"forbid": {"A": ["ffn[x]"]}}, r"block 'ffn\[x\]' is unknown"),
    ({"forbid": {"A": ["ffn"], "B": ["ffn"], "C": ["ffn"]}}, r"`pin`/`forbid` leave no device for ffn\[0\]"),
    ({"pin": {"lm_head": "A"}, "forbid": {"A": ["lm_head"]}}, r"leave no device for lm_head"),
])
def test_bad_pin_or_forbid_is_an_input_error(options, match):
    with pytest.raises(InputError, match=match):
        solve_milp(instance("split-three-dev"), **options)


@pytest.mark.parametrize("options, match", [
    ({"solver": "gurobi"}, r"unknown MILP solver 'gurobi'; solvers are highs, cbc, ortools"),
    ({"mode": "online"}, r"unknown mode 'online'; modes are horizon, interval"),
    ({"formulation": "dense"}, r"unknown formulation 'dense'"),
    ({"token_blocks": 0}, r"`token_blocks` must be 'adaptive', 'exact' or a positive number"),
    ({"token_blocks": "some"}, r"`token_blocks`"),
    ({"mode": "interval", "interval": 5}, r"`interval` must be between 0 and 0, got 5"),
    ({"warm_start": "best"}, r"`warm_start` must be a Plan, 'auto' or None"),
])
def test_unknown_options_are_input_errors(options, match):
    with pytest.raises(InputError, match=match):
        solve_milp(instance("split-three-dev"), **options)


# ----------------------------------------------------------------------------- (i) infeasible instances
def _instance(devices_kib, *, ffn_hidden, vocab, layers=1):
    return instance_from_dict({
        "name": "no-fit",
        "model": {"name": "m", "layers": layers, "hidden": 64, "heads": 2, "kv_heads": 2, "head_dim": 32,
                  "ffn_hidden": ffn_hidden, "gated_ffn": True, "vocab": vocab, "tied_embeddings": False},
        "devices": [{"name": f"d{i}", "memory": f"{m} KiB", "peak_flops": "1 GFLOPS", "memory_bandwidth": "1 GB/s"}
                    for i, m in enumerate(devices_kib)],
        "mesh": {"bandwidth": "100 Mbit/s", "latency": "1 ms"},
        "workload": {"prompt_tokens": 4, "generate_tokens": 2},
    })


@pytest.mark.parametrize("layers, devices, where", [(1, 3, "the ffn"), (2, 4, "layer 0's ffn")])
def test_an_ffn_that_fits_nowhere_is_diagnosed(layers, devices, where):
    # FFN: 3·64·1024 parameters at 16 bits = 384 KiB; devices of 250.5 KiB hold the model only together, so
    # loading passes (a split FFN could fit) but the MILP, which keeps an FFN whole, has no placement.
    inst = _instance([250.5] * devices, ffn_hidden=1024, vocab=64, layers=layers)
    for solver in SOLVERS:
        result = solve_milp(inst, solver=solver)
        assert result.status == "infeasible"
        assert result.plan is None and result.report is None
        assert f"{where} (384.00 KiB) fits on no device (largest: 250.50 KiB)" in result.message, result.message
    if layers == 1:
        assert Search(inst).optimum().plan is None


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_packing_no_device_set_can_hold_is_infeasible(solver):
    # FFN 96 KiB, embed and lm_head 80 KiB each, groups and projection about 34 KiB: 290 KiB in 2 × 150.5 KiB,
    # and no capacity check objects, but no device holds two of the FFN and the tables: no placement exists.
    inst = _instance([150.5, 150.5], ffn_hidden=256, vocab=640)
    assert Search(inst).optimum().plan is None
    result = solve_milp(inst, solver=solver)
    assert result.status == "infeasible", result.message
    assert result.plan is None and "no placement fits" in result.message


# ----------------------------------------------------------------------------- (j) time limit
@pytest.mark.parametrize("solver", ["highs", "ortools"])
def test_time_limit_returns_the_incumbent_judged(solver):
    inst = load_instance("milp/llama-3.2-1b-6dev-tight")  # HiGHS needs well over a minute to prove it
    result = solve_milp(inst, solver=solver, time_limit=0.3)
    assert result.status in ("time_limit", "optimal"), result.message
    if result.plan is not None:
        report = evaluate(inst, result.plan)
        assert result.objective == pytest.approx(report.total_s, rel=REL)
        assert report.feasible
        if result.bound is not None:
            assert result.bound <= result.objective * (1 + REL)


def test_cbc_time_limit_keeps_its_incumbent():
    inst = load_instance("milp/llama-3.2-1b-6dev-tight")
    for limit in (0.2, 0.3, 0.5):
        result = solve_milp(inst, solver="cbc", time_limit=limit)
        assert result.status in ("time_limit", "optimal"), f"time_limit={limit}: {result.status}: {result.message}"
        assert result.plan is not None


# ----------------------------------------------------------------------------- (k) warm start
@pytest.mark.parametrize("name", ["split-three-dev", "kv-growth-two-intervals", "four-dev-star"])
def test_warm_start_with_a_plan(name):
    inst = instance(name)
    expected = milp(name).objective
    starts = [optimum(name).plan, solve_single(inst).plan, solve_pipeline(inst).plan, None]
    for start in starts:  # the optimum, reference plans (feasible or not), and no start at all
        result = solve_milp(inst, warm_start=start)
        assert_judged(inst, result)
        assert result.objective == pytest.approx(expected, rel=REL)


# ----------------------------------------------------------------------------- bugs, reduced
_BYTES_SCALE = {
    "name": "bytes-scale",
    "model": {"name": "tiny", "layers": 1, "hidden": 6, "heads": 3, "kv_heads": 3, "head_dim": 2, "ffn_hidden": 16,
              "gated_ffn": True, "vocab": 12, "tied_embeddings": False},
    "devices": [{"name": "A", "memory": 500.0, "peak_flops": 3000.0, "memory_bandwidth": 2000.0},
                {"name": "B", "memory": 900.0, "peak_flops": 1500.0, "memory_bandwidth": 1500.0},
                {"name": "C", "memory": 1000.0, "peak_flops": 800.0, "memory_bandwidth": 600.0}],
    "mesh": {"bandwidth": 400.0, "latency": 0.002},
    "workload": {"prompt_tokens": 3, "generate_tokens": 4},
}


def test_memory_in_bytes_is_respected():
    inst = instance_from_dict(_BYTES_SCALE)
    result = solve_milp(inst)
    assert result.status != "optimal" or result.report.feasible, [str(v) for v in result.report.violations]
    assert result.objective == pytest.approx(Search(inst).optimum().total_s, rel=REL)


def test_gap_option_stops_every_stage_within_the_stated_gap():
    """`gap` stops the configuration stage too, not only the solver: at 1 % its bound (0.06 %
    below this plan) ends the solve at once; the plan is ``feasible`` with that bound, because
    ``optimal`` is kept for a bound within 1e-6."""
    inst = load_instance("edge-real/llama-3.2-1b-2dev-eth")
    result = solve_milp(inst, time_limit=60.0, gap=0.01)
    assert result.status == "feasible" and "within the gap" in result.message
    assert result.bound <= result.objective <= result.bound * 1.01
    assert result.objective == evaluate(inst, result.plan).total_s
