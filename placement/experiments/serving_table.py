"""`placement reproduce serving-table`: Flover's temporal fusion against static batching, under load.

The claim under test (Flover: fused decode of concurrent requests with eviction of
finished ones): serving a stream of requests with token-level fusion beats
FasterTransformer-style static batching and one-at-a-time serving, the more so the
higher the load. Every (model, placement, policy, rate) is one seeded simulation
(`placement.serving.simulate`) on the shared cost model.

Models: Llama-3.1-8B and GPT-2 on the eight-device edge cluster of
``instances/edge/llama-3.1-8b-8dev.yaml``. Placements: the back ends ``single``,
``pipeline-dp``, ``myopic+`` (head-level) and ``tp``, each solved for one request of
the workload's mean length (a placement that does not fit is left out; one that
equals an earlier placement is listed once); policy ``instances`` uses its own copies.
Rates are load factors times the sequential capacity of the first placement
(``1 / mean service time of one request alone``), so both models are swept from light
load to overload. Outputs: ``serving-table.csv`` (one row per simulation),
``serving-table.md`` (p99s, throughput, and fused's speedups), ``serving-table.png``
(mean end-to-end latency against rate) and ``config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from placement.experiments.output import versions, write_rows_csv

__all__ = ["reproduce_serving_table", "serving_instance", "MODELS", "LOADS", "PLACEMENTS"]

CLUSTER = "edge/llama-3.1-8b-8dev"
MODELS = ("llama-3.1-8b", "gpt2")
PLACEMENTS = ("single", "pipeline-dp", "myopic+", "tp")
POLICY_ORDER = ("sequential", "static-batch", "fused", "instances")
LOADS = (0.5, 1.0, 2.0, 4.0, 8.0)  # × the sequential capacity
PROMPT_TOKENS = (64, 256)  # drawn uniformly per request
GENERATE_TOKENS = (64, 192)
FULL = {"requests": 400, "loads": LOADS, "placements": PLACEMENTS}
QUICK = {"requests": 120, "loads": (0.5, 2.0, 8.0), "placements": ("single", "pipeline-dp", "tp")}
SEED = 0


def serving_instance(model: str):
    """`model` on the shipped eight-device edge cluster, one request of mean length as its workload."""
    import yaml

    from placement.instance import instance_from_dict, instances_dir

    data = yaml.safe_load((instances_dir() / f"{CLUSTER}.yaml").read_text())
    mean = lambda r: int(round(sum(r) / 2))  # noqa: E731
    data.update(name=f"{model}-edge-8dev", model=model,
                workload={"prompt_tokens": mean(PROMPT_TOKENS), "generate_tokens": mean(GENERATE_TOKENS)})
    return instance_from_dict(data, check_capacity=False)


def _placements(instance, names: tuple[str, ...]) -> list[tuple[str, Any, str]]:
    """(name, plan, note) of every back end's plan that fits, identical plans listed once."""
    import placement

    out, seen = [], {}
    for name in names:
        result = placement.solve(instance, method=name)
        if result.plan is None or result.report is None or not result.report.feasible:
            continue
        key = json.dumps(result.plan.to_dict()["intervals"])
        if key in seen:
            seen[key][2].append(name)
            continue
        entry = (name, result.plan, [])
        seen[key] = entry
        out.append(entry)
    return [(name, plan, ", ".join(also)) for name, plan, also in out]


def _row(model: str, placement: str, rate: float, load: float, report) -> dict[str, Any]:
    s = report.summary()
    keep = ("throughput_tokens_s", "mean_e2e_s", "p50_e2e_s", "p90_e2e_s", "p99_e2e_s", "mean_ttft_s", "p50_ttft_s",
            "p99_ttft_s", "p50_tpot_s", "p99_tpot_s", "served", "refused", "queued", "max_in_service", "makespan_s")
    return {"model": model, "placement": placement, "policy": report.policy, "rate": rate, "load": load,
            **{k: s[k] for k in keep}}


def _speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fused against static-batch and sequential at the same model, placement and rate."""
    by = {(r["model"], r["placement"], r["rate"], r["policy"]): r for r in rows}
    out = []
    for (model, placement, rate, policy), fused in by.items():
        if policy != "fused":
            continue
        entry = {"model": model, "placement": placement, "rate": rate, "load": fused["load"]}
        for other in ("static-batch", "sequential"):
            base = by.get((model, placement, rate, other))
            if base is not None:
                entry[f"latency_vs_{other}"] = base["mean_e2e_s"] / fused["mean_e2e_s"]
                entry[f"throughput_vs_{other}"] = fused["throughput_tokens_s"] / base["throughput_tokens_s"]
        out.append(entry)
    return out


def _markdown(rows: list[dict[str, Any]], speedups: list[dict[str, Any]], notes: dict[str, str], requests: int) -> str:
    lines = ["# Serving under load: Flover's fused decode against static batching and one at a time", "",
             f"{requests} Poisson requests per run (seed {SEED}), prompts uniform on {list(PROMPT_TOKENS)} tokens, "
             f"{list(GENERATE_TOKENS)} decode steps; rate = load × the sequential capacity. static-batch: batches of 8, "
             "no wait. Times in seconds, throughput in output tokens/s. Simulated on the shared cost model "
             "(docs/serving.md), not measured.", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += [f"## {model}", ""]
        if notes.get(model):
            lines += [notes[model], ""]
        lines += ["| placement | policy | rate (req/s) | load | throughput | p50 e2e | p99 e2e | p99 TTFT | p99 per token | refused |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["model"] == model):
            lines.append(f"| {r['placement']} | {r['policy']} | {r['rate']:.4g} | {r['load']:g} | {r['throughput_tokens_s']:.1f} "
                         f"| {r['p50_e2e_s']:.3g} | {r['p99_e2e_s']:.3g} | {r['p99_ttft_s']:.3g} | {r['p99_tpot_s']:.3g} "
                         f"| {r['refused']} |")
        lines += ["", "Speedup of `fused` (Flover's terms: mean end-to-end latency of the baseline / fused's; "
                  "throughput of fused / the baseline's):", "",
                  "| placement | load | latency vs static-batch | latency vs sequential | throughput vs static-batch | throughput vs sequential |",
                  "|---|---:|---:|---:|---:|---:|"]
        for s in (s for s in speedups if s["model"] == model):
            lines.append(f"| {s['placement']} | {s['load']:g} | {s.get('latency_vs_static-batch', np.nan):.2f}× "
                         f"| {s.get('latency_vs_sequential', np.nan):.2f}× | {s.get('throughput_vs_static-batch', np.nan):.2f}× "
                         f"| {s.get('throughput_vs_sequential', np.nan):.2f}× |")
        lines.append("")
    return "\n".join(lines)


def _figure(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.8 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        placement = next(r["placement"] for r in mine if r["policy"] == "fused")
        for policy in POLICY_ORDER:
            points = sorted((r["rate"], r["mean_e2e_s"]) for r in mine if r["policy"] == policy
                            and (r["placement"] == placement or policy == "instances"))
            if points:
                ax.plot(*zip(*points), marker="o", label=policy)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels collide on a short axis
        ax.set_xlabel("arrival rate (requests/s)")
        ax.set_ylabel("mean end-to-end latency (s)")
        ax.set_title(f"{model}, placement {placement}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reproduce_serving_table(quick: bool = False, out_dir: str | Path = "results/serving-table", *,
                            models: list[str] | tuple[str, ...] | None = None,
                            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Simulate models × placements × policies × rates; write CSV, Markdown, a figure and the configuration.

    Parameters
    ----------
    quick : bool
        Fewer requests (120), three loads and three placements (`QUICK`).
    out_dir : path
    models : list of str, optional
        Default `MODELS`.
    progress : callable(done, total), optional

    Returns
    -------
    dict
        ``rows`` (one per simulation), ``speedups`` and the output ``paths``.
    """
    from placement.cost.model import model_names
    from placement.errors import InputError
    from placement.serving import generate_trace, simulate

    grid = QUICK if quick else FULL
    models = list(models or MODELS)
    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise InputError(f"unknown model(s) {', '.join(map(repr, unknown))}; models are {', '.join(model_names())}")
    rows, notes, done = [], {}, 0
    total = len(models) * len(grid["loads"]) * (len(grid["placements"]) * 3 + 1)
    for model in models:
        instance = serving_instance(model)
        placements = _placements(instance, grid["placements"])
        if not placements:
            raise InputError(f"no placement of {model} fits the edge cluster")
        notes[model] = "; ".join(f"`{name}` gives the same plan as {also}" for name, _, also in placements if also)
        alone = simulate(instance, placements[0][1], generate_trace(grid["requests"], 1e-9, PROMPT_TOKENS,
                                                                     GENERATE_TOKENS, SEED), "sequential")
        capacity = 1.0 / alone.e2e_s.mean()  # requests/s one placement serves one at a time
        for load in grid["loads"]:
            rate = load * capacity
            requests = generate_trace(grid["requests"], rate, PROMPT_TOKENS, GENERATE_TOKENS, SEED)
            for name, plan, _ in placements:
                for policy in ("sequential", "static-batch", "fused"):
                    rows.append(_row(model, name, rate, load, simulate(instance, plan, requests, policy)))
            try:
                rows.append(_row(model, "copies", rate, load, simulate(instance, None, requests, "instances")))
            except InputError as exc:  # no device holds the whole model: the same at every rate
                if "`instances`" not in notes[model]:
                    notes[model] = "; ".join(filter(None, [notes[model], f"`instances` is left out: {exc}"]))
            done += len(placements) * 3 + 1
            if progress is not None:
                progress(done, total)
    speedups = _speedups(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "serving-table.csv", "markdown": out / "serving-table.md", "figure": out / "serving-table.png",
             "config": out / "config.json"}
    write_rows_csv(paths["csv"], rows)
    paths["markdown"].write_text(_markdown(rows, speedups, notes, grid["requests"]))
    _figure(rows, paths["figure"])
    paths["config"].write_text(json.dumps({
        "models": models, "cluster": CLUSTER, "quick": quick, "requests": grid["requests"], "loads": list(grid["loads"]),
        "placements": list(grid["placements"]), "prompt_tokens": PROMPT_TOKENS, "generate_tokens": GENERATE_TOKENS,
        "seed": SEED, "versions": versions()}, indent=1))
    return {"rows": rows, "speedups": speedups, "paths": paths}
