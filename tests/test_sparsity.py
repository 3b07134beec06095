"""DeltaLLM's temporal attention sparsity (the `attention:` option): figures by hand, by enumeration, and end to end.

Llama-3.2-1B (D=2048, H=32, K=8, r=4, d=64, 16 bits): one attention group has
D*d*(r+2) = 786,432 parameters. At S=1000 with W=256, s=0.5 a decode query pays for
256 + 0.5*744 = 628 positions; the prefill of P=1000 has 256*257/2 + 744*256 = 223,360
pairs inside the window and (P-W)(P-W+1)/2 = 744*745/2 = 277,140 outside.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brute_force import brute_force  # noqa: E402
from cli_run import error_line, run_main  # noqa: E402

from placement import evaluate, solve  # noqa: E402
from placement.cost.blocks import attended_pairs, decode_costs, prefill_costs  # noqa: E402
from placement.cost.model import spec_from_mapping  # noqa: E402
from placement.cost.precision import Precision  # noqa: E402
from placement.cost.sparsity import DeltaSparsity  # noqa: E402
from placement.cost.tables import block_memory, prefill_step_costs, step_costs  # noqa: E402
from placement.errors import InputError  # noqa: E402
from placement.instance import instance_from_dict  # noqa: E402

BASE = {"model": "llama-3.2-1b", "devices": [{"name": "a", "preset": "jetson-orin-nx-16gb"}],
        "workload": {"prompt_tokens": 1000, "generate_tokens": 4}}
HALF = {"local_window": 256, "delta_sparsity": 0.5}


def llama(attention: dict | None = None, **workload):
    data = {**BASE, "workload": {**BASE["workload"], **workload}}
    return instance_from_dict(data if attention is None else {**data, "attention": attention})


def test_decode_block_by_hand() -> None:
    for inst, positions in ((llama(), 1000), (llama(HALF), 628)):
        c = step_costs(inst, inst.precision, np.array([1000]))
        # FLOPs 2*786,432 + 4*r*d*positions = 1,572,864 + 1,024*positions; bytes 786,432*2 + 2*d*positions*2
        assert c.group_flops[0, 0] == 1_572_864 + 1_024 * positions
        assert c.group_read[0, 0] == 1_572_864 + 256 * positions
    assert step_costs(llama(HALF), llama().precision, np.array([1000])).group_flops[0, 0] == 2_215_936


def test_prefill_block_by_hand() -> None:
    dense = prefill_step_costs(llama(), llama().precision)
    sparse = prefill_step_costs(llama(HALF), llama().precision)
    # linear 1000*1,572,864; attention 4*r*d*pairs = 1,024*pairs with pairs 500,500 or 223,360 + 0.5*277,140
    assert dense.group_flops[0, 0] == 1_572_864_000 + 1_024 * 500_500 == 2_085_376_000
    assert sparse.group_flops[0, 0] == 1_572_864_000 + 1_024 * 361_930 == 1_943_480_320
    # the prefill writes the whole cache (1000 positions * 256 B) with the weights: unchanged
    assert sparse.group_read[0, 0] == dense.group_read[0, 0] == 1_572_864 + 256_000


@pytest.mark.parametrize("P", [1, 2, 5, 9, 17])
def test_prefill_pairs_by_enumeration(P: int) -> None:
    # query i sees min(i, W_l) positions; the min(i, W_l, w) most recent are full, the rest cost 1 - s
    for W_l, w, s in itertools.product((1, 3, 6, np.inf), (0, 1, 2, 4, 30), (0.0, 0.3, 0.57)):
        expected = sum(min(i, W_l, w) + (1 - s) * (min(i, W_l) - min(i, W_l, w)) for i in range(1, P + 1))
        got = attended_pairs(P, np.array([W_l]), DeltaSparsity(w, s))[0]
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12), (P, W_l, w, s)


def test_sliding_layers_compose() -> None:
    # tiny model: layer 0 slides over 3 positions, layer 1 is full; group params 64, 4*r*d = 16, 16 bits
    model = spec_from_mapping({"name": "tiny", "layers": 2, "hidden": 8, "heads": 4, "kv_heads": 2, "ffn_hidden": 16,
                               "gated_ffn": True, "vocab": 10, "tied_embeddings": False, "layer_types": ["sliding", "full"], "sliding_window": 3})
    bits = Precision.uniform(2, 16, 16, 16)
    # W=2 at S=5: layer 0 sees 3 -> 2 + 0.5*1 = 2.5, layer 1 sees 5 -> 2 + 0.5*3 = 3.5: FLOPs 128 + 16*positions
    c = decode_costs(model, 1, bits, np.array([5]), DeltaSparsity(2, 0.5))
    np.testing.assert_array_equal(c.group_flops, [[168, 184]])
    # W=4 is wider than the sliding window: nothing of layer 0 is outside (176, as dense); layer 1 4 + 0.5 = 4.5
    c = decode_costs(model, 1, bits, np.array([5]), DeltaSparsity(4, 0.5))
    np.testing.assert_array_equal(c.group_flops, [[176, 200]])
    # prefill P=5, W=4: layer 0 pairs sum min(i, 3) = 12, all inside; layer 1 inside 4*5/2 + 4 = 14, outside 1
    p = prefill_costs(model, 1, bits, 5, DeltaSparsity(4, 0.5))
    np.testing.assert_array_equal(p.group_flops, [[640 + 16 * 12, 640 + 16 * 14.5]])


def _figures(report) -> tuple:
    return report.ttft_s, report.total_s, tuple(report.decode_s)


@pytest.mark.parametrize("attention", [{"local_window": 256, "delta_sparsity": 0.0},
                                       {"local_window": 1004, "delta_sparsity": 0.6}, {"local_window": 5000,
                                                                                       "delta_sparsity": 0.9}])
def test_no_op_options_equal_dense_exactly(attention: dict) -> None:
    # s = 0, or a window that covers the largest context (1000 + 4), changes no figure at all
    dense, sparse = llama(), llama(attention)
    plan = solve(dense, method="single").plan
    assert _figures(evaluate(sparse, plan)) == _figures(evaluate(dense, plan))
    contexts = dense.workload.contexts()
    for a, b in ((step_costs(dense, dense.precision, contexts), step_costs(sparse, dense.precision, contexts)),
                 (prefill_step_costs(dense, dense.precision), prefill_step_costs(sparse, dense.precision))):
        np.testing.assert_array_equal(a.group_flops, b.group_flops)
        np.testing.assert_array_equal(a.group_read, b.group_read)


def test_stages_are_honoured() -> None:
    dense, contexts = llama(), llama().workload.contexts()
    costs = {stage: (step_costs(i, i.precision, contexts).group_flops, prefill_step_costs(i, i.precision).group_flops)
             for stage in ("both", "prefill", "decode") for i in [llama({**HALF, "stages": stage})]}
    d_dense, p_dense = step_costs(dense, dense.precision, contexts).group_flops, prefill_step_costs(dense, dense.precision).group_flops
    np.testing.assert_array_equal(costs["prefill"][0], d_dense)
    np.testing.assert_array_equal(costs["decode"][1], p_dense)
    np.testing.assert_array_equal(costs["prefill"][1], costs["both"][1])
    np.testing.assert_array_equal(costs["decode"][0], costs["both"][0])
    assert (costs["both"][0] < d_dense).all() and (costs["both"][1] < p_dense).all()
    plan = solve(dense, method="single").plan
    d_only, p_only = evaluate(llama({**HALF, "stages": "decode"}), plan), evaluate(llama({**HALF, "stages": "prefill"}), plan)
    base = evaluate(dense, plan)
    assert d_only.ttft_s == base.ttft_s and p_only.ttft_s < base.ttft_s
    assert (d_only.decode_s < base.decode_s).all()
    np.testing.assert_array_equal(p_only.decode_s, base.decode_s)


def test_resident_memory_is_unchanged() -> None:
    dense, sparse = llama(), llama({**HALF, "delta_sparsity": 0.9})
    ends = dense.workload.interval_max_context()
    np.testing.assert_array_equal(block_memory(dense, dense.precision, ends).total,
                                  block_memory(sparse, dense.precision, ends).total)


def _tiny(attention: dict | None) -> dict:
    data = {
        "model": {"name": "tiny", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16,
                  "ffn_hidden": 128, "vocab": 128, "gated_ffn": True, "tied_embeddings": False},
        "devices": [{"name": "A", "memory": "150 KiB", "peak_flops": "0.02 GFLOPS", "memory_bandwidth": "2 GB/s"},
                    {"name": "B", "memory": "150 KiB", "peak_flops": "0.04 GFLOPS", "memory_bandwidth": "1 GB/s"}],
        "links": [{"between": ["A", "B"], "bandwidth": "1 Gbit/s", "latency": "0.2 ms"}],
        "workload": {"prompt_tokens": 40, "generate_tokens": 6}}
    return data if attention is None else {**data, "attention": attention}


@pytest.mark.parametrize("method", ["milp", "pipeline-dp", "myopic+"])
def test_back_ends_see_it_through_the_tables(method: str) -> None:
    # each back end's own objective is the evaluator's figure under sparsity; the MILP reaches the enumerated optimum
    inst = instance_from_dict(_tiny({"local_window": 8, "delta_sparsity": 0.6}), check_capacity=False)
    result = solve(inst, method=method)
    report = evaluate(inst, result.plan)
    if result.backend_objective is not None:
        assert result.backend_objective == pytest.approx(report.total_s, rel=1e-6)
    optimum = brute_force(inst).total_s
    assert report.total_s >= optimum * (1 - 1e-9)
    if method == "milp":
        assert result.status == "optimal" and report.total_s == pytest.approx(optimum, rel=1e-6)
        assert result.bound <= optimum * (1 + 1e-9)
        dense = instance_from_dict(_tiny(None), check_capacity=False)
        assert optimum < brute_force(dense).total_s  # the option changed what was optimised


def test_sparsity_lowers_every_figure_monotonically() -> None:
    plan = solve(llama(), method="single").plan
    reports = [evaluate(llama({**HALF, "delta_sparsity": s}), plan) for s in (0.0, 0.3, 0.57, 0.6)]
    for a, b in itertools.pairwise(reports):
        assert b.ttft_s < a.ttft_s and (b.decode_s <= a.decode_s).all()


@pytest.mark.parametrize("attention, match", [
    ({"local_window": -1, "delta_sparsity": 0.5}, r"`attention.local_window`: Input should be greater than or equal to 0"),
    ({"local_window": 2.5, "delta_sparsity": 0.5}, r"`attention.local_window`: Input should be a valid integer"),
    ({"local_window": 256, "delta_sparsity": 1.0}, r"`attention.delta_sparsity`: Input should be less than 1"),
    ({"local_window": 256, "delta_sparsity": -0.1}, r"`attention.delta_sparsity`: Input should be greater than or equal"),
    ({"local_window": 256, "delta_sparsity": 0.5, "stages": "all"}, r"`attention.stages`: Input should be 'both'"),
    ({"delta_sparsity": 0.5}, r"`attention.local_window`: required field is missing"),
    ({"local_window": 256, "delta_sparsity": 0.5, "window": 3}, r"`attention.window`: unknown field"),
])
def test_bad_values_name_the_field(attention: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        llama(attention)


def test_programmatic_values_are_checked_too() -> None:
    with pytest.raises(InputError, match=r"`attention.delta_sparsity` must be a number in \[0, 1\)"):
        DeltaSparsity(256, 1.5)
    with pytest.raises(InputError, match=r"`attention.local_window` must be a whole number"):
        DeltaSparsity(True, 0.5)
    with pytest.raises(InputError, match=r"`attention.stages` must be one of both, prefill, decode"):
        DeltaSparsity(256, 0.5, "never")


def test_kafetzis_profile_is_refused() -> None:
    with pytest.raises(InputError, match=r"`attention`: delta sparsity scales the roofline profile.*kafetzis2025"):
        llama(HALF, profile="kafetzis2025")
    sparse = llama(HALF)  # built by hand past the loader: the tables refuse it too
    by_hand = dataclasses.replace(sparse, workload=dataclasses.replace(sparse.workload, profile="kafetzis2025"))
    with pytest.raises(InputError, match="kafetzis2025"):
        step_costs(by_hand, by_hand.precision, np.array([1000]))


def test_cli_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "attention": {"local_window": 256, "delta_sparsity": 1.2}}))
    line = error_line(run_main("solve", str(path), "--method", "single"))
    assert "`attention.delta_sparsity`: Input should be less than 1 (got 1.2)" in line


def test_option_round_trips_through_yaml() -> None:
    inst = llama({**HALF, "stages": "decode"})
    again = instance_from_dict(yaml.safe_load(inst.to_yaml()))
    assert again.attention == inst.attention == DeltaSparsity(256, 0.5, "decode")
    assert json.loads(json.dumps(yaml.safe_load(inst.to_yaml())["attention"])) == {**HALF, "stages": "decode"}


def test_table_quick_json_shape_and_monotonicity(tmp_path: Path) -> None:
    proc = run_main("reproduce", "sparsity-table", "--quick", "--json", "--models", "bitnet-b1.58-2b-4t",
                    "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert [(r["model"], r["context"], r["sparsity"]) for r in rows] == [
        ("bitnet-b1.58-2b-4t", P, s) for P in (512, 8192) for s in (0.0, 0.3, 0.57, 0.6)]
    for r in rows:
        assert r["method"] in ("milp", "pipeline-dp") and r["ttft_s"] > 0 and r["mean_token_ms"] > 0
    for P in (512, 8192):
        mine = [r for r in rows if r["context"] == P]
        # the MILP starts from the previous s's best plan, which sparsity only makes faster
        assert all(b["total_s"] <= a["total_s"] * (1 + 1e-9) for a, b in itertools.pairwise(mine))
        # the dense optimum run with sparsity: every figure falls with s, as the cost model removes work
        assert all(b["dense_plan_total_s"] <= a["dense_plan_total_s"] for a, b in itertools.pairwise(mine))
    long = [r for r in rows if r["context"] == 8192]
    assert long[-1]["total_s"] < 0.9 * long[0]["total_s"]  # at 8k the attention is a large share of the work
    assert (tmp_path / "sparsity-table.md").is_file() and (tmp_path / "sparsity-table.csv").is_file()
