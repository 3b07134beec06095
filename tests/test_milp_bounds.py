"""The configuration LP's bound and plan (placement/solvers/milp_bounds.py, docs/milp.md).

Every value checked could be wrong: the bound against brute-force optima and against
the evaluator's figure of every plan met on seeded random instances; the classes of
layers against a model whose precisions differ by layer.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import placement
from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import instance_from_dict
from placement.solvers.milp_bounds import configuration_bound, layer_classes
from placement.solvers.reference import solve_pipeline, solve_single
from placement.solvers.baselines import solve_pipeline_dp
from placement.solvers.myopic_plus import solve_myopic_plus

sys.path.insert(0, str(Path(__file__).parent))
from brute_force import brute_force  # noqa: E402
from problems import PROBLEMS, problem  # noqa: E402


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_bound_never_above_the_brute_force_optimum(name):
    inst = problem(name)
    optimum = brute_force(inst).total_s
    relaxed = configuration_bound(inst, time_limit_s=10.0, upper_bound_s=optimum)
    assert relaxed is not None
    assert 0.0 < relaxed.bound_s <= optimum * (1 + 1e-9)
    if relaxed.plan is not None:  # the restricted MILP's plan is a real plan: never below the optimum
        assert relaxed.plan_total_s >= optimum * (1 - 1e-9)


def test_bound_is_the_optimum_when_memory_does_not_bind():
    # both devices hold the whole model: no memory row binds, the configuration LP is the
    # problem itself, and its plan is the optimum, proved by its own bound
    inst = problem("fits-one-two-dev")
    optimum = brute_force(inst).total_s
    relaxed = configuration_bound(inst, time_limit_s=10.0)
    assert relaxed.plan_total_s == pytest.approx(optimum, rel=1e-9)
    assert relaxed.bound_s == pytest.approx(optimum, rel=1e-7)


def _random_instance(seed: int):
    """A seeded tiny instance: 2-4 devices, switched or shared, memory loose or tight, 1-2 intervals."""
    rng = np.random.default_rng(seed)
    N = int(rng.integers(2, 5))
    layers, kv = int(rng.integers(1, 4)), int(rng.choice([1, 2, 4]))
    model = {"name": f"rand-{seed}", "layers": layers, "hidden": 128, "heads": 2 * kv, "kv_heads": kv,
             "head_dim": 128 // (2 * kv), "ffn_hidden": 256, "gated_ffn": bool(rng.integers(2)), "vocab": 256,
             "tied_embeddings": bool(rng.integers(2))}
    tight = bool(rng.integers(2))
    devices = []
    for m in range(N):
        memory_kib = float(rng.uniform(160, 400) if tight else 4096)
        devices.append({"name": f"d{m}", "memory": f"{memory_kib:.1f} KiB",
                        "peak_flops": f"{rng.uniform(0.5, 5):.2f} GFLOPS",
                        "memory_bandwidth": f"{rng.uniform(0.5, 4):.2f} GB/s"})
    devices[0]["memory"] = "4 MiB"  # one device can always take what the others cannot
    generate = int(rng.integers(2, 7))
    spec = {"name": f"rand-{seed}", "model": model, "devices": devices,
            "network": "shared" if rng.integers(2) else "switched",
            "mesh": {"bandwidth": f"{int(rng.integers(50, 1000))} Mbit/s", "latency": f"{rng.uniform(0.05, 2):.2f} ms"},
            "workload": {"prompt_tokens": int(rng.integers(2, 9)), "generate_tokens": generate,
                         "interval": int(rng.choice([generate, max(1, generate // 2)]))}}
    return instance_from_dict(spec, source=spec["name"])


@pytest.mark.parametrize("seed", range(12))
def test_bound_never_above_any_feasible_plan_on_random_instances(seed):
    inst = _random_instance(seed)
    figures = []
    for heuristic in (solve_single, solve_pipeline, solve_pipeline_dp, solve_myopic_plus):
        result = heuristic(inst)
        if result.report is not None and result.report.feasible:
            figures.append(result.report.total_s)
    milp = placement.solve(inst, method="milp", bound=None)
    assert milp.status == "optimal"
    figures.append(milp.objective)
    relaxed = configuration_bound(inst, time_limit_s=10.0, upper_bound_s=min(figures), start=list(milp.plan.intervals))
    assert relaxed.bound_s <= min(figures) * (1 + 1e-9)
    assert relaxed.bound_s <= milp.objective * (1 + 1e-9)
    if relaxed.plan is not None:
        assert evaluate(inst, relaxed.plan).feasible
        assert relaxed.plan_total_s >= milp.objective * (1 - 1e-9)


def test_one_class_for_identical_layers_and_two_when_precisions_differ():
    inst = _random_instance(3)
    inst = replace(inst, model=replace(inst.model, layers=4), precision=replace(
        inst.precision, **{k: np.full(4, getattr(inst.precision, k)[0]) for k in ("attention", "projection", "ffn", "kv")}))
    assert layer_classes(inst).tolist() == [0, 0, 0, 0]
    ffn_bits = inst.precision.ffn.copy()
    ffn_bits[[1, 3]] = 8  # layers 1 and 3 keep 8-bit FFN weights: their FFN time and memory differ
    mixed = replace(inst, precision=replace(inst.precision, ffn=ffn_bits))
    assert layer_classes(mixed).tolist() == [0, 1, 0, 1]


def test_milp_reports_the_configuration_bound_when_it_stops_early():
    inst = problem("split-three-dev")
    optimum = brute_force(inst).total_s
    result = placement.solve(inst, method="milp", time_limit=0.05, bound="configurations")
    assert result.plan is not None and result.bound is not None
    assert result.bound <= optimum * (1 + 1e-9) <= result.objective * (1 + 1e-9)


def test_unknown_bound_option_is_rejected():
    with pytest.raises(InputError, match="`bound` must be 'auto', 'configurations' or None"):
        placement.solve(problem("fits-one-two-dev"), method="milp", bound="lp")
