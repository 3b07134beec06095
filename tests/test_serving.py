"""The serving evaluator: hand-worked schedules, the single-request anchor, eviction, Little's law, traces.

The hand-worked instances (`tiny_one` and `tiny_pipe`) are memory-bound on every block
(peak compute 1 PFLOPS against 16 B/s of memory bandwidth), with 8-bit weights, KV
cache and activations, so every time is a byte count over 16 B/s. The model has
D = d = F = V = 8, one head: attention group 192 parameters, projection 64, FFN 128
(plain), embed 64, lm_head 64 (untied); a cached position is 2·d = 16 bytes per layer.

One layer on one device (`tiny_one`), a decode pass over B requests whose contexts sum
to ΣS reads 192 + 16·ΣS + 64 + 128 + 8·B (embed rows) + 64 bytes:

    decode(B, ΣS) = 28 + B/2 + ΣS seconds,

and a prefill of B prompts padded to P reads 192 + 16·B·P + 64 + 128 + 8·B·P + 64 bytes:

    prefill(P, B) = 28 + 1.5·B·P seconds.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_run import error_line, run_main  # noqa: E402

from placement import evaluate, load_instance, solve  # noqa: E402
from placement.errors import InputError  # noqa: E402
from placement.instance import Workload, instance_from_dict  # noqa: E402
from placement.plan import Placement, Plan  # noqa: E402
from placement.serving import Requests, generate_trace, read_trace, simulate, write_trace  # noqa: E402
from placement.serving.workload import parse_rate, serving_from_mapping, trace_text  # noqa: E402
from placement.solvers.reference import pipeline_plan, single_plan  # noqa: E402

TINY_MODEL = {"name": "tiny-serve", "layers": 1, "hidden": 8, "heads": 1, "kv_heads": 1, "head_dim": 8,
              "ffn_hidden": 8, "gated_ffn": False, "vocab": 8, "tied_embeddings": False}
BITS = {"weights": 8, "kv_cache": 8, "activations": 8}


def _device(name: str, memory: str, bandwidth: str = "16 B/s") -> dict:
    return {"name": name, "memory": memory, "peak_flops": "1 PFLOPS", "memory_bandwidth": bandwidth}


def tiny_one(memory: str = "1024 B", extra_devices: tuple = (), **top) -> tuple:
    """One device (weights 512 B, 16 B per cached position) and its single-device plan."""
    inst = instance_from_dict({
        "name": "tiny-one", "model": TINY_MODEL, "devices": [_device("A", memory), *extra_devices],
        "mesh": {"bandwidth": "1 Gbit/s", "latency": "1 ms"},
        "workload": {"prompt_tokens": 2, "generate_tokens": 2, "precision": BITS}, **top,
    })
    return inst, single_plan(inst, 0)


def tiny_pipe() -> tuple:
    """Two layers, layer 0 (and embed) on A, layer 1 (and lm_head) on B; link 1 s latency, 8 B/s.

    Per layer a decode pass reads 384 + 16·ΣS bytes (24 + ΣS s); embed B/2 s on A, lm_head 4 s
    on B; the hidden state A → B takes 1 + B s, the token ids back 1 + B/2 s:
    ``L(B, ΣS) = 54 + 2B + 2ΣS``; busiest device ``U = max(24.5 + ΣS, 28 + ΣS)`` at B = 1.
    Prefill of one P-token prompt: ``54.5 + 3.5·P`` (B = 2, P padded: ``56 + 2 + 4 + 5 + 2 = 69`` at P = 2).
    """
    inst = instance_from_dict({
        "name": "tiny-pipe", "model": {**TINY_MODEL, "layers": 2},
        "devices": [_device("A", "2 KiB"), _device("B", "2 KiB")],
        "links": [{"between": ["A", "B"], "bandwidth": "8 B/s", "latency": "1 s"}],
        "workload": {"prompt_tokens": 2, "generate_tokens": 2, "precision": BITS},
    })
    plan = Plan(devices=inst.cluster.names, intervals=[Placement.by_layer(np.array([0, 1]), 1, 2)], method="pipe")
    return inst, plan


def reqs(*rows: tuple[float, int, int]) -> Requests:
    a, p, t = zip(*rows)
    return Requests(np.array(a, dtype=float), np.array(p), np.array(t))


def times(report) -> tuple[list, list]:
    return report.first_token_s.tolist(), report.finish_s.tolist()


# ----------------------------------------------------------------------------- the hand-worked costs
def test_tiny_costs_are_the_hand_worked_bytes_over_bandwidth():
    inst, plan = tiny_one()
    one = evaluate(dataclasses.replace(inst, workload=Workload(2, 2, 1)), plan)
    assert one.ttft_s == pytest.approx(28 + 1.5 * 2)  # prefill(2, 1) = 31
    assert one.decode_s.tolist() == pytest.approx([28 + 0.5 + 3, 28 + 0.5 + 4])
    two = evaluate(dataclasses.replace(inst, workload=Workload(2, 2, 2)), plan)
    assert two.ttft_s == pytest.approx(28 + 1.5 * 2 * 2)
    assert two.decode_s.tolist() == pytest.approx([28 + 1 + 6, 28 + 1 + 8])  # contexts 3,3 then 4,4
    pipe, pplan = tiny_pipe()
    p1 = evaluate(dataclasses.replace(pipe, workload=Workload(2, 2, 1)), pplan)
    assert p1.ttft_s == pytest.approx(54.5 + 3.5 * 2)
    assert p1.decode_s.tolist() == pytest.approx([54 + 2 + 6, 54 + 2 + 8])


# ----------------------------------------------------------------------------- hand-worked schedules
def test_sequential_two_requests():
    # r0 at 0 (P=2, T=2): prefill 31, decodes at S=3, 4: 31.5 + 32.5 -> done at 95.
    # r1 at 1 (P=4, T=1) waits for r0: 95 + prefill(4) 34 = 129, decode at S=5: 33.5 -> 162.5.
    inst, plan = tiny_one()
    report = simulate(inst, plan, reqs((0, 2, 2), (1, 4, 1)), "sequential")
    assert times(report) == (pytest.approx([31, 129]), pytest.approx([95, 162.5]))
    assert report.ttft_s.tolist() == pytest.approx([31, 128])
    assert report.tpot_s.tolist() == pytest.approx([32, 33.5])


def test_static_batch_two_requests_padded_and_run_to_the_longest():
    # The batch waits (up to 5 s) for r1 and starts at 1; prompts pad to 4: prefill(4, 2) = 40 -> 41;
    # decodes at contexts 5,5 (ΣS 10): 39 and 6,6 (ΣS 12): 41 -> both returned at 121.
    inst, plan = tiny_one()
    report = simulate(inst, plan, reqs((0, 2, 2), (1, 4, 1)), "static-batch", max_batch=2, batch_wait_s=5)
    assert times(report) == (pytest.approx([41, 41]), pytest.approx([121, 121]))


def test_static_batch_three_requests_two_batches():
    # Batch of 2 closes when r1 arrives (1); r2 (at 3) waits for the next batch, which starts at 121
    # (it is already waiting, no wait to fill): prefill(3, 1) = 32.5 -> 153.5, decode S=4: 32.5 -> 186.
    inst, plan = tiny_one()
    report = simulate(inst, plan, reqs((0, 2, 2), (1, 4, 1), (3, 3, 1)), "static-batch", max_batch=2,
                      batch_wait_s=5)
    assert times(report) == (pytest.approx([41, 41, 153.5]), pytest.approx([121, 121, 186]))


def test_static_batch_shrinks_to_what_memory_holds():
    # 8 positions free; three requests at 0 of 2 + 2 positions: three padded caches (12) do not fit, two (8) do.
    # Batch of two: prefill(2, 2) = 34, rounds at ΣS = 6 and 8: 35 + 37 -> 106. r2 queued: 106 + 31 = 137, + 64 -> 201.
    inst, plan = tiny_one("640 B")
    report = simulate(inst, plan, reqs((0, 2, 2), (0, 2, 2), (0, 2, 2)), "static-batch", max_batch=3)
    assert times(report) == (pytest.approx([34, 34, 137]), pytest.approx([106, 106, 201]))
    assert report.queued.tolist() == [False, False, True]


def test_a_plan_whose_weights_do_not_fit_is_an_input_error():
    inst, _ = tiny_one(extra_devices=(_device("B", "256 B"),))
    with pytest.raises(InputError, match="weights on device 'B'"):
        simulate(inst, single_plan(inst, 1), Requests.single(2, 2), "fused")


def test_static_batch_does_not_wait_past_the_deadline():
    # r0 at 0 waits 5 s for company that comes at 10: it runs alone from 5 (prefill 31 -> 36, 31.5 + 32.5 -> 100).
    inst, plan = tiny_one()
    report = simulate(inst, plan, reqs((0, 2, 2), (10, 2, 2)), "static-batch", max_batch=2, batch_wait_s=5)
    assert times(report)[0][0] == pytest.approx(36)
    assert times(report)[1][0] == pytest.approx(100)
    # r1 found the server busy: starts at 100, prefill to 131, then 64 -> 195.
    assert times(report)[1][1] == pytest.approx(195)


def test_fused_two_requests_prefills_then_one_pass_for_both():
    # r0 at 0: prefill 31; r1 (arrived at 1) prefills next: 31 + 34 = 65. One pass for both:
    # contexts 3 and 5 (ΣS 8, B 2): 37 -> 102, r1 done and evicted; r0 alone at S=4: 32.5 -> 134.5.
    inst, plan = tiny_one()
    report = simulate(inst, plan, reqs((0, 2, 2), (1, 4, 1)), "fused")
    assert times(report) == (pytest.approx([31, 65]), pytest.approx([134.5, 102]))


def test_fused_three_requests_join_mid_decode_and_queue_for_memory():
    # Memory 640 B: weights 512 B leave 8 positions of 16 B. r0 (2+3 = 5 positions) prefills to 31,
    # decodes at S=3 until 62.5; r1 (arrived at 40, 2+1 = 3) joins at that boundary: prefill 31 -> 93.5;
    # r2 (at 41, 4 positions) would need 12 > 8: it queues. Pass B=2 at ΣS = 4+3: 36 -> 129.5, r1 leaves
    # (5 + 4 = 9 > 8, still queued); r0 alone at S=5: 33.5 -> 163, leaves; r2 prefills 31 -> 194,
    # then S=3: 31.5 -> 225.5, S=4: 32.5 -> 258.
    inst, plan = tiny_one("640 B")
    report = simulate(inst, plan, reqs((0, 2, 3), (40, 2, 1), (41, 2, 2)), "fused")
    assert times(report) == (pytest.approx([31, 93.5, 194]), pytest.approx([163, 129.5, 258]))
    assert report.queued.tolist() == [False, False, True]
    assert report.summary()["max_in_service"] == 2


def test_eviction_frees_exactly_the_finished_requests_cache():
    inst, plan = tiny_one("640 B")
    report = simulate(inst, plan, reqs((0, 2, 3), (40, 2, 1), (41, 2, 2)), "fused")
    memory = report.memory_bytes[:, 0]
    at = lambda t: memory[np.searchsorted(report.event_s, t, side="right") - 1]  # noqa: E731
    assert at(100) == pytest.approx(512 + 16 * (5 + 3))  # r0 and r1 allocated
    assert at(129.5) - at(100) == pytest.approx(-16 * 3)  # r1 (P+T = 3) leaves: exactly its 48 bytes freed
    assert at(163) == pytest.approx(512 + 16 * 4)  # r0 freed, r2 allocated at the same instant
    assert at(1000) == pytest.approx(512)


def test_fused_refuses_a_request_that_can_never_fit():
    inst, plan = tiny_one("640 B")
    report = simulate(inst, plan, reqs((0, 2, 2), (1, 6, 3)), "fused")  # 9 positions > 8
    assert report.refused.tolist() == [False, True]
    assert report.summary()["served"] == 1
    assert report.finish_s[0] == pytest.approx(95)


def test_instances_three_requests_go_to_the_copy_free_first():
    # A (16 B/s) and B (32 B/s) each hold the model; B's times are half A's.
    # r0 at 0 -> A (both free, A first): 31 + 31.5 + 32.5 = 95. r1 at 1 -> B: 1 + 15.5 = 16.5, + 32 = 48.5.
    # r2 at 2 -> B (free at 48.5, before A at 95): 48.5 + 15.5 = 64, + 32 = 96.
    inst, _ = tiny_one(extra_devices=(_device("B", "1024 B", "32 B/s"),))
    report = simulate(inst, None, reqs((0, 2, 2), (1, 2, 2), (2, 2, 2)), "instances")
    assert times(report) == (pytest.approx([31, 16.5, 64]), pytest.approx([95, 48.5, 96]))
    # memory per device: each copy's weights (512 B) and the 4 positions × 16 B of the request it serves
    at = lambda t: report.memory_bytes[np.searchsorted(report.event_s, t, side="right") - 1]  # noqa: E731
    assert at(10).tolist() == [576, 576]
    assert at(95.5).tolist() == [512, 576]


def test_pipeline_fused_overlaps_two_requests_in_micro_batches():
    # Both at 0 (P=2, T=2): prefills 61.5 each -> 61.5, 123. Rounds of two micro-batches of one:
    # max(L(1) = 56 + 2S, 2·U = 2(28 + S)) = 56 + 2S against one pass of both, 58 + 4S: 62 at S=3, 64 at S=4.
    inst, plan = tiny_pipe()
    report = simulate(inst, plan, reqs((0, 2, 2), (0, 2, 2)), "fused")
    assert times(report) == (pytest.approx([61.5, 123]), pytest.approx([249, 249]))


def test_pipeline_sequential_and_static_batch_two_requests():
    inst, plan = tiny_pipe()
    seq = simulate(inst, plan, reqs((0, 2, 2), (0, 2, 2)), "sequential")
    # 61.5 + 62 + 64 = 187.5; then 187.5 + 61.5 = 249, + 126 = 375.
    assert times(seq) == (pytest.approx([61.5, 249]), pytest.approx([187.5, 375]))
    static = simulate(inst, plan, reqs((0, 2, 2), (0, 2, 2)), "static-batch", max_batch=2)
    # prefill(2, B=2) = 69; rounds min(L(2, 6) = 70, 62) and min(74, 64) -> 69 + 62 + 64 = 195.
    assert times(static) == (pytest.approx([69, 69]), pytest.approx([195, 195]))


# ----------------------------------------------------------------------------- the single-request anchor
@pytest.mark.parametrize("policy", ["sequential", "static-batch", "fused"])
@pytest.mark.parametrize("name", ["edge/llama-3.2-1b-4dev", "edge-real/llama-3.2-1b-3dev-wifi"])
def test_one_request_gives_the_evaluators_figures(name, policy):
    inst = load_instance(name)
    plan = pipeline_plan(inst)
    w = inst.workload
    single = evaluate(dataclasses.replace(inst, workload=Workload(w.prompt_tokens, w.generate_tokens, 1)), plan)
    report = simulate(inst, plan, Requests.single(w.prompt_tokens, w.generate_tokens, arrival_s=3.0), policy)
    assert report.ttft_s[0] == pytest.approx(single.ttft_s, rel=1e-12)
    assert report.e2e_s[0] == pytest.approx(single.total_s, rel=1e-12)
    assert report.tpot_s[0] == pytest.approx(single.mean_token_s, rel=1e-12)


def test_one_request_on_a_head_level_plan_gives_the_evaluators_figures():
    inst, _ = tiny_pipe()
    # groups of one layer split over both devices needs K > 1: use the shipped 4-device instance, heads round-robin.
    inst = load_instance("edge/llama-3.2-1b-4dev")
    plan = solve(inst, method="round-robin").plan
    plan = plan.replace(intervals=plan.intervals[:1])
    single = evaluate(dataclasses.replace(inst, workload=Workload(inst.workload.prompt_tokens, 40, 1)), plan)
    report = simulate(inst, plan, Requests.single(inst.workload.prompt_tokens, 40), "fused")
    assert report.ttft_s[0] == pytest.approx(single.ttft_s, rel=1e-12)
    assert report.e2e_s[0] == pytest.approx(single.total_s, rel=1e-12)


# ----------------------------------------------------------------------------- Little's law
def test_littles_law_on_a_long_seeded_run():
    """Time-averaged requests in the system over the arrival window = rate × mean latency.

    2,000 Poisson arrivals: the count in a window of n/λ has relative standard deviation
    1/√n ≈ 2.2 %; the latencies of a stable queue add correlation, so 8 % (over 3σ) is the bound.
    """
    inst, plan = tiny_one("64 KiB")
    rate = 0.01  # 1 request per 100 s; a request needs about 100 s alone, much less when fused
    requests = generate_trace(2000, rate, (2, 6), (2, 6), seed=7)
    report = simulate(inst, plan, requests, "fused")
    horizon = requests.arrival_s[-1]
    grid = np.linspace(0, horizon, 200_001)
    mean_in_system = report.in_system(grid).mean()
    assert mean_in_system == pytest.approx(rate * report.e2e_s.mean(), rel=0.08)
    assert mean_in_system > 0.5  # a real queue, not an empty system


# ----------------------------------------------------------------------------- workloads and traces
def test_seeded_traces_are_reproducible_byte_for_byte(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_trace(generate_trace(50, 2.0, (16, 64), 32, seed=3), a)
    write_trace(generate_trace(50, 2.0, (16, 64), 32, seed=3), b)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != trace_text(generate_trace(50, 2.0, (16, 64), 32, seed=4)).encode()
    back = read_trace(a)
    assert trace_text(back) == a.read_text()


def test_poisson_trace_has_the_asked_rate():
    requests = generate_trace(20_000, 4.0, 8, 8, seed=1)
    gaps = np.diff(np.concatenate([[0.0], requests.arrival_s]))
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)  # 3σ of a mean of 20,000 exponentials: 2.1 %
    assert gaps.std() == pytest.approx(0.25, rel=0.05)


def test_rates_with_units():
    assert parse_rate("2 req/s") == 2.0
    assert parse_rate("120 requests/min") == 2.0
    assert parse_rate(0.5) == 0.5
    with pytest.raises(InputError, match="serving.rate"):
        parse_rate("2 GiB")


def test_serving_section_in_an_instance_file(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,generate_tokens\n0.5,4,3\n1.25,2,2\n")
    inst, _ = tiny_one(serving={"arrivals": "trace", "trace": str(trace), "policy": "sequential"})
    assert inst.serving.requests.arrival_s.tolist() == [0.5, 1.25]
    assert inst.serving.policy == "sequential"
    spec = serving_from_mapping({"rate": "2 req/s", "requests": 10, "prompt_tokens": [4, 8], "seed": 2})
    assert spec.rate_per_s == 2.0 and spec.requests.n == 10
    assert set(spec.requests.prompt_tokens) <= set(range(4, 9))


@pytest.mark.parametrize(("section", "match"), [
    ({"rate": "2 req/s", "polcy": "fused"}, r"serving\.polcy.*unknown field"),
    ({"requests": 10}, r"serving\.rate.*need a rate"),
    ({"rate": "2 GiB"}, r"serving\.rate.*arrival rate"),
    ({"rate": "2 req/s", "policy": "batched"}, r"serving\.policy"),
    ({"rate": "2 req/s", "prompt_tokens": [8, 4]}, r"serving\.prompt_tokens"),
    ({"arrivals": "trace"}, r"serving\.trace.*needs a trace file"),
    ({"arrivals": "trace", "trace": "/nonexistent.csv"}, r"serving\.trace.*does not exist"),
])
def test_bad_serving_sections_name_the_field(section, match):
    with pytest.raises(InputError, match=match):
        serving_from_mapping(section)


def test_bad_trace_files_name_the_cause(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,prompt,gen\n0,1,1\n")
    with pytest.raises(InputError, match="header"):
        read_trace(bad)
    bad.write_text("arrival_s,prompt_tokens,generate_tokens\n2,1,1\n1,1,1\n")
    with pytest.raises(InputError, match="sorted"):
        read_trace(bad)
    bad.write_text("arrival_s,prompt_tokens,generate_tokens\n1,1.5,1\n")
    with pytest.raises(InputError, match="whole numbers"):
        read_trace(bad)


def test_kafetzis_profile_and_bad_options_are_refused():
    inst, plan = tiny_one()
    kaf = dataclasses.replace(inst, workload=dataclasses.replace(inst.workload, profile="kafetzis2025"))
    with pytest.raises(InputError, match="roofline"):
        simulate(kaf, plan, Requests.single(2, 2), "fused")
    with pytest.raises(InputError, match="unknown serving policy"):
        simulate(inst, plan, Requests.single(2, 2), "continuous")
    with pytest.raises(InputError, match="max_batch"):
        simulate(inst, plan, Requests.single(2, 2), "fused", max_batch=0)


def test_instances_needs_a_device_that_holds_the_model():
    inst = load_instance("edge/llama-3.1-8b-4dev")
    with pytest.raises(InputError, match="instances"):
        simulate(inst, None, Requests.single(8, 8), "instances")


# ----------------------------------------------------------------------------- placement under load
def _two_device_serving(**serving):
    section = {"rate": "0.01 req/s", "requests": 30, "prompt_tokens": [2, 4], "generate_tokens": [2, 4], **serving}
    return tiny_one(extra_devices=(_device("B", "1024 B", "32 B/s"),), serving=section)[0]


def test_method_serving_chooses_the_candidate_the_simulation_ranks_best():
    inst = _two_device_serving()
    result = solve(inst, method="serving", objective="latency", candidates=("single", "pipeline-dp", "myopic+"))
    table = {c["method"]: c for c in result.stats["candidates"] if c["fits"]}
    best = min(table.values(), key=lambda c: c["mean_e2e_s"])
    assert result.status == "feasible" and result.stats["chosen"] == best["method"]
    # every block on B (twice A's bandwidth) serves fastest; the figures are the simulation's of the plan returned
    assert set(result.plan.intervals[0].attention.ravel().tolist()) == {1}
    again = simulate(inst, result.plan, inst.serving.requests, "fused").summary()
    assert again["mean_e2e_s"] == pytest.approx(best["mean_e2e_s"], rel=1e-12)
    assert result.objective == pytest.approx(result.report.total_s)


def test_method_serving_reports_targets_no_plan_meets():
    inst = _two_device_serving()
    result = solve(inst, method="serving", p99_ttft_s=1.0, candidates=("single",))  # a prefill alone takes >= 15.5 s
    assert result.status == "infeasible" and "p99 targets" in result.message
    no_section, _ = tiny_one()
    assert solve(no_section, method="serving").status == "error"


# ----------------------------------------------------------------------------- the command line
def test_serve_json_is_one_document_with_the_figures(tmp_path):
    proc = run_main("serve", "edge/llama-3.2-1b-4dev", "--rate", "0.05 req/s", "--requests", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    inst = load_instance("edge/llama-3.2-1b-4dev")
    w = inst.workload
    again = simulate(inst, pipeline_plan(inst), generate_trace(5, 0.05, w.prompt_tokens, w.generate_tokens, 0), "fused")
    assert data["p99_e2e_s"] == pytest.approx(again.summary()["p99_e2e_s"], rel=1e-12)
    assert data["served"] == 5


def test_serve_bad_input_is_one_line():
    assert "--rate" in error_line(run_main("serve", "edge/llama-3.2-1b-4dev"))
    assert "policies are" in error_line(run_main("serve", "edge/llama-3.2-1b-4dev", "--rate", "1 req/s", "--policy", "x"))


@pytest.mark.slow
def test_reproduce_serving_table_quick_json(tmp_path):
    proc = run_main("reproduce", "serving-table", "--quick", "--json", "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    keys = {"model", "placement", "policy", "rate", "throughput_tokens_s", "p50_e2e_s", "p99_e2e_s", "p99_ttft_s"}
    assert all(keys <= set(r) for r in rows)
    assert {r["model"] for r in rows} == {"llama-3.1-8b", "gpt2"}
    # at the highest load, fused serves more tokens per second than static batching on the same placement
    top = max(r["rate"] for r in rows if r["model"] == "gpt2")
    by = {r["policy"]: r for r in rows if r["model"] == "gpt2" and r["rate"] == top and r["placement"] == "single"}
    assert by["fused"]["throughput_tokens_s"] > by["static-batch"]["throughput_tokens_s"] > by["sequential"]["throughput_tokens_s"]
