"""Figures a reader can trust: plain labels on log axes, whole-number device ticks, common file names."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from placement.experiments.figures import count_axis, plain_log_axis, shared_legend  # noqa: E402
from placement.experiments.split_table import reproduce_split_table  # noqa: E402


def _labels(axis) -> list[str]:
    axis.figure.canvas.draw()
    return [t.get_text() for t in axis.get_ticklabels() if t.get_visible()]


def test_log_axes_read_as_plain_numbers_and_ratios():
    fig, ax = plt.subplots()
    ax.plot([0.1, 20], [0.9, 4.5])
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlim(0.1, 20)
    ax.set_ylim(0.9, 4.5)
    plain_log_axis(ax.xaxis)
    plain_log_axis(ax.yaxis, suffix="×", steps=(1, 2, 4))
    assert _labels(ax.xaxis) == ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20"]
    assert _labels(ax.yaxis) == ["1×", "2×", "4×"]
    plt.close(fig)


def test_device_ticks_are_the_counts_plotted_and_the_legend_is_shared():
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([2, 4, 6, 8], [1, 2, 3, 4], label="tp")
    b.plot([2, 8], [1, 2], label="tp")
    b.plot([2, 8], [2, 1], label="ring")
    count_axis(a.xaxis, [2, 4, 6, 8])
    assert _labels(a.xaxis) == ["2", "4", "6", "8"]
    shared_legend(fig, [a, b])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["tp", "ring"]  # once each, outside the panels
    assert a.get_legend() is None and b.get_legend() is None
    plt.close(fig)


def test_split_table_writes_the_common_file_names(tmp_path):
    result = reproduce_split_table(out_dir=tmp_path, models=["llama-3.2-1b"], devices=["raspberry-pi-5"],
                                   uplinks_mbps=[10], generate_tokens=[16])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "split-table.csv", "split-table.md",
                                                          "split-table.png"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["models"] == ["llama-3.2-1b"] and config["uplinks_mbps"] == [10]
    assert set(result["paths"]) == {"csv", "markdown", "figure", "config"}
