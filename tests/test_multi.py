"""Several models on one cluster (placement.multi, docs/parallel.md): files, the joint evaluator, joint methods."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from placement.errors import InputError, PlanError
from placement.evaluate import evaluate
from placement.multi import JointPlan, METHODS, evaluate_joint, load_multi, multi_from_dict, solve
from placement.multi.chains import NETWORK, Chain, layer_devices, layer_plan
from placement.multi.dags import NONE, Dag, model_dags
from placement.multi.response import best_response, memory_left
from placement.cost.tables import usable_bytes
from placement.multi.evaluate import model_tables
from placement.multi.schedule import simulate, simulate_dags
from placement.plan import Placement, Plan
from placement.solvers.baselines import solve_pipeline_dp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_run import error_line, run_main  # noqa: E402

RTOL = 1e-9


def _tiny_model(name: str, layers: int, hidden: int, tied: bool) -> dict:
    return {"name": name, "layers": layers, "hidden": hidden, "heads": 4, "kv_heads": 2, "head_dim": hidden // 4,
            "ffn_hidden": 2 * hidden, "gated_ffn": True, "vocab": 256, "tied_embeddings": tied}


def random_multi(seed: int) -> "placement.multi.MultiInstance":  # noqa: F821
    """Two or three tiny models (2–4 layers) on 3–4 devices of random speed and memory, switched or shared."""
    rng = np.random.default_rng(seed)
    n_models, n_devices = int(rng.integers(2, 4)), int(rng.integers(3, 5))
    models = [{"name": f"m{i}", "weight": float(rng.integers(1, 4)),
               "model": _tiny_model(f"tiny{i}", int(rng.integers(2, 5)), int(rng.choice([64, 128])), bool(rng.integers(2))),
               "workload": {"prompt_tokens": int(rng.integers(2, 9)), "generate_tokens": int(rng.integers(3, 12))}}
              for i in range(n_models)]
    devices = [{"name": f"d{n}", "memory": f"{int(rng.integers(300, 1200))} KiB",
                "peak_flops": f"{rng.uniform(0.5, 4):.2f} GFLOPS", "memory_bandwidth": f"{rng.uniform(0.4, 3):.2f} GB/s"}
               for n in range(n_devices)]
    return multi_from_dict({"models": models, "devices": devices, "objective": str(rng.choice(["makespan", "weighted"])),
                            "network": str(rng.choice(["switched", "shared"])),
                            "mesh": {"bandwidth": f"{int(rng.integers(50, 500))} Mbit/s", "latency": "0.2 ms"}},
                           source=f"random-{seed}")


def _random_joint(multi, rng) -> JointPlan:
    plans = tuple(layer_plan(inst, rng.integers(0, multi.n_devices, inst.model.layers)) for inst in multi.instances)
    return JointPlan(plans)


# ----------------------------------------------------------------------------- the simulation
def test_simulation_by_hand_switched_and_shared():
    # A: device 0 for 2 s, a 1 s transfer, device 1 for 3 s.  B: a 3 s transfer, device 1 for 1 s.
    a = Chain(np.array([0, NETWORK, 1]), np.array([2.0, 1.0, 3.0]))
    b = Chain(np.array([NETWORK, 1]), np.array([3.0, 1.0]))
    # Switched: transfers only take time. Both reach device 1 at t=3; A is listed first: A 3–6, B 6–7.
    assert simulate([a, b], 2, shared_network=False).tolist() == [6.0, 7.0]
    # Shared: B holds the medium 0–3, so A's transfer runs 3–4 and its device-1 task 4–7; B's 3–4.
    assert simulate([a, b], 2, shared_network=True).tolist() == [7.0, 4.0]


def test_one_model_alone_is_the_single_evaluator():
    """The chain of a layer plan sums to `placement.evaluate`'s total; its bytes are the evaluator's peak."""
    rng = np.random.default_rng(0)
    for seed in range(6):
        multi = random_multi(seed)
        joint = _random_joint(multi, rng)
        report = evaluate_joint(multi, joint)
        for m, (inst, plan) in enumerate(zip(multi.instances, joint.plans)):
            single = evaluate(inst, plan)
            assert report.alone_s[m] == pytest.approx(single.total_s, rel=RTOL)
            assert report.needed_bytes[m] == pytest.approx(single.peak_memory_bytes.max(axis=0), rel=RTOL)


def test_two_models_on_one_device_serialize_by_hand():
    """Every block of both models on one device: one resource, work-conserving, so the makespan is the sum of
    the two totals; the first model wins every tie, so it finishes as if alone."""
    multi = random_multi(3)
    plans = tuple(layer_plan(inst, np.zeros(inst.model.layers, dtype=int)) for inst in multi.instances)
    report = evaluate_joint(multi, JointPlan(plans))
    alone = [simulate_dags([model_dags(inst, p)], multi.n_devices)[0] for inst, p in zip(multi.instances, plans)]
    assert report.makespan_s == pytest.approx(sum(alone), rel=RTOL)
    assert report.finish_s[0] == pytest.approx(alone[0], rel=RTOL)
    assert report.lower_bound_s == pytest.approx(sum(alone), rel=RTOL)  # device 0's busy time


# ----------------------------------------------------------------------------- PPN's case
def test_ppn_two_identical_models_on_two_identical_devices_halve_the_sequential_makespan():
    multi = load_multi("ppn-2x2")
    sequential, joint = solve(multi, "sequential"), solve(multi, "disjoint")
    alone = solve_pipeline_dp(multi.instances[0]).objective  # the best layer pipeline, alone
    assert sequential.objective == pytest.approx(2 * alone, rel=1e-12)
    assert joint.objective == pytest.approx(alone, rel=1e-12)
    assert sequential.objective / joint.objective == pytest.approx(2.0, rel=1e-12)
    devices = [evaluate(inst, p).peak_memory_bytes.max(axis=0).argmax() for inst, p in zip(multi.instances, joint.plan.plans)]
    assert sorted(devices) == [0, 1]  # one network per device


# ----------------------------------------------------------------------------- shared memory
def test_shared_memory_violation_is_named():
    multi = load_multi("1b-3b-4dev")
    plans = tuple(layer_plan(inst, np.zeros(inst.model.layers, dtype=int)) for inst in multi.instances)
    report = evaluate_joint(multi, JointPlan(plans))
    singles = [evaluate(inst, p) for inst, p in zip(multi.instances, plans)]
    assert all(s.feasible for s in singles)  # each fits pi-a alone ...
    assert len(report.violations) == 1  # ... not both together
    v = report.violations[0]
    assert v.device == "pi-a"
    assert v.needed_bytes == pytest.approx(sum(s.peak_memory_bytes.max(axis=0)[0] for s in singles), rel=RTOL)
    assert v.available_bytes == 7 * 2**30
    assert "'pi-a'" in str(v) and "llama-1b" in str(v) and "llama-3b" in str(v) and "over" in str(v)
    # The same plans one after another fit: each model is judged alone.
    assert evaluate_joint(multi, JointPlan(plans, "sequential")).feasible


def test_a_client_or_a_wrong_interval_count_is_a_plan_error_naming_the_model():
    multi = load_multi("ppn-2x2")
    inst = multi.instances[1]
    plan = layer_plan(inst, np.zeros(inst.model.layers, dtype=int))
    p = plan.intervals[0]
    with pytest.raises(PlanError, match=r"model 'net-b': a joint plan has no sliding `windows` and no `client`"):
        evaluate_joint(multi, JointPlan((plan, plan.replace(client=inst.cluster.names[1]))))
    with pytest.raises(PlanError, match=r"model 'net-b': plan has 2 intervals, the instance has 1"):
        evaluate_joint(multi, JointPlan((plan, plan.replace(intervals=[p, p]))))


def random_head_plan(inst, rng) -> Plan:
    """Groups on random devices (several per layer), projection, FFN, embed and lm_head each whole somewhere."""
    L, K, N = inst.model.layers, inst.model.kv_heads, inst.n_devices
    eye = np.eye(N)
    placement = Placement(rng.integers(0, N, (L, K)), eye[rng.integers(0, N, L)], eye[rng.integers(0, N, L)],
                          int(rng.integers(N)), int(rng.integers(N)))
    return Plan(devices=inst.cluster.names, intervals=[placement])


@pytest.mark.parametrize("seed", range(12))
def test_a_head_level_model_alone_takes_its_evaluate_total(seed):
    # The DAG alone must reproduce the single-model evaluator (switched: latest arrival; shared: transfers add up).
    multi = random_multi(seed)
    rng = np.random.default_rng(seed)
    for inst in multi.instances:
        plan = random_head_plan(inst, rng)
        assert simulate_dags([model_dags(inst, plan)], inst.n_devices)[0] == pytest.approx(evaluate(inst, plan).total_s, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_head_level_joint_plans_between_their_bound_and_the_sequential_sum(seed):
    multi = random_multi(seed + 100)
    rng = np.random.default_rng(seed)
    plans = tuple(random_head_plan(inst, rng) for inst in multi.instances)
    report = evaluate_joint(multi, JointPlan(plans))
    alone = [simulate_dags([model_dags(inst, p)], multi.n_devices)[0] for inst, p in zip(multi.instances, plans)]
    np.testing.assert_allclose(report.alone_s, alone, rtol=1e-12)
    assert report.lower_bound_s <= report.makespan_s * (1 + 1e-12)
    assert report.makespan_s <= sum(alone) * (1 + 1e-12)  # work-conserving: never worse than one after another
    # memory: the single-model evaluator's peak per device, summed over the models
    peaks = sum(evaluate(inst, p).peak_memory_bytes.max(axis=0) for inst, p in zip(multi.instances, plans))
    np.testing.assert_allclose(report.needed_bytes.sum(axis=0), peaks, rtol=1e-12)


def test_head_level_schedule_by_hand():
    # One step, hand-made DAGs. A: embed on d0 (1 s) → groups on d0 (2 s) and d1 (2 s) → projection on d0 (1 s).
    # B: a 1 s switched transfer (no resource), then d1 for 3 s. Both want d1 at t=1; A is listed first:
    # A's d1 group runs 1–3, B's task 3–6; A's projection 3–4.
    a = Dag(np.array([0, 0, 1, 0]), ((), (0,), (0,), (1, 2)), np.array([[1.0, 2.0, 2.0, 1.0]]))
    b = Dag(np.array([NONE, 1]), ((), (0,)), np.array([[1.0, 3.0]]))
    assert simulate_dags([a, b], 2).tolist() == [4.0, 6.0]
    # B first: B holds d1 1–4, A's d1 group runs 4–6, its projection 6–7.
    assert simulate_dags([b, a], 2).tolist() == [4.0, 7.0]
    # Two steps of B: the second starts when the first ends.
    assert simulate_dags([Dag(b.resource, b.preds, np.array([[1.0, 3.0], [0.5, 2.0]]))], 2).tolist() == [6.5]
    # A shared medium: two 1 s transfers (NETWORK) after embed go one after the other; NONE tasks overlap.
    c = Dag(np.array([0, NETWORK, NETWORK, NONE, NONE]), ((), (0,), (0,), (1, 2), (3,)), np.array([[1.0, 1, 1, 0, 1]]))
    assert simulate_dags([c], 1).tolist() == [4.0]


# ----------------------------------------------------------------------------- joint methods
def _is_layer_plan(inst, plan) -> bool:
    try:
        layer_devices(inst, plan)
    except PlanError:
        return False
    return True


def test_memory_left_sets_the_other_models_bytes_aside():
    multi = load_multi("ppn-2x2")
    inst = multi.instances[0]
    usable = np.array([d.memory_bytes - d.reserved_bytes for d in inst.devices])
    others = np.array([0.25, 0.5, 0.0, 2.0])[: inst.n_devices] * usable
    left = np.array([d.memory_bytes - d.reserved_bytes for d in memory_left(inst, others).devices])
    expected = np.maximum(usable - others, 1.0)  # a device overfull by the others keeps one byte
    np.testing.assert_allclose(left, expected, rtol=1e-12)


@pytest.mark.parametrize(("seed", "solver"), [(0, "myopic+"), (1, "myopic+"), (2, "milp"), (3, "myopic+")])
def test_best_response_never_worse_than_its_start_and_fits_the_shared_memory(seed, solver):
    multi = random_multi(seed)
    tables = model_tables(multi)
    start = solve(multi, "disjoint").plan
    if start is None or not evaluate_joint(multi, start, tables).feasible:
        pytest.skip("no feasible disjoint start on this instance")
    plan, report, stats = best_response(multi, start, tables, solver, max_rounds=2)
    fresh = evaluate_joint(multi, plan)
    assert fresh.feasible and fresh.objective(multi.objective) == report.objective(multi.objective)
    assert fresh.objective(multi.objective) <= evaluate_joint(multi, start).objective(multi.objective)
    assert stats["responses"] >= multi.n_models
    # every model's plan fits the memory the others leave it
    for m, inst in enumerate(multi.instances):
        others = fresh.needed_bytes.sum(axis=0) - fresh.needed_bytes[m]
        assert (fresh.needed_bytes[m] <= usable_bytes(memory_left(inst, others)) * (1 + 1e-12)).all()


# Methods with MILP responses (about 100 s a seed here): tested on their own cases.
SLOW_METHODS = ("best-response-milp", "best-response-contention", "milp-head")


@pytest.mark.parametrize("seed", range(8))
def test_joint_methods_never_worse_than_the_better_baseline_and_above_the_milp_bound(seed):
    multi = random_multi(seed)
    results = {m: solve(multi, m, **({"time_limit": 20.0} if m == "milp" else {}))
               for m in METHODS if m not in SLOW_METHODS}  # those: test_best_response_*, test_multi_contention.py
    baselines = [results[m].objective for m in ("sequential", "disjoint") if results[m].status == "feasible"]
    best_baseline = min(baselines)
    for method in ("pipeline-dp", "local-search", "milp", "best-response"):
        assert results[method].status in ("feasible", "optimal")
        assert results[method].objective <= best_baseline * (1 + 1e-12)
    bound = results["milp"].bound
    if results["milp"].stats["milp_status"] == "infeasible":  # proven: no concurrent layer plan fits
        bound = np.inf
    assert bound is not None and bound > 0
    # The bound holds for every concurrent layer plan any method returns, and for random feasible layer plans
    # (not for head-level plans: the joint MILP places whole layers).
    for result in results.values():
        if result.plan is not None and result.plan.schedule == "concurrent" and result.report.feasible \
                and all(_is_layer_plan(i, p) for i, p in zip(multi.instances, result.plan.plans)):
            assert bound <= result.objective * (1 + 1e-7)
    rng = np.random.default_rng(seed)
    tables = model_tables(multi)
    for _ in range(30):
        report = evaluate_joint(multi, _random_joint(multi, rng), tables)
        if report.feasible:  # an infinite bound (MILP infeasible) fails here if a feasible plan exists
            assert bound <= report.objective(multi.objective) * (1 + 1e-7)
        assert report.lower_bound_s <= report.makespan_s * (1 + 1e-12)


def test_milp_proves_the_ppn_split_optimal():
    result = solve(load_multi("ppn-2x2"), "milp", time_limit=20.0)
    assert result.status == "optimal"
    assert result.gap == pytest.approx(0.0, abs=1e-9)


def test_unknown_joint_method_and_option():
    multi = load_multi("ppn-2x2")
    with pytest.raises(InputError, match="unknown joint method 'myopic'; methods: sequential"):
        solve(multi, "myopic")
    with pytest.raises(InputError, match="takes no option 'time_limit'"):
        solve(multi, "disjoint", time_limit=3)


# ----------------------------------------------------------------------------- files and the CLI
BASE = {"devices": [{"name": "a", "preset": "raspberry-pi-5"}, {"name": "b", "preset": "raspberry-pi-5"}],
        "mesh": {"bandwidth": "1 Gbit/s", "latency": "1 ms"}}
ONE = {"model": "llama-3.2-1b", "workload": {"prompt_tokens": 8, "generate_tokens": 8}}


@pytest.mark.parametrize("data, message", [
    ({**BASE, "models": [{**ONE, "colour": "red"}]}, r"`models\[0\]\.colour`: unknown field"),
    ({**BASE, "models": []}, r"`models`: List should have at least 1 item"),
    ({"models": [ONE]}, r"`devices`: required field is missing"),
    ({**BASE, "models": [{**ONE, "weight": -1}]}, r"`models\[0\]\.weight` must be a positive number"),
    ({**BASE, "models": [{**ONE, "name": "x"}, {**ONE, "name": "x"}]}, r"`models\[\]\.name` 'x' is given twice"),
    ({**BASE, "models": [ONE, {**ONE, "workload": {"prompt_tokens": 0, "generate_tokens": 8}}]},
     r"models\[1\].*`workload\.prompt_tokens` must be at least 1"),
    ({**BASE, "model": "llama-3.2-1b", "models": [ONE]}, r"`model` and `models` are both given"),
    ({**BASE, "objective": "fastest", "models": [ONE]}, r"`objective`: Input should be 'makespan' or 'weighted'"),
])
def test_bad_multi_files(data, message):
    with pytest.raises(InputError, match=message):
        multi_from_dict(data)


def test_cli_bad_multi_file_and_single_solve_on_a_multi_file(tmp_path):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "models": [{**ONE, "weight": 0}]}))
    assert "`models[0].weight` must be a positive number" in error_line(run_main("multi-solve", str(path)))
    line = error_line(run_main("solve", "parallel/ppn-2x2"))
    assert "a multi-model file (`models:`)" in line and "placement multi-solve" in line


def test_cli_multi_solve_json_is_one_document():
    import json

    proc = run_main("multi-solve", "ppn-2x2", "--method", "disjoint", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["plan"]["schedule"] == "concurrent" and set(data["plan"]["plans"]) == {"net-a", "net-b"}
    assert data["report"]["makespan_s"] == pytest.approx(solve_pipeline_dp(load_multi("ppn-2x2").instances[0]).objective)


def test_parallel_table_rows(tmp_path):
    from placement.experiments.parallel_table import reproduce_parallel_table

    result = reproduce_parallel_table(quick=True, out_dir=tmp_path, cases=("ppn-2x2",))
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == set(METHODS)
    assert rows["sequential"]["makespan_s"] == pytest.approx(2 * rows["disjoint"]["makespan_s"], rel=1e-12)
    assert all(row["speedup"] == pytest.approx(2.0, rel=1e-12) for m, row in rows.items() if m != "sequential")
    assert "| ppn-2x2 |" in (tmp_path / "parallel-table.md").read_text()


def test_the_shipped_short_long_case_is_won_by_the_joint_myopic_plus(tmp_path):
    # The shipped multi-interval case: re-partitioning once the short job is done beats every static joint plan.
    from placement.experiments.parallel_table import CASES, reproduce_parallel_table

    assert "short-long-2dev" in CASES
    rows = {r["method"]: r for r in reproduce_parallel_table(quick=True, out_dir=tmp_path, cases=("short-long-2dev",))["rows"]}
    static = min(r["objective_s"] for m, r in rows.items() if m != "myopic+")
    assert rows["myopic+"]["objective_s"] < static * (1 - 0.05)
    assert rows["myopic+"]["makespan_s"] >= rows["myopic+"]["lower_bound_s"] * (1 - 1e-12)


def test_the_docs_example_runs_as_written(capsys):
    text = (Path(__file__).resolve().parent.parent / "docs" / "parallel.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "docs/parallel.md", "exec"), {})  # noqa: S102 - the page's own example
    assert capsys.readouterr().out == "2.000\n"


@pytest.mark.parametrize("seed", range(4))
def test_sequential_weighted_order_is_the_best_permutation(seed):
    """Smith's rule (time over weight, ascending) against every order, by brute force."""
    import itertools

    multi = random_multi(seed)
    multi = type(multi)(multi.name, multi.instances, multi.names, multi.weights, "weighted")
    result = solve(multi, "sequential")
    every = [evaluate_joint(multi, JointPlan(result.plan.plans, "sequential", order)).weighted_s
             for order in itertools.permutations(range(multi.n_models))]
    assert result.objective == pytest.approx(min(every), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_disjoint_enumeration_beats_the_greedy_split_on_switched_networks(seed):
    """On a switched network disjoint models never wait for each other, so the enumeration's choice is exact."""
    multi = random_multi(seed)
    if multi.cluster.network != "switched":
        pytest.skip("shared medium: the split is chosen by the models' times alone")
    exact, greedy = solve(multi, "disjoint"), solve(multi, "disjoint", max_exact_devices=1)
    if greedy.status == "feasible":
        assert exact.status == "feasible"
        assert exact.objective <= greedy.objective * (1 + 1e-12)
        assert exact.report.finish_s == pytest.approx(exact.report.alone_s, rel=1e-12)


def test_joint_plan_round_trips_through_json_and_multi_evaluate(tmp_path):
    import json

    multi = load_multi("1b-3b-4dev")
    result = solve(multi, "sequential")
    path = tmp_path / "joint.json"
    path.write_text(json.dumps(result.plan.to_dict(multi.names)))
    again = evaluate_joint(multi, JointPlan.from_dict(json.loads(path.read_text()), multi))
    assert again.schedule == "sequential" and again.makespan_s == result.objective
    proc = run_main("multi-evaluate", "1b-3b-4dev", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["makespan_s"] == pytest.approx(result.objective, rel=1e-12)
    assert "`plans` must give one plan for each of net-a, net-b" in error_line(run_main("multi-evaluate", "ppn-2x2", str(path)))


# ----------------------------------------------------------------------------- every plan kind (issue 19, part 2)
MOE_MODEL = {"name": "tiny-moe", "layers": 3, "hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn_hidden": 128,
             "gated_ffn": True, "vocab": 256, "tied_embeddings": False, "experts": 4, "experts_per_token": 2,
             "expert_ffn_hidden": 32, "dense_layers": 1}


def random_single(seed: int, moe: bool = False, models: int = 1):
    """Tiny models (dense or MoE) on 3–4 devices, each with several re-decision intervals, switched or shared."""
    return multi_from_dict(random_single_data(seed, moe, models), source=f"single-{seed}")


def random_single_data(seed: int, moe: bool = False, models: int = 1) -> dict:
    """The multi-model file `random_single` loads."""
    rng = np.random.default_rng(seed)
    entries = []
    for _ in range(models):
        model = MOE_MODEL if moe else _tiny_model("tiny", int(rng.integers(2, 5)), int(rng.choice([64, 128])),
                                                  bool(rng.integers(2)))
        generate = int(rng.integers(4, 12))
        entries.append({"model": model, "workload": {"prompt_tokens": int(rng.integers(2, 9)), "generate_tokens": generate,
                                                     "interval": int(rng.integers(2, generate // 2 + 2))}})
    devices = [{"name": f"d{n}", "memory": "64 MiB", "peak_flops": f"{rng.uniform(0.5, 4):.2f} GFLOPS",
                "memory_bandwidth": f"{rng.uniform(0.4, 3):.2f} GB/s"} for n in range(int(rng.integers(3, 5)))]
    data = {"models": entries, "devices": devices, "network": str(rng.choice(["switched", "shared"])),
            "mesh": {"bandwidth": f"{int(rng.integers(50, 500))} Mbit/s", "latency": "0.2 ms"}}
    return data


def random_any_plan(inst, rng) -> Plan:
    """Every interval its own placement: groups anywhere, projections whole or split by the heads, FFNs whole or split
    over two devices, placed experts (MoE), precision overrides, a random collective."""
    L, K, N = inst.model.layers, inst.model.kv_heads, inst.n_devices
    eye, moe = np.eye(N), inst.model.is_moe
    intervals = []
    for _ in range(rng.choice([1, inst.workload.n_intervals])):
        att = rng.integers(0, N, (L, K))
        counts = np.stack([np.bincount(row, minlength=N) for row in att]) / K
        proj = np.where(rng.random((L, 1)) < 0.4, counts, eye[rng.integers(0, N, L)])
        ffn = eye[rng.integers(0, N, L)]
        experts = None
        if moe and rng.random() < 0.7:  # experts placed anywhere; their layer's FFN stays whole
            experts = np.where(inst.model.moe_layers[:, None], rng.integers(0, N, (L, inst.model.experts)), -1)
        else:
            for l in np.flatnonzero(rng.random(L) < 0.4):
                a, b = rng.choice(N, 2, replace=False)
                ffn[l] = 0.0
                ffn[l, a], ffn[l, b] = 0.25, 0.75
        precision = {"ffn": 8, "attention": 8} if rng.random() < 0.3 else None
        intervals.append(Placement(att, proj, ffn, int(rng.integers(N)), int(rng.integers(N)), precision, experts))
    return Plan(devices=inst.cluster.names, intervals=intervals, collective=str(rng.choice(["ring", "star", "gather"])))


@pytest.mark.parametrize("seed", range(16))
def test_any_plan_alone_takes_its_evaluate_total_and_peak(seed):
    # Several intervals (migration between them), split projections and FFNs, placed experts: one model alone in the
    # joint evaluator is the single-model evaluator, time to 1e-12 and memory (its peak over the intervals).
    multi = random_single(seed, moe=seed % 4 == 3)
    inst, rng = multi.instances[0], np.random.default_rng(seed)
    for _ in range(3):
        plan = random_any_plan(inst, rng)
        single = evaluate(inst, plan)
        assert simulate_dags([model_dags(inst, plan)], inst.n_devices)[0] == pytest.approx(single.total_s, rel=1e-12)
        report = evaluate_joint(multi, JointPlan((plan,)))
        assert report.makespan_s == pytest.approx(single.total_s, rel=1e-12)
        np.testing.assert_allclose(report.needed_bytes[0], single.peak_memory_bytes.max(axis=0), rtol=1e-12)


def test_the_random_plans_cover_every_kind():
    # The invariant above is only as good as its plans: they hold every feature at least once.
    seen = set()
    for seed in range(16):
        multi = random_single(seed, moe=seed % 4 == 3)
        inst, rng = multi.instances[0], np.random.default_rng(seed)
        for _ in range(3):
            plan = random_any_plan(inst, rng)
            seen |= {"intervals"} if len(plan.intervals) > 1 else set()
            seen |= {"migration"} if evaluate(inst, plan).migration_s.sum() > 0 else set()
            for p in plan.intervals:
                seen |= {"split projection"} if ((p.projection > 0).sum(axis=1) > 1).any() else set()
                seen |= {"split ffn"} if ((p.ffn > 0).sum(axis=1) > 1).any() else set()
                seen |= {"experts"} if p.experts is not None else set()
                seen |= {"precision"} if p.precision else set()
            seen.add(inst.cluster.network)
    assert seen == {"intervals", "migration", "split projection", "split ffn", "experts", "precision", "switched", "shared"}


def test_switched_links_carry_one_model_at_a_time_by_hand():
    # A: d0 1 s → a 2 s send on directed link 0 → d1 1 s.  B: d2 1 s → a 2 s send on link 0 → d3 1 s.
    a = Dag(np.array([0, NONE, 1]), ((), (0,), (1,)), np.array([[1.0, 2.0, 1.0]]), ((), (0,), ()))
    b = Dag(np.array([2, NONE, 3]), ((), (0,), (1,)), np.array([[1.0, 2.0, 1.0]]), ((), (0,), ()))
    # Both sends are ready at t=1; A is listed first: A's send 1–3, B's 3–5, B's last task 5–6.
    assert simulate_dags([a, b], 4).tolist() == [4.0, 6.0]
    assert simulate_dags([b, a], 4).tolist() == [4.0, 6.0]  # B listed first: B ends at 4, A at 6
    # The other direction of the same link (id 1) does not collide.
    b_back = Dag(b.resource, b.preds, b.duration_s, ((), (1,), ()))
    assert simulate_dags([a, b_back], 4).tolist() == [4.0, 4.0]
    # A model's own sends share a link (as in the single-model evaluator): two parallel 2 s sends on link 0, a join.
    c = Dag(np.array([0, NONE, NONE, 0]), ((), (0,), (0,), (1, 2)), np.array([[1.0, 2.0, 2.0, 1.0]]), ((), (0,), (0,), ()))
    assert simulate_dags([c], 1).tolist() == [4.0]
    # ... but another model's send waits for both: B's send starts at 3.
    assert simulate_dags([c, b], 4).tolist() == [4.0, 6.0]


def _star(links: str) -> dict:
    devices = [{"name": f"d{n}", "memory": "64 MiB", "peak_flops": "2 GFLOPS", "memory_bandwidth": "2 GB/s"} for n in range(3)]
    if links == "star":  # every device on one switch: d0 → d2 and d1 → d2 both cross s → d2
        return {"devices": devices, "switches": ["s"],
                "links": [{"between": [f"d{n}", "s"], "bandwidth": "100 Mbit/s", "latency": "0.1 ms"} for n in range(3)]}
    return {"devices": devices, "mesh": {"bandwidth": "100 Mbit/s", "latency": "0.2 ms"}}  # the same route times, own links


def test_two_models_sending_into_one_device_collide_on_its_switch_link():
    model = _tiny_model("tiny", 2, 128, False)
    entries = [{"name": n, "model": model, "workload": {"prompt_tokens": 4, "generate_tokens": 6}} for n in ("a", "b")]
    star, mesh = (multi_from_dict({"models": entries, **_star(kind)}, source=kind) for kind in ("star", "mesh"))
    cluster = star.cluster
    # d0 → d2 crosses d0–s from its d0 end (id 0) and s–d2 from its s end (d2–s is link 2, crossed v → u: id 5).
    from placement.multi.chains import directed_links
    assert directed_links(cluster, 0, 2, 0) == (0, 5) and directed_links(cluster, 1, 2, 0) == (2, 5)
    assert directed_links(cluster, 2, 0, 0) == (4, 1)
    np.testing.assert_allclose(cluster.route_time_s(np.array([1e4])), mesh.cluster.route_time_s(np.array([1e4])))
    # Model a runs on d0, b on d1, both send their last hidden state to lm_head on d2 (and the token back).
    plans = []
    for inst, home in zip(star.instances, (0, 1)):
        p = layer_plan(inst, np.full(inst.model.layers, home)).intervals[0]
        plans.append(Plan(devices=cluster.names, intervals=[Placement(p.attention, p.projection, p.ffn, home, 2)]))
    joint = JointPlan(tuple(plans))
    on_star, on_mesh = evaluate_joint(star, joint), evaluate_joint(mesh, joint)
    np.testing.assert_allclose(on_star.alone_s, on_mesh.alone_s, rtol=1e-12)  # alone: the link model changes nothing
    # On the mesh only d2 is shared; on the star the sends into d2 also queue for link s → d2.
    assert on_star.makespan_s > on_mesh.makespan_s * (1 + 1e-9)
    assert on_star.makespan_s <= sum(on_star.alone_s) * (1 + 1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_joint_plans_of_every_kind_between_their_bound_and_the_sequential_sum(seed):
    multi = random_single(seed + 50, moe=seed % 4 == 1, models=2)
    rng = np.random.default_rng(seed)
    plans = tuple(random_any_plan(inst, rng) for inst in multi.instances)
    report = evaluate_joint(multi, JointPlan(plans))
    singles = [evaluate(inst, p) for inst, p in zip(multi.instances, plans)]
    np.testing.assert_allclose(report.alone_s, [s.total_s for s in singles], rtol=1e-12)
    assert report.lower_bound_s <= report.makespan_s * (1 + 1e-12)
    assert report.makespan_s <= sum(report.alone_s) * (1 + 1e-12)  # work-conserving: never worse than one after another
    assert (report.finish_s >= report.alone_s * (1 - 1e-12)).all()  # sharing the cluster never speeds a model up


def _short_long():
    model = _tiny_model("tiny", 4, 512, False)
    return multi_from_dict({
        "models": [{"name": "short", "model": model, "workload": {"prompt_tokens": 8, "generate_tokens": 16}},
                   {"name": "long", "model": model, "workload": {"prompt_tokens": 8, "generate_tokens": 96, "interval": 16}}],
        "devices": [{"name": n, "memory": "64 MiB", "peak_flops": "2 GFLOPS", "memory_bandwidth": "2 GB/s"} for n in "ab"],
        "mesh": {"bandwidth": "10 Gbit/s", "latency": "5 us"}}, source="short-long")


def test_joint_myopic_plus_repartitions_once_the_short_model_is_done():
    # Two equal devices on a fast link; a short and a long job of one model. Alone, the long job is fastest with its
    # heads over both devices; while the short job runs, one device each is best. Only a plan that changes at an
    # interval boundary has both: the joint myopic+ finds it and beats every static joint plan.
    multi = _short_long()
    static = min(solve(multi, m).objective for m in ("sequential", "disjoint", "local-search", "best-response"))
    result = solve(multi, "myopic+")
    assert result.status == "feasible" and result.objective < static * (1 - 1e-3)
    long = result.plan.plans[1]
    assert len(long.intervals) == multi.instances[1].workload.n_intervals
    assert evaluate_joint(multi, result.plan).objective("makespan") == pytest.approx(result.objective, rel=1e-12)
    # the short model's finish is untouched by the long one's re-partitioning: it still ends first
    assert result.report.finish_s[0] < result.report.finish_s[1]


def test_a_long_head_level_model_alone_on_its_devices_does_not_recurse():
    # A model that no other model touches is all joins in the joint simulation; over 1500 steps that once recursed
    # past Python's limit. Alone on its devices it must still finish exactly at its single-model total.
    model = _tiny_model("tiny", 2, 64, False)
    multi = multi_from_dict({
        "network": "switched",
        "models": [{"name": "long", "model": model, "workload": {"prompt_tokens": 4, "generate_tokens": 1500}},
                   {"name": "short", "model": model, "workload": {"prompt_tokens": 4, "generate_tokens": 4}}],
        "devices": [{"name": n, "memory": "64 MiB", "peak_flops": "2 GFLOPS", "memory_bandwidth": "2 GB/s"} for n in "abc"],
        "mesh": {"bandwidth": "1 Gbit/s", "latency": "5 us"}}, source="long-alone")
    long, short = multi.instances
    eye = np.eye(3)
    split = Placement(np.array([[0, 1], [0, 1]]), eye[[0, 1]], eye[[1, 0]], 0, 1)  # groups over a and b every layer
    plans = (Plan(devices=long.cluster.names, intervals=[split]), layer_plan(short, np.full(2, 2)))
    report = evaluate_joint(multi, JointPlan(plans))
    assert report.finish_s[0] == pytest.approx(evaluate(long, plans[0]).total_s, rel=1e-12)
    assert report.finish_s[1] == pytest.approx(evaluate(short, plans[1]).total_s, rel=1e-12)


def test_joint_myopic_plus_time_limit():
    # With no time left no myopic+ solve starts: the plan is local-search's; with time enough it is the unlimited one.
    multi = _short_long()
    stopped = solve(multi, "myopic+", time_limit=0.0)
    assert stopped.stats["stopped"] == "time_limit" and stopped.stats["responses"] == 0
    assert stopped.objective == pytest.approx(solve(multi, "local-search").objective, rel=1e-12)
    free, roomy = solve(multi, "myopic+"), solve(multi, "myopic+", time_limit=3600.0)
    assert "stopped" not in roomy.stats and roomy.objective == pytest.approx(free.objective, rel=1e-12)
    assert roomy.objective < stopped.objective * (1 - 1e-3)


def test_cli_joint_myopic_plus_time_limit():
    import json

    proc = run_main("multi-solve", "ppn-2x2", "--method", "myopic+", "--time-limit", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stats"]["stopped"] == "time_limit"
    line = error_line(run_main("multi-solve", "ppn-2x2", "--method", "myopic+", "--time-limit", "-2"))
    assert "joint method 'myopic+': `time_limit` must be a number of seconds ≥ 0, got -2.0" in line


def test_cli_multi_evaluate_a_joint_plan_with_intervals_and_one_with_a_client(tmp_path):
    import json

    import yaml

    # A multi-interval joint plan with split blocks evaluates through the CLI exactly as through the API.
    data = random_single_data(7, models=2)
    multi = multi_from_dict(data, source="cli")
    rng = np.random.default_rng(7)
    joint = JointPlan(tuple(random_any_plan(inst, rng) for inst in multi.instances))
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "joint.json").write_text(json.dumps(joint.to_dict(multi.names)))
    proc = run_main("multi-evaluate", str(tmp_path / "multi.yaml"), str(tmp_path / "joint.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["makespan_s"] == pytest.approx(evaluate_joint(multi, joint).makespan_s, rel=1e-12)
    # A client: exit 2, one line naming the model.
    shipped = load_multi("ppn-2x2")
    inst = shipped.instances[1]
    plan = layer_plan(inst, np.zeros(inst.model.layers, dtype=int))
    bad = JointPlan((plan, plan.replace(client=inst.cluster.names[1])))
    (tmp_path / "bad.json").write_text(json.dumps(bad.to_dict(shipped.names)))
    line = error_line(run_main("multi-evaluate", "ppn-2x2", str(tmp_path / "bad.json")))
    assert "model 'net-b': a joint plan has no sliding `windows` and no `client`" in line
