"""Suites: every suite by name, and its instance files (rendering, writing, the command line).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from placement.instance import instances_dir
from placement.experiments.suites.common import GENERATED_MARK
from placement.experiments.suites.kafetzis_toy import kafetzis_toy_suite
from placement.experiments.suites.paper_small import paper_small_suite
from placement.experiments.suites.real import edge_real_suite, large_suite

__all__ = ["SUITES", "render_instance", "write_suite", "main"]


SUITES: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "paper-small": paper_small_suite, "edge-real": edge_real_suite, "large": large_suite,
    "kafetzis-toy": kafetzis_toy_suite,
}


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()


def _suite_function(suite: str) -> Callable[[int], list[dict[str, Any]]]:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; the generated suites are {', '.join(SUITES)}")
    return SUITES[suite]


def render_instance(data: dict[str, Any], seed: int = 1, suite: str = "paper-small") -> str:
    """The YAML text of one generated instance, with its header comment naming the suite function.

    Parameters
    ----------
    data : dict
        An instance dict of a suite.
    seed : int
    suite : str
        A key of `SUITES`.

    Returns
    -------
    str
    """
    lines = [
        f"{GENERATED_MARK} ({_suite_function(suite).__name__}(seed={seed}) in placement/experiments/suites.py).",
        "# Do not edit by hand: change the generator and run the command again.",
    ]
    for key, value in data.items():
        if key == "description":
            lines += ["description: >-", *(f"  {line}" for line in textwrap.wrap(value, width=96, break_on_hyphens=False))]
        elif isinstance(value, dict):
            lines += [f"{key}:", *(f"  {k}: {_flow(v) if isinstance(v, dict) else v}" for k, v in value.items())]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines += [f"{key}:", *(f"  - {_flow(item)}" for item in value)]
        elif isinstance(value, list):
            lines.append(f"{key}: {_flow(value)}")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def write_suite(suite: str = "paper-small", folder: str | Path | None = None, seed: int = 1) -> list[Path]:
    """Write a generated suite to `folder` (default: the shipped ``instances/<suite>``).

    Generated files no longer in the suite (those starting with the generated-file
    header) are removed; other files are left alone.

    Parameters
    ----------
    suite : str
        One of `SUITES`: ``paper-small``, ``edge-real``, ``large``.

    Returns
    -------
    list of Path
        The files written, in suite order.
    """
    make = _suite_function(suite)
    folder = Path(folder) if folder is not None else instances_dir() / suite
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for data in make(seed):
        path = folder / f"{data['name']}.yaml"
        path.write_text(render_instance(data, seed, suite))
        written.append(path)
    for path in folder.glob("*.yaml"):
        if path not in written and path.read_text().startswith(GENERATED_MARK):
            path.unlink()
    return written


def main() -> None:
    """Rewrite every suite's instance files and print their paths (``python -m placement.experiments.suites``).

    Returns
    -------
    None
    """
    for suite in SUITES:
        for path in write_suite(suite):
            print(path)


if __name__ == "__main__":
    main()
