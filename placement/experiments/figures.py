"""Axis and legend habits shared by the tables' figures, so that every figure reads the same way.

- Log axes are labelled with plain numbers (``0.1``, ``1``, ``10``; ratios as ``1×``,
  ``2×``, ``4×``), never ``10^-1`` or ``2^2``.
- Counts (devices) get one tick per value plotted, whole numbers only.
- A legend shared by several panels sits once, outside the panels, so it covers no line.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plain_log_axis", "count_axis", "shared_legend"]


def _ticks(low: float, high: float, steps: Sequence[float]) -> list[float]:
    import math

    out = []
    for exponent in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        out += [m * 10.0 ** exponent for m in steps if low <= m * 10.0 ** exponent <= high]
    return out


def plain_log_axis(axis, *, suffix: str = "", steps: Sequence[float] = (1, 2, 5), ticks: Sequence[float] | None = None) -> None:
    """Label a log-scaled matplotlib axis (``ax.xaxis`` or ``ax.yaxis``) with plain numbers.

    Parameters
    ----------
    axis : matplotlib.axis.Axis
        Already on a log scale with its limits set (or data plotted).
    suffix : str
        Appended to every label, e.g. ``"×"`` for ratios.
    steps : sequence of float
        Mantissas of the ticks in each decade (``1, 2, 5`` → 1, 2, 5, 10, 20, …).
    ticks : sequence of float, optional
        Exact tick values instead.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    low, high = sorted(axis.get_view_interval())
    values = list(ticks) if ticks is not None else _ticks(low, high, steps)
    axis.set_major_locator(FixedLocator(values))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}"))


def count_axis(axis, values: Sequence[int]) -> None:
    """One tick per count plotted (devices), whole numbers, on a linear or log axis.

    Parameters
    ----------
    axis : matplotlib.axis.Axis
    values : sequence of int
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    axis.set_major_locator(FixedLocator(sorted(set(int(v) for v in values))))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))


def shared_legend(fig, axes, *, columns: int | None = None) -> None:
    """One legend for every line label of `axes`, centred below the panels.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    axes : iterable of matplotlib.axes.Axes
    columns : int, optional
        Legend columns (default: every label on one row).
    """
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=columns or len(handles),
                   fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
