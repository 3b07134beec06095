"""Tiny SVG writing helpers for the report: elements as strings, hover text as ``data-tip``.

Every element that carries a figure gets a ``data-tip`` attribute (the page's script
shows it on hover) and a ``<title>`` child (the browser's own tooltip, and what a
screen reader reads), so the page works without its script too.
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["svg", "group", "rect", "text", "line", "polygon", "nice_ticks"]


def _attrs(**attributes: object) -> str:
    parts = []
    for key, value in attributes.items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f'{name}="{escape(str(value), quote=True)}"')
    return " ".join(parts)


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def svg(width: float, height: float, body: str, *, id_: str | None = None, label: str = "") -> str:
    """An inline ``<svg>`` of `width` × `height` pixels holding `body`.

    Parameters
    ----------
    width, height : float
        Pixels.
    body : str
        SVG elements.
    id_ : str, optional
        The element id.
    label : str
        Accessible name (``aria-label``).

    Returns
    -------
    str
    """
    return (f'<svg xmlns="http://www.w3.org/2000/svg" {_attrs(id=id_, width=_num(width), height=_num(height))} '
            f'viewBox="0 0 {_num(width)} {_num(height)}" role="img" aria-label="{escape(label)}">{body}</svg>')


def group(children: list[str], *, tip: str, cls: str | None = None) -> str:
    """A ``<g>`` of `children` that shows `tip` when any of them is hovered.

    Returns
    -------
    str
    """
    return f"<g {_attrs(class_=cls, data_tip=tip)}><title>{escape(tip)}</title>{''.join(children)}</g>"


def rect(x: float, y: float, w: float, h: float, fill: str, *, tip: str | None = None, cls: str | None = None,
         opacity: float | None = None, stroke: str | None = None) -> str:
    """A rectangle (pixels), with hover text `tip`.

    Returns
    -------
    str
    """
    attributes = _attrs(x=_num(x), y=_num(y), width=_num(max(w, 0.0)), height=_num(max(h, 0.0)), fill=fill,
                        class_=cls, fill_opacity=None if opacity is None else _num(opacity), stroke=stroke,
                        data_tip=tip)
    if tip is None:
        return f"<rect {attributes}/>"
    return f"<rect {attributes}><title>{escape(tip)}</title></rect>"


def text(x: float, y: float, content: str, *, anchor: str = "start", size: float = 11, cls: str | None = None,
         rotate: float | None = None) -> str:
    """A text label at (x, y) pixels; `rotate` degrees about its anchor point.

    Returns
    -------
    str
    """
    transform = None if rotate is None else f"rotate({_num(rotate)} {_num(x)} {_num(y)})"
    return (f"<text {_attrs(x=_num(x), y=_num(y), text_anchor=anchor, font_size=_num(size), class_=cls, transform=transform)}>"
            f"{escape(content)}</text>")


def line(x1: float, y1: float, x2: float, y2: float, *, stroke: str = "#888", dash: str | None = None,
         width: float = 1.0, tip: str | None = None) -> str:
    """A line segment (pixels).

    Returns
    -------
    str
    """
    attributes = _attrs(x1=_num(x1), y1=_num(y1), x2=_num(x2), y2=_num(y2), stroke=stroke, stroke_dasharray=dash,
                        stroke_width=_num(width), data_tip=tip)
    return f"<line {attributes}/>" if tip is None else f"<line {attributes}><title>{escape(tip)}</title></line>"


def polygon(points: list[tuple[float, float]], fill: str, *, cls: str | None = None) -> str:
    """A filled polygon through `points` (pixels).

    Returns
    -------
    str
    """
    path = " ".join(f"{_num(x)},{_num(y)}" for x, y in points)
    return f"<polygon {_attrs(points=path, fill=fill, class_=cls)}/>"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top`: steps of 1, 2 or 5 × 10^k.

    Parameters
    ----------
    top : float
        The largest value to cover (> 0).
    count : int
        About how many intervals.

    Returns
    -------
    list of float
        Ascending, starting at 0, the last one ≥ `top`.

    Examples
    --------
    >>> nice_ticks(0.93)
    [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    """
    if not top > 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]
