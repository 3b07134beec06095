"""Plans: the JSON round trip, every plan/instance mismatch the evaluator rejects, and
the `placement.solve` entry (unknown method or option; objective equals the evaluator).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import placement
from placement import METHODS, Placement, Plan, evaluate, instance_names, load_instance, solve
from placement.errors import InputError, PlanError
from placement.solvers.reference import pipeline_plan


@pytest.fixture(scope="module")
def two():
    """llama-3.2-1b-2dev: 16 layers of 8 groups, devices pi5 and orin-nano, 8 intervals of 32 tokens."""
    return load_instance("edge/llama-3.2-1b-2dev")


@pytest.fixture(scope="module")
def four():
    """llama-3.2-1b-4dev: 16 layers of 8 groups, four Raspberry Pi 5 (pi-a … pi-d), 8 intervals."""
    return load_instance("edge/llama-3.2-1b-4dev")


def rich_placement(k: int, layers: int = 16, groups: int = 8) -> Placement:
    """A two-device placement with everything the JSON format has to carry.

    Layers 0-7 on device 0, 8-15 on device 1; layer 3's groups split 4/4 with its
    projection split to follow them; one group of a layer that depends on `k` moves;
    FFNs of layers 3 and 10 split 0.3/0.7 and 0.25/0.75; precision overrides in odd
    intervals.
    """
    attention = np.zeros((layers, groups), dtype=np.int64)
    attention[layers // 2:] = 1
    attention[3, :4] = 1
    moved = 5 + k % 3
    attention[moved, 2] = 1 - attention[moved, 2]
    counts = np.stack([np.bincount(row, minlength=2) for row in attention]).astype(float)
    projection = np.eye(2)[counts.argmax(axis=1)]
    projection[3] = counts[3] / groups
    ffn = projection.copy()
    ffn[3] = [0.3, 0.7]
    ffn[10] = [0.25, 0.75]
    precision = {"ffn": 8, "kv": [8.0] * layers, "activation": 8} if k % 2 else None
    return Placement(attention, projection, ffn, embed=0, lm_head=1, precision=precision)


@pytest.fixture(scope="module")
def rich_plan(two):
    return Plan(
        devices=two.cluster.names,
        intervals=[rich_placement(k) for k in range(two.workload.n_intervals)],
        collective="gather",
        root="orin-nano",
        method="hand-made",
        extras={"split_layer": 7, "note": "a test plan", "errors": {"allreduce_mse": 0.0}},
    )


# ============================================================================ JSON round trip
def assert_same_plan(a: Plan, b: Plan) -> None:
    assert a.devices == b.devices
    assert (a.collective, a.root, a.method) == (b.collective, b.root, b.method)
    assert a.extras == b.extras
    assert len(a.intervals) == len(b.intervals)
    for p, q in zip(a.intervals, b.intervals):
        for name in ("attention", "projection", "ffn"):
            x, y = getattr(p, name), getattr(q, name)
            assert x.shape == y.shape, name
            assert x.dtype.kind == y.dtype.kind, name
            np.testing.assert_array_equal(x, y, err_msg=name)
        assert (p.embed, p.lm_head) == (q.embed, q.lm_head)
        assert p.precision == q.precision


def test_rich_plan_is_valid(two, rich_plan):
    report = evaluate(two, rich_plan)
    assert report.feasible
    assert report.migration_s[1:].min() > 0  # a group moves at every boundary


def test_json_round_trip_gives_identical_arrays(two, rich_plan):
    text = rich_plan.to_json()
    back = Plan.from_json(text, kv_heads=two.model.kv_heads)
    assert_same_plan(rich_plan, back)
    assert back.to_json() == text


def test_json_round_trip_through_a_file(tmp_path, two, rich_plan):
    path = tmp_path / "plan.json"
    rich_plan.to_json(path)
    assert_same_plan(rich_plan, Plan.from_json(path, kv_heads=two.model.kv_heads))
    assert_same_plan(rich_plan, Plan.from_json(str(path), kv_heads=two.model.kv_heads))


def test_round_tripped_plan_evaluates_the_same(two, rich_plan):
    back = Plan.from_json(rich_plan.to_json(), kv_heads=two.model.kv_heads)
    original, again = evaluate(two, rich_plan), evaluate(two, back)
    assert again.total_s == original.total_s
    np.testing.assert_array_equal(again.decode_s, original.decode_s)
    np.testing.assert_array_equal(again.peak_memory_bytes, original.peak_memory_bytes)
    assert again.errors == original.errors == {}  # extras["errors"] is carried, never reported as a figure


def test_json_form(rich_plan):
    data = json.loads(rich_plan.to_json())
    assert data["format"] == "placement-plan/1"
    assert data["devices"] == ["pi5", "orin-nano"]
    assert (data["collective"], data["root"], data["method"]) == ("gather", "orin-nano", "hand-made")
    first, second = data["intervals"][0], data["intervals"][1]
    assert first["attention"][0] == "pi5"  # all groups together: one name
    assert first["attention"][3] == ["orin-nano"] * 4 + ["pi5"] * 4  # a list per group
    assert first["projection"][3] == {"pi5": 0.5, "orin-nano": 0.5}
    assert first["ffn"][3] == {"pi5": 0.3, "orin-nano": 0.7}
    assert first["ffn"][0] == "pi5"
    assert (first["embed"], first["lm_head"]) == ("pi5", "orin-nano")
    assert "precision" not in first
    assert second["precision"] == {"ffn": 8, "kv": [8.0] * 16, "activation": 8}


def test_shipped_plan_round_trip_with_kv_heads(two):
    plan = pipeline_plan(two)
    back = Plan.from_json(plan.to_json(), kv_heads=two.model.kv_heads)
    assert_same_plan(plan, back)
    assert evaluate(two, back).total_s == evaluate(two, plan).total_s


def test_round_trip_needs_no_outside_knowledge(two, rich_plan):
    # The file records `groups_per_layer`, so a layer written as one name expands without kv_heads.
    for plan in (pipeline_plan(two), rich_plan):
        assert json.loads(plan.to_json())["groups_per_layer"] == 8
        assert_same_plan(plan, Plan.from_json(plan.to_json()))


# ============================================================================ plan file errors
def plan_data(instance) -> dict:
    return pipeline_plan(instance).to_dict()


def test_plan_file_that_does_not_exist(tmp_path):
    with pytest.raises(PlanError, match=r"plan file '.*missing\.json' does not exist"):
        Plan.from_json(tmp_path / "missing.json")


def test_plan_file_missing_a_field(two):
    data = plan_data(two)
    del data["intervals"][0]["ffn"]
    with pytest.raises(PlanError, match=r"plan interval 0: missing field 'ffn'"):
        Plan.from_dict(data, kv_heads=8)


def test_plan_file_not_a_plan():
    with pytest.raises(
        PlanError,
        match=r"plan: expected a mapping with a `devices` list and an `intervals` list "
        r"\(a file written by `placement solve --out`\)",
    ):
        Plan.from_json("{}")


def test_plan_file_with_an_undeclared_device_name(two):
    data = plan_data(two)
    data["intervals"][0]["ffn"][2] = "pi6"
    with pytest.raises(PlanError) as info:
        Plan.from_dict(data, kv_heads=8)
    assert str(info.value) == "plan interval 0 ffn 2: device 'pi6' is not in the plan's `devices` (pi5, orin-nano)"


@pytest.mark.parametrize(
    "where, message",
    [
        ("attention", r"plan interval 0: `attention` must be a list with one entry per layer, got 5"),
        ("intervals", r"plan: expected a mapping with a `devices` list and an `intervals` list"),
        ("share", r"plan interval 0 ffn 0: share of 'pi5' must be a number, got 'half'"),
    ],
)
def test_plan_file_with_a_field_of_the_wrong_type(two, where, message):
    data = plan_data(two)
    if where == "attention":
        data["intervals"][0]["attention"] = 5
    elif where == "intervals":
        data["intervals"] = 5
    else:
        data["intervals"][0]["ffn"][0] = {"pi5": "half"}
    with pytest.raises(PlanError, match=message):
        Plan.from_dict(data, kv_heads=8)


@pytest.mark.parametrize("field, value", [("groups_per_layer", "8"), ("extras", [1])])
def test_plan_file_with_a_top_level_field_of_the_wrong_type(two, field, value):
    data = plan_data(two)
    data[field] = value
    with pytest.raises(PlanError, match=field):
        evaluate(two, Plan.from_dict(data))


def test_plan_precision_that_is_not_a_number(two):
    plan = pipeline_plan(two)
    bad = plan.replace(intervals=[replace(plan.intervals[0], precision={"ffn": "eight"})])
    with pytest.raises(PlanError, match=r"interval 0 precision\.ffn: bits must be a number or a list of numbers, got 'eight'"):
        evaluate(two, bad)


# ============================================================================ plan / instance mismatch
def test_plan_names_a_device_the_instance_lacks(two):
    plan = pipeline_plan(two).replace(devices=("pi5", "ghost"))
    with pytest.raises(
        PlanError,
        match=r"plan names device\(s\) 'ghost' that the instance lacks \(devices: pi5, orin-nano\); "
        r"solve the plan for this instance",
    ):
        evaluate(two, plan)


def test_plan_devices_in_another_order_are_remapped(two, rich_plan):
    order = (1, 0)
    swapped = rich_plan.replace(
        devices=tuple(rich_plan.devices[i] for i in order),
        intervals=[
            replace(p, attention=1 - p.attention, projection=p.projection[:, order], ffn=p.ffn[:, order],
                    embed=1 - p.embed, lm_head=1 - p.lm_head)
            for p in rich_plan.intervals
        ],
    )
    assert evaluate(two, swapped).total_s == pytest.approx(evaluate(two, rich_plan).total_s, rel=1e-12)


def test_group_device_index_out_of_range(two, rich_plan):
    p = rich_plan.intervals[0]
    attention = p.attention.copy()
    attention[2, 1] = 5
    plan = rich_plan.replace(intervals=[replace(p, attention=attention)])
    with pytest.raises(PlanError, match=r"interval 0, layer 2, group 1: device index 5 is out of range"):
        evaluate(two, plan)


def test_attention_with_the_wrong_number_of_layers(two, rich_plan):
    p = rich_plan.intervals[0]
    plan = rich_plan.replace(intervals=[replace(p, attention=p.attention[:15])])
    with pytest.raises(
        PlanError,
        match=r"interval 0: `attention` has shape \(15, 8\), the model has 16 layers of 8 groups; "
        r"give one device per \(layer, group\)",
    ):
        evaluate(two, plan)


def test_attention_with_the_wrong_number_of_groups(two, rich_plan):
    p = rich_plan.intervals[0]
    plan = rich_plan.replace(intervals=[replace(p, attention=p.attention[:, :1])])
    with pytest.raises(PlanError, match=r"`attention` has shape \(16, 1\), the model has 16 layers of 8 groups"):
        evaluate(two, plan)


def test_projection_with_the_wrong_number_of_layers(two, rich_plan):
    p = rich_plan.intervals[0]
    plan = rich_plan.replace(intervals=[replace(p, projection=p.projection[:-1])])
    with pytest.raises(PlanError, match=r"interval 0: `projection` has 15 layers, the model has 16"):
        evaluate(two, plan)


@pytest.mark.parametrize("row", [[0.5, 0.4], [1.5, -0.5]], ids=["sum-0.9", "negative"])
def test_shares_must_be_non_negative_and_sum_to_one(two, rich_plan, row):
    p = rich_plan.intervals[0]
    ffn = p.ffn.copy()
    ffn[4] = row
    plan = rich_plan.replace(intervals=[replace(p, ffn=ffn)])
    with pytest.raises(PlanError, match=r"interval 0, layer 4: `ffn` shares must be non-negative and sum to 1, got"):
        evaluate(two, plan)


def test_wrong_number_of_intervals(two, rich_plan):
    plan = rich_plan.replace(intervals=rich_plan.intervals[:3])
    with pytest.raises(
        PlanError,
        match=r"plan has 3 intervals, the instance has 8 \(256 tokens every 32\); "
        r"give one placement per interval, or one for all",
    ):
        evaluate(two, plan)


def test_one_interval_serves_them_all(two, rich_plan):
    assert evaluate(two, rich_plan.replace(intervals=rich_plan.intervals[:1])).feasible


def test_split_projection_must_follow_the_heads(two, rich_plan):
    p = rich_plan.intervals[0]
    projection = p.projection.copy()
    projection[3] = [0.3, 0.7]  # layer 3 runs 4 of its 8 groups on each device: shares must be 0.5/0.5
    plan = rich_plan.replace(intervals=[replace(p, projection=projection)])
    with pytest.raises(
        PlanError,
        match=r"interval 0, layer 3: a split projection must follow the heads .*shares \[0\.5, 0\.5\]\), got \[0\.3, 0\.7\]",
    ):
        evaluate(two, plan)


def test_unknown_collective(two, rich_plan):
    with pytest.raises(PlanError, match=r"plan `collective` 'allreduce' is unknown; use one of ring, star, gather, ota"):
        evaluate(two, rich_plan.replace(collective="allreduce"))


def test_ota_collective_needs_the_over_the_air_back_end(two, rich_plan):
    with pytest.raises(
        PlanError, match=r"collective 'ota' needs a transceiver design from the over-the-air back end.*use 'ring', 'star' or 'gather'"
    ):
        evaluate(two, rich_plan.replace(collective="ota", root=None))


@pytest.mark.parametrize("collective", ["star", "gather"])
def test_collective_root_must_hold_a_share(four, collective):
    layer_devices = np.repeat(np.arange(4), 4)
    p = Placement.by_layer(layer_devices, four.model.kv_heads, four.n_devices)
    ffn = p.ffn.copy()
    ffn[5] = [0.0, 0.5, 0.5, 0.0]  # layer 5's FFN split over pi-b and pi-c
    plan = Plan(four.cluster.names, [replace(p, ffn=ffn)], collective=collective, root="pi-a")
    with pytest.raises(PlanError, match=r"interval 0, layer 5: the collective root 'pi-a' holds no share of the ffn"):
        evaluate(four, plan)
    assert evaluate(four, plan.replace(root="pi-b")).feasible


def test_collective_root_the_instance_lacks(two, rich_plan):
    with pytest.raises(PlanError, match=r"plan `root` 'ghost' is not a device of the instance \(pi5, orin-nano\)"):
        evaluate(two, rich_plan.replace(root="ghost"))


def test_embed_device_index_out_of_range(two, rich_plan):
    p = rich_plan.intervals[0]
    with pytest.raises(PlanError, match=r"interval 0: `embed` device index 7 is out of range"):
        evaluate(two, rich_plan.replace(intervals=[replace(p, embed=7)]))


def test_unknown_precision_field(two, rich_plan):
    p = rich_plan.intervals[0]
    with pytest.raises(PlanError, match=r"interval 0 precision: unknown field 'fnn'; fields are attention, projection, ffn"):
        evaluate(two, rich_plan.replace(intervals=[replace(p, precision={"fnn": 8})]))


# ============================================================================ solve()
def test_solve_unknown_method_lists_the_known_ones(two):
    with pytest.raises(InputError, match=rf"unknown method 'milq'; methods are {re.escape(', '.join(METHODS))}$"):
        solve(two, method="milq")


def test_solve_method_name_is_case_insensitive(two):
    assert solve(two, method="PIPELINE").plan.method == "pipeline"


def test_solve_unknown_option_lists_the_known_ones(two):
    # `gap` is a common option (accepted with a note by a method without it); a misspelling is an error
    with pytest.raises(InputError, match=r"method 'pipeline' does not take option\(s\) time_limt; its options are: none"):
        solve(two, method="pipeline", time_limt=5, gap=0.1)


def test_methods_are_declared_once():
    assert len(set(METHODS)) == len(METHODS) and {"single", "pipeline", "milp"} <= set(METHODS)
    assert placement.solve is solve


@pytest.mark.parametrize("method", ["single", "pipeline"])  # the optimizers: tests/test_backends.py
@pytest.mark.parametrize("name", instance_names())
def test_objective_is_the_evaluators_total(name, method):
    instance = load_instance(name, check_capacity=False)
    result = solve(instance, method=method)
    assert result.status in ("feasible", "infeasible")
    assert result.objective == result.report.total_s
    assert evaluate(instance, result.plan).total_s == result.objective
    assert result.success == (result.status == "feasible")


# ============================================================================ docs/instances.md
DOCS = Path(__file__).resolve().parents[1] / "docs" / "instances.md"


def test_docs_plan_example_evaluates_as_the_docs_say(two):
    text = DOCS.read_text()
    block = re.search(r"```json\n(.*?)```", text, flags=re.S).group(1)
    plan = Plan.from_json(block, kv_heads=two.model.kv_heads)
    report = evaluate(two, plan)
    assert report.feasible
    quoted = re.search(r"reports ([\d.]+) s in all for it,\s+against ([\d.]+) s for the reference `pipeline` plan", text)
    assert quoted, "docs/instances.md no longer quotes the example plan's figures"
    figures = (f"{report.total_s:.2f}", f"{evaluate(two, pipeline_plan(two)).total_s:.2f}")
    assert quoted.groups() == figures, f"update the figures quoted in docs/instances.md to {figures}"
