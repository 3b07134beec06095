"""Writing experiment results: CSV, Markdown, figures and config.json, each written atomically
(`placement.files.atomic_write`: a full disk leaves the previous file whole), and one
record of versions for every table."""

from __future__ import annotations

import csv
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from placement.files import atomic_write, json_ready, write_text_atomic

__all__ = ["write_rows_csv", "write_json", "save_figure", "versions"]

_PACKAGES = ("numpy", "scipy", "highspy", "pulp", "ortools", "cvxpy", "joblib", "networkx", "pydantic",
             "pint", "torch")


def versions() -> dict[str, str]:
    """Python, the machine and the installed version of every package a result depends on."""
    from placement import __version__  # the distribution is llm-placement; the version is the package's own

    out = {"python": platform.python_version(), "machine": platform.machine(), "placement": __version__}
    for package in _PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def write_rows_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Write `rows` (dicts) to `path` as CSV, atomically.

    Parameters
    ----------
    path : Path
    rows : list of dict
    columns : list of str, optional
        The columns, in order; keys outside them are left out. Default: every key, in
        order of first appearance.
    """
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with atomic_write(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically (``config.json``, summaries); NaN or infinity is an error, not bare JSON."""
    write_text_atomic(path, json.dumps(json_ready(data), indent=1, allow_nan=False, default=str))


def save_figure(fig: Any, path: Path, **options: Any) -> None:
    """``fig.savefig(path, **options)`` atomically; the format is taken from the suffix of `path`."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", **options)
