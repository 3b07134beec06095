"""A watchdog that stops a solver's child process past its time limit.

CBC runs as PuLP's command-line process and PuLP waits on it with no timeout; CBC, like
HiGHS in its cut separator, can spend minutes in a step that checks no limit. The
watchdog signals the process itself (`placement.solvers.backends` starts one per CBC
solve; docs/milp.md, "How the time limit is kept").
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import suppress
from pathlib import Path

__all__ = ["CHILD_STOP_GRACE_S", "child_watchdog", "child_processes"]

# After SIGINT, how long a solver process may take to write its solution before SIGKILL.
CHILD_STOP_GRACE_S = 2.0


class _Watchdog(threading.Event):
    """Set once the watched child was signalled; `cancelled` stops the watch."""

    cancelled = False


def child_watchdog(name: str, stop_s: float) -> _Watchdog:
    """Stop this process's child processes called `name` at `stop_s` (`time.perf_counter`): SIGINT, then SIGKILL.

    CBC (through PuLP's command line) overran a 20 s limit by 50 s on a 33k-row model on
    a loaded 2-core VM (docs/benchmarks.md), as HiGHS did in its cut separator; PuLP waits
    on the process with no timeout, so the process itself is stopped.

    Parameters
    ----------
    name : str
        The command name of the processes (``/proc/<pid>/stat``), e.g. ``"cbc"``.
    stop_s : float
        When to signal them, a `time.perf_counter` value (s).

    Returns
    -------
    Event
        Set once a signal was sent; setting its ``cancelled`` attribute ends the watch.
    """
    fired = _Watchdog()

    def watch() -> None:
        while time.perf_counter() < stop_s:
            if fired.cancelled:
                return
            time.sleep(0.05)
        for sig, wait_s in ((signal.SIGINT, CHILD_STOP_GRACE_S), (signal.SIGKILL, 0.0)):
            children = child_processes(name)
            if fired.cancelled or not children:
                return
            fired.set()
            for pid in children:
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(wait_s)

    threading.Thread(target=watch, daemon=True).start()
    return fired


def child_processes(name: str) -> list[int]:
    """Process ids of this process's children whose command is `name` (Linux ``/proc``; empty elsewhere).

    Parameters
    ----------
    name : str

    Returns
    -------
    list of int
    """
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            if comm == name and int(rest[1]) == os.getpid():
                found.append(int(stat.parent.name))
    return found
