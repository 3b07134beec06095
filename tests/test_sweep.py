"""Sweeps: cached per job, resumable after a kill, the same on Dask as on local processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from placement.experiments import sweep
from placement.experiments.gap_table import summarize
from placement.experiments.sweep import Job, job_key, run_sweep

FAST = [Job("paper-small/h8-3dev-medium-s1-roofline", "milp"), Job("paper-small/h8-3dev-medium-s1-roofline", "single"),
        Job("paper-small/h8-3dev-medium-s1-kafetzis", "milp"), Job("paper-small/h8-3dev-medium-s1-kafetzis", "pipeline")]
TIMING = ("solve_time_s", "wall_s", "decision_median_s", "median_time_s")


def _stable(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_results_are_cached_and_not_recomputed(tmp_path, monkeypatch):
    first = run_sweep(FAST[:2], tmp_path, n_jobs=1)
    calls = []
    monkeypatch.setattr(sweep, "run_job", lambda job: calls.append(job) or {})
    again = run_sweep(FAST[:2], tmp_path, n_jobs=1)
    assert calls == []
    assert again == first
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(f"{job_key(j)}.json" for j in FAST[:2])


def test_a_killed_sweep_resumes_with_every_result_exactly_once(tmp_path):
    jobs = FAST * 1
    script = (
        "import sys; from placement.experiments.sweep import Job, run_sweep\n"
        f"jobs = [Job(*j) for j in {[(j.instance, j.method) for j in jobs]!r}]\n"
        f"run_sweep(jobs, {str(tmp_path)!r}, n_jobs=1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    cache = tmp_path / "cache"
    deadline = time.time() + 60
    while time.time() < deadline and not (cache.is_dir() and any(cache.glob("*.json"))):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    finished_before = len(list(cache.glob("*.json")))
    assert 1 <= finished_before <= len(jobs)
    rows = run_sweep(jobs, tmp_path, n_jobs=1)
    assert len(rows) == len(jobs)
    assert [(r["instance"], r["method"]) for r in rows] == [(j.instance, j.method) for j in jobs]
    files = sorted(p.name for p in cache.glob("*.json"))
    assert files == sorted({f"{job_key(j)}.json" for j in jobs})
    for path in cache.glob("*.json"):  # every file is a whole result
        assert json.loads(path.read_text())["status"] in ("optimal", "feasible", "infeasible")


def test_gaps_are_never_below_the_optimum(tmp_path):
    rows = run_sweep(FAST, tmp_path, n_jobs=2)
    summary = {s["method"]: s for s in summarize(rows)}
    assert summary["milp"]["worst_gap"] == pytest.approx(0.0, abs=1e-9)
    for row in rows:
        if row["gap"] is not None:
            assert row["gap"] >= -1e-9, row


def test_dask_local_cluster_gives_the_same_table(tmp_path):
    local = run_sweep(FAST, tmp_path / "local", n_jobs=2)
    on_dask = run_sweep(FAST, tmp_path / "dask", dask="local")
    assert _stable(on_dask) == _stable(local)
    assert _stable(summarize(on_dask)) == _stable(summarize(local))


def test_unknown_suite_and_method_are_clear(tmp_path):
    from placement.errors import InputError
    from placement.experiments.gap_table import reproduce_gap_table

    with pytest.raises(InputError, match=r"unknown suite 'nope'; suites are .*paper-small"):
        reproduce_gap_table("nope", out_dir=tmp_path)
    with pytest.raises(InputError, match=r"unknown method\(s\) magic; methods are"):
        reproduce_gap_table("paper-small", methods=["magic"], quick=True, out_dir=tmp_path)
