"""`placement reproduce moe-table`: expert placement against a layer pipeline and one device.

Mixtral-8x7B and Qwen3-30B-A3B with 4-bit weights (16-bit KV cache and activations)
on heterogeneous edge clusters of 4 and 8 devices (`CLUSTERS`, presets of the device
catalog) on a switched 1 Gbit/s, 0.2 ms mesh (wired Ethernet). Every instance is solved
by ``single`` (the fastest device that holds the model), ``pipeline-dp`` (the exact layer
pipeline), ``experts`` (the pipeline with each MoE layer's experts spread where the
expected expert stage is least), ``myopic+`` (with its expert moves) and ``milp``
(head-level placement with one holding pattern of experts per MoE layer, under a time
limit) for its lower bound. The gap column is the MILP's total over its bound: a bound
over the MILP's space (experts in multiples of ``q`` on at most ``s`` devices per layer,
`placement.solvers.milp_experts`, stated in the MILP's ``stats["expert_space"]``).
Figures are expected costs at batch 1 under uniform top-k routing (docs/moe.md).
Outputs: ``moe-table.csv`` and ``moe-table.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from placement.experiments.output import versions, write_json, write_rows_csv
from placement.files import write_text_atomic

__all__ = ["reproduce_moe_table", "moe_instance", "CLUSTERS", "MODELS", "METHODS"]

MODELS = ("mixtral-8x7b", "qwen3-30b-a3b")
CLUSTERS = {
    4: ("jetson-orin-nx-16gb", "mini-pc-intel-n100", "jetson-orin-nano-super", "raspberry-pi-5"),
    8: ("jetson-orin-nx-16gb", "mini-pc-intel-n100", "jetson-orin-nano-super", "raspberry-pi-5",
        "apple-m2-laptop", "jetson-orin-nano", "phone-snapdragon-8-gen-3", "raspberry-pi-4"),
}
METHODS = ("single", "pipeline-dp", "experts", "myopic+", "milp")
MESH = {"bandwidth": "1 Gbit/s", "latency": "0.2 ms"}  # wired Ethernet through one switch
WORKLOAD = {"prompt_tokens": 64, "generate_tokens": 32, "precision": {"weights": 4}}
QUICK = {"generate_tokens": 8, "milp_time_limit": 10.0, "device_counts": (4,)}


def moe_instance(model: str, n_devices: int, generate_tokens: int = WORKLOAD["generate_tokens"]):
    """The cluster of `n_devices` (`CLUSTERS`) running `model` at 4 bits, built in memory."""
    from placement.instance import instance_from_dict

    devices = [{"name": f"{preset}-{i}", "preset": preset} for i, preset in enumerate(CLUSTERS[n_devices])]
    return instance_from_dict({
        "name": f"{model}-{n_devices}dev-4bit", "model": model, "devices": devices, "mesh": MESH,
        "workload": {**WORKLOAD, "generate_tokens": generate_tokens},
    }, check_capacity=False)


def _experts_moved(plan) -> int | str:
    """Routed experts off their FFN device in the plan's first interval ("" without a plan)."""
    if plan is None:
        return ""
    p = plan.intervals[0]
    if p.experts is None:
        return 0
    home = np.asarray(p.ffn).argmax(axis=1)[:, None]
    return int(((p.experts >= 0) & (p.experts != home)).sum())


def _row(case: dict[str, Any], method: str, result, seconds: float) -> dict[str, Any]:
    report = result.report
    row = {**case, "method": method, "status": result.status, "solve_time_s": seconds,
           "bound_s": result.bound, "experts_moved": _experts_moved(result.plan)}
    if report is not None and report.feasible:
        row |= {"mean_token_ms": report.mean_token_s * 1e3, "ttft_s": report.ttft_s, "total_s": report.total_s,
                "devices_used": int((report.peak_memory_bytes.max(axis=0) > 0).sum())}
    return row


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# moe-table: expert placement vs layer pipeline vs one device", "",
             "4-bit weights, switched 1 Gbit/s / 0.2 ms mesh, expected cost at batch 1 under uniform top-k routing.",
             "Gap: the MILP's total over its bound, a bound over every placement whose experts follow the",
             "MILP's holding patterns (docs/moe.md, \"Experts in the MILP\").", "",
             "| model | devices | method | status | mean token (ms) | TTFT (s) | total (s) | experts moved | gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        # a bound at or below zero (HiGHS stopped before its first LP) says nothing
        gap = f"{row['total_s'] / row['bound_s'] - 1:.1%}" if (row.get("bound_s") or 0) > 0 and "total_s" in row else ""
        fig = (lambda key, fmt: format(row[key], fmt) if key in row else "—")  # noqa: E731
        lines.append(f"| {row['model']} | {row['devices']} | {row['method']} | {row['status']} | "
                     f"{fig('mean_token_ms', '.1f')} | {fig('ttft_s', '.2f')} | {fig('total_s', '.2f')} | "
                     f"{row['experts_moved']} | {gap} |")
    return "\n".join(lines) + "\n"


def reproduce_moe_table(*, quick: bool = False, out_dir: Path | str = "results/moe-table",
                        models: list[str] | None = None, device_counts: list[int] | None = None,
                        milp_time_limit: float = 60.0,
                        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Solve every (model, cluster) with `METHODS` and write the table.

    Parameters
    ----------
    quick : bool
        4 devices only, 8 generated tokens, a 10-second MILP.
    out_dir : Path or str
    models : list of str, optional
        Default `MODELS`.
    device_counts : list of int, optional
        Keys of `CLUSTERS`; default 4 and 8.
    milp_time_limit : float
        Seconds per MILP.
    progress : callable, optional
        Called with (done, total).

    Returns
    -------
    dict
        ``rows`` and the output ``paths``.
    """
    import placement

    counts = list(device_counts or (QUICK["device_counts"] if quick else tuple(CLUSTERS)))
    bad = [n for n in counts if n not in CLUSTERS]
    if bad:
        raise placement.InputError(f"moe-table: device counts must be among {', '.join(map(str, CLUSTERS))}, got {bad}")
    tokens = QUICK["generate_tokens"] if quick else WORKLOAD["generate_tokens"]
    limit = QUICK["milp_time_limit"] if quick else milp_time_limit
    cases = [(m, n) for m in (models or MODELS) for n in counts]
    rows, done = [], 0
    for model, n in cases:
        instance = moe_instance(model, n, tokens)
        for method in METHODS:
            began = time.perf_counter()
            result = placement.solve(instance, method=method, **({"time_limit": limit} if method == "milp" else {}))
            rows.append(_row({"model": model, "devices": n}, method, result, time.perf_counter() - began))
            done += 1
            if progress is not None:
                progress(done, len(cases) * len(METHODS))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "moe-table.csv", "markdown": out / "moe-table.md", "config": out / "config.json"}
    write_rows_csv(paths["csv"], rows)
    write_text_atomic(paths["markdown"], _markdown(rows))
    write_json(paths["config"], {"quick": quick, "models": list(models or MODELS), "device_counts": counts,
                                 "generate_tokens": tokens, "milp_time_limit_s": limit, "versions": versions()})
    return {"rows": rows, "paths": {k: str(v) for k, v in paths.items()}}
