"""The watchdog that stops a solver's child process past its time limit (placement/solvers/child_watchdog.py).

PuLP waits on CBC with no timeout, and CBC overran a 20 s limit by 50 s on a loaded VM;
the watchdog signals the process itself. Checked on a real child process (``sleep``),
with no timing band: what is asserted is which processes were signalled.
"""

from __future__ import annotations

import signal
import subprocess
import time

from placement.solvers.child_watchdog import child_processes, child_watchdog


def test_only_this_process_children_of_that_name_are_found():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in child_processes("sleep")
        assert child.pid not in child_processes("cbc")  # matched by command name
    finally:
        child.kill()
        child.wait()


def test_a_child_past_its_stop_time_is_interrupted():
    child = subprocess.Popen(["sleep", "30"])
    fired = child_watchdog("sleep", time.perf_counter())  # already past its stop time
    assert child.wait(timeout=20) == -signal.SIGINT  # sleep ends on the first signal, SIGINT
    assert fired.is_set()


def test_a_cancelled_watch_signals_nothing():
    child = subprocess.Popen(["sleep", "30"])
    try:
        fired = child_watchdog("sleep", time.perf_counter() + 0.5)
        fired.cancelled = True  # the solver returned in time
        time.sleep(1.0)
        assert child.poll() is None and not fired.is_set()
    finally:
        child.kill()
        child.wait()
