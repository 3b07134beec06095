"""The HiGHS watchdog: a solve that runs past its time limit is asked to stop, then abandoned."""

from __future__ import annotations

import threading
import time

from placement.solvers.backends import _run_interruptible


class _StuckHighs:
    """Stands in for `highspy.Highs` inside a step that polls nothing: `run` returns only when released."""

    def __init__(self, stops_on_cancel: bool) -> None:
        self.HandleUserInterrupt = False
        self.cancelled = False
        self.release = threading.Event()
        self.stops_on_cancel = stops_on_cancel

    def run(self) -> None:
        self.release.wait(30.0)

    def cancelSolve(self) -> None:  # noqa: N802 (highspy's name)
        self.cancelled = True
        if self.stops_on_cancel:
            self.release.set()


def test_a_stuck_solve_is_abandoned_after_its_stop_time():
    highs = _StuckHighs(stops_on_cancel=False)
    interrupted, finished = _run_interruptible(highs, stop_s=time.perf_counter())
    assert (interrupted, finished, highs.cancelled, highs.HandleUserInterrupt) == (False, False, True, True)
    highs.release.set()  # let the worker thread end


def test_a_solve_that_honours_the_interrupt_is_finished():
    highs = _StuckHighs(stops_on_cancel=True)
    assert _run_interruptible(highs, stop_s=time.perf_counter()) == (False, True)
    assert highs.cancelled


def test_a_solve_ending_before_its_stop_time_is_not_cancelled():
    highs = _StuckHighs(stops_on_cancel=False)
    highs.release.set()
    assert _run_interruptible(highs, stop_s=time.perf_counter() + 30.0) == (False, True)
    assert not highs.cancelled
