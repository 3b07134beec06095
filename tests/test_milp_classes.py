"""The device-class bound (placement/solvers/milp_classes.py) and the MILP's size rules (milp_model.py).

Every value checked could be wrong: the bound against brute-force optima on tiny
clusters of identical boards (on a shared medium and on a switched star whose links
differ between boards of one kind, where the relaxation of links is what is tested),
and against the evaluator's figure of every heuristic's plan on seeded random
clusters; the classes against the presets the instance was written with; the
estimated model size against the built model's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from placement.evaluate import evaluate
from placement.instance import instance_from_dict
from placement.solvers.baselines import solve_pipeline_dp
from placement.solvers.milp import _initial_blocks
from placement.options import Deadline
from placement.solvers.milp_classes import class_bound, device_classes, with_class_bound
from placement.solvers.milp_packing import packing_bound
from placement.solvers.milp_model import ALWAYS_BUILT_COLUMNS, build_formulation, model_columns, skip_reason
from placement.solvers.myopic_plus import solve_myopic_plus
from placement.solvers.reference import solve_pipeline, solve_single

sys.path.insert(0, str(Path(__file__).parent))
from brute_force import brute_force  # noqa: E402
from problems import PROBLEMS, problem  # noqa: E402

# Two kinds of board: a fast small one and a slow large one.
_KINDS = {"fast": ("200 KiB", "4 GFLOPS", "3 GB/s"), "slow": ("4 MiB", "1 GFLOPS", "0.8 GB/s")}


def _identical_cluster(seed: int, *, layers: int, kinds: list[str], shared: bool, star: bool, one_interval=False):
    """A seeded instance on boards of `kinds` (repeated kinds are identical boards).

    On a star each board's link to the hub has its own speed and latency, so boards of
    one kind are identical in compute and memory only; otherwise a uniform mesh. With
    `one_interval` the plan is decided once (brute force over several intervals
    enumerates every pair of placements).
    """
    rng = np.random.default_rng(seed)
    kv = int(rng.choice([1, 2]))
    model = {"name": f"ident-{seed}", "layers": layers, "hidden": 128, "heads": 2 * kv, "kv_heads": kv,
             "head_dim": 128 // (2 * kv), "ffn_hidden": 256, "gated_ffn": bool(rng.integers(2)), "vocab": 256,
             "tied_embeddings": bool(rng.integers(2))}
    devices = [{"name": f"{kind}-{m}", "memory": _KINDS[kind][0], "peak_flops": _KINDS[kind][1],
                "memory_bandwidth": _KINDS[kind][2]} for m, kind in enumerate(kinds)]
    generate = int(rng.integers(2, 5))
    spec = {"name": f"ident-{seed}", "model": model, "devices": devices, "network": "shared" if shared else "switched",
            "workload": {"prompt_tokens": int(rng.integers(2, 6)), "generate_tokens": generate,
                         "interval": generate if one_interval else int(rng.choice([generate, max(1, generate // 2)]))}}
    if star:
        spec["switches"] = ["hub"]
        spec["links"] = [{"between": [d["name"], "hub"], "bandwidth": f"{int(rng.integers(50, 800))} Mbit/s",
                          "latency": f"{rng.uniform(0.05, 2):.2f} ms"} for d in devices]
    else:
        spec["mesh"] = {"bandwidth": f"{int(rng.integers(50, 1000))} Mbit/s", "latency": f"{rng.uniform(0.05, 2):.2f} ms"}
    return instance_from_dict(spec, source=spec["name"])


def _heuristic_figures(inst) -> list[float]:
    """The evaluator's total of every feasible heuristic plan (at least one)."""
    figures = []
    for heuristic in (solve_single, solve_pipeline, solve_pipeline_dp, solve_myopic_plus):
        result = heuristic(inst)
        if result.report is not None and result.report.feasible:
            figures.append(evaluate(inst, result.plan).total_s)
    assert figures
    return figures


def _random_shared_cluster(seed: int):
    """A seeded cluster of 4-7 boards of the two kinds on one shared medium (star or mesh), 2-5 layers."""
    rng = np.random.default_rng(200 + seed)
    kinds = ["slow"] + [str(k) for k in rng.choice(["fast", "slow"], size=int(rng.integers(3, 7)))]
    return _identical_cluster(seed, layers=int(rng.integers(2, 6)), kinds=kinds, shared=True, star=seed % 2 == 0)


def test_classes_are_the_boards_of_one_kind():
    inst = _identical_cluster(0, layers=2, kinds=["fast", "slow", "fast", "slow", "slow"], shared=False, star=True)
    # the links differ board by board; the classes are the kinds, in order of first appearance
    assert device_classes(inst).tolist() == [0, 1, 0, 1, 1]


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_bound_never_above_the_brute_force_optimum_on_the_test_problems(name):
    inst = problem(name)
    optimum = brute_force(inst).total_s
    found = class_bound(inst, time_limit_s=10.0, upper_bound_s=optimum)
    if found is None:  # the three-phase profile is out of scope
        assert inst.workload.profile == "kafetzis2025"
        return
    assert 0.0 < found.floor_s <= found.bound_s <= optimum * (1 + 1e-9)


def test_the_milp_hook_alone_gives_the_class_bound_when_no_configuration_lp_ran():
    # the path `solve_milp` takes on clusters the configuration LP cannot price
    inst = problem("two-layers-switch")
    optimum = brute_force(inst).total_s
    stats: dict = {}
    found = with_class_bound(inst, None, None, deadline=Deadline(None), stats=stats)
    assert found.plan is None and found.bound_s == found.path_bound_s == stats["class_bound_s"]
    assert 0.0 < found.bound_s <= optimum * (1 + 1e-9)


def test_bound_is_the_optimum_when_memory_does_not_bind():
    # both devices hold the whole model, the links are one mesh: the relaxation is the
    # problem itself and its Lagrangian at zero prices is the optimum
    inst = problem("fits-one-two-dev")
    assert class_bound(inst, time_limit_s=10.0).bound_s == pytest.approx(brute_force(inst).total_s, rel=1e-6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shared", [True, False])
def test_bound_never_above_brute_force_on_identical_boards(seed, shared):
    kinds = [["fast", "fast", "slow"], ["fast", "slow", "slow"], ["fast", "fast", "slow", "slow"]][seed % 3]
    # one layer: brute force over several layers of three boards is tens of thousands of evaluations
    inst = _identical_cluster(seed, layers=1, kinds=kinds, shared=shared, star=seed % 2 == 0, one_interval=True)
    assert len(set(device_classes(inst).tolist())) < inst.n_devices  # some boards are alike
    optimum = brute_force(inst).total_s
    found = class_bound(inst, time_limit_s=10.0, upper_bound_s=optimum)
    assert 0.0 < found.bound_s <= optimum * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_bound_never_above_any_heuristic_plan_on_random_clusters(seed):
    rng = np.random.default_rng(100 + seed)
    kinds = ["slow"] + [str(k) for k in rng.choice(["fast", "slow"], size=int(rng.integers(4, 9)))]
    inst = _identical_cluster(seed, layers=int(rng.integers(3, 7)), kinds=kinds, shared=seed % 2 == 0,
                              star=seed % 4 < 2)
    figures = _heuristic_figures(inst)
    found = class_bound(inst, time_limit_s=20.0, upper_bound_s=min(figures))
    assert found.intervals_priced == inst.workload.n_intervals
    assert 0.0 < found.bound_s <= min(figures) * (1 + 1e-9)


def test_an_interval_left_unpriced_counts_zero():
    inst = problem("shared-three-intervals")
    full = class_bound(inst, time_limit_s=10.0)
    cut = class_bound(inst, time_limit_s=0.0)  # the time is up before the first interval
    assert full.intervals_priced == inst.workload.n_intervals and full.bound_s > 0.0
    assert cut.intervals_priced == 0 and cut.bound_s == 0.0


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_model_size_is_counted_before_building(name):
    inst = problem(name)
    intervals = list(range(inst.workload.n_intervals))
    built = build_formulation(inst, intervals, _initial_blocks(inst, intervals, "adaptive")).problem.shape[1]
    assert model_columns(inst, intervals) == pytest.approx(built, rel=0.1)  # stage variables are left out


def test_large_models_are_skipped_with_their_size_named():
    inst = _identical_cluster(1, layers=40, kinds=["fast"] * 6 + ["slow"] * 30, shared=True, star=False)
    intervals = list(range(inst.workload.n_intervals))
    columns = model_columns(inst, intervals)
    assert columns > ALWAYS_BUILT_COLUMNS
    reason = skip_reason(inst, intervals, 1.0)
    assert reason is not None and f"{columns:,} columns" in reason
    assert skip_reason(inst, intervals, None) is None  # no limit: always built
    assert skip_reason(problem("split-three-dev"), [0], 1e-3) is None  # small models are always built


# --- the packing bound on a shared medium (placement/solvers/milp_packing.py) ---

_SHARED = [name for name in PROBLEMS if problem(name).cluster.network == "shared"]


@pytest.mark.parametrize("name", _SHARED)
def test_packing_bound_never_above_the_brute_force_optimum_on_the_test_problems(name):
    inst = problem(name)
    found = packing_bound(inst, time_limit_s=10.0)
    if found is None:  # out of scope: the three-phase profile, experts, layers of several classes
        return
    assert 0.0 < found <= brute_force(inst).total_s * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_packing_bound_never_above_brute_force_on_star_and_mesh_clusters(seed):
    kinds = [["fast", "fast", "slow"], ["fast", "slow", "slow"], ["slow", "fast", "slow", "slow"]][seed % 3]
    # one layer: brute force over several layers of three boards is tens of thousands of evaluations
    inst = _identical_cluster(seed, layers=1, kinds=kinds, shared=True, star=seed % 2 == 0, one_interval=True)
    found = packing_bound(inst, time_limit_s=10.0)
    assert 0.0 < found <= brute_force(inst).total_s * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_packing_bound_never_above_any_heuristic_plan_on_random_clusters(seed):
    inst = _random_shared_cluster(seed)
    figures = _heuristic_figures(inst)
    found = packing_bound(inst, time_limit_s=20.0)
    assert 0.0 < found <= min(figures) * (1 + 1e-9)


def test_packing_bound_is_for_a_shared_medium_only():
    inst = _identical_cluster(3, layers=2, kinds=["fast", "slow", "slow"], shared=False, star=True)
    assert packing_bound(inst, time_limit_s=5.0) is None  # switched: group devices' transfers overlap


def test_the_milp_hook_takes_the_higher_of_the_class_and_packing_bounds():
    inst = _identical_cluster(5, layers=3, kinds=["slow", "fast", "slow", "slow", "fast"], shared=True, star=True)
    stats: dict = {}
    found = with_class_bound(inst, None, None, deadline=Deadline(None), stats=stats)
    assert found.bound_s == max(stats["class_bound_s"], stats["packing_bound_s"])
    assert found.bound_s <= evaluate(inst, solve_pipeline_dp(inst).plan).total_s * (1 + 1e-9)


@pytest.mark.parametrize("seed", [1, 4])
def test_packing_bound_proves_the_pipeline_optimal_where_the_class_bound_cannot(seed):
    # the random clusters above, seeds 1 and 4: memory-tight boards on one medium, where the class bound
    # (fractional layers) stays 1.6-3.4 % below pipeline-dp's plan; whole blocks close it
    inst = _random_shared_cluster(seed)
    plan_s = evaluate(inst, solve_pipeline_dp(inst).plan).total_s
    packed = packing_bound(inst, time_limit_s=20.0)
    assert packed == pytest.approx(plan_s, rel=1e-6)
    assert class_bound(inst, time_limit_s=20.0).bound_s < 0.99 * packed


def test_an_interval_whose_program_dominates_another_has_at_least_its_optimum():
    # what lets `packing_bound` count a solved interval's bound for one it did not reach
    from scipy.optimize import Bounds, LinearConstraint, milp

    from placement.solvers.milp_packing import _program

    inst = problem("shared-three-intervals")
    optimum, keys = [], []
    for k in range(inst.workload.n_intervals):
        costs, (matrix, lower, upper), most, key = _program(inst, k)
        result = milp(costs, constraints=LinearConstraint(matrix, lower, upper),
                      integrality=np.r_[np.ones(len(costs) - 1), 0.0], bounds=Bounds(0, most))
        optimum.append(result.fun)
        keys.append(key)
    pairs = [(j, k) for j in range(len(keys)) for k in range(len(keys)) if j != k and (keys[k] >= keys[j]).all()]
    assert pairs  # the caches grow: later decode intervals dominate earlier ones
    assert all(optimum[k] >= optimum[j] * (1 - 1e-9) for j, k in pairs)


def test_a_dominating_interval_has_the_larger_lagrangian_at_every_multiplier():
    # what lets `class_bound` count a priced interval's bound for one the time limit left unpriced
    from placement.solvers.milp_bounds import layer_classes
    from placement.solvers.milp_classes import _dominates, _lagrangian, _relaxed_interval

    inst = problem("shared-three-intervals")
    labels, layer_labels = device_classes(inst), layer_classes(inst)
    relaxed = [_relaxed_interval(inst, k, labels, layer_labels) for k in range(inst.workload.n_intervals)]
    pairs = [(j, k) for j in range(3) for k in range(3) if j != k and _dominates(relaxed[k], relaxed[j])]
    assert pairs == [(1, 2)]  # the second decode interval's caches and times are the larger
    rng = np.random.default_rng(0)
    for _ in range(20):
        z = rng.exponential(1.0, size=int(labels.max()) + 2) * rng.choice([0.0, 1.0], size=int(labels.max()) + 2)
        low = _lagrangian(relaxed[1], layer_labels, z[:-1], float(z[-1]), True)[0]
        high = _lagrangian(relaxed[2], layer_labels, z[:-1], float(z[-1]), True)[0]
        assert high >= low - 1e-9 * abs(low)
