"""The `placement` command: figures equal the library's, plans written by `solve`
evaluate to the same figures, listings name what ships, and bad input is one
`error:` line with exit code 2 (never a traceback).

Commands that succeed run in-process with typer's `CliRunner`; exit codes of bad
input go through `placement.cli.main` (which turns the library's errors into one
line and code 2) in a subprocess, as the installed `placement` script does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from rich.console import Console
from typer.testing import CliRunner

import placement
import placement.cli
from placement.cli import app
from placement.cost.model import model_names
from placement.instance import device_presets, instance_names, instances_dir
from placement.solvers.reference import pipeline_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_run import error_line, run_main  # noqa: E402

INSTANCE = "edge/llama-3.2-1b-2dev"
runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def write_instance(tmp_path: Path, edit, name: str = "inst.yaml") -> Path:
    data = yaml.safe_load((instances_dir() / f"{INSTANCE}.yaml").read_text())
    edit(data)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ============================================================================ figures
def test_python_m_placement_cli_runs_main():
    proc = run_main("methods")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == list(placement.METHODS)


def test_evaluate_json_equals_the_library(tmp_path):
    result = invoke("evaluate", INSTANCE, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    instance = placement.load_instance(INSTANCE)
    report = placement.evaluate(instance, pipeline_plan(instance))
    assert data["total_s"] == report.total_s
    assert data["ttft_s"] == report.ttft_s
    assert data["decode_s"] == report.decode_s.tolist()
    assert (data["instance"], data["plan"], data["feasible"]) == ("llama-3.2-1b-2dev", "pipeline", True)


def test_evaluate_table(tmp_path):
    result = invoke("evaluate", INSTANCE)
    assert result.exit_code == 0
    assert "time to first token" in result.stdout


def test_solve_out_then_evaluate_reproduces(tmp_path):
    plan_path = tmp_path / "tmp" / "plan.json"
    plan_path.parent.mkdir()
    solved = invoke("solve", INSTANCE, "--method", "pipeline", "--out", str(plan_path), "--json")
    assert solved.exit_code == 0
    solved_data = json.loads(solved.stdout)
    assert solved_data["status"] == "feasible"
    assert solved_data["success"] is True and solved_data["backend_objective_s"] is None
    assert json.loads(plan_path.read_text())["format"] == "placement-plan/1"

    evaluated = invoke("evaluate", INSTANCE, str(plan_path), "--json")
    assert evaluated.exit_code == 0
    assert json.loads(evaluated.stdout)["total_s"] == solved_data["report"]["total_s"]


def test_solve_table_mentions_the_plan_file(tmp_path):
    plan_path = tmp_path / "plan.json"
    result = invoke("solve", INSTANCE, "-m", "single", "-o", str(plan_path))
    assert result.exit_code == 0
    assert f"plan written to {plan_path}" in result.stdout.replace("\n", "")
    assert plan_path.is_file()


def test_solve_infeasible_exits_1():
    # Llama 3.1 8B (16 GB of weights) fits on none of the four devices alone.
    result = invoke("solve", "edge/llama-3.1-8b-4dev", "--method", "single", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "infeasible"


# ============================================================================ listings
def test_models():
    assert invoke("models").exit_code == 0
    result = invoke("models", "--json")
    assert result.exit_code == 0
    assert [m["name"] for m in json.loads(result.stdout)] == model_names()
    assert "llama-3.1-8b" in model_names()


def test_instances():
    assert invoke("instances").exit_code == 0
    result = invoke("instances", "--json")
    assert result.exit_code == 0
    assert [row["name"] for row in json.loads(result.stdout)] == instance_names()
    assert INSTANCE in instance_names()


def test_devices():
    assert invoke("devices").exit_code == 0
    result = invoke("devices", "--json")
    assert result.exit_code == 0
    presets = json.loads(result.stdout)
    assert list(presets) == list(device_presets())
    assert {"raspberry-pi-5", "jetson-orin-nano", "nvidia-l4"} <= set(presets)


def test_methods():
    result = invoke("methods")
    assert result.exit_code == 0
    assert result.stdout.split() == list(placement.METHODS)


def test_schema():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"model", "devices", "links", "mesh", "switches", "network", "workload"} <= set(schema["properties"])


def test_listings_show_whole_names_at_80_columns(monkeypatch):
    # Rich draws tables 80 columns wide when stdout is not a terminal (`placement models | grep ...`).
    monkeypatch.setattr(placement.cli, "out", Console(width=80))
    shown = {command: invoke(command).stdout for command in ("instances", "models", "devices")}
    missing = [(command, name) for command, names in
               (("instances", instance_names()), ("models", model_names()), ("devices", list(device_presets())))
               for name in names if name not in shown[command]]
    assert not missing


# ============================================================================ bad input: exit 2, one line
def test_missing_instance_file():
    line = error_line(run_main("evaluate", "no/such-instance.yaml"))
    assert "instance 'no/such-instance.yaml' is neither a file nor a shipped instance" in line
    assert INSTANCE in line  # lists the shipped ones


def test_unknown_method():
    line = error_line(run_main("solve", INSTANCE, "--method", "milq"))
    assert line == f"error: unknown method 'milq'; methods are {', '.join(placement.METHODS)}"


def test_memory_in_milliseconds(tmp_path):
    path = write_instance(tmp_path, lambda d: d["devices"][0].update(memory="5 ms"))
    line = error_line(run_main("solve", str(path)))
    assert line == "error: `devices[0] (pi5).memory`: '5 ms' is not an amount of memory; write it like '6 GiB'"


def test_plan_for_another_instance(tmp_path):
    plan_path = tmp_path / "plan.json"
    invoke("solve", "edge/llama-3.2-1b-4dev", "--out", str(plan_path))
    line = error_line(run_main("evaluate", INSTANCE, str(plan_path)))
    assert "that the instance lacks" in line


def test_error_text_is_not_rich_markup(tmp_path):
    path = write_instance(tmp_path, lambda d: d["devices"][0].update(memory="[/b] 8 GiB"))
    line = error_line(run_main("evaluate", str(path)))
    assert "'[/b] 8 GiB'" in line  # printed as text, not parsed as a closing markup tag


def test_error_names_a_path_with_brackets(tmp_path):
    write_instance(tmp_path, lambda d: d["devices"][0].update(memroy="5 GiB"), name="[draft]/inst.yaml")
    line = error_line(run_main("evaluate", "[draft]/inst.yaml", cwd=tmp_path))
    assert "[draft]/inst.yaml" in line


def test_malformed_plan_file(tmp_path):
    data = pipeline_plan(placement.load_instance(INSTANCE)).to_dict()
    data["intervals"][0]["attention"] = 5
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(data))
    line = error_line(run_main("evaluate", INSTANCE, str(plan_path)))
    assert line == "error: plan interval 0: `attention` must be a list with one entry per layer, got 5"


def test_plan_file_with_extras_that_are_not_a_mapping(tmp_path):
    data = pipeline_plan(placement.load_instance(INSTANCE)).to_dict()
    data["extras"] = [1]
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(data))
    error_line(run_main("evaluate", INSTANCE, str(plan_path)))
