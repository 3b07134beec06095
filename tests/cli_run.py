"""Running the `placement` command in a subprocess, as the installed script does, for CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_main(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m placement.cli ARGS`` (the module calls `main()`), text output captured, no colour."""
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "placement.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, check=False)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error: ...`` line a bad input gives, after checking exit code 2 and no traceback."""
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]
