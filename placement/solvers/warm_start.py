"""Warm starts for the MILP: the best plan of the fast heuristics, judged by the evaluator.

Kept apart from the MILP module so that the heuristics it draws on (reference plans,
the layer-pipeline DP, myopic+) are plain imports, not imports hidden inside a function.
"""

from __future__ import annotations

from collections.abc import Callable

from placement.instance import Instance
from placement.options import Deadline
from placement.plan import Placement
from placement.solvers.baselines import solve_pipeline_dp
from placement.solvers.milp_model import skip_reason
from placement.solvers.myopic_plus import solve_myopic_plus
from placement.solvers.reference import solve_pipeline, solve_single

__all__ = ["MYOPIC_SHARE", "MYOPIC_SHARE_UNBUILT", "best_heuristic_placements"]

# The share of the time left that myopic+ may take as a warm start: the MILP it warm-starts,
# and its bound, need the rest.
MYOPIC_SHARE = 0.25
# The share when the per-layer MILP will not be built (`milp_model.skip_reason`): only the bounds
# run after the warm start, and the class bound reaches its figure in about 10 s on 48 devices
# (docs/benchmarks.md), while myopic+'s first decision there takes minutes.
MYOPIC_SHARE_UNBUILT = 0.75


def best_heuristic_placements(instance: Instance, *, whole_generation: bool,
                              expired: Callable[[], bool] = lambda: False,
                              deadline: Deadline = Deadline()) -> list[Placement] | None:
    """The placements of the fastest feasible heuristic plan, by the evaluator's total latency.

    The candidates are the single-device and reference pipeline plans, the best layer
    pipeline (so that a head-level optimum is never reported worse than a layer-based
    one) and, when the MILP decides the whole generation, myopic+.

    Parameters
    ----------
    instance : Instance
    whole_generation : bool
        True when the MILP places every interval (then myopic+ is a candidate too).
    expired : callable, optional
        True once the caller's time limit has passed: the candidates stop at the first
        feasible plan (the warm start's time counts against the limit).
    deadline : Deadline, optional
        The caller's time limit: myopic+ gets `MYOPIC_SHARE` of the time left when it
        starts as its own ``time_limit``, `MYOPIC_SHARE_UNBUILT` when the per-layer MILP
        over every interval would not be built in that time (default: none).

    Returns
    -------
    list of Placement or None
        One per interval of the winning plan; None when no candidate fits.
    """
    results = []
    for heuristic in (solve_single, solve_pipeline, solve_pipeline_dp, solve_myopic_plus):
        if heuristic is solve_myopic_plus and not whole_generation:
            continue
        if expired() and any(r.report is not None and r.report.feasible for r in results):
            break
        # myopic+ without its MILP neighbourhood: the MILP it warm-starts is that exact search, whole
        if heuristic is solve_myopic_plus:
            left_s = deadline.remaining_s()
            share = MYOPIC_SHARE
            if left_s is not None and skip_reason(instance, list(range(instance.workload.n_intervals)), left_s):
                share = MYOPIC_SHARE_UNBUILT
            results.append(heuristic(instance, lns_time_s=0, time_limit=None if left_s is None else share * left_s))
        else:
            results.append(heuristic(instance))
    candidates = [r for r in results if r.report is not None and r.report.feasible]
    if not candidates:
        return None
    return list(min(candidates, key=lambda r: r.report.total_s).plan.intervals)
