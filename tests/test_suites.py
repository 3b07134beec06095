"""The generated `paper-small` suite: deterministic, shipped exactly as generated, and
every instance meets its memory condition (the model fits on no single device at the
final context, but in all devices together with 20–60 % slack) and the paper's settings.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import yaml

from placement import load_instance
from placement.cost.blocks import block_memory
from placement.experiments.suites import GENERATED_MARK, paper_small_suite, render_instance, write_suite
from placement.instance import instances_dir

FOLDER = instances_dir() / "paper-small"
MIB = 2**20


@functools.cache
def suite(seed: int = 1) -> tuple[dict, ...]:
    return tuple(paper_small_suite(seed))


def names() -> list[str]:
    return [d["name"] for d in suite()]


# ----------------------------------------------------------------------------- the generator
def test_same_seed_same_dicts():
    assert paper_small_suite(seed=1) == list(suite(1))


def test_another_seed_other_dicts():
    other = paper_small_suite(seed=2)
    assert [d["name"] for d in other] == [n.replace("-s1-", "-s2-") for n in names()]
    assert [d["devices"] for d in other] != [d["devices"] for d in suite()]


def test_size_and_names():
    assert 12 <= len(suite()) <= 16
    assert len(set(names())) == len(names())
    for data in suite():
        model, devices, band, seed, profile = data["name"].split("-")
        assert data["model"] == {"h8": "synthetic-h8-d512", "h16": "synthetic-h16-d1024"}[model]
        assert len(data["devices"]) == int(devices.removesuffix("dev"))
        assert band in ("low", "medium") and seed == "s1"
        assert data["workload"]["profile"] == {"kafetzis": "kafetzis2025", "roofline": "roofline"}[profile]


# ----------------------------------------------------------------------------- the shipped files
def test_folder_holds_exactly_the_suite():
    assert sorted(p.stem for p in FOLDER.glob("*.yaml")) == sorted(names())
    assert not list(FOLDER.glob("*.json"))


@pytest.mark.parametrize("index", range(len(suite())), ids=names())
def test_shipped_file_is_what_the_generator_writes(index):
    data = suite()[index]
    path = FOLDER / f"{data['name']}.yaml"
    text = path.read_text()
    assert text.startswith(GENERATED_MARK)
    rerun = "run `python -m placement.experiments.suites`"
    assert text == render_instance(data), f"{path.name} differs from the generator: {rerun}"
    assert yaml.safe_load(text) == data


def test_write_suite_writes_the_shipped_bytes_and_drops_stale_generated_files(tmp_path):
    (tmp_path / "old-generated.yaml").write_text(GENERATED_MARK + " (old)\nname: old\n")
    (tmp_path / "hand-made.yaml").write_text("name: hand-made\n")
    written = write_suite(tmp_path)
    assert [p.name for p in written] == [f"{n}.yaml" for n in names()]
    for path in written:
        assert path.read_bytes() == (FOLDER / path.name).read_bytes()
    assert not (tmp_path / "old-generated.yaml").exists()
    assert (tmp_path / "hand-made.yaml").exists()


# ----------------------------------------------------------------------------- every instance
def model_bytes_at_final_context(instance) -> float:
    final = instance.workload.interval_max_context()[-1:]
    return float(block_memory(instance, instance.precision, final)["total"][0])


@pytest.mark.parametrize("name", names())
def test_memory_condition(name):
    instance = load_instance(f"paper-small/{name}")  # the capacity check passes
    model = model_bytes_at_final_context(instance)
    usable = [d.usable_bytes for d in instance.devices]
    assert max(usable) < model, "the model must not fit on the largest device"
    slack = sum(usable) / model - 1
    assert 0.2 - 1e-3 <= slack <= 0.6 + 1e-3, f"slack {slack:.3f} outside 20-60 %"


@pytest.mark.parametrize("name", names())
def test_settings_of_the_paper(name):
    instance = load_instance(f"paper-small/{name}")
    w = instance.workload
    assert 16 <= w.prompt_tokens <= 32 and 5 <= w.generate_tokens <= 20
    assert w.tau == 1 and w.batch == 1
    assert instance.model.layers == 1
    assert {instance.precision.attention[0], instance.precision.kv[0], instance.precision.activation} == {32}
    assert 3 <= instance.n_devices <= 5
    for d in instance.devices:
        assert 5e9 <= d.peak_flops_per_s <= 50e9
        assert d.reserved_bytes == 0
        if w.profile == "kafetzis2025":
            assert d.memory_bandwidth_bytes_per_s == 10e9
        else:
            assert 5e9 <= d.memory_bandwidth_bytes_per_s <= 20e9
    links = instance.cluster.links
    n = instance.n_devices
    assert len(links) == n * (n - 1) // 2  # a full mesh, no switches
    low, high = (10e6, 100e6) if "-low-" in name else (0.5e9, 2e9)
    for link in links:
        assert link.latency_s == 0
        assert low / 8 * (1 - 1e-3) <= link.bandwidth_bytes_per_s <= high / 8 * (1 + 1e-3)


def test_both_profiles_share_devices_links_and_workload():
    by_name = {d["name"]: d for d in suite()}
    for name in names():
        if not name.endswith("-kafetzis"):
            continue
        k, r = by_name[name], by_name[name.removesuffix("-kafetzis") + "-roofline"]
        assert k["links"] == r["links"] and k["model"] == r["model"]
        assert {**k["workload"], "profile": None} == {**r["workload"], "profile": None}
        compute = lambda data: [(d["name"], d["peak_flops"]) for d in data["devices"]]  # noqa: E731
        assert compute(k) == compute(r)
        # memory: the same shares of each profile's model
        mem = lambda data: np.array([float(d["memory"].removesuffix(" MiB")) for d in data["devices"]])  # noqa: E731
        np.testing.assert_allclose(mem(k) / mem(k).sum(), mem(r) / mem(r).sum(), atol=2e-3)


def test_link_bandwidths_are_drawn_per_pair():
    for data in suite():
        bandwidths = [link["bandwidth"] for link in data["links"]]
        assert len(set(bandwidths)) > 1  # not one figure for the whole mesh (two may round alike)
        pairs = [tuple(link["between"]) for link in data["links"]]
        devices = [d["name"] for d in data["devices"]]
        assert pairs == list(itertools.combinations(devices, 2))
