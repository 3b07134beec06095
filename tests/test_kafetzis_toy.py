"""The ``kafetzis-toy`` suite: the authors' toy settings and the figures their simulator gives.

Facts (Kafetzis et al.'s public simulator, run side by side by the team, issue 16):
``toy_optimal_comparison`` on 3 devices has its optimum at 17.3521 ms a step (heads
00000112, projection and FFN on device 0); ``toy_example`` at 61.4692 ms (heads
11112222, projection and FFN on device 1); their resource-aware algorithm, which
keeps every block off the source device 0, gives 38.9231 ms on toy_optimal
(19.4616 ms without that rule).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from placement import evaluate, load_instance, solve
from placement.experiments.suites.kafetzis_toy import KAFETZIS_TOY_FIGURES, kafetzis_toy_suite
from placement.instance import instance_from_dict
from placement.builder import save_instance
from placement.plan import Placement, Plan

sys.path.insert(0, str(Path(__file__).parent))
from brute_force import brute_force  # noqa: E402

# (instance, heads per device, projection / FFN device, per-step ms)
OPTIMA = [("toy-optimal-comparison", [0, 0, 0, 0, 0, 1, 1, 2], 0, 17.3521),
          ("toy-example", [1, 1, 1, 1, 2, 2, 2, 2], 1, 61.4692)]


def _plan(inst, heads, where) -> Plan:
    one_hot = np.eye(3)[[where]]
    return Plan(inst.cluster.names, [Placement(np.array([heads]), one_hot, one_hot, where, where)])


def _step_ms(report) -> float:
    return float(report.decode_s[0]) * 1e3


def test_the_files_hold_the_figures_of_the_authors_code():
    for data in kafetzis_toy_suite():
        inst = load_instance(f"kafetzis-toy/{data['name']}")
        memory, flops, bandwidth = KAFETZIS_TOY_FIGURES[data["name"].replace("-", "_")]
        np.testing.assert_allclose([d.memory_bytes for d in inst.devices], np.array(memory) * 2**30, rtol=1e-15)
        np.testing.assert_allclose([d.peak_flops_per_s for d in inst.devices], flops, rtol=1e-15)
        routes = inst.cluster.route_bandwidth_bytes_per_s
        np.testing.assert_allclose([routes[0, 1], routes[0, 2], routes[1, 2]], np.array(bandwidth) * 2**30, rtol=1e-15)


def test_the_evaluator_gives_the_hand_worked_step():
    """toy_optimal by hand: 5 heads on device 0 (40 GFLOP/s) are the slowest group stage;
    two head outputs cross link 0-1 and one link 0-2 (S·d·4 bytes each, bandwidth in GiB/s),
    then projection and FFN on device 0."""
    S, D, d = 512, 512, 64
    head, proj, ffn = 3 * S * D * d + S**2 * d, S * D * D, 0.8 * S * D * D
    out = S * d * 4 / 2**30
    _, _, (b01, b02, _) = KAFETZIS_TOY_FIGURES["toy_optimal_comparison"]
    by_hand = 5 * head / 4e10 + 2 * out / b01 + out / b02 + (proj + ffn) / 4e10
    inst = load_instance("kafetzis-toy/toy-optimal-comparison")
    assert _step_ms(evaluate(inst, _plan(inst, OPTIMA[0][1], 0))) == pytest.approx(by_hand * 1e3, rel=1e-12)
    assert by_hand * 1e3 == pytest.approx(17.3521, abs=5e-5)


@pytest.mark.parametrize("name, heads, where, step_ms", OPTIMA)
def test_milp_brute_force_and_myopic_plus_find_the_optimum(name, heads, where, step_ms):
    inst = load_instance(f"kafetzis-toy/{name}")
    assert _step_ms(evaluate(inst, _plan(inst, heads, where))) == pytest.approx(step_ms, abs=5e-5)
    best = brute_force(inst)
    for result in (solve(inst, method="milp"), solve(inst, method="myopic+")):
        assert result.objective == pytest.approx(best.total_s, rel=1e-9)
        placement = result.plan.intervals[0]
        assert sorted(placement.attention[0]) == heads
        assert placement.projection.argmax() == placement.ffn.argmax() == where
        assert _step_ms(result.report) == pytest.approx(step_ms, abs=5e-5)


def test_myopic_with_the_source_rule_gives_the_authors_figure():
    inst = load_instance("kafetzis-toy/toy-optimal-comparison")
    ruled = solve(inst, method="myopic", forbid_source=True)
    assert _step_ms(ruled.report) == pytest.approx(38.9231, abs=5e-5)
    assert not (ruled.plan.intervals[0].attention == 0).any() and ruled.stats["forbid_source"]
    assert _step_ms(solve(inst, method="myopic").report) == pytest.approx(19.4616, abs=5e-5)


def test_direct_routing_keeps_the_relay_out():
    """With the fastest routes, device 1 would reach device 0 through device 2 (0.1349 GiB/s
    bottleneck beats the 0.1209 GiB/s link), as the authors' network never does."""
    inst = load_instance("kafetzis-toy/toy-optimal-comparison")
    relayed = instance_from_dict(dict(kafetzis_toy_suite()[0], routing="fastest"), source="relayed")
    _, _, (b01, b02, b12) = KAFETZIS_TOY_FIGURES["toy_optimal_comparison"]
    message = 512 * 64 * 4
    assert inst.cluster.message_time_s(message)[1, 0] == pytest.approx(message / (b01 * 2**30), rel=1e-12)
    assert relayed.cluster.message_time_s(message)[1, 0] == pytest.approx(message / (min(b02, b12) * 2**30), rel=1e-12)
    assert _step_ms(evaluate(relayed, _plan(relayed, OPTIMA[0][1], 0))) < 17.3521 - 0.1


def test_direct_routing_survives_a_round_trip_through_a_file(tmp_path):
    inst = load_instance("kafetzis-toy/toy-optimal-comparison")
    saved = save_instance(inst, tmp_path / "toy.yaml")
    back = load_instance(str(saved))
    assert back.cluster.routing == "direct"
    heads = OPTIMA[0][1]
    assert _step_ms(evaluate(back, _plan(back, heads, 0))) == pytest.approx(17.3521, abs=5e-5)


def test_forbid_source_bad_input():
    from placement import InputError
    inst = load_instance("kafetzis-toy/toy-example")
    with pytest.raises(InputError, match="`forbid_source` must be true or false"):
        solve(inst, method="myopic", forbid_source="yes")
    one = instance_from_dict({**kafetzis_toy_suite()[1], "devices": kafetzis_toy_suite()[1]["devices"][:1],
                              "links": []}, source="one")
    with pytest.raises(InputError, match="`forbid_source` leaves no device"):
        solve(one, method="myopic", forbid_source=True)
