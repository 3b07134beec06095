"""Instance files: every bad-input message, and the parsing that good input gets.

Each mistake a user can make in an instance file has one test that checks the error
class and that the message names the field and says how to fix it (STYLE.md: "one
test per message with `pytest.raises(..., match=...)`"). The positive tests pin unit
parsing to exact values, and check mesh expansion, multi-hop routing, preset
overrides, JSON instances and the JSON Schema export.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from placement.cost.units import BYTES, BYTES_PER_S, FLOP_PER_S, SECONDS, parse_quantity
from placement.errors import InfeasibleError, InputError
from placement.instance import (
    device_presets,
    instance_from_dict,
    instance_json_schema,
    instances_dir,
    load_instance,
)

HF_DIR = Path(__file__).parent / "data" / "hf"

# A small valid instance: Llama 3.2 1B on two Raspberry Pi 5 boards joined by one link.
BASE = {
    "model": "llama-3.2-1b",
    "devices": [
        {"name": "a", "preset": "raspberry-pi-5"},
        {"name": "b", "preset": "raspberry-pi-5"},
    ],
    "links": [{"between": ["a", "b"], "bandwidth": "100 Mbit/s", "latency": "2 ms"}],
    "workload": {"prompt_tokens": 16, "generate_tokens": 8},
}

# An inline model whose single attention group (all 8 query heads share one KV head)
# is large compared with its other blocks.
TINY_MQA = {
    "name": "tiny-mqa",
    "layers": 2,
    "hidden": 256,
    "heads": 8,
    "kv_heads": 1,
    "ffn_hidden": 512,
    "gated_ffn": True,
    "vocab": 1000,
    "tied_embeddings": True,
}


def base() -> dict:
    return copy.deepcopy(BASE)


def load(data: dict, **kwargs):
    return instance_from_dict(data, source="inst.yaml", **kwargs)


# ============================================================================ bad input
def test_unknown_model_lists_the_shipped_ones():
    data = base()
    data["model"] = "llama-9b"
    with pytest.raises(InputError, match=r"unknown model 'llama-9b'; shipped models are: .*llama-3\.2-1b.*qwen2\.5-7b"):
        load(data)


def test_unknown_model_says_how_to_give_one_instead():
    data = base()
    data["model"] = "llama-9b"
    with pytest.raises(InputError, match=r"give the model inline, or as `hf_config: path/to/config\.json`"):
        load(data)


def test_unknown_preset_lists_the_known_ones():
    data = base()
    data["devices"][0]["preset"] = "raspberry-pi-9"
    with pytest.raises(
        InputError,
        match=r"`devices\[0\] \(a\)\.preset`: unknown preset 'raspberry-pi-9'; known presets are .*jetson-orin-nano, .*raspberry-pi-5",
    ):
        load(data)


def test_link_to_an_undeclared_device():
    data = base()
    data["links"].append({"between": ["a", "c"], "bandwidth": "1 Gbit/s", "latency": "1 ms"})
    with pytest.raises(
        InputError,
        match=r"`links`: link a–c names 'c', which is neither a declared device nor a switch; "
        r"declare it under `devices` or `switches` \(devices: a, b\)",
    ):
        load(data)


def test_device_with_no_route_to_the_others():
    data = base()
    data["devices"].append({"name": "c", "preset": "raspberry-pi-5"})
    with pytest.raises(
        InputError,
        match=r"`links`: device 'c' cannot be reached from 'a'; add a link \(or a `mesh` default\)",
    ):
        load(data)


@pytest.mark.parametrize("memory", ["0 GiB", "-1 GiB", 0, -5], ids=["zero", "negative", "bare-zero", "bare-negative"])
def test_memory_must_be_positive(memory):
    data = base()
    data["devices"][0]["memory"] = memory
    with pytest.raises(InputError, match=r"`devices\[0\] \(a\)\.memory`: must be positive, got"):
        load(data)


def test_memory_with_a_unit_of_the_wrong_kind():
    data = base()
    data["devices"][0]["memory"] = "5 ms"
    with pytest.raises(
        InputError, match=r"`devices\[0\] \(a\)\.memory`: '5 ms' is not an amount of memory; write it like '6 GiB'"
    ):
        load(data)


@pytest.mark.parametrize(
    "field, value, kind, example",
    [
        ("latency", "100 Mbit/s", "a duration", "2 ms"),
        ("bandwidth", "2 ms", "a bandwidth", "100 Mbit/s"),
    ],
)
def test_link_quantity_with_a_unit_of_the_wrong_kind(field, value, kind, example):
    data = base()
    data["links"][0][field] = value
    with pytest.raises(InputError, match=rf"`links\[0\]\.{field}`: '{value}' is not {kind}; write it like '{example}'"):
        load(data)


def test_peak_flops_with_a_unit_of_the_wrong_kind():
    data = base()
    data["devices"][1]["peak_flops"] = "5 GB/s"
    with pytest.raises(
        InputError, match=r"`devices\[1\] \(b\)\.peak_flops`: '5 GB/s' is not a compute rate; write it like '1\.2 TFLOPS'"
    ):
        load(data)


def test_a_unit_that_does_not_parse():
    data = base()
    data["devices"][0]["memory"] = "5 gigglebytes"
    with pytest.raises(
        InputError,
        match=r"`devices\[0\] \(a\)\.memory`: cannot read '5 gigglebytes' as an amount of memory .*write it like '6 GiB'",
    ):
        load(data)


def test_a_quantity_written_without_its_unit():
    data = base()
    data["links"][0]["bandwidth"] = "100"
    with pytest.raises(InputError, match=r"`links\[0\]\.bandwidth`: '100' has no unit; write a bandwidth like '100 Mbit/s'"):
        load(data)


def test_a_boolean_is_not_a_quantity():
    data = base()
    data["devices"][0]["memory"] = True
    with pytest.raises(
        InputError, match=r"`devices\[0\]\.memory`: expected a quantity with a unit such as '6 GiB'.*\(got True\)"
    ):
        load(data, check_capacity=False)


@pytest.mark.parametrize(
    "where, field",
    [("workload", "prompt_tokens"), ("workload", "interval"), ("device", "compute_efficiency"), ("precision", "weights")],
)
def test_a_boolean_is_not_a_number(where, field):
    data = base()
    target = {"workload": data["workload"], "device": data["devices"][0]}.get(where)
    if where == "precision":
        target = data["workload"].setdefault("precision", {})
    target[field] = True
    with pytest.raises(InputError, match=rf"{field}`: .*\(got True\)"):
        load(data)


def test_missing_required_field():
    data = base()
    del data["workload"]["prompt_tokens"]
    with pytest.raises(InputError, match=r"inst\.yaml: `workload\.prompt_tokens`: required field is missing"):
        load(data)


def test_device_without_its_figures_or_a_preset():
    data = base()
    del data["devices"][0]["preset"]
    data["devices"][0]["memory"] = "8 GiB"
    with pytest.raises(
        InputError, match=r"`devices\[0\] \(a\)\.peak_flops` is missing: give it, or a `preset` that has it"
    ):
        load(data)


@pytest.mark.parametrize(
    "where, typo, path",
    [
        ("workload", "promt_tokens", "workload.promt_tokens"),
        (None, "netwrok", "netwrok"),
        ("device", "memroy", "devices[0].memroy"),
    ],
)
def test_unknown_field_is_a_typo(where, typo, path):
    data = base()
    target = {"workload": data["workload"], None: data, "device": data["devices"][0]}[where]
    target[typo] = "x"
    with pytest.raises(
        InputError, match=rf"`{re.escape(path)}`: unknown field; remove it or check its spelling \(see docs/instances\.md\)"
    ):
        load(data)


def test_duplicate_device_names():
    data = base()
    data["devices"].append({"name": "a", "preset": "jetson-orin-nano"})
    with pytest.raises(InputError, match=r"`devices`: the name\(s\) a are used more than once; names must be unique"):
        load(data)


def test_a_switch_named_like_a_device():
    data = base()
    data["switches"] = ["b"]
    with pytest.raises(InputError, match=r"`devices`: the name\(s\) b are used more than once; names must be unique"):
        load(data)


def test_kv_heads_must_divide_heads_inline():
    data = base()
    data["model"] = {**TINY_MQA, "kv_heads": 3}
    with pytest.raises(
        InputError, match=r"model 'tiny-mqa': `kv_heads` \(3\) must divide `heads` \(8\); each key/value head serves"
    ):
        load(data)


def test_inline_model_with_a_typo():
    data = base()
    data["model"] = {**TINY_MQA, "hiden": 256}
    with pytest.raises(InputError, match=r"`model`: unknown model field\(s\) 'hiden'; known fields are .*hidden"):
        load(data)


def test_model_of_the_wrong_type():
    data = base()
    data["model"] = 5
    with pytest.raises(
        InputError, match=r"`model`: expected a shipped model name, an inline spec, or \{hf_config: path\} \(got 5\)"
    ):
        load(data)


def test_inline_model_missing_fields():
    data = base()
    data["model"] = {"name": "half", "layers": 2}
    with pytest.raises(InputError, match=r"`model`: missing model field\(s\) hidden, heads, ffn_hidden"):
        load(data)


def test_workload_prompt_tokens_zero():
    data = base()
    data["workload"]["prompt_tokens"] = 0
    with pytest.raises(InputError, match=r"`workload\.prompt_tokens` must be at least 1, got 0"):
        load(data)


def test_workload_interval_zero():
    data = base()
    data["workload"]["interval"] = 0
    with pytest.raises(InputError, match=r"`workload\.interval` must be at least 1 token, got 0"):
        load(data)


def test_workload_profile_unknown():
    data = base()
    data["workload"]["profile"] = "rooflines"
    with pytest.raises(InputError, match=r"`workload\.profile`: Input should be 'roofline' or 'kafetzis2025'"):
        load(data)


@pytest.mark.parametrize(
    "field, bits, bound",
    [("weights", -4, "greater than 0"), ("kv_cache", 0, "greater than 0"), ("activations", 65, "less than or equal to 64")],
)
def test_workload_precision_bits_out_of_range(field, bits, bound):
    data = base()
    data["workload"]["precision"] = {field: bits}
    with pytest.raises(InputError, match=rf"`workload\.precision\.{field}`: Input should be {bound} \(got {bits}\)"):
        load(data)


def test_network_unknown():
    data = base()
    data["network"] = "wifi"
    with pytest.raises(InputError, match=r"`network`: Input should be 'switched' or 'shared' \(got 'wifi'\)"):
        load(data)


def test_reserved_memory_above_memory():
    data = base()
    data["devices"][0]["reserved_memory"] = "9 GiB"
    with pytest.raises(InputError, match=r"device 'a': `reserved_memory` .* must be at least 0 and below `memory`"):
        load(data)


def test_link_given_twice():
    data = base()
    data["links"].append({"between": ["b", "a"], "bandwidth": "1 Gbit/s", "latency": "1 ms"})
    with pytest.raises(InputError, match=r"`links`: b–a is given twice; keep one"):
        load(data)


def test_a_model_that_fits_nowhere():
    data = base()
    data["model"] = "llama-2-70b"
    with pytest.raises(
        InfeasibleError,
        match=r"inst\.yaml: no placement can fit: at decode step 8 \(context 24, the end of interval 0\) the model needs "
        r"[\d.]+ GiB, the devices have 16\.00 GiB in all",
    ):
        load(data)


def test_a_model_that_fits_nowhere_can_still_be_loaded_for_evaluation():
    data = base()
    data["model"] = "llama-2-70b"
    assert load(data, check_capacity=False).model.name == "llama-2-70b"


def test_an_attention_group_too_big_for_any_device():
    # Six 1 MiB devices hold the whole model together (about 4.6 MiB), but one group
    # with its KV cache at 8,192 tokens is 1.16 MiB: no single device holds it.
    data = {
        "model": TINY_MQA,
        "devices": [{"name": f"d{i}", "preset": "raspberry-pi-5", "memory": "1 MiB"} for i in range(6)],
        "mesh": {"bandwidth": "1 Gbit/s", "latency": "1 ms"},
        "workload": {"prompt_tokens": 8000, "generate_tokens": 192},
    }
    with pytest.raises(InfeasibleError) as info:
        load(data)
    message = str(info.value)
    assert "one attention group of layer 0 with its KV cache needs 1.16 MiB at the final context (8192 tokens); the largest device has 1.00 MiB" in message
    assert "in all" not in message  # the total fits: only the group is at fault


def test_hf_config_path_that_does_not_exist(tmp_path):
    data = base()
    data["model"] = {"hf_config": "nope/config.json"}
    with pytest.raises(
        InputError,
        match=r"`model\.hf_config`: '.*nope/config\.json' does not exist; give a config\.json or the folder holding it",
    ):
        instance_from_dict(data, source="inst.yaml", base=tmp_path)


def test_hf_config_may_name_a_model_folder(tmp_path):
    folder = tmp_path / "llama-3.2-1b"
    folder.mkdir()
    (folder / "config.json").write_text((HF_DIR / "llama-3.2-1b.json").read_text())
    data = base()
    data["model"] = {"hf_config": "llama-3.2-1b"}
    assert instance_from_dict(data, base=tmp_path).model.layers == 16


def test_hf_config_with_an_unknown_key():
    data = base()
    data["model"] = {"hf_config": str(HF_DIR / "llama-3.2-1b.json"), "nmae": "mine"}
    with pytest.raises(
        InputError,
        match=r"`model`: with `hf_config` only `name` may be given, not 'nmae'; to change the architecture, "
        r"give the model inline instead",
    ):
        load(data)


def test_hf_config_relative_to_the_instance_file(tmp_path):
    (tmp_path / "config.json").write_text((HF_DIR / "llama-3.2-1b.json").read_text())
    data = base()
    data["model"] = {"hf_config": "config.json", "name": "my-llama"}
    path = tmp_path / "inst.yaml"
    path.write_text(yaml.safe_dump(data))
    instance = load_instance(path)
    assert instance.model.name == "my-llama"
    assert (instance.model.layers, instance.model.kv_heads, instance.model.head_dim) == (16, 8, 64)


def test_missing_instance_file_lists_the_shipped_ones():
    with pytest.raises(InputError, match=r"instance 'nope\.yaml' is neither a file nor a shipped instance; shipped instances: .*edge/"):
        load_instance("nope.yaml")


def test_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml: not valid YAML"):
        load_instance(path)


# ============================================================================ good input
@pytest.mark.parametrize(
    "text, kind, expected",
    [
        ("6 GiB", BYTES, 6 * 2**30),
        ("100 Mbit/s", BYTES_PER_S, 12.5e6),
        ("2 ms", SECONDS, 0.002),
        ("1.2 TFLOPS", FLOP_PER_S, 1.2e12),
        ("2.5 Gbps", BYTES_PER_S, 312.5e6),
        ("68 GB/s", BYTES_PER_S, 68e9),
        ("0.5 GiB", BYTES, 2**29),
        ("8 GB", BYTES, 8e9),
    ],
)
def test_units_parse_to_exact_values(text, kind, expected):
    assert parse_quantity(text, kind, field="f") == expected


def test_bare_numbers_are_in_base_units():
    assert parse_quantity(1024, BYTES, field="f") == 1024.0
    assert parse_quantity(0.002, SECONDS, field="f") == 0.002


def test_units_reach_the_devices_and_links():
    instance = load(base())
    a = instance.devices[0]
    assert a.memory_bytes == 8 * 2**30  # preset raspberry-pi-5: 8 GiB
    assert a.peak_flops_per_s == 307.2e9
    assert a.memory_bandwidth_bytes_per_s == pytest.approx(17.1e9, rel=1e-15)  # 17.1 * 1e9 in floats
    link = instance.cluster.links[0]
    assert (link.bandwidth_bytes_per_s, link.latency_s) == (12.5e6, 0.002)


def test_mesh_expands_to_every_pair():
    data = base()
    data["devices"] += [{"name": c, "preset": "raspberry-pi-5"} for c in ("c", "d")]
    data["mesh"] = {"bandwidth": "1 Gbit/s", "latency": "0.5 ms"}
    data["links"][0]["latency"] = "0.1 ms"  # faster than any two mesh hops, so a–b is routed directly
    cluster = load(data).cluster
    pairs = {frozenset((link.u, link.v)) for link in cluster.links}
    assert pairs == {frozenset(p) for p in [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]}
    assert len(cluster.links) == 6
    # The explicit a–b link wins over the mesh default; every other pair gets the mesh.
    lat = cluster.route_latency_s
    assert lat[0, 1] == lat[1, 0] == 0.0001
    assert cluster.route_bandwidth_bytes_per_s[0, 1] == 12.5e6
    off_diagonal = ~np.eye(4, dtype=bool)
    off_diagonal[0, 1] = off_diagonal[1, 0] = False
    assert np.all(lat[off_diagonal] == 0.0005)
    assert np.all(cluster.route_bandwidth_bytes_per_s[off_diagonal] == 125e6)


def test_multi_hop_route_through_a_switch():
    data = base()
    data["switches"] = ["sw"]
    data["links"] = [
        {"between": ["a", "sw"], "bandwidth": "1 Gbit/s", "latency": "0.1 ms"},
        {"between": ["sw", "b"], "bandwidth": "100 Mbit/s", "latency": "0.3 ms"},
    ]
    cluster = load(data).cluster
    assert cluster.route_latency_s[0, 1] == pytest.approx(0.4e-3, rel=1e-12)  # summed
    assert cluster.route_bandwidth_bytes_per_s[0, 1] == 12.5e6  # bottleneck
    assert cluster.route_links[0, 1] == (0, 1)
    # a transfer of 1 MB: 0.4 ms + 1e6 / 12.5e6 s
    assert cluster.route_time_s(np.array([1e6]))[0, 0, 1] == pytest.approx(0.4e-3 + 0.08, rel=1e-12)


def test_route_is_the_minimum_latency_path_not_the_widest():
    data = base()
    data["switches"] = ["sw"]
    data["links"] = [
        {"between": ["a", "b"], "bandwidth": "10 Gbit/s", "latency": "10 ms"},
        {"between": ["a", "sw"], "bandwidth": "1 Gbit/s", "latency": "1 ms"},
        {"between": ["sw", "b"], "bandwidth": "100 Mbit/s", "latency": "1 ms"},
    ]
    cluster = load(data).cluster
    assert cluster.route_latency_s[0, 1] == pytest.approx(2e-3, rel=1e-12)
    assert cluster.route_bandwidth_bytes_per_s[0, 1] == 12.5e6


def test_multi_hop_route_in_a_shipped_instance():
    # qwen2.5-7b-6dev: pi-b hangs off pi-a (100 Mbit/s, 1 ms); pi-a and nuc sit on the switch.
    cluster = load_instance("edge/qwen2.5-7b-6dev").cluster
    pi_b, nuc = cluster.index("pi-b"), cluster.index("nuc")
    assert cluster.route_latency_s[pi_b, nuc] == pytest.approx(1.4e-3, rel=1e-12)
    assert cluster.route_bandwidth_bytes_per_s[pi_b, nuc] == 12.5e6
    assert len(cluster.route_links[pi_b, nuc]) == 3


def test_device_preset_overrides():
    data = base()
    data["devices"][0].update(memory="4 GiB", memory_efficiency=0.9, reserved_memory="512 MiB")
    a, b = load(data).devices
    preset = device_presets()["raspberry-pi-5"]
    assert preset["memory"] == "8 GiB"
    assert a.memory_bytes == 4 * 2**30  # overridden
    assert a.peak_flops_per_s == b.peak_flops_per_s == 307.2e9  # from the preset
    assert (a.memory_efficiency, b.memory_efficiency) == (0.9, 1.0)
    assert a.reserved_bytes == 2**29
    assert a.usable_bytes == 4 * 2**30 - 2**29
    assert b.disk_bandwidth_bytes_per_s == 90e6  # preset's optional field


def test_json_instance_is_accepted_like_yaml(tmp_path):
    source = instances_dir() / "edge" / "llama-3.2-1b-4dev.yaml"
    path = tmp_path / "same.json"
    path.write_text(json.dumps(yaml.safe_load(source.read_text())))
    from_yaml, from_json = load_instance(source), load_instance(path)
    assert from_json.name == from_yaml.name == "llama-3.2-1b-4dev"
    assert from_json.model == from_yaml.model
    assert from_json.devices == from_yaml.devices
    assert from_json.cluster.links == from_yaml.cluster.links
    assert from_json.cluster.switches == from_yaml.cluster.switches
    assert from_json.workload == from_yaml.workload
    np.testing.assert_array_equal(from_json.cluster.route_latency_s, from_yaml.cluster.route_latency_s)
    np.testing.assert_array_equal(from_json.cluster.route_bandwidth_bytes_per_s, from_yaml.cluster.route_bandwidth_bytes_per_s)


def test_json_schema_has_the_top_level_properties():
    schema = instance_json_schema()
    assert {"name", "description", "model", "devices", "switches", "links", "mesh", "network", "workload"} <= set(
        schema["properties"]
    )
    assert set(schema["required"]) == {"model", "devices", "workload"}
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # serialisable as it is


def test_a_slow_direct_link_is_bypassed_through_the_mesh():
    # a–b is given as 2 ms; a–c–b over the 0.5 ms mesh is 1 ms, so that is the route.
    data = base()
    data["devices"].append({"name": "c", "preset": "raspberry-pi-5"})
    data["mesh"] = {"bandwidth": "1 Gbit/s", "latency": "0.5 ms"}
    cluster = load(data).cluster
    assert cluster.route_latency_s[0, 1] == pytest.approx(1e-3, rel=1e-12)
    assert cluster.route_bandwidth_bytes_per_s[0, 1] == 125e6
    assert len(cluster.route_links[0, 1]) == 2


# ============================================================================ docs/instances.md
DOCS = Path(__file__).resolve().parents[1] / "docs" / "instances.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_docs_full_examples_are_the_shipped_files():
    full = [yaml.safe_load(block) for block in yaml_blocks() if block.startswith("name:")]
    assert len(full) == 2
    for data in full:
        shipped = yaml.safe_load((instances_dir() / "edge" / f"{data['name']}.yaml").read_text())
        assert data == shipped, f"docs/instances.md shows {data['name']} differently from the shipped file"


def test_docs_device_and_model_snippets_load():
    snippets = [yaml.safe_load(block) for block in yaml_blocks()]
    devices = next(s["devices"] for s in snippets if isinstance(s, dict) and any(d.get("name") == "custom-box" for d in s.get("devices", [])))
    inline = next(s["model"] for s in snippets if isinstance(s, dict) and isinstance(s.get("model"), dict) and "layers" in s["model"])
    data = {"model": inline, "devices": devices, "mesh": {"bandwidth": "1 Gbit/s", "latency": "1 ms"},
            "workload": {"prompt_tokens": 128, "generate_tokens": 16}}
    instance = load(data)
    pi_b = instance.devices[1]
    assert pi_b.usable_bytes == 3 * 2**30
    assert instance.model.kv_heads == 4


# ----------------------------------------------------------------------------- preset files
def _write_presets(tmp_path: Path, entries: dict) -> Path:
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


def test_preset_file_with_one_entry_is_used_relative_to_the_instance(tmp_path):
    _write_presets(tmp_path, {"this-box": {"memory": "16 GiB", "peak_flops": "200 GFLOPS",
                                           "memory_bandwidth": "20 GB/s", "compute_efficiency": 0.5,
                                           "block_overhead": "40 us"}})
    data = copy.deepcopy(BASE)
    data["devices"][0] = {"name": "a", "preset": "presets.yaml"}
    inst = instance_from_dict(data, base=tmp_path)
    device = inst.devices[0]
    assert device.memory_bytes == 16 * 2**30
    assert device.flops_per_s == pytest.approx(100e9)
    assert device.block_overhead_s == pytest.approx(40e-6)


def test_preset_file_names_an_entry_with_a_hash(tmp_path):
    _write_presets(tmp_path, {"x": {"memory": "2 GiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "10 GB/s"},
                              "y": {"memory": "4 GiB", "peak_flops": "1 TFLOPS", "memory_bandwidth": "10 GB/s"}})
    data = copy.deepcopy(BASE)
    data["devices"][0] = {"name": "a", "preset": "presets.yaml#y"}
    assert instance_from_dict(data, base=tmp_path).devices[0].memory_bytes == 4 * 2**30
    data["devices"][0] = {"name": "a", "preset": "presets.yaml"}
    with pytest.raises(InputError, match=r"presets\.yaml#NAME.*holds x, y"):
        instance_from_dict(data, base=tmp_path)


def test_preset_file_that_is_missing_or_malformed(tmp_path):
    data = copy.deepcopy(BASE)
    data["devices"][0] = {"name": "a", "preset": "nowhere.yaml"}
    with pytest.raises(InputError, match=r"devices\[0\].*preset file .*nowhere\.yaml.* does not exist.*placement profile"):
        instance_from_dict(data, base=tmp_path)
    (tmp_path / "bad.yaml").write_text("memory: [unclosed\n")
    data["devices"][0] = {"name": "a", "preset": "bad.yaml"}
    with pytest.raises(InputError, match="not valid YAML at line 2"):
        instance_from_dict(data, base=tmp_path)
    (tmp_path / "flat.yaml").write_text("memory: 8 GiB\n")
    data["devices"][0] = {"name": "a", "preset": "flat.yaml"}
    with pytest.raises(InputError, match="must map preset names to their fields"):
        instance_from_dict(data, base=tmp_path)
    (tmp_path / "typo.yaml").write_text("box: {memory: 8 GiB, peak_flops: 1 TFLOPS, memory_bandwith: 10 GB/s}\n")
    data["devices"][0] = {"name": "a", "preset": "typo.yaml"}
    with pytest.raises(InputError, match="unknown field.*memory_bandwith; known fields are"):
        instance_from_dict(data, base=tmp_path)
