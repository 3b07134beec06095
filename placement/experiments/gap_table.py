"""`placement reproduce gap-table`: every method on every instance of a suite, gaps to the optimum.

The reference of an instance is the MILP's proven optimum, or, when the MILP stopped
at its time limit, its bound (and the gap is marked as a gap to the bound, an upper
bound on the true gap); with no positive bound the gap is marked "no bound". Every
method that can run long gets the same per-job time limit (`LONG_METHODS`). Outputs: ``gap-table.csv`` (one row per instance and method),
``gap-table.md`` (one row per method), ``gap-table.png`` and ``config.json`` (the
suite, methods, options and package versions).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Callable

from placement.experiments.output import save_figure, versions, write_json, write_rows_csv
from placement.files import write_text_atomic
from placement.experiments.sweep import Job, run_sweep

__all__ = ["DEFAULT_METHODS", "DEFAULT_TIME_LIMIT_S", "LONG_METHODS", "QUICK_INSTANCES", "reproduce_gap_table",
           "suite_instances", "summarize"]

DEFAULT_METHODS = ("milp", "myopic", "myopic+", "myopic-milp", "pipeline-dp", "memory-proportional",
                   "round-robin", "greedy", "single", "static")
# A subset of paper-small that finishes in well under two minutes on 2 cores.
QUICK_INSTANCES = ("paper-small/h8-3dev-medium-s1-kafetzis", "paper-small/h8-3dev-medium-s1-roofline",
                   "paper-small/h8-4dev-medium-s1-kafetzis", "paper-small/h16-4dev-low-s1-kafetzis",
                   "paper-small/h16-5dev-medium-s1-kafetzis", "paper-small/h16-5dev-low-s1-roofline")
DEFAULT_TIME_LIMIT_S = 60.0
# Back ends whose run time grows with the instance and that honour `time_limit`.
LONG_METHODS = ("milp", "myopic-milp", "static", "tp")


def _references(rows: list[dict[str, Any]]) -> dict[str, tuple[float, bool]]:
    """Per instance: (reference seconds, True when it is a proven optimum rather than a bound)."""
    out = {}
    for row in rows:
        if row["method"] != "milp":
            continue
        if row["status"] == "optimal" and row["total_s"]:  # a zero optimum is no reference either
            out[row["instance"]] = (row["total_s"], True)
        elif row["bound_s"] is not None and row["bound_s"] > 0:
            out[row["instance"]] = (row["bound_s"], False)
    return out


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per method: gaps (mean, median, worst, geometric mean), latency, memory, time.

    A gap below zero against a proven optimum would be a bug; it is kept visible, never clipped.
    """
    references = _references(rows)
    for row in rows:
        ref = references.get(row["instance"])
        feasible = row["feasible"] and row["total_s"] is not None
        row["gap"] = (row["total_s"] / ref[0] - 1) if (ref and feasible) else None
        row["gap_to"] = "no bound" if ref is None else ("optimum" if ref[1] else "bound")
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [r for r in rows if r["method"] == method]
        gaps = [r["gap"] for r in mine if r["gap"] is not None]
        feasible = [r for r in mine if r["feasible"]]
        summary.append({
            "method": method,
            "instances": len(mine),
            "feasible": len(feasible),
            "mean_gap": statistics.fmean(gaps) if gaps else None,
            "median_gap": statistics.median(gaps) if gaps else None,
            "worst_gap": max(gaps) if gaps else None,
            "geomean_gap": math.exp(statistics.fmean(math.log1p(g) for g in gaps)) - 1 if gaps else None,
            "to_bound": sum(1 for r in mine if r["gap"] is not None and r["gap_to"] == "bound"),
            "mean_token_ms": statistics.fmean(r["mean_token_s"] * 1e3 for r in feasible) if feasible else None,
            "peak_memory_gib": max(r["peak_memory_bytes"] for r in feasible) / 2**30 if feasible else None,
            "median_time_s": statistics.median(r["solve_time_s"] for r in mine),
        })
    return summary


def _markdown(summary: list[dict[str, Any]], suite: str) -> str:
    def pct(v, missing):
        return missing if v is None else f"{v * 100:.2f} %"

    lines = [f"# Gap to the optimum, suite `{suite}`", "",
             "| method | feasible | mean gap | median gap | worst gap | geometric-mean gap | mean per-token | peak memory | median time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        missing = "no feasible plan" if not s["feasible"] else "-"  # a method that never fits is no blank slot
        bound = f" ({s['to_bound']} to a bound)" if s["to_bound"] else ""
        token = "-" if s["mean_token_ms"] is None else f"{s['mean_token_ms']:.3f} ms"
        memory = "-" if s["peak_memory_gib"] is None else f"{s['peak_memory_gib']:.4g} GiB"
        lines.append(f"| {s['method']} | {s['feasible']}/{s['instances']}{bound} | {pct(s['mean_gap'], missing)} | {pct(s['median_gap'], missing)} "
                     f"| {pct(s['worst_gap'], missing)} | {pct(s['geomean_gap'], missing)} | {token} | {memory} | {s['median_time_s']:.3g} s |")
    return "\n".join(lines) + "\n"


def _figure(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "milp"]
    data = [[r["gap"] * 100 for r in rows if r["method"] == m and r["gap"] is not None] for m in methods]
    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2, 4))
    ax.boxplot([d if d else [float("nan")] for d in data], showfliers=True)
    for i, d in enumerate(data, start=1):
        if not d:  # no feasible plan on any instance: say so instead of leaving the slot empty
            ax.text(i, 0.5, "no feasible plan", transform=ax.get_xaxis_transform(), rotation=90,
                    ha="center", va="center", color="#a33", fontsize=9)
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
    ax.set_ylabel("gap to the optimum (%)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title("Gap to the MILP optimum, per instance")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def suite_instances(suite: str) -> list[str]:
    """The instances of a shipped suite (``suite/name``), or the files of a folder of the user's own.

    Raises
    ------
    InputError
        When `suite` is neither a shipped suite nor a folder holding instance files.
    """
    import placement
    from placement.errors import InputError

    folder = Path(suite).expanduser()
    if folder.is_dir():
        files = sorted(str(p) for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file())
        if not files:
            raise InputError(f"`--suite` folder {suite!r} holds no instance files (*.yaml, *.yml, *.json)")
        return files
    names = [n for n in placement.instance_names() if n.startswith(f"{suite}/")]
    if not names:
        suites = sorted({n.split("/")[0] for n in placement.instance_names()})
        raise InputError(f"unknown suite {suite!r}; suites are {', '.join(suites)}, or give a folder of instance files")
    return names


def reproduce_gap_table(suite: str = "paper-small", *, methods: list[str] | None = None, quick: bool = False,
                        out_dir: str | Path = "results/gap-table", n_jobs: int = 2, dask: str | None = None,
                        time_limit: float | None = None,
                        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Solve every instance of `suite` with every method and write the gap table.

    Parameters
    ----------
    suite : str
        A folder of ``instances/`` (``placement instances`` lists them), or the path
        of a folder of the user's own instance files (``*.yaml``, ``*.json``).
    methods : list of str, optional
        Default: every method of `DEFAULT_METHODS` that `placement.METHODS` has.
    quick : bool
        Only `QUICK_INSTANCES` (under two minutes on 2 cores).
    out_dir : path
        Where the cache and the outputs go; an interrupted run resumes from the cache.
    time_limit : float, optional
        Seconds per job for every method of `LONG_METHODS` (default `DEFAULT_TIME_LIMIT_S`).
    n_jobs, dask, progress
        See `placement.experiments.sweep.run_sweep`.

    Returns
    -------
    dict
        ``rows``, ``summary`` and the output ``paths``.
    """
    import placement
    from placement.errors import InputError

    names = suite_instances(suite)
    if quick:
        names = [n for n in names if n in QUICK_INSTANCES] or names[:4]
    methods = methods or [m for m in DEFAULT_METHODS if m in placement.METHODS]
    unknown = [m for m in methods if m not in placement.METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; methods are {', '.join(placement.METHODS)}")
    limit = {"time_limit": DEFAULT_TIME_LIMIT_S if time_limit is None else float(time_limit)}
    jobs = [Job(name, method, limit if method in LONG_METHODS else {}) for name in names for method in methods]
    out = Path(out_dir)
    rows = run_sweep(jobs, out, n_jobs=n_jobs, dask=dask, progress=progress)
    summary = summarize(rows)
    paths = {"csv": out / "gap-table.csv", "markdown": out / "gap-table.md", "figure": out / "gap-table.png",
             "config": out / "config.json"}
    columns = ["instance", "method", "status", "gap", "gap_to", "total_s", "mean_token_s", "ttft_s", "migration_s",
               "peak_memory_bytes", "solve_time_s", "decision_median_s", "bound_s", "message"]
    write_rows_csv(paths["csv"], rows, columns)
    write_text_atomic(paths["markdown"], _markdown(summary, suite))
    _figure(rows, paths["figure"])
    write_json(paths["config"], {"suite": suite, "quick": quick, "instances": names, "methods": methods,
                                 "long_method_options": limit, "long_methods": list(LONG_METHODS), "versions": versions()})
    return {"rows": rows, "summary": summary, "paths": paths}
