"""The branch over signatures at exact per-token costs (placement/solvers/milp_branching.py).

Every value checked could be wrong: the exact tables' cost of random placements against
the evaluator's total, the branch's bound and best plan against brute-force optima, the
bound against random feasible plans on seeded random instances, and one signature pruned
by a bound worked out by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import placement
from placement.evaluate import evaluate
from placement.instance import instance_from_dict
from placement.plan import Placement, Plan
from placement.solvers.milp import branch_over_signatures
from placement.solvers.milp_branching import ExactTables, compositions, exact_signature_bound, exact_tables
from placement.solvers.milp_branching import changing_exact_bound, chosen_runs, covered_bounds, least_changing_total
from placement.solvers.milp_branching import horizon_exact_bound, interval_exact_bound, least_move_s

sys.path.insert(0, str(Path(__file__).parent))
from brute_force import brute_force, enumerate_space, placement_costs  # noqa: E402
from problems import problem  # noqa: E402

ONE_INTERVAL = ["fits-one-two-dev", "overhead-two-dev", "split-three-dev", "two-layers-switch", "shared-wireless",
                "four-dev-star", "triangle-size-routes"]


def _random_placement(inst, rng) -> Placement:
    L, K, N = inst.model.layers, inst.model.kv_heads, inst.n_devices
    one_hot = np.eye(N)
    return Placement(rng.integers(0, N, size=(L, K)), one_hot[rng.integers(0, N, size=L)],
                     one_hot[rng.integers(0, N, size=L)], int(rng.integers(N)), int(rng.integers(N)))


def _table_cost(tables: ExactTables, p: Placement) -> float:
    """A placement's cost read from the tables, ms: its layers' configurations and its ends."""
    N = tables.counts.shape[1]
    total, u = 0.0, p.embed
    for l in range(p.attention.shape[0]):
        n = np.bincount(p.attention[l], minlength=N)
        c = int(np.flatnonzero((tables.counts == n).all(axis=1))[0])
        q, v = int(p.projection[l].argmax()), int(p.ffn[l].argmax())
        cls = tables.labels[l]
        total += tables.stage[cls, u, q, c] + tables.rest[cls, q, v]
        u = v
    return total + tables.ends[p.embed, u, p.lm_head]


def _start(inst) -> Plan:
    """The first feasible plan of the plain heuristics: an incumbent to branch from."""
    for method in ("pipeline", "pipeline-dp", "myopic+"):
        result = placement.solve(inst, method=method)
        if result.report is not None and result.report.feasible:
            return result.plan
    raise AssertionError(f"no heuristic plan fits {inst.name}")


def test_compositions_are_every_split_once():
    rows = compositions(3, 3)
    assert len(rows) == 10  # C(5, 2)
    assert (rows.sum(axis=1) == 3).all() and len(np.unique(rows, axis=0)) == 10


@pytest.mark.parametrize("name", ONE_INTERVAL)
def test_exact_tables_price_a_placement_at_its_evaluator_total(name):
    # the tables sum each token's own maximum: on any placement, fitting or not, they give the evaluator's time
    inst = problem(name)
    tables = exact_tables(inst)
    rng = np.random.default_rng(7)
    for _ in range(12):
        p = _random_placement(inst, rng)
        report = evaluate(inst, Plan(inst.cluster.names, [p]))
        assert _table_cost(tables, p) * 1e-3 == pytest.approx(report.total_s, rel=1e-9)


def _random_instance(seed: int, intervals: int = 1):
    """`intervals` intervals; 2-3 devices, 2-4 layers, 1-2 groups per layer, tight memory, slow links."""
    rng = np.random.default_rng(500 + seed)
    N, layers, kv = int(rng.integers(2, 4)), int(rng.integers(2, 5)), int(rng.choice([1, 2]))
    model = {"name": f"br-{seed}", "layers": layers, "hidden": 128, "heads": 2 * kv, "kv_heads": kv,
             "head_dim": 128 // (2 * kv), "ffn_hidden": 256, "gated_ffn": bool(rng.integers(2)), "vocab": 256,
             "tied_embeddings": bool(rng.integers(2))}
    devices = [{"name": f"d{m}", "memory": f"{rng.uniform(150, 700):.1f} KiB",
                "peak_flops": f"{rng.uniform(0.5, 5):.2f} GFLOPS",
                "memory_bandwidth": f"{rng.uniform(0.5, 4):.2f} GB/s"} for m in range(N)]
    devices[0]["memory"] = f"{rng.uniform(0.6, 1.5):.2f} MiB"
    spec = {"name": f"br-{seed}", "model": model, "devices": devices,
            "network": "shared" if rng.integers(2) else "switched",
            "mesh": {"bandwidth": f"{int(rng.integers(5, 200))} Mbit/s", "latency": f"{rng.uniform(0.05, 2):.2f} ms"},
            "workload": {"prompt_tokens": int(rng.integers(2, 60)), "generate_tokens": int(rng.integers(3, 12))}}
    if intervals > 1:  # the caches grow over more tokens, so that later intervals may need other placements
        spec["workload"] |= {"generate_tokens": 4 * intervals, "interval": 4}
    return instance_from_dict(spec, source=spec["name"])


def test_bound_never_above_a_random_feasible_plan_nor_the_exact_optimum():
    rng = np.random.default_rng(3)
    checked = solved = 0
    for seed in range(10):
        inst = _random_instance(seed)
        exact = placement.solve(inst, method="milp", bound=None)
        assert exact.status == "optimal", (seed, exact.message)
        branched = branch_over_signatures(inst, _start(inst), time_limit_s=30.0)
        bound, solved = branched.bound_s, solved + branched.stats["branch_solved"]
        assert bound <= exact.objective * (1 + 1e-9), seed
        assert branched.total_s == pytest.approx(exact.objective, rel=1e-6), seed  # and it finds the optimum
        for _ in range(40):
            report = evaluate(inst, Plan(inst.cluster.names, [_random_placement(inst, rng)]))
            if report.feasible:
                assert bound <= report.total_s * (1 + 1e-9), seed
                checked += 1
    assert checked >= 50  # enough random plans fit to make the comparison mean something
    assert solved >= 3  # the restricted MILPs closed signatures the Lagrangian left open


@pytest.mark.parametrize("name", ONE_INTERVAL)
def test_branch_optimum_equals_brute_force(name):
    # from a heuristic's plan the branch finds the optimum and proves it
    inst = problem(name)
    optimum = brute_force(inst)
    branched = branch_over_signatures(inst, _start(inst), time_limit_s=30.0)
    assert branched.total_s == pytest.approx(optimum.total_s, rel=1e-9)
    assert evaluate(inst, branched.plan).total_s == pytest.approx(optimum.total_s, rel=1e-9)
    assert optimum.total_s * (1 - 1e-6) <= branched.bound_s <= optimum.total_s * (1 + 1e-9)


def test_a_signature_pruned_by_its_own_multiplier_worked_by_hand():
    # Two devices, one layer of one group, costs in ms set by hand (tables, not an instance's):
    # the group costs 1 on device 0 and 10 on device 1, the projection and FFN 1 with the FFN on
    # device 0 and 3 with it on 1; memory fractions: group 0.9 / 0.1, projection 0 / 0.05, FFN 0.7 / 0.1.
    # Signature "FFN on 0": its cheapest path (everything on 0, 2 ms) needs 1.6 of device 0. At
    # π₀ = 5 every configuration of it costs at least 1 + 1 + 5·1.6 − 5 = 5 ms (group on 1:
    # 10 + 1 + 5·0.7 − 5 = 9.5): with an incumbent of 5 ms it is pruned. Signature "FFN on 1":
    # group on 0, FFN on 1 fits (0.9 on device 0) at 1 + 3 = 4 ms, its optimum: the bound is 4 ms.
    counts = compositions(1, 2)
    group_on_0 = counts[:, 0] == 1
    stage = np.where(group_on_0, 1.0, 10.0)[None, None, None, :] * np.ones((1, 2, 2, 1))
    rest = np.array([[[1.0, 3.0], [1.0, 3.0]]])
    tables = ExactTables(counts, stage, rest, np.zeros((2, 2, 2)), np.array([[0.9, 0.1]]), np.array([[0.0, 0.05]]),
                         np.array([[0.7, 0.1]]), np.zeros((2, 2, 2)), np.array([0]))
    exact = exact_signature_bound(problem("fits-one-two-dev"), 0.005, time_limit_s=10.0, tables=tables)
    assert exact.bound_s == pytest.approx(0.004, rel=1e-8)
    for signature in exact.open:
        if signature.ffn_counts[0] == 1:
            assert signature.bound_s >= 0.005 * (1 - 1e-6)  # pruned: within the optimality gap of the incumbent
        else:
            assert signature.bound_s == pytest.approx(0.004, rel=1e-8)
    assert sum(s.ffn_counts[1] == 1 for s in exact.open) == 4  # every (embed, lm_head) pair of "FFN on 1"
    assert exact.found and all(p.attention.tolist() == [[0]] and p.ffn.tolist() == [[0.0, 1.0]] for p in exact.found)


def _interval_costs(inst, plan: Plan) -> np.ndarray:
    report = evaluate(inst, plan)
    costs = np.bincount(inst.workload.interval_of_step(), weights=report.decode_s, minlength=inst.workload.n_intervals)
    costs[0] += report.ttft_s
    return costs


@pytest.mark.parametrize("name", ["kv-growth-two-intervals", "shared-three-intervals"])
def test_interval_bound_never_above_the_brute_force_optimum(name):
    inst = problem(name)
    optimum = brute_force(inst)
    bound, found = interval_exact_bound(inst, _interval_costs(inst, optimum.plan), time_limit_s=20.0)
    assert 0.0 < bound <= optimum.total_s * (1 + 1e-9)
    for p in found:  # a static plan of a fitting last-interval placement fits every interval
        assert evaluate(inst, Plan(inst.cluster.names, [p] * inst.workload.n_intervals)).feasible


def test_interval_bound_never_above_the_exact_milp_nor_a_random_plan():
    rng = np.random.default_rng(11)
    checked = closed = 0
    for seed in range(8):
        inst = _random_instance(seed, intervals=int(rng.integers(2, 4)))
        exact = placement.solve(inst, method="milp", bound=None)
        assert exact.status == "optimal", (seed, exact.message)
        bound, _ = interval_exact_bound(inst, _interval_costs(inst, exact.plan), time_limit_s=20.0)
        assert bound <= exact.objective * (1 + 1e-9), seed
        closed += bound >= exact.objective * (1 - 1e-6)
        for _ in range(30):
            placements = [_random_placement(inst, rng) for _ in range(inst.workload.n_intervals)]
            report = evaluate(inst, Plan(inst.cluster.names, placements))
            if report.feasible:
                assert bound <= report.total_s * (1 + 1e-9), seed
                checked += 1
    assert checked >= 20
    assert closed >= 2  # where the optimum migrates nothing and no interval's bound has a duality gap, it is tight


def _horizon_bound(inst, plan: Plan) -> float:
    """Static plans' bound, and changing plans' (the interval sum plus the least move): the least of the two."""
    bound, better = horizon_exact_bound(inst, plan, 0.0, budget_s=40.0, stats={})
    assert evaluate(inst, better).total_s <= evaluate(inst, plan).total_s  # never a worse plan back
    return bound


def test_least_move_is_below_every_changing_plans_migration():
    rng = np.random.default_rng(5)
    inst = problem("shared-three-intervals")
    move = least_move_s(inst)
    assert move > 0
    seen = 0
    for _ in range(60):
        placements = [_random_placement(inst, rng) for _ in range(inst.workload.n_intervals)]
        report = evaluate(inst, Plan(inst.cluster.names, placements))
        changes = report.migration_s[1:] > 0
        assert np.all(report.migration_s[1:][changes] >= move * (1 - 1e-12))
        seen += int(changes.sum())
    assert seen >= 30


@pytest.mark.parametrize("name", ["kv-growth-two-intervals", "shared-three-intervals"])
def test_horizon_bound_never_above_the_brute_force_optimum(name):
    inst = problem(name)
    optimum = brute_force(inst)
    assert 0.0 < _horizon_bound(inst, optimum.plan) <= optimum.total_s * (1 + 1e-9)


def test_horizon_bound_never_above_the_exact_milp_and_often_equal():
    rng = np.random.default_rng(13)
    closed = 0
    for seed in range(8):
        inst = _random_instance(seed, intervals=int(rng.integers(2, 4)))
        exact = placement.solve(inst, method="milp", bound=None)
        assert exact.status == "optimal", (seed, exact.message)
        bound = _horizon_bound(inst, exact.plan)
        assert bound <= exact.objective * (1 + 1e-9), seed
        closed += bound >= exact.objective * (1 - 1e-6)
    assert closed >= 3


def test_changing_total_over_runs_worked_by_hand():
    # Three intervals; run bounds (s) 1, 2, 3 for single intervals, [0, 2) 4, [1, 3) 6. Covers: [0, 2) = max(4, 1 + 2)
    # = 4, [1, 3) = max(6, 2 + 3) = 6, [0, 3) = max(4 + 3, 1 + 6) = 7 (no run of the whole). With a move of 0.5 the
    # partitions of ≥ 2 runs: {0}{1}{2} 6 + 1 = 7, {01}{2} 4 + 3 + 0.5 = 7.5, {0}{12} 1 + 6 + 0.5 = 7.5: least 7.
    bounds = {(0, 1): 1.0, (1, 2): 2.0, (2, 3): 3.0, (0, 2): 4.0, (1, 3): 6.0}
    cover = covered_bounds(3, bounds)
    assert cover[0, 2] == 4.0 and cover[1, 3] == 6.0 and cover[0, 3] == 7.0
    assert least_changing_total(cover, 0.5) == pytest.approx(7.0)
    assert least_changing_total(cover, 2.0) == pytest.approx(9.0)  # {01}{2} or {0}{12}: 7 + 2, below 6 + 2·2
    assert chosen_runs(3) == [(0, 2), (1, 3)]
    assert chosen_runs(9) == [(0, 2), (2, 4), (4, 6), (6, 8), (0, 4), (4, 8), (0, 8)]


def _best_changing_plans(inst, count: int) -> list[Plan]:
    """Changing plans of two runs cut anywhere, the cheapest by their intervals' costs (every placement enumerated)."""
    costs = placement_costs(inst, enumerate_space(inst))
    cost, space = costs.interval_s, costs.space  # (P, I), inf where a placement does not fit
    I, candidates = inst.workload.n_intervals, []
    for m in range(1, I):
        pair = cost[:, :m].sum(axis=1)[:, None] + cost[:, m:].sum(axis=1)[None, :]
        np.fill_diagonal(pair, np.inf)  # the two runs differ
        for flat in np.argsort(pair, axis=None)[:count]:
            p, q = (int(x) for x in np.unravel_index(flat, pair.shape))
            if np.isfinite(pair[p, q]):
                runs = [space.placement(p, inst.n_devices)] * m + [space.placement(q, inst.n_devices)] * (I - m)
                candidates.append(Plan(inst.cluster.names, runs))
    return candidates


def _changing_totals(inst, plans: list[Plan]) -> list[float]:
    """Evaluator totals of the feasible plans that migrate something."""
    reports = [evaluate(inst, plan) for plan in plans]
    return [r.total_s for r in reports if r.feasible and np.any(r.migration_s[1:] > 0)]


@pytest.mark.parametrize("name", ["kv-growth-two-intervals", "shared-three-intervals"])
def test_changing_bound_below_the_cheapest_changing_plans(name):
    inst = problem(name)
    costs = _interval_costs(inst, brute_force(inst).plan)
    bound, found = changing_exact_bound(inst, costs, time_limit_s=20.0)
    totals = _changing_totals(inst, _best_changing_plans(inst, 5))
    assert len(totals) >= 3 and 0.0 < bound <= min(totals) * (1 + 1e-9)
    for p in found:  # placements of runs ending at the last interval fit every interval
        assert evaluate(inst, Plan(inst.cluster.names, [p] * inst.workload.n_intervals)).feasible


def test_changing_bound_at_least_the_interval_sum_and_below_random_changing_plans():
    rng = np.random.default_rng(17)
    checked = 0
    for seed in range(5):
        inst = _random_instance(seed, intervals=int(rng.integers(2, 4)))
        exact = placement.solve(inst, method="milp", bound=None)
        assert exact.status == "optimal", (seed, exact.message)
        costs = _interval_costs(inst, exact.plan)
        bound, _ = changing_exact_bound(inst, costs, time_limit_s=20.0)
        old, _ = interval_exact_bound(inst, costs, time_limit_s=20.0)
        assert bound >= (old + least_move_s(inst)) * (1 - 1e-9), seed
        plans = [Plan(inst.cluster.names, [_random_placement(inst, rng) for _ in range(inst.workload.n_intervals)])
                 for _ in range(30)]
        for total in _changing_totals(inst, plans):
            assert bound <= total * (1 + 1e-9), seed
            checked += 1
    assert checked >= 10
