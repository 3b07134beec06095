"""Fuzz the `placement` command with mutated instance and plan files (issue 13).

Every case is one subprocess (``python -m placement.cli``, as the installed script
runs), so that tracebacks, banners on stdout and exit codes are what a user sees.
A case is a shipped instance (and, for half the cases, the pipeline plan of it) with
one to three mutations: a field set to a value of the wrong type, size or unit, a
field removed or added, a duplicate key, a different text encoding, a truncated or
deeply nested file, a YAML alias bomb. Each run is classified as

- ``ok``: exit 0, stdout one JSON document, every figure finite, ``--out`` file whole;
- ``clean error``: exit 1 or 2, stderr one ``error: ...`` line (warnings allowed), no traceback;
- ``traceback``, ``hang`` (no exit within the timeout), ``non-finite`` (NaN or infinity
  in the figures of a feasible report), ``invalid json``, ``lost/truncated file``,
  ``unclear error`` (a non-zero exit without the one line).

Usage::

    python benchmarks/fuzz_cli.py --cases 5000 --jobs 2 --out fuzz-results.json

The same seed gives the same cases. Examples of every failure class are kept in the
output file.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASES = ["edge/llama-3.2-1b-2dev", "edge/llama-3.2-1b-4dev", "paper-small/h8-3dev-medium-s1-kafetzis",
         "milp/llama-3.2-1b-6dev"]
METHODS = ["pipeline", "greedy", "myopic", "single", "round-robin", "split", "tp", "milp"]
VALUES = [None, True, False, 0, -1, 1, 2**63, 10**9, 1e308, -1e-300, 1e-300, float("inf"), float("nan"), "", "x",
          "'true'", "16", "8 GiB", "8 Gb", "200 mbps", "1e-300 FLOP/s", "1e308 s", "-5 ms", "nan GB", "inf Mbit/s",
          "3", [1, 2], [], {}, {"a": 1}, "\u00e9\u4e2d", "1" * 400, [[[]]]]
TIMEOUT_S = 120


# ----------------------------------------------------------------------------- mutations
def _paths(data, prefix=()):
    """Every (path) to a scalar or container inside `data`."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data[:4]):
            out += _paths(value, prefix + (i,))
    return out


def _set(data, path, value):
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def _delete(data, path):
    target = data
    for step in path[:-1]:
        target = target[step]
    if isinstance(target, dict):
        del target[path[-1]]
    elif len(target) > 1:
        del target[path[-1]]


def mutate_data(data, rng: random.Random):
    """One structural mutation of parsed data, in place."""
    paths = _paths(data)
    path = rng.choice(paths)
    kind = rng.random()
    if kind < 0.6:
        _set(data, path, copy.deepcopy(rng.choice(VALUES)))
    elif kind < 0.75:
        _delete(data, path)
    elif kind < 0.85:
        target = data
        for step in path[:-1]:
            target = target[step]
        if isinstance(target, dict):
            target[rng.choice(["precison", "memroy", "extra", "name", "interval", "format"])] = rng.choice(VALUES)
    else:  # scale a number by a large factor
        target = data
        for step in path[:-1]:
            target = target[step]
        value = target[path[-1]]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            target[path[-1]] = value * rng.choice([1e6, 1e-6, -1, 1e300])


def mutate_text(text: str, rng: random.Random) -> bytes:
    """A text-level mutation: encoding, truncation, duplication, nesting, an alias bomb, or none."""
    kind = rng.random()
    if kind < 0.05:
        return text.encode("utf-16")
    if kind < 0.1:
        return ("description: caf\u00e9\n" + text).encode("latin-1", errors="replace")
    if kind < 0.15:
        return text[: rng.randrange(max(len(text), 1))].encode()
    if kind < 0.2:
        first = text.splitlines()[rng.randrange(len(text.splitlines()))] if text.strip() else "a: 1"
        return (text + "\n" + first + "\n").encode()
    if kind < 0.23:
        return ("model: " + "[" * 3000 + "]" * 3000 + "\n").encode()
    if kind < 0.26:
        lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]
        return ("\n".join(lines) + "\n" + text).encode()
    return text.encode()


def make_case(i: int, seed: int, folder: Path) -> dict:
    """Write case `i` (an instance file and maybe a plan file) and return how to run it."""
    rng = random.Random(seed * 1_000_003 + i)
    base = rng.choice(BASES)
    data = yaml.safe_load((ROOT / "instances" / f"{base}.yaml").read_text())
    case = {"id": i, "base": base}
    with_plan = rng.random() < 0.4
    if not with_plan:
        for _ in range(rng.randint(1, 3)):
            mutate_data(data, rng)
    as_json = rng.random() < 0.2
    text = json.dumps(data, default=str) if as_json else yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    instance = folder / f"case{i}.{'json' if as_json else 'yaml'}"
    instance.write_bytes(mutate_text(text, rng) if not with_plan else text.encode())
    case["instance"] = str(instance)
    if with_plan:
        plan = _pipeline_plan(base)
        for _ in range(rng.randint(1, 3)):
            mutate_data(plan, rng)
        path = folder / f"case{i}-plan.json"
        path.write_bytes(mutate_text(json.dumps(plan), rng) if rng.random() < 0.3 else json.dumps(plan).encode())
        case["args"] = ["evaluate", str(instance), str(path), "--json"]
    elif rng.random() < 0.5:
        case["args"] = ["evaluate", str(instance), "--json"]
    else:
        out = folder / f"case{i}-out.json"
        method = rng.choice(METHODS)
        case["args"] = ["solve", str(instance), "--method", method, "--json", "--out", str(out), "--time-limit", "20"]
        case["out"] = str(out)
    return case


_PLANS: dict[str, dict] = {}


def _pipeline_plan(base: str) -> dict:
    if base not in _PLANS:
        from placement import load_instance
        from placement.solvers.reference import pipeline_plan

        _PLANS[base] = pipeline_plan(load_instance(base, check_capacity=False)).to_dict()
    return copy.deepcopy(_PLANS[base])


# ----------------------------------------------------------------------------- running and judging
def _finite_figures(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_figures(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_figures(v) for v in value)
    return True


def classify(case: dict, proc: subprocess.CompletedProcess | None) -> str:
    if proc is None:
        return "hang"
    if "Traceback" in proc.stderr or "Traceback" in proc.stdout:
        return "traceback"
    if proc.returncode in (1, 2) and not proc.stdout.strip():
        lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("warning: ")]
        return "clean error" if len(lines) == 1 and lines[0].startswith("error: ") else "unclear error"
    try:
        document = json.loads(proc.stdout, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except ValueError:
        return "invalid json"
    report = document.get("report", document) if isinstance(document, dict) else None
    if isinstance(report, dict) and report.get("feasible"):
        # the CLI writes a non-finite figure as null: a feasible report must have none
        figures = [report.get(k) for k in ("total_s", "ttft_s", "mean_token_s")] + list(report.get("decode_s") or [])
        if not _finite_figures(report) or any(f is None for f in figures):
            return "non-finite"
    if case.get("out") and Path(case["out"]).exists():
        try:
            json.loads(Path(case["out"]).read_text())
        except ValueError:
            return "lost/truncated file"
    if proc.returncode not in (0, 1):  # 1: an infeasible plan, reported in full
        return "unclear error"
    return "ok"


def run_case(case: dict) -> tuple[dict, str, str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run([sys.executable, "-m", "placement.cli", *case["args"]], capture_output=True, text=True,
                              env=env, timeout=TIMEOUT_S, cwd=str(ROOT), errors="replace")
    except subprocess.TimeoutExpired:
        proc = None
    verdict = classify(case, proc)
    detail = "" if proc is None or verdict in ("ok", "clean error") else (proc.stderr[-600:] or proc.stdout[:300])
    return case, verdict, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=Path("fuzz-results.json"))
    args = parser.parse_args()
    import joblib

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="placement-fuzz-") as tmp:
        cases = [make_case(i, args.seed, Path(tmp)) for i in range(args.cases)]
        results = joblib.Parallel(n_jobs=args.jobs, return_as="generator")(joblib.delayed(run_case)(c) for c in cases)
        counts: Counter = Counter()
        examples: dict[str, list] = {}
        for done, (case, verdict, detail) in enumerate(results, 1):
            counts[verdict] += 1
            if verdict not in ("ok", "clean error") and len(examples.setdefault(verdict, [])) < 10:
                examples[verdict].append({"args": case["args"], "base": case["base"], "detail": detail})
            if done % 250 == 0 or done == len(cases):  # a partial record survives an interrupted campaign
                print(f"{done}/{len(cases)}: {dict(counts)}", file=sys.stderr, flush=True)
                summary = {"cases": args.cases, "done": done, "seed": args.seed, "jobs": args.jobs,
                           "seconds": time.perf_counter() - started, "counts": dict(counts), "examples": examples}
                args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "examples"}, indent=1))


if __name__ == "__main__":
    main()
