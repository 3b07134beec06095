"""Ctrl-C during a MILP, and a tiny time limit, on a large instance (issue 13, item 6).

Interrupt: starts ``placement solve INSTANCE --method milp --time-limit 120 --out F --json``
in a subprocess, sends SIGINT after ``--after`` seconds (inside HiGHS's root LP on
``edge/llama-3.1-8b-8dev``), and measures the time from the signal to the exit; checks
the exit code is 130 and the written plan parses. Time limit: ``--time-limit 0.01`` and
the wall time of the whole call (``solve_time_s``). Prints the median of ``--repeats`` runs.

    python benchmarks/bench_interrupt.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def interrupt_once(instance: str, after_s: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plan.json"
        proc = subprocess.Popen([sys.executable, "-m", "placement.cli", "solve", instance, "--method", "milp",
                                 "--time-limit", "120", "--out", str(out), "--json"], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(after_s)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.communicate()
        seconds = time.perf_counter() - sent
        assert proc.returncode == 130, proc.returncode
        json.loads(out.read_text())  # the incumbent, whole
        return seconds


def time_limit_once(instance: str) -> float:
    done = subprocess.run([sys.executable, "-m", "placement.cli", "solve", instance, "--method", "milp",
                           "--time-limit", "0.01", "--json"], env=ENV, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["solve_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", default="edge/llama-3.1-8b-8dev")
    parser.add_argument("--after", type=float, default=25.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stops = [interrupt_once(args.instance, args.after) for _ in range(args.repeats)]
    limits = [time_limit_once(args.instance) for _ in range(args.repeats)]
    print(json.dumps({"instance": args.instance, "sigint_to_exit_s": stops, "median_sigint_to_exit_s": statistics.median(stops),
                      "time_limit_0.01_solve_s": limits, "median_time_limit_solve_s": statistics.median(limits)}, indent=1))


if __name__ == "__main__":
    main()
