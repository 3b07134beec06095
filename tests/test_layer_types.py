"""Layers of different types: sliding windows, MLA and MoE layers, worked by hand and through every back end.

Tiny model (as tests/test_cost_formulas.py): L=2, D=8, H=4, K=2 (r=2), d=2, F=16, gated,
V=10, 16-bit everything (2 bytes per element); group params D*d*(r+2) = 64. Layer 0
slides over a window W=3, layer 1 attends to everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brute_force import brute_force  # noqa: E402

from placement import METHODS, evaluate, solve  # noqa: E402
from placement.cost.blocks import causal_pairs, decode_costs, prefill_costs, roofline_block_memory  # noqa: E402
from placement.cost.model import compact_layer_types, expand_layer_types, spec_from_mapping  # noqa: E402
from placement.cost.precision import Precision  # noqa: E402
from placement.errors import InputError  # noqa: E402
from placement.instance import instance_from_dict  # noqa: E402

TINY = {"name": "tiny", "layers": 2, "hidden": 8, "heads": 4, "kv_heads": 2, "ffn_hidden": 16,
        "gated_ffn": True, "vocab": 10, "tied_embeddings": False}
WINDOWED = TINY | {"layer_types": ["sliding", "full"], "sliding_window": 3}
# MLA: H=2, q/k head dim 6 (nope 4 + rope 2), latent rank 4, value head 3, full-rank query
MLA = TINY | {"heads": 2, "kv_heads": 1, "head_dim": 6, "attention": "mla", "kv_lora_rank": 4,
              "qk_rope_head_dim": 2, "v_head_dim": 3}
# MoE from layer 1: 4 experts of width 8, top-2; expert params 3*8*8 = 192, router 8*4 = 32
MOE = TINY | {"experts": 4, "experts_per_token": 2, "expert_ffn_hidden": 8, "dense_layers": 1}


def bits16(layers: int = 2) -> Precision:
    return Precision.uniform(layers, 16, 16, 16)


def test_window_caps_decode_attention_and_cache() -> None:
    c = decode_costs(spec_from_mapping(WINDOWED), 1, bits16(), np.array([2, 5]))
    # FLOPs 2*64 + 4*r*d*min(S, W) = 128 + 16*min(S, W): S=2 -> 160, 160; S=5 -> 128+16*3 = 176, 128+16*5 = 208
    np.testing.assert_allclose(c.group_flops, [[160, 160], [176, 208]])
    # read 64*2 + 2*d*min(S, W)*2 = 128 + 8*min(S, W): S=5 -> 152, 168
    np.testing.assert_allclose(c.group_read[1], [152, 168])
    m = roofline_block_memory(spec_from_mapping(WINDOWED), 1, bits16(), np.array([5]))
    np.testing.assert_allclose(m.group_kv, [[24, 40]])  # 8*3, 8*5


def test_causal_window_pairs_by_enumeration() -> None:
    for P in (1, 2, 3, 7, 20):
        for W in (1, 3, 5, np.inf):
            assert causal_pairs(P, np.array([W]))[0] == sum(min(i, W) for i in range(1, P + 1))


def test_window_prefill() -> None:
    c = prefill_costs(spec_from_mapping(WINDOWED), 1, bits16(), 5)
    # pairs: layer 0 sum min(i, 3) over i=1..5 = 12, layer 1 P(P+1)/2 = 15
    # FLOPs P*2*64 + 4*r*d*pairs = 640 + 16*pairs -> 832, 880; cache written min(P, W)*8 bytes -> 24, 40
    np.testing.assert_allclose(c.group_flops, [[832, 880]])
    np.testing.assert_allclose(c.group_read, [[152, 168]])


def test_mla_costs() -> None:
    m = spec_from_mapping(MLA)
    # query 8*2*6 = 96, down 8*(4+2) = 48, up 4*2*(4+3) = 56 -> 200; projection H*v*D = 2*3*8 = 48
    assert (m.group_params, m.projection_params) == (200, 48)
    # cache: kv_lora_rank + rope = 6 values per layer per token: 2 layers * 6 * 2 bytes
    assert m.kv_bytes_per_token() == 24
    c = decode_costs(m, 1, Precision.uniform(2, 16, 16, 16), np.array([5]))
    # absorbed decode: 2*200 + 2H*(2*kv_lora + rope)*S = 400 + 40*5 = 600; read 400 + 6*2*5 = 460
    np.testing.assert_allclose(c.group_flops, [[600, 600]])
    np.testing.assert_allclose(c.group_read, [[460, 460]])
    assert float(c.group_out_bytes) == 12  # r*v*2 = 2*3*2
    p = prefill_costs(m, 1, Precision.uniform(2, 16, 16, 16), 3)
    # decompressed prefill: 3*2*200 + 2H*(d + v)*pairs = 1200 + 36*6 = 1416
    np.testing.assert_allclose(p.group_flops, [[1416, 1416]])


def test_moe_ffn_costs() -> None:
    m = spec_from_mapping(MOE)
    # dense layer 0: 3*8*16 = 384; MoE layer 1: router 32 + 4 experts * 192 = 800 resident, 32 + 2*192 = 416 active
    assert m.ffn_params_per_layer.tolist() == [384, 800]
    assert m.ffn_active_params_per_layer.tolist() == [384, 416]
    c1 = decode_costs(m, 1, bits16(), np.array([4]))
    np.testing.assert_allclose(c1.ffn_flops, [[768, 832]])
    np.testing.assert_allclose(c1.ffn_read, [[768, 832]])
    # two tokens: an expert is missed by both with probability (1 - 2/4)^2, so 4*(1 - 1/4) = 3 experts are read
    c2 = decode_costs(m, 2, bits16(), np.array([4]))
    np.testing.assert_allclose(c2.ffn_read[0, 1], (32 + 3 * 192) * 2)
    # prefill of 3 tokens: 4*(1 - 1/8) = 3.5 experts read
    np.testing.assert_allclose(prefill_costs(m, 1, bits16(), 3).ffn_read[0, 1], (32 + 3.5 * 192) * 2)
    assert roofline_block_memory(m, 1, bits16(), np.array([4])).ffn.tolist() == [[768, 1600]]


def test_layer_types_file_forms() -> None:
    gemma3 = (["sliding"] * 5 + ["full"]) * 5 + ["sliding"] * 4
    compact = compact_layer_types(gemma3)
    assert compact == [{"repeat": 5, "layers": [{"repeat": 5, "layers": ["sliding"]}, "full"]},
                       {"repeat": 4, "layers": ["sliding"]}]
    assert expand_layer_types(compact) == tuple(gemma3)
    assert spec_from_mapping(TINY | {"layer_types": [{"repeat": 2, "layers": ["full"]}]}).layer_types == ("full", "full")


def test_layer_type_errors() -> None:
    with pytest.raises(InputError, match=r"`layer_types` has 3 entries, `layers` is 2"):
        spec_from_mapping(TINY | {"layer_types": ["full"] * 3})
    with pytest.raises(InputError, match=r"unknown layer type\(s\) 'local'"):
        spec_from_mapping(TINY | {"layer_types": ["local", "full"]})
    with pytest.raises(InputError, match=r"sliding layers, so `sliding_window` must be a positive"):
        spec_from_mapping(TINY | {"layer_types": ["sliding", "full"]})
    with pytest.raises(InputError, match=r"an MLA model has `kv_heads: 1`"):
        spec_from_mapping(MLA | {"kv_heads": 2})
    with pytest.raises(InputError, match=r"`experts_per_token` must be in 1..experts \(4\)"):
        spec_from_mapping(MOE | {"experts_per_token": 5})


def _mixed_instance(model: dict):
    return instance_from_dict({
        "name": "mixed", "model": {**model, "hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16, "ffn_hidden": 128,
                                   "vocab": 128, **({"expert_ffn_hidden": 64} if "experts" in model else {})},
        "devices": [{"name": "A", "memory": "150 KiB", "peak_flops": "2 GFLOPS", "memory_bandwidth": "2 GB/s"},
                    {"name": "B", "memory": "150 KiB", "peak_flops": "4 GFLOPS", "memory_bandwidth": "1 GB/s"}],
        "links": [{"between": ["A", "B"], "bandwidth": "1 Gbit/s", "latency": "0.2 ms"}],
        "workload": {"prompt_tokens": 6, "generate_tokens": 6, "interval": 3}}, check_capacity=False)


MIXED = {"windowed": WINDOWED, "moe": MOE | {"layer_types": ["sliding", "full"], "sliding_window": 3}}
ONE_LAYER_ALIKE = ("split", "split-adaptive")  # refuse models whose layers differ
NEEDS_SECTION = ("ota", "serving")  # need a wireless / serving section


@pytest.mark.parametrize("name", list(MIXED))
def test_back_ends_on_mixed_layers(name: str) -> None:
    inst = _mixed_instance(MIXED[name])
    optimum = brute_force(inst).total_s
    for method in METHODS:
        result = solve(inst, method=method)
        if method in ONE_LAYER_ALIKE:
            assert result.status == "error" and "layers of different types" in result.message
            continue
        if method in NEEDS_SECTION:
            continue
        assert result.plan is not None, (method, result.message)
        report = evaluate(inst, result.plan)
        assert report.total_s >= optimum * (1 - 1e-9) or not report.feasible, method
        if result.backend_objective is not None:
            assert result.backend_objective == pytest.approx(report.total_s, rel=1e-6), method
        if method == "milp":
            assert result.status == "optimal" and report.total_s == pytest.approx(optimum, rel=1e-6)


def test_windowed_rows_differ_for_layer_classes() -> None:
    # a MILP grouping identical layers by their table rows must see the two types apart once S > W
    inst = _mixed_instance(WINDOWED)
    from placement.cost.tables import block_memory, phase_tables, step_costs
    t = phase_tables(inst, step_costs(inst, inst.precision, np.array([7])))
    assert not np.allclose(t.group_s[:, 0], t.group_s[:, 1])
    m = block_memory(inst, inst.precision, np.array([7]))
    assert m.group_kv[0, 0] < m.group_kv[0, 1]


# --- placed experts -------------------------------------------------------------------

def test_expert_stage_by_hand() -> None:
    from placement.cost.routing import expected_expert_stage
    # E=4, k=2, two experts on each of 2 devices, router on device 0; one expert takes 1 s on 0, 2 s on 1;
    # the hidden state takes 0.5 s each way. Outcomes (x0, x1): (2,0) p=1/6, (1,1) p=4/6, (0,2) p=1/6.
    # switched: max(x0*1, 0.5 + 2*x1 + 0.5) -> 2, 3, 5: (2 + 12 + 5)/6 = 19/6; compute part (2 + 8 + 4)/6
    stage = expected_expert_stage(np.array([2, 2]), 2, 0, np.array([1.0, 2.0]), np.array([0.0, 0.5]),
                                  np.array([0.0, 0.5]), shared=False)
    assert stage.total_s == pytest.approx(19 / 6) and stage.compute_s == pytest.approx(14 / 6)
    np.testing.assert_allclose(stage.touched, [5 / 6, 5 / 6])
    # shared: transfers 1 s when device 1 is used, plus the slowest compute: 2, 1 + 2, 1 + 4 -> 19/6 as well;
    # with 3 s on device 1: 2, 1 + 3, 1 + 6 -> (2 + 16 + 7)/6
    shared = expected_expert_stage(np.array([2, 2]), 2, 0, np.array([1.0, 3.0]), np.array([0.0, 0.5]),
                                   np.array([0.0, 0.5]), shared=True)
    assert shared.total_s == pytest.approx(25 / 6)


def test_expert_stage_against_every_subset() -> None:
    import itertools
    from placement.cost.routing import expected_expert_stage
    rng = np.random.default_rng(7)
    owner = np.array([0, 1, 1, 1, 2, 2])  # E=6 experts on 3 devices, k=3
    t, d, c = rng.uniform(1, 2, 3), rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    d[1], c[1] = 0.0, 0.0  # the router sits on device 1
    totals = []
    for chosen in itertools.combinations(range(6), 3):
        x = np.bincount(owner[list(chosen)], minlength=3)
        chains = [x[n] * t[n] + ((d[n] + c[n]) if n != 1 else 0.0) for n in range(3) if x[n] > 0 or n == 1]
        totals.append(max(chains))
    stage = expected_expert_stage(np.bincount(owner), 3, 1, t, d, c, shared=False)
    assert stage.total_s == pytest.approx(np.mean(totals), rel=1e-12)


def test_placed_experts_in_the_evaluator() -> None:
    from placement import Plan
    from placement.plan import Placement
    inst = _mixed_instance(MIXED["moe"])
    plan = solve(inst, method="pipeline").plan
    p = plan.intervals[0]
    home = np.where(inst.model.moe_layers[:, None], p.ffn.argmax(1)[:, None], -1) * np.ones((1, 4), dtype=np.int64)
    with_home = plan.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed, p.lm_head, None, home)])
    a, b = evaluate(inst, plan), evaluate(inst, with_home)
    # experts listed on their FFN device cost exactly what the FFN block with its experts costs
    assert b.total_s == a.total_s and np.array_equal(a.peak_memory_bytes, b.peak_memory_bytes)
    spread = home.copy()
    spread[1] = [0, 0, 1, 1]  # layer 1's FFN is on B (index 1): two experts go to A
    moved = with_home.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed, p.lm_head, None, spread)])
    c = evaluate(inst, moved)
    # one expert: 3*64*64 weights at 2 bytes = 24,576 bytes
    np.testing.assert_allclose(c.peak_memory_bytes - b.peak_memory_bytes, [[49152, -49152]] * 2)
    assert c.total_s > b.total_s  # a 1 Gbit/s link costs more than the expert compute it spreads
    again = Plan.from_json(moved.to_json())
    assert again.intervals[0].experts.tolist() == spread.tolist() and evaluate(inst, again).total_s == c.total_s


def test_placed_expert_errors() -> None:
    from placement.errors import PlanError
    from placement.plan import Placement
    inst = _mixed_instance(MIXED["moe"])
    plan = solve(inst, method="pipeline").plan
    p = plan.intervals[0]
    bad = np.zeros((2, 4), dtype=np.int64)  # layer 0 is dense: no experts there
    with pytest.raises(PlanError, match=r"layer 0, expert 0: device index 0 does not fit"):
        evaluate(inst, plan.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed, p.lm_head, None, bad)]))
    with pytest.raises(PlanError, match=r"`experts` has shape \(2, 3\)"):
        evaluate(inst, plan.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed, p.lm_head, None,
                                                         np.zeros((2, 3), dtype=np.int64))]))


def test_experts_method_spreads_when_links_are_fast() -> None:
    # two equal devices on a 100 Gbit/s, 1 us link, an MoE model whose experts dominate the step:
    # half of each layer's experts on the other device lets the two chosen experts run in parallel
    # (outcomes (2,0), (1,1), (0,2) with probabilities 1/6, 4/6, 1/6), nearly halving the expert time
    inst = instance_from_dict({
        "model": TINY | {"hidden": 256, "heads": 4, "kv_heads": 2, "ffn_hidden": 512, "vocab": 64,
                         "experts": 4, "experts_per_token": 2, "expert_ffn_hidden": 4096},
        "devices": [{"name": n, "memory": "64 MiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "1 GB/s"}
                    for n in ("A", "B")],
        "links": [{"between": ["A", "B"], "bandwidth": "100 Gbit/s", "latency": "1 us"}],
        "workload": {"prompt_tokens": 4, "generate_tokens": 4}}, check_capacity=False)
    base, spread = solve(inst, method="pipeline-dp"), solve(inst, method="experts")
    assert spread.status == "feasible" and spread.stats["experts_moved"] == 4  # 2 per layer
    assert spread.report.mean_token_s < 0.75 * base.report.mean_token_s


# --- measured routing histograms ---------------------------------------------------------

def test_conditional_bernoulli_stage_against_every_subset() -> None:
    import itertools
    from placement.cost.routing import elementary_symmetric, expected_expert_stage, fit_selection_weights, \
        inclusion_probabilities
    histogram = np.array([5.0, 1.0, 1.0, 3.0, 2.0, 8.0])
    w = fit_selection_weights(histogram, 2)
    # fitted: each expert chosen k*h/sum(h) of the time
    np.testing.assert_allclose(inclusion_probabilities(w, 2), 2 * histogram / histogram.sum(), rtol=1e-9)
    owner, t, d = np.array([0, 0, 1, 1, 2, 2]), np.array([1.0, 1.5, 2.0]), np.array([0.0, 0.3, 0.7])
    subsets = list(itertools.combinations(range(6), 2))
    p = np.array([np.prod(w[list(s)]) for s in subsets])
    p /= p.sum()
    times = []
    for s in subsets:
        x = np.bincount(owner[list(s)], minlength=3)
        times.append(max([x[0] * t[0]] + [2 * d[n] + x[n] * t[n] for n in (1, 2) if x[n]]))
    sigma = np.array([elementary_symmetric(w[owner == n], 2) for n in range(3)])
    stage = expected_expert_stage(np.bincount(owner), 2, 0, t, d, d, False, sigma)
    assert stage.total_s == pytest.approx(p @ np.array(times), rel=1e-12)


def _routed(routing):
    return instance_from_dict(_instance_data() | ({"expert_routing": routing} if routing is not None else {}),
                              check_capacity=False)


def _spread_plan(inst, layer1):
    from placement.plan import Placement
    plan = solve(inst, method="pipeline").plan
    p = plan.intervals[0]
    experts = np.array([[-1] * 4, layer1])
    return plan.replace(intervals=[Placement(p.attention, p.projection, p.ffn, p.embed, p.lm_head, None, experts)])


def test_routing_histograms_in_the_evaluator(tmp_path: Path) -> None:
    uniform = _routed(None)
    plan = _spread_plan(uniform, [0, 0, 1, 1])  # layer 1's FFN is on B: two experts on A
    flat = _routed([None, [7, 7, 7, 7]])  # a flat histogram is the uniform law
    assert evaluate(flat, plan).total_s == pytest.approx(evaluate(uniform, plan).total_s, rel=1e-12)
    # every selection on B's two experts: the token never leaves B, as if all experts sat there
    (tmp_path / "hist.yaml").write_text("[null, [0, 0, 5, 5]]\n")
    hot = instance_from_dict({**_instance_data(), "expert_routing": str(tmp_path / "hist.yaml")}, check_capacity=False)
    home = _spread_plan(uniform, [1, 1, 1, 1])
    assert evaluate(hot, plan).mean_token_s == pytest.approx(evaluate(uniform, home).mean_token_s, rel=1e-6)
    assert evaluate(hot, plan).mean_token_s < evaluate(uniform, plan).mean_token_s


def _instance_data():
    return {"model": MIXED["moe"] | {"hidden": 64, "head_dim": 16, "ffn_hidden": 128, "vocab": 128,
                                     "expert_ffn_hidden": 64},
            "devices": [{"name": "A", "memory": "150 KiB", "peak_flops": "2 GFLOPS", "memory_bandwidth": "2 GB/s"},
                        {"name": "B", "memory": "150 KiB", "peak_flops": "4 GFLOPS", "memory_bandwidth": "1 GB/s"}],
            "links": [{"between": ["A", "B"], "bandwidth": "1 Gbit/s", "latency": "0.2 ms"}],
            "workload": {"prompt_tokens": 6, "generate_tokens": 6, "interval": 3}}


def test_routing_errors() -> None:
    with pytest.raises(InputError, match=r"`expert_routing`: expected a list of 2 entries"):
        instance_from_dict({**_instance_data(), "expert_routing": [[1, 1, 1, 1]]}, check_capacity=False)
    with pytest.raises(InputError, match=r"layer 1 needs 4 non-negative selection counts"):
        instance_from_dict({**_instance_data(), "expert_routing": [None, [1, -1, 1, 1]]}, check_capacity=False)
    with pytest.raises(InputError, match=r"has no experts to route to; drop `expert_routing`"):
        instance_from_dict({**_instance_data(), "model": WINDOWED | {"hidden": 64, "head_dim": 16},
                            "expert_routing": [None, None]}, check_capacity=False)
