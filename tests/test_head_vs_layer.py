"""`reproduce head-vs-layer`: generated instances, the head-level optimum against the layer-based one, the command.

Head-level plans include every layer-based plan (a whole layer is all its groups,
its projection and its FFN on one device), so wherever the MILP proves its optimum
its total latency is at most `pipeline-dp`'s, the exact layer-based optimum.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from placement.cli import app
from placement.cost.tables import block_memory
from placement.experiments.head_vs_layer import (
    DEFAULT_DEVICE_COUNTS,
    DEFAULT_MODELS,
    DEVICE_POOL,
    LARGEST_SHARE,
    MEMORY_RATIO,
    instance_data,
    reproduce_head_vs_layer,
)
from placement.instance import instance_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_run import error_line, run_main  # noqa: E402

# Both prove their MILP optimum in about a second.
TINY = {"models": ["qwen2.5-0.5b", "llama-3.2-1b"], "device_counts": [2]}
MIB = 2**20


# ============================================================================ instances
@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_instances_are_deterministic_and_need_several_devices(model):
    for n_devices in DEFAULT_DEVICE_COUNTS:
        data = instance_data(model, n_devices)
        assert yaml.safe_dump(data) == yaml.safe_dump(instance_data(model, n_devices))
        instance = instance_from_dict(data)  # validates, and checks that the model fits the devices together
        assert instance.n_devices == n_devices
        assert {d["preset"] for d in data["devices"]} <= set(DEVICE_POOL)
        need = block_memory(instance, instance.precision, instance.workload.interval_max_context()).total.max()
        usable = [d.usable_bytes for d in instance.devices]
        assert max(usable) < need, "one device holds the whole model"
        assert max(usable) <= LARGEST_SHARE * need
        assert sum(usable) == pytest.approx(MEMORY_RATIO * need, abs=n_devices * MIB)


def test_a_larger_cluster_extends_a_smaller_one():
    devices = {n: instance_data("llama-3.2-3b", n)["devices"] for n in DEFAULT_DEVICE_COUNTS}
    presets = {n: [d["preset"] for d in devices[n]] for n in devices}
    for small, large in zip(DEFAULT_DEVICE_COUNTS, DEFAULT_DEVICE_COUNTS[1:]):
        assert presets[large][:small] == presets[small]
    assert len(set(presets[max(DEFAULT_DEVICE_COUNTS)])) == max(DEFAULT_DEVICE_COUNTS)  # all different
    assert instance_data("llama-3.2-3b", 8, seed=1) != instance_data("llama-3.2-3b", 8)


# ============================================================================ the comparison
def test_the_head_level_optimum_is_never_worse_than_the_layer_based_one(tmp_path):
    result = reproduce_head_vs_layer(**TINY, out_dir=tmp_path, n_jobs=1)
    summary = result["summary"]
    assert [(s["model"], s["devices"]) for s in summary] == [(m, 2) for m in TINY["models"]]
    proven = [s for s in summary if s["milp_status"] == "optimal" and s["layer_total_s"] is not None]
    assert proven, "no case to check: the MILP proved no optimum"
    for s in proven:
        assert s["head_total_s"] <= s["layer_total_s"] * (1 + 1e-9), s
        assert s["speedup"] >= 1 - 1e-9
        assert s["max_speedup"] == pytest.approx(s["speedup"], rel=1e-6)  # optimum = bound
    for s in summary:
        milp = next(r for r in result["rows"]
                    if r["method"] == "milp" and r["instance"].endswith(f"/{s['instance']}.yaml"))
        assert s["head_total_s"] <= milp["total_s"]  # the best head-level plan is at least the MILP's
        assert s["layer_infeasible"] == (s["layer_total_s"] is None and s["head_total_s"] is not None)


def test_unknown_model_and_too_few_devices_are_clear(tmp_path):
    from placement.errors import InputError

    with pytest.raises(InputError, match=r"unknown model\(s\) 'llama-9b'; models are .*llama-3.2-1b"):
        reproduce_head_vs_layer(models=["llama-9b"], out_dir=tmp_path)
    with pytest.raises(InputError, match=r"`device_counts` must be at least 2"):
        reproduce_head_vs_layer(models=["llama-3.2-1b"], device_counts=[1], out_dir=tmp_path)


# ============================================================================ the command
def test_command_writes_the_four_files(tmp_path):
    out = tmp_path / "hvl"
    result = CliRunner().invoke(app, ["reproduce", "head-vs-layer", "--models", "llama-3.2-1b", "--devices", "2",
                                      "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    for name in ("head-vs-layer.csv", "head-vs-layer.md", "head-vs-layer.png", "config.json"):
        assert (out / name).is_file(), name
    assert "## llama-3.2-1b" in result.stdout
    assert (out / "instances" / "llama-3.2-1b-2dev.yaml").is_file()
    config = json.loads((out / "config.json").read_text())
    assert (config["models"], config["device_counts"]) == (["llama-3.2-1b"], [2])
    assert {"seed", "versions", "milp_options"} <= set(config)
    again = CliRunner().invoke(app, ["reproduce", "head-vs-layer", "--models", "llama-3.2-1b", "--devices", "2",
                                     "--out", str(out), "--json"])  # from the cache
    assert again.exit_code == 0
    assert [row["devices"] for row in json.loads(again.stdout)] == [2]


def test_command_unknown_model_exits_2(tmp_path):
    line = error_line(run_main("reproduce", "head-vs-layer", "--models", "llama-9b", "--out", str(tmp_path)))
    assert line.startswith("error: unknown model(s) 'llama-9b'; models are ")
    assert "llama-3.1-8b" in line


def test_command_options_of_the_other_table_exit_2(tmp_path):
    line = error_line(run_main("reproduce", "gap-table", "--models", "llama-3.2-1b", "--out", str(tmp_path)))
    assert line == "error: --models is an option of head-vs-layer, not gap-table"
    line = error_line(run_main("reproduce", "head-vs-layer", "--devices", "2,four", "--out", str(tmp_path)))
    assert "`--devices` must be comma-separated whole numbers" in line
