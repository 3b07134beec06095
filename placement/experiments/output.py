"""Writing experiment results: one CSV writer and one record of versions for every table."""

from __future__ import annotations

import csv
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["write_rows_csv", "versions"]

_PACKAGES = ("placement", "numpy", "scipy", "highspy", "pulp", "ortools", "cvxpy", "joblib", "networkx", "pydantic",
             "pint", "torch")


def versions() -> dict[str, str]:
    """Python, the machine and the installed version of every package a result depends on."""
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for package in _PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write `rows` (dicts) to `path` as CSV; the columns are every key, in order of first appearance."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
