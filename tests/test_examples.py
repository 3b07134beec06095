"""The scripts in examples/ run as a user would run them, and produce what they say."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import placement
from placement.builder import instances_equal

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, out: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_home_cluster_solves_several_ways_and_reports(tmp_path):
    stdout = _run("home_cluster.py", tmp_path)
    assert "fastest feasible: myopic+" in stdout  # 22.64 s against pipeline-dp's 22.66 s
    assert "single       infeasible" in stdout  # 16 GB of weights: no device holds the model alone
    saved = placement.load_instance(tmp_path / "home-cluster.yaml")
    sys.path.insert(0, str(EXAMPLES))
    try:
        from home_cluster import home_cluster
    finally:
        sys.path.remove(str(EXAMPLES))
    assert instances_equal(saved, home_cluster())
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="timeline"' in page


def test_gap_table_over_a_folder_of_own_instances(tmp_path):
    stdout = _run("gap_table.py", tmp_path)
    rows = list(csv.DictReader((tmp_path / "gap-table.csv").open()))
    instances = {row["instance"] for row in rows}
    assert instances == {str(tmp_path / "instances" / f"wifi-{b}mbit.yaml") for b in (50, 800)}
    milp = [row for row in rows if row["method"] == "milp"]
    assert all(row["status"] == "optimal" and float(row["gap"]) == 0.0 for row in milp)
    # Every other feasible method is at least as slow as the proven optimum.
    assert all(float(row["gap"]) >= -1e-9 for row in rows if row["gap"])
    assert "| single | 0/2 | no feasible plan |" in stdout
    assert json.loads((tmp_path / "config.json").read_text())["instances"] == sorted(instances)


def test_export_writes_every_runtime_and_refuses_head_level(tmp_path):
    stdout = _run("export_plan.py", tmp_path)
    llama = (tmp_path / "llama.cpp.sh").read_text()
    # pipeline-dp puts layer 0 on the phone and layers 1-31 (+ the output layer) on orin-nx.
    assert "--rpc 192.168.1.12:50052 --tensor-split 1,32" in llama
    assert "VLLM_PP_LAYER_PARTITION=1,31" in (tmp_path / "vllm.sh").read_text()
    shards = json.loads((tmp_path / "exo-partition.json").read_text())["shards"]
    assert [(s["start_layer"], s["end_layer"]) for s in shards] == [(0, 0), (1, 31)]
    assert "myopic's plan: llama.cpp places whole layers" in stdout


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_every_code_block_of_the_api_docs_runs(capsys):
    namespace: dict = {}
    for block in _python_blocks(EXAMPLES.parent / "docs" / "api.md"):
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - the docs' own examples
    printed = capsys.readouterr().out
    assert "is not an amount of memory" in printed  # the builder's error is the loader's
    assert "does not take option(s) colour" in printed
    assert "embed; layers 0–7: all 8 groups + projection + FFN" in printed
    assert namespace["milp"].status == "optimal" and namespace["milp"].gap == pytest.approx(0.0, abs=1e-9)
