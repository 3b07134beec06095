"""The fidelity tables: the cost model against real execution on this machine (docs/fidelity.md).

`run_validation` profiles the machine, times real decoder blocks of several models,
fits the device's factors on some models (`calibrate`) and compares the evaluator's
predictions with the measurements on all of them, before and after calibration; then
runs plans in separate processes with emulated links (`run_plan`) and compares again.
It writes ``fidelity.csv``, ``blocks.csv``, ``distributed.csv``, ``fidelity.md``,
``fidelity.png``, ``summary.json`` and the preset file ``device.yaml`` (presets
``profiled`` and ``calibrated``) to the output folder.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from placement.cost.blocks import decode_costs
from placement.cost.model import ModelSpec, load_model
from placement.errors import InputError
from placement.cost.tables import block_times
from placement.experiments.output import save_figure
from placement.files import atomic_write, write_text_atomic
from placement.instance import instance_from_dict
from placement.measure import blocks as torch_blocks
from placement.measure.calibrate import Observation, calibrate, device_instance, predict
from placement.measure.distributed import run_plan
from placement.measure.profile import preset_fields, profile_device, write_preset
from placement.measure.timing import measure_model

__all__ = ["QUICK", "FULL", "ERROR_BAND", "run_validation", "distributed_cases", "markdown", "figure"]

QUICK = {
    "models": ("gpt2", "synthetic-h16-d1024", "synthetic-h8-d512", "qwen2.5-0.5b"),
    "calibrate_on": ("gpt2", "synthetic-h16-d1024"),
    "contexts": (128, 512, 2048), "prompts": (128,), "repeats": 3, "prefill_budget_s": 3.0,
    "distributed": ("gpt2",), "links": (("5 ms", "100 Mbit/s"),), "layouts": ("pipeline-2", "heads-2"), "tokens": 8,
}
FULL = {
    "models": ("gpt2", "synthetic-h32-d2048", "qwen2.5-0.5b", "llama-3.2-1b", "synthetic-h8-d512", "synthetic-h16-d1024",
               "synthetic-h64-d4096", "llama-3.2-3b"),
    "calibrate_on": ("gpt2", "synthetic-h32-d2048"),
    "contexts": (128, 256, 512, 1024, 2048), "prompts": (128, 512), "repeats": 5, "prefill_budget_s": 12.0,
    "distributed": ("gpt2", "qwen2.5-0.5b"), "links": (("5 ms", "100 Mbit/s"), ("20 ms", "20 Mbit/s")),
    "layouts": ("pipeline-2", "pipeline-3", "heads-2"), "tokens": 16,
}
THREADS = 1
# The error band docs/fidelity.md reports for held-out models after calibration (worst case of the full set,
# rounded up): a prediction within it of a measurement agrees as well as the tables say.
ERROR_BAND = 0.25


def _observations(spec, measured: dict[str, Any]) -> list[Observation]:
    bits = float(measured["bits"])
    return ([Observation(spec, "decode", int(S), float(t), bits) for S, t in measured["decode"].items()]
            + [Observation(spec, "ttft", int(P), float(t), bits) for P, t in measured["ttft"].items()])


def _block_rows(fields: dict[str, Any], spec, measured: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """Measured per-block times beside the evaluator's `block_times` for the same block."""
    rows = []
    for row in measured["blocks"]:
        inst = device_instance(fields, spec, prompt_tokens=row["context"], bits=measured["bits"])
        costs = decode_costs(spec, 1, inst.precision, np.array([row["context"]]))
        flops, read = {
            "group": (costs.group_flops[0, 0], costs.group_read[0, 0]),
            "projection": (costs.projection_flops[0, 0], costs.projection_read[0, 0]),
            "ffn": (costs.ffn_flops[0, 0], costs.ffn_read[0, 0]),
            "embed": (0.0, costs.embed_read[0]),
            "lm_head": (costs.lm_head_flops[0], costs.lm_head_read[0]),
        }[row["block"]]
        predicted = float(block_times(np.array(flops), np.array(read), inst, True)[0])
        rows.append({"model": spec.name, "block": row["block"], "context": row["context"], "preset": label,
                     "measured_s": row["measured_s"], "predicted_s": predicted,
                     "error": predicted / row["measured_s"] - 1})
    return rows


def distributed_cases(model: str | ModelSpec, layout: str, latency: str, bandwidth: str, preset: str,
                      base: Path | None = None, prompt_tokens: int = 128, tokens: int = 8):
    """The instance and plan of one distributed case: `layout` is ``pipeline-N`` or ``heads-N``.

    ``pipeline-N``: contiguous layers on N devices (embed on the first, lm_head on the
    last). ``heads-N``: every layer's attention groups dealt out to N devices in
    contiguous runs, projection, FFN, embed and lm_head on the first.
    """
    from placement.plan import Placement, Plan

    kind, _, count = layout.partition("-")
    if kind not in ("pipeline", "heads") or not count.isdigit() or int(count) < 2:
        raise InputError(f"unknown layout {layout!r}; use pipeline-N or heads-N with N >= 2")
    n = int(count)
    names = [f"cpu{i}" for i in range(n)]
    label = model if isinstance(model, str) else model.name
    inst = instance_from_dict({
        "name": f"{label} {layout} over {latency}, {bandwidth}",
        "model": model if isinstance(model, str) else dataclasses.asdict(model),
        "devices": [{"name": name, "preset": preset} for name in names],
        "mesh": {"latency": latency, "bandwidth": bandwidth},
        "workload": {"prompt_tokens": prompt_tokens, "generate_tokens": tokens,
                     "precision": {"weights": 32, "kv_cache": 32, "activations": 32}},
    }, source=f"distributed case {label} {layout}", base=base, check_capacity=False)
    L, K = inst.model.layers, inst.model.kv_heads
    if kind == "pipeline":
        if n > L:
            raise InputError(f"{label} has {L} layers, too few for {n} pipeline stages")
        placement = Placement.by_layer(np.arange(L) * n // L, K, n)
    else:
        if n > K:
            raise InputError(f"{label} has {K} attention groups per layer, too few for {n} devices")
        attention = np.repeat((np.arange(K) * n // K)[None, :], L, axis=0)
        first = np.zeros((L, n))
        first[:, 0] = 1.0
        placement = Placement(attention, first, first.copy(), 0, 0)
    return inst, Plan(devices=tuple(names), intervals=[placement], method=layout)


def _errors(values) -> dict[str, float]:
    values = np.abs(np.asarray(values, dtype=float))
    if not len(values):
        return {"median": float("nan"), "worst": float("nan"), "n": 0}
    return {"median": float(np.median(values)), "worst": float(values.max()), "n": int(len(values))}


def run_validation(*, quick: bool = False, out_dir: str | Path = "results/fidelity",
                   progress: Callable[[str], None] | None = None, models: tuple[str, ...] | None = None,
                   distributed: bool = True) -> dict[str, Any]:
    """Profile, measure, calibrate and compare; write the tables, the figure and the presets.

    Parameters
    ----------
    quick : bool
        `QUICK` (a few minutes) instead of `FULL`.
    out_dir : path
    progress : callable, optional
        Called with a line of text at each stage.
    models : tuple of str, optional
        Replace the set's models (the calibration models among them still calibrate).
    distributed : bool
        Also run the multi-process cases.

    Returns
    -------
    dict
        ``summary`` (errors before / after, held-out and calibration models, the
        distributed cases), ``rows``, ``distributed``, ``skipped``, ``paths``.
    """
    config = dict(QUICK if quick else FULL)
    if models:
        config["models"] = tuple(models)
    say = progress or (lambda text: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    say(f"profiling this machine at {THREADS} torch thread")
    profile = profile_device(quick=quick, threads=THREADS)
    base = preset_fields(profile)
    preset_path = out / "device.yaml"
    write_preset(preset_path, "profiled", base, overwrite=True)

    measured, skipped = _measure(config, profile, quick, say)
    calibration_models = [m for m in config["calibrate_on"] if m in measured]
    if not calibration_models:
        raise InputError("none of the calibration models could be measured on this machine")
    observations = {name: _observations(load_model(name), result) for name, result in measured.items()}
    say(f"calibrating on {', '.join(calibration_models)}")
    fit = calibrate(base, [o for m in calibration_models for o in observations[m]])
    calibrated = fit.fields(base)
    calibrated["notes"] = base["notes"].replace("Efficiencies 1 and no per-block overhead until calibrated",
                                                f"Calibrated on {', '.join(calibration_models)}")
    write_preset(preset_path, "calibrated", calibrated, overwrite=True)
    rows, block_rows = _compare(base, calibrated, observations, measured, calibration_models)
    dist_rows = _distributed(config, measured, preset_path, out, say) if distributed else []
    summary = _summary(quick, profile, fit, calibration_models, rows, dist_rows, skipped)
    summary["seconds"] = time.perf_counter() - start
    paths = _write(out, rows, block_rows, dist_rows, summary)
    paths["presets"] = str(preset_path)
    return {"summary": summary, "rows": rows, "distributed": dist_rows, "blocks": block_rows, "skipped": skipped,
            "paths": paths}


def _measure(config: dict, profile: dict, quick: bool, say) -> tuple[dict, list]:
    """Time every model of the set that fits (decode at each context, prefill within its budget)."""
    measured, skipped = {}, []
    for name in config["models"]:
        spec = load_model(name)
        try:
            torch_blocks.check_fits(spec, "fp32", max_context=max(config["contexts"]))
        except InputError as exc:
            skipped.append({"model": name, "reason": str(exc)})
            say(f"skipped {name}: {exc}")
            continue
        peak = profile["matmul_flops_per_s"]["fp32"]
        prompts = [P for P in config["prompts"] if 2 * 2 * spec.params * P / peak <= config["prefill_budget_s"]]
        say(f"timing {name} (decode at {', '.join(map(str, config['contexts']))}; prefill of {prompts or 'none'})")
        measured[name] = measure_model(spec, contexts=config["contexts"], prompts=prompts or [], repeats=config["repeats"],
                                       prefill_repeats=2 if quick else 3, threads=THREADS)
    return measured, skipped


def _compare(base: dict, calibrated: dict, observations: dict, measured: dict, calibration_models: list[str]):
    """Each observation's prediction before and after calibration, and the per-block rows."""
    rows, block_rows = [], []
    for name, obs in observations.items():
        before, after = predict(base, obs), predict(calibrated, obs)
        role = "calibration" if name in calibration_models else "held-out"
        for o, b, a in zip(obs, before, after):
            rows.append({"model": name, "role": role, "kind": o.kind, "tokens": o.tokens, "measured_s": o.seconds,
                         "predicted_before_s": float(b), "predicted_after_s": float(a),
                         "error_before": float(b / o.seconds - 1), "error_after": float(a / o.seconds - 1)})
        block_rows += _block_rows(calibrated, load_model(name), measured[name], "calibrated")
    return rows, block_rows


def _distributed(config: dict, measured: dict, preset_path: Path, out: Path, say) -> list[dict[str, Any]]:
    """The multi-process runs: every distributed model, link and layout, measured against the prediction."""
    dist_rows = []
    for name in config["distributed"]:
        if name not in measured:
            continue
        for latency, bandwidth in config["links"]:
            for layout in config["layouts"]:
                say(f"distributed run: {name} {layout} over {latency}, {bandwidth}")
                inst, plan = distributed_cases(name, layout, latency, bandwidth, f"{preset_path.name}#calibrated",
                                               base=out, tokens=config["tokens"])
                result = run_plan(inst, plan)
                dist_rows.append({"model": name, "plan": layout, "processes": result["processes"],
                                  "latency": latency, "bandwidth": bandwidth,
                                  "measured_s": result["measured_s"], "predicted_s": result["predicted_s"],
                                  "error": result["error"]})
    return dist_rows


def _summary(quick, profile, fit, calibration_models, rows, dist_rows, skipped) -> dict[str, Any]:
    """Errors before and after calibration by role and kind, and of the distributed runs."""
    def pick(role: str | None, kind: str | None, key: str) -> list[float]:
        return [r[key] for r in rows if (role is None or r["role"] == role) and (kind is None or r["kind"] == kind)]

    return {
        "quick": quick, "threads": THREADS, "seconds": None,
        "profile": profile, "calibration": fit.summary(), "calibrated_on": calibration_models,
        "held_out": sorted({r["model"] for r in rows if r["role"] == "held-out"}),
        "errors": {f"{role or 'all'}/{kind or 'all'}/{when}": _errors(pick(role, kind, f"error_{when}"))
                   for role in ("held-out", "calibration", None) for kind in ("decode", "ttft", None)
                   for when in ("before", "after")},
        "distributed": _errors([r["error"] for r in dist_rows]),
        "skipped": skipped,
    }


# ----------------------------------------------------------------------------- output
def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        write_text_atomic(path, "")
        return
    with atomic_write(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _ms(t: float) -> str:
    return f"{t * 1e3:.2f}"


def _pct(e: float) -> str:
    return "n/a" if e != e else f"{e * 100:+.1f}%"


def markdown(rows, dist_rows, summary) -> str:
    """The tables as Markdown."""
    fit = summary["calibration"]
    lines = [f"# Fidelity: cost model vs real execution ({'quick' if summary['quick'] else 'full'} set)", "",
             f"PyTorch on the CPU, fp32, {summary['threads']} torch thread; calibrated on "
             f"{', '.join(summary['calibrated_on'])}: compute efficiency {fit['compute_efficiency']:.3f}, "
             f"memory efficiency {fit['memory_efficiency']:.3f}, per-block overhead "
             f"{fit['block_overhead_s'] * 1e6:.1f} µs.", "",
             "## Summary (absolute relative error of the prediction)", "",
             "| models | latency | points | median before | worst before | median after | worst after |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for role in ("held-out", "calibration"):
        for kind in ("decode", "ttft", None):
            b, a = summary["errors"][f"{role}/{kind or 'all'}/before"], summary["errors"][f"{role}/{kind or 'all'}/after"]
            if not b["n"]:
                continue
            lines.append(f"| {role} | {kind or 'all'} | {b['n']} | {b['median']:.1%} | {b['worst']:.1%} | "
                         f"{a['median']:.1%} | {a['worst']:.1%} |")
    lines += ["", "## Per model and context", "",
              "| model | role | latency | tokens | measured ms | predicted before ms | error before | "
              "predicted after ms | error after |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['role']} | {r['kind']} | {r['tokens']} | {_ms(r['measured_s'])} | "
                     f"{_ms(r['predicted_before_s'])} | {_pct(r['error_before'])} | {_ms(r['predicted_after_s'])} | "
                     f"{_pct(r['error_after'])} |")
    if dist_rows:
        d = summary["distributed"]
        lines += ["", "## Distributed runs (one process per device, gloo on loopback, emulated links)", "",
                  f"Median absolute error {d['median']:.1%}, worst {d['worst']:.1%} over {d['n']} runs "
                  "(calibrated preset; per-token decode latency, median of the timed steps).", "",
                  "| model | plan | processes | link latency | link bandwidth | measured ms | predicted ms | error |",
                  "|---|---|---:|---|---|---:|---:|---:|"]
        for r in dist_rows:
            lines.append(f"| {r['model']} | {r['plan']} | {r['processes']} | {r['latency']} | {r['bandwidth']} | "
                         f"{_ms(r['measured_s'])} | {_ms(r['predicted_s'])} | {_pct(r['error'])} |")
    for s in summary["skipped"]:
        lines += ["", f"Skipped {s['model']}: {s['reason']}"]
    return "\n".join(lines) + "\n"


def figure(path: Path, rows, dist_rows) -> None:
    """Predicted against measured latency, log-log, before and after calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    values = [r["measured_s"] for r in rows] + [r["measured_s"] for r in dist_rows]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    for ax, when in zip(axes, ("before", "after")):
        line = np.array([lo, hi])
        ax.plot(line, line, color="black", lw=1)
        ax.fill_between(line, line / 1.1, line * 1.1, color="grey", alpha=0.2, label="±10%")
        for role, marker in (("calibration", "o"), ("held-out", "^")):
            for kind, colour in (("decode", "tab:blue"), ("ttft", "tab:orange")):
                pts = [r for r in rows if r["role"] == role and r["kind"] == kind]
                if pts:
                    ax.scatter([r["measured_s"] for r in pts], [r[f"predicted_{when}_s"] for r in pts], marker=marker,
                               color=colour, s=24, label=f"{kind}, {role}", alpha=0.8)
        if when == "after" and dist_rows:
            ax.scatter([r["measured_s"] for r in dist_rows], [r["predicted_s"] for r in dist_rows], marker="s",
                       color="tab:green", s=28, label="distributed decode")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured latency (s)")
        ax.set_title(f"{when} calibration")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("predicted latency (s)")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def _write(out: Path, rows, block_rows, dist_rows, summary) -> dict[str, str]:
    paths = {"markdown": out / "fidelity.md", "csv": out / "fidelity.csv", "blocks": out / "blocks.csv",
             "distributed": out / "distributed.csv", "figure": out / "fidelity.png", "summary": out / "summary.json"}
    _csv(paths["csv"], rows)
    _csv(paths["blocks"], block_rows)
    _csv(paths["distributed"], dist_rows)
    write_text_atomic(paths["markdown"], markdown(rows, dist_rows, summary))
    figure(paths["figure"], rows, dist_rows)
    write_text_atomic(paths["summary"], json.dumps(summary, indent=1))
    return {key: str(value) for key, value in paths.items()}
