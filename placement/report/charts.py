"""The report's figures as inline SVG strings, from a `Report`, a `Plan` and `placement.report.steps`.

Each function returns one ``<svg>``; figures that differ per interval wrap each
interval's drawing in ``<g data-interval="k">`` so the page's interval selector can
show one at a time. Colours: compute blue, transfer orange, migration red, memory
grey with its limit as a red dashed line.
"""

from __future__ import annotations

import numpy as np

from placement.cost.units import format_bytes, format_seconds
from placement.evaluate import Report
from placement.instance import Instance
from placement.plan import Plan
from placement.report.steps import Segment, StepBreakdown, device_arrays
from placement.report.svg import group, line, nice_ticks, polygon, rect, svg, text

__all__ = ["layer_map", "memory_chart", "trace_chart", "timeline_chart", "link_chart", "COLOURS"]

COLOURS = {"group": "#3b6fb6", "projection": "#e08a1e", "ffn": "#3a9a5b", "compute": "#3b6fb6",
           "transfer": "#e08a1e", "migration": "#c0392b", "memory": "#8c8c8c", "limit": "#c0392b",
           "over": "#c0392b", "embed": "#7d4fb0"}
_LEFT, _TOP = 70, 24


def _interval_group(k: int, body: str, visible: bool) -> str:
    hidden = "" if visible else ' style="display:none"'
    return f'<g data-interval="{k}"{hidden}>{body}</g>'


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0–2, 5"``."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}–{v}")
            start = None
    return ", ".join(out)


def _layer_cells(instance: Instance, plan: Plan, k: int, cw: float, ch: float, top: float) -> str:
    arrays = device_arrays(instance, plan.placement(k), plan.devices)
    L, K = instance.model.layers, instance.model.kv_heads
    names = instance.cluster.names
    parts = []
    for l in range(L):
        y = top + 16 + l * ch
        for n, name in enumerate(names):
            x = _LEFT + n * cw
            groups = [g for g in range(K) if arrays["attention"][l, g] == n]
            xp, xf = arrays["projection"][l, n], arrays["ffn"][l, n]
            if not groups and xp == 0 and xf == 0:
                continue
            tip = (f"layer {l} on {name}: groups {_ranges(groups) if groups else 'none'} ({len(groups)} of {K}), "
                   f"projection {xp:.0%}, FFN {xf:.0%}")
            cell = [rect(x + 1, y + 1, cw - 2, ch - 2, "#eef2f8")]
            gw = (cw * 0.6 - 2) / K
            for g in groups:
                cell.append(rect(x + 1 + g * gw, y + 2, max(gw - 0.5, 0.5), ch - 4, COLOURS["group"], cls="group"))
            for j, (kind, share) in enumerate((("projection", xp), ("ffn", xf))):
                if share > 0:
                    cell.append(rect(x + cw * (0.62 + 0.19 * j), y + 2, cw * 0.17, ch - 4, COLOURS[kind],
                                     opacity=max(share, 0.25)))
            parts.append(group(cell, tip=tip, cls="cell"))
    for kind, n in (("embed", int(arrays["embed"])), ("lm_head", int(arrays["lm_head"]))):
        x = _LEFT + n * cw + (2 if kind == "embed" else cw / 2)
        parts.append(rect(x, top + 4, cw / 2 - 3, 9, COLOURS["embed"], tip=f"{kind} on {names[n]}",
                          opacity=1.0 if kind == "embed" else 0.55))
    return "".join(parts)


def layer_map(instance: Instance, plan: Plan) -> str:
    """Layers (rows) × devices (columns) per interval: attention groups, projection and FFN share, embed and lm_head.

    Returns
    -------
    str
        An ``<svg id="layer-map">``; a cell's small blue bars are the layer's attention
        groups on that device (by group index), the orange and green bars its
        projection and FFN shares (opacity = share); the purple marks above the first
        row are ``embed`` (left) and ``lm_head`` (right).
    """
    L, N = instance.model.layers, instance.n_devices
    cw = float(np.clip(900 / N, 22, 90))
    ch = float(np.clip(560 / L, 8, 18))
    names = instance.cluster.names
    upright = N <= 12  # more devices: names slanted, with room above the map for the longest one
    top = _TOP if upright else 16 + 5.5 * max(map(len, names)) * 0.82
    body = [text(_LEFT + (n + 0.5) * cw, top - 8, name, anchor="middle" if upright else "start", size=10,
                 rotate=None if upright else -55) for n, name in enumerate(names)]
    body.append(text(_LEFT - 6, top + 12, "embed | head", anchor="end", size=9))
    step = max(1, L // 16)
    body += [text(_LEFT - 6, top + 16 + l * ch + ch * 0.75, f"L{l}", anchor="end", size=9) for l in range(0, L, step)]
    intervals = len(plan.intervals)
    body += [_interval_group(k, _layer_cells(instance, plan, k, cw, ch, top), k == 0) for k in range(intervals)]
    return svg(_LEFT + N * cw + 60, top + 24 + L * ch, "".join(body), id_="layer-map",
               label="layer by device map of the blocks")


def memory_chart(report: Report) -> str:
    """Small multiples, one per device: peak memory in each interval against the device's limit.

    Returns
    -------
    str
        An ``<svg id="memory">``; bars over the limit are red. The scale of every panel
        runs to the larger of its limit and its peak.
    """
    I, N = report.peak_memory_bytes.shape
    pw, ph, cols = 170, 90, min(N, 5)
    rows = int(np.ceil(N / cols))
    body = []
    for n, name in enumerate(report.devices):
        x0, y0 = 10 + (n % cols) * (pw + 16), 18 + (n // cols) * (ph + 34)
        limit = report.memory_limit_bytes[n]
        top = max(limit, report.peak_memory_bytes[:, n].max()) * 1.08 or 1.0
        body.append(text(x0, y0 - 4, f"{name} ({format_bytes(limit)})", size=10))
        body.append(rect(x0, y0, pw, ph, "#fafafa", stroke="#ddd"))
        bw = pw / I
        for k in range(I):
            used = report.peak_memory_bytes[k, n]
            h = ph * used / top
            over = used > limit * (1 + 1e-12)
            tip = f"{name}, interval {k}: {format_bytes(used)} of {format_bytes(limit)} ({used / limit:.0%})"
            body.append(rect(x0 + k * bw + bw * 0.1, y0 + ph - h, bw * 0.8, h, COLOURS["over" if over else "memory"],
                             tip=tip, cls=f"mem-bar interval-{k}"))
        y_limit = y0 + ph - ph * limit / top
        body.append(line(x0, y_limit, x0 + pw, y_limit, stroke=COLOURS["limit"], dash="4 3", width=1.5,
                         tip=f"{name}: limit {format_bytes(limit)}"))
    return svg(20 + cols * (pw + 16), 24 + rows * (ph + 34), "".join(body), id_="memory",
               label="memory per device over the intervals")


def _axis_y(top: float, x: float, y0: float, h: float, width: float, unit: float, suffix: str) -> str:
    out = []
    for v in nice_ticks(top):
        y = y0 + h - h * v / top
        if y < y0 - 0.5:
            break
        out.append(line(x, y, x + width, y, stroke="#eee"))
        out.append(text(x - 4, y + 4, f"{v / unit:g}{suffix}", anchor="end", size=9))
    return "".join(out)


def trace_chart(breakdown: StepBreakdown, tau: int, prompt_tokens: int) -> str:
    """The per-token latency: compute, transfer and (before the first step of an interval) migration stacked.

    Returns
    -------
    str
        An ``<svg id="trace">``. The scale follows compute + transfer; a migration
        taller than the plot is clipped and labelled with its time.
    """
    T = len(breakdown.compute_s)
    w, h = 880, 220
    compute_ms, transfer_ms = breakdown.compute_s * 1e3, breakdown.transfer_s * 1e3
    top = float((compute_ms + transfer_ms).max() * 1.15) or 1.0
    x = lambda i: _LEFT + w * i / T  # noqa: E731
    y = lambda v: _TOP + h - h * min(v, top) / top  # noqa: E731
    steps = np.arange(T + 1)
    c_top = [(x(i), y(compute_ms[min(i, T - 1)])) for i in steps]
    t_top = [(x(i), y(compute_ms[min(i, T - 1)] + transfer_ms[min(i, T - 1)])) for i in steps]
    base = [(x(T), y(0)), (x(0), y(0))]
    body = [_axis_y(top, _LEFT, _TOP, h, w, 1.0, " ms"),
            polygon(t_top + c_top[::-1], COLOURS["transfer"], cls="transfer-area"),
            polygon(c_top + base, COLOURS["compute"], cls="compute-area")]
    for i in np.flatnonzero(breakdown.migration_s):
        ms = breakdown.migration_s[i] * 1e3
        base = compute_ms[i] + transfer_ms[i]  # stacked on the step it delays
        body.append(rect(x(i) - 1.5, y(base + ms), 3, y(base) - y(base + ms), COLOURS["migration"], cls="migration",
                         tip=f"migration before step {i + 1}: {format_seconds(breakdown.migration_s[i])}"))
        if base + ms > top:
            body.append(text(x(i) + 3, _TOP + 9, f"↑{format_seconds(breakdown.migration_s[i])}", size=9))
    for k in range(1, int(np.ceil(T / tau))):
        body.append(line(x(k * tau), _TOP, x(k * tau), _TOP + h, stroke="#999", dash="2 3"))
    bucket = max(1, int(np.ceil(T / 300)))
    for i in range(0, T, bucket):
        j = min(i + bucket, T)
        moved = breakdown.migration_s[i:j].sum()
        tip = (f"step {i + 1}{'' if j == i + 1 else f'–{j}'} (context {prompt_tokens + i + 1}): "
               f"compute {format_seconds(breakdown.compute_s[i:j].mean())}, "
               f"transfer {format_seconds(breakdown.transfer_s[i:j].mean())}"
               + (f", migration before it {format_seconds(moved)}" if moved else ""))
        body.append(rect(x(i), _TOP, x(j) - x(i), h, "transparent", tip=tip, cls="hover"))
    for i in nice_ticks(T, 6):
        if i <= T:
            body.append(text(x(i), _TOP + h + 14, f"{int(i)}", anchor="middle", size=9))
    body.append(text(_LEFT + w / 2, _TOP + h + 30, "decode step", anchor="middle", size=10))
    return svg(_LEFT + w + 20, _TOP + h + 40, "".join(body), id_="trace", label="per-token latency trace")


def _timeline_body(segments: list[Segment], lanes: list[str], w: float, lane_h: float, end: float) -> str:
    body = []
    for v in nice_ticks(end * 1e3, 8):
        xv = _LEFT + 60 + w * v / (end * 1e3)
        if xv > _LEFT + 60 + w + 0.5:
            break
        body.append(line(xv, _TOP, xv, _TOP + lane_h * len(lanes), stroke="#eee"))
        body.append(text(xv, _TOP + lane_h * len(lanes) + 12, f"{v:g} ms", anchor="middle", size=9))
    for i, name in enumerate(lanes):
        body.append(text(_LEFT + 54, _TOP + i * lane_h + lane_h * 0.65, name, anchor="end", size=10))
    for s in segments:
        i = lanes.index(s.device)
        x0 = _LEFT + 60 + w * s.start_s / end
        width = max(w * (s.end_s - s.start_s) / end, 0.6)
        tip = f"{s.device}: {s.label}, {format_seconds(s.end_s - s.start_s)} from {format_seconds(s.start_s)}" + \
              (" (critical path)" if s.critical else "")
        body.append(rect(x0, _TOP + i * lane_h + 3, width, lane_h - 6, COLOURS[s.kind], tip=tip,
                         opacity=1.0 if s.critical else 0.35, cls=f"segment {s.kind}{' critical' if s.critical else ''}"))
    return "".join(body)


def timeline_chart(timelines: list[list[Segment]], devices: tuple[str, ...]) -> str:
    """One decode step per interval as device lanes; critical-path segments solid, others faint.

    Returns
    -------
    str
        An ``<svg id="timeline">`` with one ``data-interval`` group per interval.
    """
    used = [name for name in devices if any(s.device == name for t in timelines for s in t)]
    lane_h, w = 22.0, 800.0
    groups = []
    for k, segments in enumerate(timelines):
        end = max(s.end_s for s in segments) or 1.0
        groups.append(_interval_group(k, _timeline_body(segments, used, w, lane_h, end), k == 0))
    return svg(_LEFT + 60 + w + 20, _TOP + lane_h * len(used) + 24, "".join(groups), id_="timeline",
               label="one decode step as a per-device timeline")


def link_chart(report: Report, limit: int = 40) -> str:
    """Bytes carried by every link over the generation, largest first (at most `limit` links).

    Returns
    -------
    str
        An ``<svg id="links">``; links that carry nothing are left out.
    """
    order = [i for i in np.argsort(-report.link_bytes) if report.link_bytes[i] > 0][:limit]
    w, bar_h = 600, 16
    top = report.link_bytes[order[0]] if order else 1.0
    body = []
    for row, i in enumerate(order):
        u, v = report.links[i]
        y = _TOP + row * bar_h
        body.append(text(150, y + 12, f"{u} — {v}", anchor="end", size=10))
        width = w * report.link_bytes[i] / top
        body.append(rect(156, y + 2, width, bar_h - 4, COLOURS["transfer"], tip=f"{u} — {v}: {format_bytes(report.link_bytes[i])}",
                         cls="link-bar"))
        body.append(text(160 + width, y + 12, format_bytes(report.link_bytes[i]), size=9))
    if not order:
        body.append(text(10, _TOP + 12, "no bytes cross any link (one device holds everything)", size=11))
    return svg(156 + w + 90, _TOP + max(len(order), 1) * bar_h + 10, "".join(body), id_="links", label="bytes per link")
