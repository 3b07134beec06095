"""`placement reproduce head-vs-layer`: head-level against layer-based partitioning as models and clusters grow.

The claim under test (Kafetzis, Khalili, Koutsopoulos, arXiv 2505.02533): placing
attention groups, projections and FFNs one by one beats placing whole layers, and the
advantage grows with the model and the number of devices, because finer blocks pack
memory better and let devices work on one layer's heads in parallel.

One instance per (model, device count) is generated from a fixed seed (`instance_data`):
the first ``N`` devices of one seeded draw of edge presets, on a switched mesh, with
memory set so that all devices together hold `MEMORY_RATIO` times the model and none
holds the model alone. Each is solved by the head-level methods (the exact ``milp``,
and ``myopic+`` where registered) and the layer-based ones (``pipeline-dp``, the exact
optimum over contiguous layer ranges, and ``memory-proportional``). Outputs:
``head-vs-layer.csv`` (one row per instance), ``head-vs-layer.md`` (a table per
model), ``head-vs-layer.png`` (speedup against device count) and ``config.json``.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from placement.experiments.output import save_figure, versions
from placement.files import atomic_write, write_text_atomic
from placement.experiments.sweep import Job, run_sweep

__all__ = ["DEFAULT_DEVICE_COUNTS", "DEFAULT_MODELS", "SEED", "instance_data", "reproduce_head_vs_layer", "summarize"]

DEFAULT_MODELS = ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b")
DEFAULT_DEVICE_COUNTS = (2, 4, 6, 8)
QUICK_MODELS = ("llama-3.2-1b", "llama-3.2-3b")
QUICK_DEVICE_COUNTS = (2, 4)
SEED = 2505_02533
# Edge presets of placement/cost/devices.yaml the devices are drawn from (compute and bandwidth).
DEVICE_POOL = ("raspberry-pi-5", "raspberry-pi-4", "jetson-orin-nano", "jetson-orin-nano-super", "jetson-orin-nx-16gb",
               "phone-snapdragon-8-gen-3", "apple-m2-laptop", "mini-pc-intel-n100", "intel-nuc-14-pro")
MEMORY_RATIO = 1.3  # all devices' memory / the model's resident bytes at the final context
LARGEST_SHARE = 0.8  # no device gets more than this fraction of the model
MESH = {"bandwidth": "1 Gbit/s", "latency": "0.5 ms"}
WORKLOAD = {"prompt_tokens": 128, "generate_tokens": 64}  # one interval: a static placement
HEAD_METHODS = ("milp", "myopic+", "myopic")  # those of placement.METHODS run
LAYER_METHODS = ("pipeline-dp", "memory-proportional")
_MAX_DEVICES = 64
MILP_TIME_LIMIT_S = {False: 60.0, True: 20.0}  # by `quick`


@functools.cache
def _model_bytes(model: str) -> float:
    """The model's resident bytes (weights and KV cache) at the final context, from the cost model."""
    from placement.cost.tables import block_memory
    from placement.instance import instance_from_dict

    probe = instance_from_dict({"model": model, "devices": [{"name": "probe", "preset": DEVICE_POOL[0]}],
                                "workload": WORKLOAD}, source=f"model {model!r}", check_capacity=False)
    ends = probe.workload.interval_max_context()
    return float(block_memory(probe, probe.precision, ends).total.max())


def _shares(weights: np.ndarray, total: float, cap: float) -> np.ndarray:
    """Split `total` in proportion to `weights`, no part above `cap` (the excess goes to the others)."""
    shares = np.zeros(len(weights))
    free = np.ones(len(weights), dtype=bool)
    while True:
        left = total - shares[~free].sum()
        shares[free] = left * weights[free] / weights[free].sum()
        over = free & (shares > cap)
        if not over.any():
            return shares
        shares[over] = cap
        free &= ~over


def instance_data(model: str, n_devices: int, *, seed: int = SEED) -> dict[str, Any]:
    """The instance file (as a dict) of `model` on `n_devices` devices.

    The devices are the first `n_devices` of one seeded sequence of `DEVICE_POOL`
    presets (shuffled rounds of the pool, so the first ``len(DEVICE_POOL)`` differ), so
    a larger cluster adds devices to a smaller one. Each keeps
    its preset's compute and memory bandwidth; its memory is set (``memory:``, whole
    MiB) so that all devices together have `MEMORY_RATIO` times the model's resident
    bytes at the final context, shared in proportion to the presets' memory, and no
    device has more than `LARGEST_SHARE` of the model. Links: a switched mesh `MESH`;
    workload `WORKLOAD` in one interval.

    Examples
    --------
    >>> data = instance_data("llama-3.2-1b", 4)
    >>> [d["preset"] for d in data["devices"]] == [d["preset"] for d in instance_data("llama-3.2-1b", 6)["devices"][:4]]
    True
    """
    from placement.cost.units import BYTES, parse_quantity
    from placement.errors import InputError
    from placement.instance import device_presets

    if n_devices < 2:
        raise InputError(f"`device_counts` must be at least 2 (one device must not hold the model), got {n_devices}")
    if n_devices > _MAX_DEVICES:
        raise InputError(f"`device_counts` must be at most {_MAX_DEVICES}, got {n_devices}")
    rng = np.random.default_rng(seed)  # one draw for every size: a larger cluster extends a smaller one
    drawn = np.concatenate([rng.permutation(len(DEVICE_POOL)) for _ in range(-(-_MAX_DEVICES // len(DEVICE_POOL)))])
    presets = [DEVICE_POOL[i] for i in drawn[:n_devices]]
    physical = np.array([parse_quantity(device_presets()[p]["memory"], BYTES, field=p) for p in presets])
    need = _model_bytes(model)
    memory_mib = np.floor(_shares(physical, MEMORY_RATIO * need, LARGEST_SHARE * need) / 2**20).astype(int)
    devices = [{"name": f"d{i}-{p}", "preset": p, "memory": f"{m} MiB"}
               for i, (p, m) in enumerate(zip(presets, memory_mib, strict=True))]
    return {
        "name": f"{model}-{n_devices}dev",
        "description": (f"{model} on {n_devices} edge devices (seed {seed}): memory set to {MEMORY_RATIO}x the model "
                        f"in all, at most {LARGEST_SHARE}x on one; generated by placement.experiments.head_vs_layer"),
        "model": model,
        "devices": devices,
        "mesh": dict(MESH),
        "network": "switched",
        "workload": dict(WORKLOAD),
    }


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The feasible row of least total latency, or None."""
    feasible = [r for r in rows if r["feasible"] and r["total_s"] is not None]
    return min(feasible, key=lambda r: r["total_s"]) if feasible else None


def summarize(rows: list[dict[str, Any]], cases: list[tuple[str, int, str]]) -> list[dict[str, Any]]:
    """One summary per instance: the best head-level plan against the layer-based optimum.

    Parameters
    ----------
    rows : list of dict
        `run_sweep`'s rows.
    cases : list of (model, device count, instance path)

    Returns
    -------
    list of dict
        Per instance: the best head-level method (least total latency over the
        feasible plans of `HEAD_METHODS`), its total and mean per-token latency,
        seconds; the MILP's status and bound; ``pipeline-dp``'s (the layer-based
        optimum) and ``memory-proportional``'s figures (None when infeasible);
        ``speedup`` (layer-based total / head-level total), ``token_speedup`` (the
        same for the mean per-token latency), ``max_speedup`` (layer-based total / the
        MILP's bound: no head-level plan can beat it), and ``layer_infeasible`` (no
        layer-based plan fits while a head-level one does).
    """
    def get(row, key):
        return None if row is None else row[key]

    def ratio(a, b):
        return None if a is None or b is None else a / b

    summary = []
    for model, n_devices, path in cases:
        mine = {r["method"]: r for r in rows if r["instance"] == path}
        head = _best([mine[m] for m in HEAD_METHODS if m in mine])
        layer, proportional, milp = _best([mine["pipeline-dp"]]), _best([mine["memory-proportional"]]), mine["milp"]
        summary.append({
            "model": model, "model_bytes": _model_bytes(model), "devices": n_devices, "instance": Path(path).stem,
            "head_method": get(head, "method"), "head_total_s": get(head, "total_s"),
            "head_token_s": get(head, "mean_token_s"),
            "milp_status": milp["status"], "milp_bound_s": milp["bound_s"],
            "layer_total_s": get(layer, "total_s"), "layer_token_s": get(layer, "mean_token_s"),
            "proportional_total_s": get(proportional, "total_s"),
            "speedup": ratio(get(layer, "total_s"), get(head, "total_s")),
            "token_speedup": ratio(get(layer, "mean_token_s"), get(head, "mean_token_s")),
            "max_speedup": ratio(get(layer, "total_s"), milp["bound_s"]),
            "layer_infeasible": layer is None and head is not None,
        })
    return summary


def _markdown(summary: list[dict[str, Any]], head_methods: list[str], milp_time_limit: float) -> str:
    from placement.cost.model import load_model

    def ms(v):
        return "-" if v is None else f"{v * 1e3:.1f} ms"

    def s(v):
        return "-" if v is None else f"{v:.3f} s"

    def x(v):
        return "-" if v is None else f"{v:.2f}x"

    header = ("| devices | head-level per token | head-level total | method (MILP status) | layer-based per token "
              "| layer-based total | speedup | per-token speedup | at most | memory-proportional total |")
    intro = (f"Best head-level plan (least total latency of {', '.join(head_methods)}; "
             f"MILP limit {milp_time_limit:g} s) "
             "against the layer-based optimum (`pipeline-dp`). Speedup = layer-based / head-level total latency "
             "(prefill + decode); at most = layer-based total / the MILP's bound.")
    lines = ["# Head-level against layer-based partitioning", "", intro, ""]
    for model in dict.fromkeys(row["model"] for row in summary):
        spec = load_model(model)
        size = next(r["model_bytes"] for r in summary if r["model"] == model) / 2**30
        title = f"## {model}: {spec.layers} layers x {spec.kv_heads} groups, {size:.2f} GiB with its KV cache"
        lines += [title, "", header, "|---" * 10 + "|"]
        for r in (row for row in summary if row["model"] == model):
            layer_total = "infeasible" if r["layer_total_s"] is None else s(r["layer_total_s"])
            proportional = "infeasible" if r["proportional_total_s"] is None else s(r["proportional_total_s"])
            lines.append(f"| {r['devices']} | {ms(r['head_token_s'])} | {s(r['head_total_s'])} "
                         f"| {r['head_method'] or '-'} ({r['milp_status']}) | {ms(r['layer_token_s'])} | {layer_total} "
                         f"| {x(r['speedup'])} | {x(r['token_speedup'])} | {x(r['max_speedup'])} | {proportional} |")
        lines.append("")
    return "\n".join(lines)


def _figure(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from placement.experiments.figures import count_axis, plain_log_axis

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    speedups = [v for r in summary for v in (r["speedup"], r["max_speedup"]) if v]
    top = max([2.0, *speedups]) * 1.15
    band = 0.86  # the "no layer plan fits" row sits below 1x, where no speedup can be (head-level >= layer-based)
    for model in dict.fromkeys(row["model"] for row in summary):
        mine = [r for r in summary if r["model"] == model]
        nan = float("nan")
        line, = ax.plot([r["devices"] for r in mine], [r["speedup"] or nan for r in mine], "o-", label=model)
        ax.plot([r["devices"] for r in mine], [r["max_speedup"] or nan for r in mine], ":", color=line.get_color())
        unfit = [r["devices"] for r in mine if r["layer_infeasible"]]
        ax.plot(unfit, [band] * len(unfit), "x", ms=9, mew=2, color=line.get_color())
    ax.axhline(1, color="grey", lw=0.8)
    ax.axhspan(0.78, 0.94, color="#f3f3f3", zorder=0)
    ax.text(0.01, band, "no layer plan fits", transform=ax.get_yaxis_transform(), va="center", fontsize=8,
            color="#555")
    ax.set_yscale("log", base=2)
    ax.set_ylim(0.78, top)
    plain_log_axis(ax.yaxis, suffix="×", ticks=[t for t in (1, 1.25, 1.5, 2, 3, 4, 8, 16, 32) if t <= top])
    count_axis(ax.xaxis, [r["devices"] for r in summary])  # whole devices only
    ax.set_xlabel("devices")
    ax.set_ylabel("speedup of head-level over layer-based")
    ax.set_title("Total latency, layer-based / head-level\n(dotted: at most, from the MILP bound; "
                 "x: no layer-based plan fits)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def reproduce_head_vs_layer(*, models: list[str] | tuple[str, ...] | None = None,
                            device_counts: list[int] | tuple[int, ...] | None = None, quick: bool = False,
                            out_dir: str | Path = "results/head-vs-layer", n_jobs: int = 2, dask: str | None = None,
                            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate the grid of instances, solve each head-level and layer-based, and write the comparison.

    Parameters
    ----------
    models : list of str, optional
        Shipped model names (``placement models``); default `DEFAULT_MODELS`, or
        `QUICK_MODELS` when `quick`.
    device_counts : list of int, optional
        Default `DEFAULT_DEVICE_COUNTS`, or `QUICK_DEVICE_COUNTS` when `quick`.
    quick : bool
        The smaller default grid and a 20 s MILP limit instead of 60 s (under two
        minutes on 2 cores).
    out_dir : path
        Instances go to ``out_dir/instances``, the cache to ``out_dir/cache``; an
        interrupted run resumes from the cache.
    n_jobs, dask, progress
        See `placement.experiments.sweep.run_sweep`.

    Returns
    -------
    dict
        ``rows`` (one per instance and method), ``summary`` (one per instance, see
        `summarize`) and the output ``paths``.

    Raises
    ------
    InputError
        On an unknown model or a device count below 2.
    """
    import placement
    from placement.cost.model import model_names
    from placement.instance import instance_from_dict

    models = list(models or (QUICK_MODELS if quick else DEFAULT_MODELS))
    device_counts = list(device_counts or (QUICK_DEVICE_COUNTS if quick else DEFAULT_DEVICE_COUNTS))
    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise placement.InputError(f"unknown model(s) {', '.join(map(repr, unknown))}; "
                                   f"models are {', '.join(model_names())}")
    out = Path(out_dir)
    (out / "instances").mkdir(parents=True, exist_ok=True)
    cases = []
    for model in models:
        for n_devices in device_counts:
            data = instance_data(model, n_devices)
            path = out / "instances" / f"{data['name']}.yaml"
            instance_from_dict(data, source=str(path))  # validated before it is written
            write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
            cases.append((model, n_devices, str(path.resolve())))  # absolute: workers may run elsewhere
    methods = [m for m in HEAD_METHODS + LAYER_METHODS if m in placement.METHODS]
    milp_options = {"time_limit": MILP_TIME_LIMIT_S[quick]}
    jobs = [Job(path, method, milp_options if method == "milp" else {}) for _, _, path in cases for method in methods]
    rows = run_sweep(jobs, out, n_jobs=n_jobs, dask=dask, progress=progress)
    for job, row in zip(jobs, rows, strict=True):  # a cached row keeps the path it was solved at
        row["instance"] = job.instance
    summary = summarize(rows, cases)
    paths = {"csv": out / "head-vs-layer.csv", "markdown": out / "head-vs-layer.md",
             "figure": out / "head-vs-layer.png", "config": out / "config.json"}
    with atomic_write(paths["csv"], newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    head_methods = [m for m in HEAD_METHODS if m in methods]
    write_text_atomic(paths["markdown"], _markdown(summary, head_methods, milp_options["time_limit"]))
    _figure(summary, paths["figure"])
    write_text_atomic(paths["config"], json.dumps({
        "models": models, "device_counts": device_counts, "quick": quick, "seed": SEED, "device_pool": DEVICE_POOL,
        "memory_ratio": MEMORY_RATIO, "largest_share": LARGEST_SHARE, "mesh": MESH, "workload": WORKLOAD,
        "methods": methods, "milp_options": milp_options, "instances": [path for _, _, path in cases],
        "versions": versions()}, indent=1))
    return {"rows": rows, "summary": summary, "paths": paths}
