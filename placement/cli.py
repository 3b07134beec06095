"""The ``placement`` command: parse, load, call the library, print.

Human tables by default, ``--json`` for machines: exactly one JSON document on stdout
(non-finite figures become null), everything else on stderr. `main` is the one place
where errors become exit codes, for every command: an error this library raises on
purpose (bad input) is one line and exit 2, an environment failure (a full disk, an
unreachable scheduler) one line and exit 1, Ctrl-C exit 130. Warnings about
implausible values are one line each on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from placement.cost.units import format_bytes, format_seconds
from placement.errors import InputError, PlacementError, SolveInterrupted

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Place the blocks of a large language model on heterogeneous edge devices.",
)
out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
VerboseFlag = Annotated[bool, typer.Option("--verbose", help="Solver logs (HiGHS, CBC) on stderr.")]
OptionPairs = Annotated[Optional[list[str]], typer.Option(
    "--option", "-O", help="A back-end option KEY=VALUE (YAML value), repeatable; `placement methods METHOD` lists them.")]
_MAX_MESSAGE = 1000  # characters of one error line


def _print_json(data: Any) -> None:
    from placement.files import json_ready

    sys.stdout.write(json.dumps(json_ready(data), indent=1, allow_nan=False) + "\n")


def _verbose(on: bool) -> None:
    """Solver logs to stderr (read by `placement.solvers.backends`, also in worker processes)."""
    if on:
        os.environ["PLACEMENT_SOLVER_LOG"] = "1"


def _merged_options(pairs: list[str] | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The ``--option KEY=VALUE`` pairs and the flags that were given; an option given both ways is an error."""
    from placement.options import parse_option_pairs

    options = parse_option_pairs(pairs or [])
    for key, value in flags.items():
        if value is not None:
            if key in options:
                raise InputError(f"`{key}` is given both as --{key.replace('_', '-')} and --option; give it once")
            options[key] = value
    return options


def _report_tables(instance, report, title: str) -> None:
    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("instance", f"{instance.name}: {instance.model.name} on {instance.n_devices} devices "
                    f"({instance.cluster.network} network, {instance.workload.profile} profile)")
    summary.add_row("workload", f"prompt {instance.workload.prompt_tokens}, {instance.workload.generate_tokens} decode steps, "
                    f"{instance.workload.n_intervals} interval(s) of {instance.workload.tau}")
    summary.add_row("feasible", "[green]yes[/]" if report.feasible else f"[red]no[/] ({len(report.violations)} violation(s))")
    summary.add_row("total", format_seconds(report.total_s))
    summary.add_row("time to first token", format_seconds(report.ttft_s))
    summary.add_row("mean per token", f"{format_seconds(report.mean_token_s)} "
                    f"(first {format_seconds(report.decode_s[0])}, last {format_seconds(report.decode_s[-1])})")
    summary.add_row("migration", format_seconds(float(report.migration_s.sum())))
    parts = report.breakdown_s
    summary.add_row("decode compute / transfer", f"{format_seconds(parts['decode_compute'])} / {format_seconds(parts['decode_transfer'])}")
    out.print(summary)
    memory = Table(title="memory per device (peak over intervals)", title_justify="left")
    for column in ("device", "peak", "available", "use"):
        memory.add_column(column, justify="right" if column != "device" else "left")
    peaks = report.peak_memory_bytes.max(axis=0)
    for name, peak, limit in zip(report.devices, peaks, report.memory_limit_bytes):
        style = "red" if peak > limit else ""
        memory.add_row(name, format_bytes(peak), format_bytes(limit), f"[{style}]{peak / limit:.0%}[/]" if style else f"{peak / limit:.0%}")
    out.print(memory)
    for violation in report.violations[:10]:
        err.print(Text.assemble(("violation: ", "red"), str(violation)))
    if len(report.violations) > 10:
        err.print(f"... and {len(report.violations) - 10} more violations")


@app.command()
def evaluate(
    instance: Annotated[str, typer.Argument(help="Instance file, or a shipped instance such as edge/llama-3.2-1b-4dev.")],
    plan: Annotated[Optional[Path], typer.Argument(help="Plan JSON (from `solve --out`); default: the `pipeline` reference plan.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Judge a plan on an instance with the shared evaluator."""
    from placement import evaluate as run_evaluate, load_instance
    from placement.plan import Plan
    from placement.solvers.reference import pipeline_plan

    inst = load_instance(instance, check_capacity=False)
    the_plan = pipeline_plan(inst) if plan is None else Plan.from_json(plan, kv_heads=inst.model.kv_heads)
    report = run_evaluate(inst, the_plan)
    if as_json:
        _print_json({"instance": inst.name, "plan": the_plan.method or str(plan), **report.to_dict()})
    else:
        _report_tables(inst, report, f"plan: {the_plan.method or plan}")
    if not report.feasible:
        raise typer.Exit(1)


@app.command()
def solve(
    instance: Annotated[str, typer.Argument(help="Instance file, or a shipped instance name.")],
    method: Annotated[str, typer.Option("--method", "-m", help="Back end (see `placement methods`).")] = "pipeline",
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", help="Seconds, for back ends that take it.")] = None,
    solver: Annotated[Optional[str], typer.Option("--solver", help="MILP solver: highs, cbc or ortools.")] = None,
    gap: Annotated[Optional[float], typer.Option("--gap", help="Relative optimality gap (MILP).")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="MILP mode: horizon or interval.")] = None,
    option: OptionPairs = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the plan as JSON here.")] = None,
    verbose: VerboseFlag = False,
    report_path: Annotated[Optional[Path], typer.Option("--report", help="Write the plan's HTML report here (docs/report.md).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Solve an instance with a back end and report the evaluator's figures for its plan."""
    from placement import load_instance, solve as run_solve
    from placement.files import check_output_path

    _verbose(verbose)
    options = _merged_options(option, {"time_limit": time_limit, "solver": solver, "gap": gap, "mode": mode})
    for path in (out_path, report_path):
        if path is not None:
            check_output_path(path, inputs=(instance,))  # before the solve, which may take long
    inst = load_instance(instance)
    interrupted = False
    try:
        result = run_solve(inst, method=method, **options)
    except SolveInterrupted as stop:  # Ctrl-C in a MILP: report and keep the incumbent, then exit 130
        if stop.result is None:
            raise
        result, interrupted = stop.result, True
    if out_path is not None and result.plan is not None:
        result.plan.to_json(out_path)
    if report_path is not None and result.plan is not None:
        from placement.report import write_report

        write_report(report_path, inst, result.plan, report=result.report, result=result)
    if as_json:
        _print_json({"instance": inst.name, "method": method, **result.to_dict()})
    else:
        colour = "green" if result.status in ("optimal", "feasible") else "yellow" if result.status == "time_limit" else "red"
        out.print(f"[bold]{method}[/]: [{colour}]{result.status}[/] in {format_seconds(result.solve_time_s)}: {result.message}")
        if result.report is not None:
            _report_tables(inst, result.report, f"plan: {method}")
        if result.plan is not None:
            from placement.report.command import print_solve_summary

            print_solve_summary(out, inst, result)
        if out_path is not None and result.plan is not None:
            out.print(f"plan written to {out_path}")
        if report_path is not None and result.plan is not None:
            out.print(f"report written to {report_path}")
    if interrupted:
        written = f"; the incumbent is in {out_path}" if out_path is not None and result.plan is not None else ""
        err.print(f"interrupted{written}", highlight=False)
        raise typer.Exit(130)
    if result.status in ("infeasible", "error"):
        raise typer.Exit(1)


@app.command()
def report(
    instance: Annotated[str, typer.Argument(help="Instance file, or a shipped instance name.")],
    plan: Annotated[Path, typer.Argument(help="Plan JSON (from `solve --out`).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The HTML page to write.")] = Path("plan.html"),
) -> None:
    """Write one self-contained HTML page of a plan: blocks, memory, latency, one step, links, migrations."""
    from placement.report.command import report_command

    out.print(report_command(instance, plan, out_path))


@app.command()
def export(
    instance: Annotated[str, typer.Argument(help="Instance file, or a shipped instance name.")],
    plan: Annotated[Path, typer.Argument(help="Plan JSON (from `solve --out`).")],
    to: Annotated[str, typer.Option("--to", help="Runtime: llama.cpp, exo, prima.cpp or vllm.")],
    hosts: Annotated[Optional[str], typer.Option("--hosts", help="Addresses: DEVICE=HOST[:PORT],... (default: device names).")] = None,
    model_path: Annotated[Optional[str], typer.Option("--model", help="Model file or id the runtime loads.")] = None,
    interval: Annotated[Optional[int], typer.Option("--interval", help="Which interval of a plan that re-places blocks.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the commands that run a layer plan on a runtime (docs/export.md)."""
    from placement.export.command import export_command

    result = export_command(instance, plan, to, hosts=hosts, model_path=model_path, interval=interval)
    if as_json:
        _print_json(result.to_dict())
    else:
        sys.stdout.write(result.to_text())


@app.command()
def reproduce(
    table: Annotated[str, typer.Argument(help="Which table: gap-table, head-vs-layer, split-table, tp-table, ota-table, serving-table, moe-table, parallel-table or sparsity-table.")],
    suite: Annotated[Optional[str], typer.Option(help="gap-table: instance suite, or a folder of instance files (default paper-small).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A subset that finishes in under two minutes.")] = False,
    methods: Annotated[Optional[str], typer.Option(help="gap-table: comma-separated methods (default: all).")] = None,
    models: Annotated[Optional[str], typer.Option(help="head-vs-layer, split-, tp-, ota-table: comma-separated models.")] = None,
    devices: Annotated[Optional[str], typer.Option(help="head-vs-layer, tp-, ota-table: device counts, e.g. 2,4,6,8.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Output folder; default results/TABLE.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Local worker processes.")] = 2,
    dask: Annotated[Optional[str], typer.Option("--dask", help="'local' or a scheduler address tcp://HOST:PORT.")] = None,
    time_limit: Annotated[Optional[float], typer.Option(
        "--time-limit", help="gap-table: seconds per job for every method that can run long.")] = None,
    verbose: VerboseFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Reproduce a table: gaps to the optimum (gap-table), head-level against layer-based partitioning
    (head-vs-layer), split computing with OPSC against its baselines (split-table), tensor parallel
    against pipeline and head-level placement across link latency (tp-table), the over-the-air
    all-reduce against digital and analog baselines (ota-table), MoE expert placement against a
    layer pipeline and one device (moe-table), or DeltaLLM attention sparsity across contexts (sparsity-table)."""
    from rich.progress import Progress

    from placement.experiments.gap_table import reproduce_gap_table
    from placement.experiments.head_vs_layer import reproduce_head_vs_layer
    from placement.experiments.ota_table import reproduce_ota_table
    from placement.experiments.split_table import reproduce_split_table
    from placement.experiments.tp_table import reproduce_tp_table

    def listed(text: str | None) -> list[str] | None:
        return None if text is None else [part.strip() for part in text.split(",") if part.strip()]

    from placement.experiments.sweep import check_sweep_options
    from placement.files import check_output_path

    _verbose(verbose)
    limit = {"--time-limit": time_limit}
    others = {"gap-table": ("head-vs-layer", {"--models": models, "--devices": devices}),
              "head-vs-layer": ("gap-table", {"--suite": suite, "--methods": methods, **limit}),
              "split-table": ("gap-table or head-vs-layer",
                              {"--suite": suite, "--methods": methods, "--devices": devices, "--dask": dask, **limit}),
              "tp-table": ("gap-table", {"--suite": suite, "--methods": methods, "--dask": dask, **limit}),
              "ota-table": ("gap-table", {"--suite": suite, "--methods": methods, "--dask": dask, **limit}),
              "serving-table": ("gap-table", {"--suite": suite, "--methods": methods, "--devices": devices, "--dask": dask, **limit}),
              "moe-table": ("gap-table", {"--suite": suite, "--methods": methods, "--dask": dask}),
              "parallel-table": ("gap-table", {"--suite": suite, "--methods": methods, "--models": models,
                                               "--devices": devices, "--dask": dask, **limit}),
              "sparsity-table": ("gap-table", {"--suite": suite, "--methods": methods, "--devices": devices, "--dask": dask})}
    if table not in others:
        raise InputError(f"unknown table {table!r}; tables are: {', '.join(others)}")
    other, their_options = others[table]
    misplaced = [flag for flag, value in their_options.items() if value is not None]
    if misplaced:
        raise InputError(f"{', '.join(misplaced)} {'is an option' if len(misplaced) == 1 else 'are options'} "
                         f"of {other}, not {table}")
    counts = listed(devices)
    if counts is not None and not all(c.isdigit() for c in counts):
        raise InputError(f"`--devices` must be comma-separated whole numbers such as 2,4,6,8, got {devices!r}")
    check_sweep_options(n_jobs=jobs, dask=dask, time_limit=time_limit)
    out_dir = check_output_path(out_dir or Path("results") / table, folder=True)
    with Progress(console=err, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"{table} on {suite or 'paper-small'}" if table == "gap-table" else table, total=None)
        options = {"quick": quick, "out_dir": out_dir, "n_jobs": jobs, "dask": dask,
                   "progress": lambda done, total: bar.update(task, completed=done, total=total)}
        if table == "gap-table":
            result = reproduce_gap_table(suite or "paper-small", methods=listed(methods), time_limit=time_limit, **options)
        elif table == "split-table":  # one process: the whole grid is seconds of NumPy
            result = reproduce_split_table(quick=quick, out_dir=out_dir, models=listed(models))
        elif table in ("tp-table", "ota-table"):
            grid = {"models": listed(models), "device_counts": counts and [int(c) for c in counts]}
            reproduce_table = reproduce_tp_table if table == "tp-table" else reproduce_ota_table
            result = reproduce_table(quick=quick, out_dir=out_dir, progress=options["progress"],
                                     **{key: value for key, value in grid.items() if value})
        elif table == "serving-table":  # one process: each simulation is a fraction of a second
            from placement.experiments.serving_table import reproduce_serving_table

            result = reproduce_serving_table(quick=quick, out_dir=out_dir, models=listed(models), progress=options["progress"])
        elif table == "moe-table":  # one process: a few instances, each solved by four methods
            from placement.experiments.moe_table import reproduce_moe_table

            result = reproduce_moe_table(quick=quick, out_dir=out_dir, models=listed(models), progress=options["progress"],
                                         device_counts=counts and [int(c) for c in counts],
                                         **({"milp_time_limit": time_limit} if time_limit else {}))
        elif table == "parallel-table":  # one process: every joint method on the shipped multi-model files
            from placement.experiments.parallel_table import reproduce_parallel_table

            result = reproduce_parallel_table(quick=quick, out_dir=out_dir, progress=options["progress"])
        elif table == "sparsity-table":  # one process: every instance is solved by three methods in turn
            from placement.experiments.sparsity_table import reproduce_sparsity_table

            result = reproduce_sparsity_table(quick=quick, out_dir=out_dir, models=listed(models),
                                              milp_time_limit=time_limit, progress=options["progress"])
        else:
            result = reproduce_head_vs_layer(models=listed(models), device_counts=counts and [int(c) for c in counts],
                                             **options)
    if as_json:
        _print_json(result.get("summary", result["rows"]))
        return
    sys.stdout.write(Path(result["paths"]["markdown"]).read_text())
    out.print("written: " + ", ".join(str(p) for p in result["paths"].values()))


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """List the shipped model specs."""
    from placement.cost.model import load_model, model_names

    specs = [load_model(name) for name in model_names()]
    if as_json:
        _print_json([{**s.__dict__, "params": s.params, "kv_bytes_per_token": s.kv_bytes_per_token()} for s in specs])
        return
    table = Table(title="shipped models")
    for column in ("name", "params", "layers", "hidden", "heads/kv", "ffn", "vocab", "KV bytes/token"):
        if column == "name":
            table.add_column(column, no_wrap=True, min_width=max(len(s.name) for s in specs))
        else:
            table.add_column(column, justify="right")
    for s in specs:
        table.add_row(s.name, f"{s.params / 1e9:.2f} B", str(s.layers), str(s.hidden), f"{s.heads}/{s.kv_heads}",
                      str(s.ffn_hidden), str(s.vocab), f"{s.kv_bytes_per_token():,.0f}")
    out.print(table)


@app.command()
def instances(as_json: JsonFlag = False) -> None:
    """List the shipped instances."""
    from placement.instance import instance_names, load_instance

    loaded = [load_instance(name, check_capacity=False) for name in instance_names()]
    rows = [{"name": name, "model": i.model.name, "devices": i.n_devices, "network": i.cluster.network,
             "prompt": i.workload.prompt_tokens, "decode": i.workload.generate_tokens, "intervals": i.workload.n_intervals,
             "description": i.description.strip()}
            for name, i in zip(instance_names(), loaded)]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="shipped instances")
    for column in ("name", "model", "devices", "network", "prompt", "decode", "intervals"):
        width = max(len(str(row[column])) for row in rows)
        table.add_column(column, no_wrap=True, min_width=width if column in ("name", "model") else None)
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("name", "model", "devices", "network", "prompt", "decode", "intervals")))
    out.print(table)


@app.command()
def devices(as_json: JsonFlag = False) -> None:
    """List the device presets of the catalog."""
    from placement.instance import device_presets

    presets = device_presets()
    if as_json:
        _print_json(presets)
        return
    table = Table(title="device presets (docs/devices.md)")
    table.add_column("preset", no_wrap=True, min_width=max(map(len, presets)))
    for column in ("memory", "peak", "memory bandwidth", "description"):
        table.add_column(column)
    for name, p in presets.items():
        table.add_row(name, p["memory"], p["peak_flops"], p["memory_bandwidth"], p.get("description", ""))
    out.print(table)


@app.command()
def methods(
    method: Annotated[Optional[str], typer.Argument(help="A method: list its options with defaults and meaning.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the solver back ends, or one back end's options (give them with `solve --option KEY=VALUE`)."""
    from placement.options import COMMON, method_options
    from placement.solve import METHODS

    if method is None:
        if as_json:
            _print_json(list(METHODS))
        else:
            for name in METHODS:
                out.print(name, highlight=False)
        return
    docs = method_options(method)
    if as_json:
        _print_json([{"name": o.name, "default": repr(o.default) if o.default is not None else None, "type": o.kind,
                      "meaning": o.meaning} for o in docs])
        return
    table = Table(title=f"options of {method} (common options it lacks are ignored with a note: "
                  f"{', '.join(c for c in COMMON if c not in {o.name for o in docs})})", title_justify="left")
    for column in ("option", "default", "type", "meaning"):
        table.add_column(column, overflow="fold")
    for o in docs:
        table.add_row(o.name, Text(repr(o.default)), Text(o.kind), Text(o.meaning))
    out.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of instance files (for editors)."""
    from placement.instance import instance_json_schema

    _print_json(instance_json_schema())


@app.command()
def bench(
    repeats: Annotated[int, typer.Option(help="Timed runs per case; the median is reported.")] = 7,
    as_json: JsonFlag = False,
) -> None:
    """Time the evaluator and instance loading (the figures of docs/benchmarks.md)."""
    from placement.experiments.bench import run_benchmarks

    if repeats < 1:
        raise InputError(f"`--repeats` must be at least 1, got {repeats}")
    rows = run_benchmarks(repeats=repeats)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"benchmarks (median of {repeats})")
    for column in ("case", "median", "min", "target"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["case"], format_seconds(row["median_s"]), format_seconds(row["min_s"]), row["target"])
    out.print(table)


@app.command()
def profile(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller benchmarks; under 30 s.")] = False,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Preset file to write (catalog format).")] = Path("device.yaml"),
    name: Annotated[str, typer.Option("--name", help="Preset name inside the file.")] = "this-machine",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a preset of that name in the file.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Torch threads (default: every core).")] = None,
    precision: Annotated[str, typer.Option("--precision", help="Precision of the preset's peak figures: fp32, bf16 or fp16.")] = "fp32",
    as_json: JsonFlag = False,
) -> None:
    """Measure this machine (matrix multiply, matrix-vector, memory, disk, loopback) and write a device preset.

    Instances use it as `preset: device.yaml#this-machine`; `placement validate` calibrates one (docs/fidelity.md).
    """
    from placement.measure.blocks import precision_bits
    from placement.measure.profile import preset_fields, profile_device, read_preset

    from placement.files import check_output_path

    precision_bits(precision)
    check_output_path(out_path)
    if out_path.exists() and name in read_preset(out_path) and not overwrite:  # fail before measuring
        from placement.errors import InputError

        raise InputError(f"{str(out_path)!r} already has a preset {name!r}; pass --overwrite to replace it, "
                         "or choose another --name / --out")
    with err.status("profiling this machine", spinner="dots") if not as_json else nullcontext():
        figures = profile_device(quick=quick, threads=threads)
    from placement.measure.profile import write_preset

    fields = preset_fields(figures, precision=precision)
    write_preset(out_path, name, fields, overwrite=overwrite)
    if as_json:
        _print_json({"profile": figures, "preset": fields, "path": str(out_path), "name": name})
        return
    table = Table(title=f"this machine at {figures['threads']} torch thread(s)", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for p, value in figures["matmul_flops_per_s"].items():
        table.add_row(f"matrix multiply {p}", f"{value / 1e9:.1f} GFLOP/s")
    for p, value in figures["matvec_bytes_per_s"].items():
        table.add_row(f"matrix-vector {p}", f"{value / 1e9:.1f} GB/s")
    table.add_row("memory read", f"{figures['read_bytes_per_s'] / 1e9:.1f} GB/s")
    table.add_row("disk read", f"{figures['disk_read_bytes_per_s'] / 1e6:.0f} MB/s")
    table.add_row("loopback latency", format_seconds(figures["loopback_latency_s"]))
    table.add_row("loopback bandwidth", f"{figures['loopback_bytes_per_s'] / 1e9:.2f} GB/s")
    table.add_row("took", format_seconds(figures["seconds"]))
    out.print(table)
    out.print(f"preset {name!r} written to {out_path} (peak {fields['peak_flops']}, bandwidth {fields['memory_bandwidth']}); "
              f"use it as `preset: {out_path}#{name}`")


@app.command()
def validate(
    quick: Annotated[bool, typer.Option("--quick", help="A small set: four models, two distributed runs (about a minute).")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("results/fidelity"),
    as_json: JsonFlag = False,
) -> None:
    """Reproduce the fidelity tables: the cost model against real execution, before and after calibration,
    and plans run in separate processes with emulated links (docs/fidelity.md)."""
    from placement.files import check_output_path
    from placement.measure.validate import run_validation

    check_output_path(out_dir, folder=True)
    with (err.status("validating", spinner="dots") if not as_json else nullcontext()) as status:
        result = run_validation(quick=quick, out_dir=out_dir,
                                progress=(lambda text: status.update(text)) if status is not None else None)
    if as_json:
        _print_json(result["summary"])
        return
    sys.stdout.write(Path(result["paths"]["markdown"]).read_text())
    out.print("written: " + ", ".join(str(p) for p in result["paths"].values()))


def _fail(message: str, code: int) -> None:
    """Print one error line (newlines folded, length capped) and exit with `code`."""
    line = " ".join(message.split())
    if len(line) > _MAX_MESSAGE:
        line = line[:_MAX_MESSAGE - 3] + "..."
    # Plain text, not markup: a message may quote brackets from a path or a value.
    err.print(Text.assemble(("error: ", "red"), line), highlight=False, soft_wrap=True)
    sys.exit(code)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(Text.assemble(("warning: ", "yellow"), " ".join(str(message).split())), highlight=False, soft_wrap=True)


from placement.serving.command import serve  # noqa: E402  (the command lives with the serving package)

app.command()(serve)

from placement.multi.command import multi_evaluate, multi_solve  # noqa: E402  (several models on one cluster: docs/parallel.md)

app.command("multi-solve")(multi_solve)
app.command("multi-evaluate")(multi_evaluate)


def main() -> None:
    """Entry point: run the app; library errors exit 2, environment failures 1, Ctrl-C 130 (one line each)."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            app()  # standalone: usage errors print their message and exit 2; Ctrl-C exits 130
        except PlacementError as exc:
            _fail(str(exc), 2)
        except OSError as exc:  # the environment: a full disk, a lost connection, no permission
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            _fail(f"{exc.strerror or exc}{where}", 1)
        except KeyboardInterrupt:
            sys.exit(130)


if __name__ == "__main__":
    main()
