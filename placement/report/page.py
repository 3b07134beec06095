"""One self-contained HTML page for a plan: every figure inline, no network needed to open it.

The page holds inline SVG drawn here (`placement.report.charts`), one stylesheet and
one small script of this package (`page.css`, `page.js`, inlined): nothing is loaded
from anywhere else. Layout and figures are described in docs/report.md.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

from placement.cost.units import format_bytes, format_seconds
from placement.errors import InputError
from placement.files import write_text_atomic
from placement.evaluate import Report, evaluate
from placement.instance import Instance
from placement.plan import Plan
from placement.report import charts
from placement.report.steps import step_breakdown, step_timeline
from placement.report.summary import bound_line, device_blocks, migrations
from placement.result import Result

__all__ = ["report_html", "write_report"]


def _asset(name: str) -> str:
    return files("placement.report").joinpath(name).read_text()


def _rows(pairs: list[tuple[str, str]], cls: str = "summary") -> str:
    body = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="{cls}">{body}</table>'


def _summary(instance: Instance, plan: Plan, report: Report, result: Result | None) -> str:
    w = instance.workload
    feasible = '<span class="good">yes</span>' if report.feasible else \
        f'<span class="bad">no</span> ({len(report.violations)} violation(s))'
    pairs = [
        ("instance", escape(f"{instance.name}: {instance.model.name} on {instance.n_devices} devices "
                            f"({instance.cluster.network} network, {w.profile} profile)")),
        ("workload", escape(f"prompt {w.prompt_tokens} tokens, {w.generate_tokens} decode steps, "
                            f"{w.n_intervals} interval(s) of {w.tau}")),
        ("method", escape(plan.method or "(not recorded)")),
        ("feasible", feasible),
        ("total", format_seconds(report.total_s)),
        ("time to first token", format_seconds(report.ttft_s)),
        ("mean per token", format_seconds(report.mean_token_s)),
        ("migration", format_seconds(float(report.migration_s.sum()))),
    ]
    if result is not None:
        pairs.insert(3, ("status", escape(f"{result.status}: {result.message}")))
        pairs.append(("bound", escape(bound_line(result.objective, result.bound, result.gap))))
    pairs += [(k.replace("_", " "), f"{v:.4g}") for k, v in report.errors.items()]
    return _rows(pairs)


def _violations(report: Report) -> str:
    if report.feasible:
        return ""
    items = "".join(f"<li>{escape(str(v))}</li>" for v in report.violations[:50])
    more = f"<li>… and {len(report.violations) - 50} more</li>" if len(report.violations) > 50 else ""
    return f'<h2>Memory violations</h2><ul id="violations" class="bad">{items}{more}</ul>'


def _migration_table(instance: Instance, plan: Plan, report: Report) -> str:
    moves = migrations(instance, plan, report.migration_s)
    if not moves:
        return '<p id="migrations" class="note">Nothing moves: the placement stays the same in every interval.</p>'
    rows = "".join(
        f'<tr data-boundary="{m["interval"]}"><td>{m["interval"]}</td><td>{m["step"]}</td>'
        f'<td>{format_seconds(m["time_s"])}</td><td>{escape("; ".join(m["moves"]))}</td></tr>' for m in moves)
    return ('<table id="migrations"><tr><th>interval starting</th><th>first step</th><th>migration time</th>'
            f'<th>what moves</th></tr>{rows}</table>')


def _device_table(instance: Instance, plan: Plan, report: Report) -> str:
    parts = []
    for k in range(len(plan.intervals)):
        blocks = device_blocks(instance, plan, k)
        rows = "".join(
            f"<tr><td>{escape(name)}</td><td>{format_bytes(report.peak_memory_bytes[k, n])} of "
            f"{format_bytes(report.memory_limit_bytes[n])}</td><td>{escape(blocks[name])}</td></tr>"
            for n, name in enumerate(instance.cluster.names))
        hidden = "" if k == 0 else ' style="display:none"'
        parts.append(f'<tbody data-interval="{k}"{hidden}>{rows}</tbody>')
    return f'<table id="devices"><tr><th>device</th><th>memory</th><th>blocks</th></tr>{"".join(parts)}</table>'


def _selector(plan: Plan, instance: Instance) -> str:
    w = instance.workload
    if plan.static:
        options = f'<option value="0">one placement for all {w.n_intervals} interval(s)</option>'
    else:
        options = "".join(
            f'<option value="{k}">interval {k}: steps {k * w.tau + 1}–{min((k + 1) * w.tau, w.generate_tokens)}</option>'
            for k in range(len(plan.intervals)))
    return (f'<div id="controls"><label for="interval">Interval </label><select id="interval">{options}</select></div>')


def _legend(*kinds: str) -> str:
    return '<div class="legend">' + "".join(
        f'<span style="background:{charts.COLOURS[k]}"></span>{k}' for k in kinds) + "</div>"


def report_html(instance: Instance, plan: Plan, *, report: Report | None = None, result: Result | None = None) -> str:
    """The report page of `plan` on `instance` as one HTML string.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    report : Report, optional
        The evaluator's report of `plan` (computed when not given).
    result : Result, optional
        The solve result, for its status, bound and gap.

    Returns
    -------
    str
        A complete HTML document that loads nothing from elsewhere.
    """
    report = report if report is not None else evaluate(instance, plan)
    breakdown = step_breakdown(report, instance.workload.tau)
    timelines = [step_timeline(instance, plan, k) for k in range(len(plan.intervals))]
    title = f"{plan.method or 'plan'} on {instance.name}"
    sections = [
        f"<h1>{escape(title)}</h1>", _summary(instance, plan, report, result), _violations(report),
        _selector(plan, instance),
        "<h2>Blocks on devices</h2>", _device_table(instance, plan, report),
        "<h2>Layer × device map</h2>",
        '<p class="note">Rows are layers, columns devices, for the selected interval. In a cell the blue bars are '
        "the layer's attention groups on that device, by group index; orange is the output projection and green "
        "the FFN (faint = a share of a split block). Hover a cell for its figures.</p>",
        _legend("group", "projection", "ffn", "embed"), charts.layer_map(instance, plan),
        "<h2>Memory per device</h2>",
        '<p class="note">Peak memory in each interval (at its largest context) against the memory the device has '
        "for blocks (red dashed line: memory less the reservation). Red bars are over the limit.</p>",
        charts.memory_chart(report),
        "<h2>Per-token latency</h2>",
        '<p class="note">Every decode step: compute (along the critical path) and transfer (the rest) stacked; '
        "red marks are migrations, paid before the first step of an interval; dotted lines are interval "
        "boundaries.</p>",
        _legend("compute", "transfer", "migration"),
        charts.trace_chart(breakdown, instance.workload.tau, instance.workload.prompt_tokens),
        "<h2>One decode step</h2>",
        '<p class="note">The first decode step of the selected interval, device by device; solid segments lie on '
        "the critical path, faint ones finish earlier and wait. Transfers are drawn on the device that receives "
        "(input) or sends (head outputs).</p>",
        _legend("compute", "transfer"), charts.timeline_chart(timelines, instance.cluster.names),
        "<h2>Bytes per link</h2>", charts.link_chart(report),
        "<h2>Migrations</h2>", _migration_table(instance, plan, report),
    ]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_asset('page.css')}</style></head><body>"
            + "".join(sections)
            + '<div id="tip"></div>'
            + f"<script>{_asset('page.js')}</script></body></html>\n")


def write_report(path: str | Path, instance: Instance, plan: Plan, *, report: Report | None = None,
                 result: Result | None = None) -> Path:
    """Write the report page to `path` atomically (a half-written page never appears).

    Parameters
    ----------
    path : str or Path
        The HTML file to write.
    instance, plan, report, result
        As for `report_html`.

    Returns
    -------
    Path
        `path`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"report: folder {str(path.parent)!r} does not exist; create it or write elsewhere")
    write_text_atomic(path, report_html(instance, plan, report=report, result=result))
    return path
