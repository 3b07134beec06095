"""The Python builder and the YAML round trip: the same validation as files, equal instances after save/load."""

from __future__ import annotations

import pint
import pytest
import yaml

import placement
from placement.builder import instances_equal
from placement.errors import InputError
from placement.instance import instance_names, load_instance
from placement.solvers.reference import pipeline_plan


@pytest.mark.parametrize("name", instance_names())
def test_every_shipped_instance_saves_and_loads_back_equal(tmp_path, name):
    original = load_instance(name, check_capacity=False)
    if original.serving is not None:  # not written yet: refused, never a file that silently drops it
        with pytest.raises(placement.InputError, match=r"writing the `serving` section is not supported"):
            original.save(tmp_path / "copy.yaml")
        assert not (tmp_path / "copy.yaml").exists()
        return
    path = original.save(tmp_path / "copy.yaml")
    again = load_instance(path, check_capacity=False)
    assert instances_equal(original, again)
    assert again.to_yaml() == original.to_yaml()  # a fixed point: writing is deterministic
    plan = pipeline_plan(original)
    assert placement.evaluate(again, plan).total_s == placement.evaluate(original, plan).total_s


def test_builder_gives_the_same_instance_as_the_shipped_file():
    # instances/edge/llama-3.2-1b-4dev.yaml, written in Python.
    shipped = load_instance("edge/llama-3.2-1b-4dev")
    built = placement.Instance.build(
        name="llama-3.2-1b-4dev", description=shipped.description, model="llama-3.2-1b",
        devices=[placement.device("raspberry-pi-5", f"pi-{x}", reserved="1 GiB") for x in "abcd"],
        switches=["switch"],
        links=[placement.link(f"pi-{x}", "switch", bandwidth="1 Gbit/s", latency="0.1 ms") for x in "abcd"],
        workload=placement.Workload(prompt_tokens=256, generate_tokens=512, interval_tokens=64))
    assert instances_equal(built, shipped)


def test_pint_quantities_and_numbered_presets():
    u = pint.UnitRegistry()  # the user's own registry, not the library's
    inst = placement.Instance.build(
        model="llama-3.2-1b",
        devices=[placement.device("jetson-orin-nano", reserved=1.5 * u.GiB)] * 2 + [placement.device("raspberry-pi-5")],
        mesh={"bandwidth": 100 * u.Mbit / u.s, "latency": 2 * u.ms},
        workload={"prompt_tokens": 128, "generate_tokens": 64},
        precision={"weights": 8})
    assert inst.cluster.names == ("jetson-orin-nano-1", "jetson-orin-nano-2", "raspberry-pi-5")
    assert inst.devices[0].reserved_bytes == 1.5 * 2**30
    assert {link.bandwidth_bytes_per_s for link in inst.cluster.links} == {12.5e6}  # 100 Mbit/s = 12.5 MB/s
    assert {link.latency_s for link in inst.cluster.links} == {0.002}
    assert len(inst.cluster.links) == 3  # the mesh: every pair of three devices
    assert inst.precision.ffn[0] == 8 and inst.precision.kv[0] == inst.model.kv_bits


def _file_error(tmp_path, data) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as caught:
        load_instance(path)
    return str(caught.value).removeprefix(f"{path}: ")


GOOD = {"model": "llama-3.2-1b", "mesh": {"bandwidth": "1 Gbit/s", "latency": "1 ms"},
        "workload": {"prompt_tokens": 16, "generate_tokens": 8}}


@pytest.mark.parametrize("entry, match", [
    ({"name": "a", "preset": "no-such-board"}, "unknown preset 'no-such-board'"),
    ({"name": "a", "preset": "raspberry-pi-5", "memory": "5 ms"}, "is not an amount of memory"),
    ({"name": "a", "preset": "raspberry-pi-5", "colour": "red"}, "unknown field"),
    ({"name": "a", "memory": "8 GiB"}, "peak_flops` is missing"),
])
def test_builder_errors_are_the_file_loaders(tmp_path, entry, match):
    other = {"name": "b", "preset": "raspberry-pi-5"}
    with pytest.raises(InputError, match=match) as built:
        placement.Instance.build(devices=[entry, other], **GOOD)
    assert str(built.value).removeprefix("built instance: ") == _file_error(tmp_path, {**GOOD, "devices": [entry, other]})


def test_device_needs_a_preset_or_a_name_and_save_needs_a_folder(tmp_path):
    with pytest.raises(InputError, match="give a `preset`"):
        placement.device()
    with pytest.raises(InputError, match="does not exist"):
        load_instance("edge/llama-3.2-1b-2dev").save(tmp_path / "missing" / "x.yaml")
    assert list(tmp_path.iterdir()) == []
