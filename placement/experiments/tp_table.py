"""`placement reproduce tp-table`: tensor parallelism against pipelines and head-level placement (TPI-LLM).

The claims under test (Li et al., "TPI-LLM", arXiv 2410.00531): for one user on weak
devices, tensor parallelism beats pipelining; link latency, not bandwidth, dominates
the all-reduce, so a star beats a ring; a sliding window of layer weights streamed
from disk lets a 70B model run in about 3.1 GB per device.

Instances are built in memory (`weak_instance`): ``N`` weak edge devices cycling
through `PRESETS` (Raspberry Pi 5, Raspberry Pi 4, an Intel N100 mini PC, a Jetson
Orin Nano), each with an NVMe-class disk (`DISK`), on a switched mesh whose latency and
bandwidth are swept. Every instance is solved by ``tp`` (optimal ratios), ``tp-even``
(TPI-LLM's even split, `solve_tp(shares="even")`), ``pipeline-dp`` (the exact layer
pipeline) and a head-level method (``myopic+`` by default, or ``milp`` with a time
limit). Llama-2-70B does not fit in the devices' memory: only ``tp`` with offload runs
it, once with the presets' memory and once with every device capped at
`TPI_LLM_MEMORY` (3.1 GB). Outputs: ``tp-table.csv`` (one row per instance and
method), ``tp-table.md``, ``tp-table.png`` (per-token latency against link latency)
and ``collectives.png`` (where the star beats the ring).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from placement.experiments.output import save_figure, versions, write_rows_csv
from placement.files import write_text_atomic

__all__ = ["reproduce_tp_table", "weak_instance", "PRESETS", "DEFAULT_MODELS", "DEFAULT_LATENCIES_MS"]

PRESETS = ("raspberry-pi-5", "raspberry-pi-4", "mini-pc-intel-n100", "jetson-orin-nano")
DISK = "2 GB/s"  # an NVMe SSD; the presets' microSD cards (45-90 MB/s) would stream a 70B layer in seconds
TPI_LLM_MEMORY = "3.1 GB"  # TPI-LLM's reported peak per device for Llama-2-70B
DEFAULT_MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b")
DEFAULT_DEVICE_COUNTS = (4, 8)
DEFAULT_LATENCIES_MS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
DEFAULT_BANDWIDTHS = ("100 Mbit/s", "1 Gbit/s")
QUICK = {"models": ("llama-2-7b", "llama-2-70b"), "device_counts": (4, 8), "latencies_ms": (0.1, 2.0, 20.0),
         "bandwidths": ("1 Gbit/s",)}
WORKLOAD = {"prompt_tokens": 64, "generate_tokens": 32}
OFFLOAD_MODELS = ("llama-2-70b",)  # run with offload only: no method without it fits


def weak_instance(model: str, n_devices: int, latency_ms: float, bandwidth: str, *, memory: str | None = None,
                  disk: str = DISK, network: str = "switched"):
    """`n_devices` weak edge devices (cycling through `PRESETS`) on a uniform mesh, built in memory."""
    from placement.instance import instance_from_dict

    devices = [{"name": f"{PRESETS[i % len(PRESETS)]}-{i}", "preset": PRESETS[i % len(PRESETS)], "disk_bandwidth": disk,
                **({"memory": memory} if memory else {})} for i in range(n_devices)]
    return instance_from_dict({
        "name": f"{model}-{n_devices}weak-{latency_ms:g}ms-{bandwidth.replace(' ', '').replace('/', 'p')}",
        "model": model, "devices": devices, "network": network,
        "mesh": {"bandwidth": bandwidth, "latency": f"{latency_ms} ms"}, "workload": WORKLOAD,
    }, check_capacity=False)


def _row(case: dict[str, Any], method: str, result, seconds: float) -> dict[str, Any]:
    report = result.report
    row = {**case, "method": method, "status": result.status, "feasible": bool(report is not None and report.feasible)}
    if report is None:
        return {**row, "solve_time_s": seconds}
    plan = result.plan
    peak = report.peak_memory_bytes.max(axis=0)
    used = peak > 0
    row.update({
        "mean_token_ms": report.mean_token_s * 1e3, "ttft_s": report.ttft_s, "total_s": report.total_s,
        "collective": plan.collective if method.startswith("tp") else "",
        "devices_used": int(used.sum()),
        "peak_memory_max_gib": float(peak.max() / 2**30), "peak_memory_mean_gib": float(peak[used].mean() / 2**30),
        "decode_disk_s": report.breakdown_s.get("decode_disk", 0.0),
        "windows": json.dumps(plan.windows) if plan.windows else "",
        "solve_time_s": seconds,
    })
    return row


def _solve(instance, method: str, head_options: dict[str, Any]):
    import placement
    from placement.solvers.tp import solve_tp

    if method == "tp":
        return solve_tp(instance)
    if method == "tp-even":
        return solve_tp(instance, shares="even")
    return placement.solve(instance, method=method, **(head_options if method in ("milp",) else {}))


def _markdown(rows: list[dict[str, Any]], methods: list[str], head: str) -> str:
    lines = ["# Tensor parallel vs pipeline vs head-level placement (TPI-LLM, arXiv 2410.00531)", "",
             f"Mean per-token latency in ms (decode, {WORKLOAD['generate_tokens']} tokens after a "
             f"{WORKLOAD['prompt_tokens']}-token prompt); `—` = the method finds no plan that fits. "
             f"`tp`: optimal ratios; `tp-even`: TPI-LLM's even split; head-level: `{head}`. Devices cycle through "
             f"{', '.join(PRESETS)}, each with a {DISK} disk. Best per row in bold. Every method minimizes the "
             "total (prefill + decode), so a method may trade per-token latency for a faster prefill.", ""]
    keys = sorted({(r["model"], r["devices"], r["bandwidth"], r["latency_ms"], r.get("memory_cap", "")) for r in rows},
                  key=lambda k: (k[0], k[4], k[1], k[2], k[3]))
    table: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        table.setdefault((r["model"], r["devices"], r["bandwidth"], r["latency_ms"], r.get("memory_cap", "")), {})[r["method"]] = r
    current = None
    for key in keys:
        model = key[0]
        if model != current:
            current = model
            lines += ["", f"## {model}", "",
                      "| devices | bandwidth | latency (ms) | memory cap | " + " | ".join(methods) + " | tp collective | tp peak GiB (max / mean) |",
                      "|---:|---|---:|---|" + "---:|" * len(methods) + "---|---|"]
        cells = table[key]
        values = {m: cells[m]["mean_token_ms"] for m in methods if m in cells and cells[m]["feasible"]}
        best = min(values.values()) if values else None
        text = []
        for m in methods:
            if m in values:
                v = f"{values[m]:.1f}"
                text.append(f"**{v}**" if values[m] == best else v)
            else:
                text.append("—" if m in cells else "")
        tp = cells.get("tp", {})
        peak = f"{tp['peak_memory_max_gib']:.2f} / {tp['peak_memory_mean_gib']:.2f}" if tp.get("feasible") else ""
        lines.append(f"| {key[1]} | {key[2]} | {key[3]:g} | {key[4] or 'presets'} | " + " | ".join(text)
                     + f" | {tp.get('collective', '')} | {peak} |")
    return "\n".join(lines) + "\n"


def _bytes_per_s(bandwidth: str) -> float:
    from placement.cost.units import BYTES_PER_S, parse_quantity

    return parse_quantity(bandwidth, BYTES_PER_S, field="bandwidth")


def _figure(rows: list[dict[str, Any]], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from placement.experiments.figures import plain_log_axis, shared_legend

    models = sorted({r["model"] for r in rows})
    counts = sorted({r["devices"] for r in rows})
    styles = dict(zip(counts, ["-", "--", ":", "-."] * len(counts)))
    fig, axes = plt.subplots(1, len(models), figsize=(4.8 * len(models), 4.0), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model and not r.get("memory_cap")]
        bandwidth = max({r["bandwidth"] for r in mine}, key=_bytes_per_s)  # the fastest (a text sort put 100 Mbit/s first)
        for n in counts:  # every device count: colour = method, line style = devices
            for method in methods:
                points = sorted((r["latency_ms"], r["mean_token_ms"]) for r in mine if r["method"] == method
                                and r["devices"] == n and r["bandwidth"] == bandwidth and r["feasible"])
                if points:
                    ax.plot(*zip(*points), marker="o", ms=4, color=colours[method], ls=styles[n],
                            label=f"{method}, {n} devices")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.xaxis)
        plain_log_axis(ax.yaxis)
        ax.set_xlabel("link latency (ms)")
        ax.set_ylabel("mean per-token latency (ms)")
        ax.set_title(f"{model}, {bandwidth}", fontsize=9)
    shared_legend(fig, axes[0], columns=len(methods))
    rows_of_legend = -(-len({l for ax in axes[0] for l in ax.get_legend_handles_labels()[1]}) // len(methods))
    fig.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def collectives_figure(path: Path, hidden: int = 4096, bits: int = 16) -> None:
    """Where the star all-reduce beats the ring: per-all-reduce time ratio over latency × bandwidth, n = 4 and 8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from placement.collectives import all_reduce_seconds, star_ring_crossover_latency_s

    M = hidden * bits / 8
    latency = np.logspace(-5, -1.3, 120)  # 10 µs … 50 ms
    bandwidth = np.logspace(5, 9, 120)  # 100 kB/s … 1 GB/s
    from placement.experiments.figures import plain_log_axis

    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8), sharey=True, gridspec_kw={"wspace": 0.08})
    for ax, n in zip(axes, (4, 8)):
        ratio = np.array([[all_reduce_seconds("star", n, M, a, b) / all_reduce_seconds("ring", n, M, a, b)
                           for a in latency] for b in bandwidth])
        mesh = ax.pcolormesh(latency * 1e3, bandwidth * 8 / 1e6, np.log2(ratio), cmap="coolwarm", vmin=-2, vmax=2,
                             shading="auto")
        ax.plot([star_ring_crossover_latency_s(n, M, b) * 1e3 for b in bandwidth], bandwidth * 8 / 1e6, "k--",
                label=r"$\alpha^* = M/(\beta\,n(n-2))$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(latency[0] * 1e3, latency[-1] * 1e3)
        plain_log_axis(ax.xaxis, steps=(1,))
        plain_log_axis(ax.yaxis, steps=(1,))
        ax.set_xlabel("link latency α (ms)")
        ax.set_title(f"n = {n}, M = {M / 1024:g} KiB: blue = star faster", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("bandwidth β (Mbit/s)")  # shared: one label, not one printed over the left panel
    bar = fig.colorbar(mesh, ax=axes, label="star time / ring time", ticks=[-2, -1, 0, 1, 2])
    bar.ax.set_yticklabels(["0.25×", "0.5×", "1×", "2×", "4×"])  # the colour is log2 of the ratio
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def reproduce_tp_table(quick: bool = False, out_dir: str | Path = "results/tp-table", *,
                       models: list[str] | tuple[str, ...] | None = None,
                       device_counts: list[int] | tuple[int, ...] | None = None,
                       latencies_ms: list[float] | tuple[float, ...] | None = None,
                       bandwidths: list[str] | tuple[str, ...] | None = None,
                       head_method: str = "myopic+", milp_time_limit: float = 30.0,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Solve the grid with ``tp``, ``tp-even``, ``pipeline-dp`` and a head-level method; write CSV, Markdown, PNGs.

    Parameters
    ----------
    quick : bool
        A smaller grid (`QUICK`): Llama-2-7B and 70B, 4 and 8 devices, three latencies, 1 Gbit/s.
    out_dir : path
    models, device_counts, latencies_ms, bandwidths : optional
        Override the grid (defaults `DEFAULT_MODELS`, (4, 8), `DEFAULT_LATENCIES_MS`, `DEFAULT_BANDWIDTHS`).
    head_method : {"myopic+", "milp", "myopic"}
        The head-level method (``milp`` runs with `milp_time_limit` seconds).
    milp_time_limit : float
    progress : callable(done, total), optional

    Returns
    -------
    dict
        ``rows`` and the output ``paths``.

    Raises
    ------
    InputError
        On an unknown model or head method, or a device count below 2.
    """
    import placement
    from placement.cost.model import model_names

    grid = QUICK if quick else {}
    models = list(models or grid.get("models", DEFAULT_MODELS))
    device_counts = list(device_counts or grid.get("device_counts", DEFAULT_DEVICE_COUNTS))
    latencies_ms = list(latencies_ms or grid.get("latencies_ms", DEFAULT_LATENCIES_MS))
    bandwidths = list(bandwidths or grid.get("bandwidths", DEFAULT_BANDWIDTHS))
    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise placement.InputError(f"unknown model(s) {', '.join(map(repr, unknown))}; models are {', '.join(model_names())}")
    if head_method not in ("myopic+", "milp", "myopic") or head_method not in placement.METHODS:
        raise placement.InputError(f"`head_method` must be one of myopic+, milp, myopic (registered), got {head_method!r}")
    if any(n < 2 for n in device_counts):
        raise placement.InputError(f"`device_counts` must be at least 2, got {device_counts}")
    methods = ["tp", "tp-even", "pipeline-dp", head_method]
    cases = []
    for model in models:
        offload = model in OFFLOAD_MODELS
        for n in device_counts:
            for bandwidth in bandwidths:
                for latency in latencies_ms:
                    caps = ("", TPI_LLM_MEMORY) if offload else ("",)
                    for cap in caps:
                        cases.append(({"model": model, "devices": n, "bandwidth": bandwidth, "latency_ms": latency,
                                       "memory_cap": cap}, ["tp", "tp-even"] if offload else methods))
    total = sum(len(m) for _, m in cases)
    rows, done = [], 0
    for case, case_methods in cases:
        instance = weak_instance(case["model"], case["devices"], case["latency_ms"], case["bandwidth"],
                                 memory=case["memory_cap"] or None)
        for method in case_methods:
            began = time.perf_counter()
            result = _solve(instance, method, {"time_limit": milp_time_limit})
            rows.append(_row(case, method, result, time.perf_counter() - began))
            done += 1
            if progress is not None:
                progress(done, total)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "tp-table.csv", "markdown": out / "tp-table.md", "figure": out / "tp-table.png",
             "collectives": out / "collectives.png", "config": out / "config.json"}
    write_rows_csv(paths["csv"], rows)
    write_text_atomic(paths["markdown"], _markdown(rows, methods, head_method))
    _figure(rows, methods, paths["figure"])
    collectives_figure(paths["collectives"])
    write_text_atomic(paths["config"], json.dumps({
        "models": models, "device_counts": device_counts, "latencies_ms": latencies_ms, "bandwidths": bandwidths,
        "quick": quick, "presets": PRESETS, "disk": DISK, "tpi_llm_memory": TPI_LLM_MEMORY, "workload": WORKLOAD,
        "methods": methods, "head_method": head_method, "milp_time_limit": milp_time_limit,
        "versions": versions()}, indent=1))
    return {"rows": rows, "paths": paths}
