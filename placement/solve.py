"""One entry to every back end: `solve(instance, method=...)`, like `scipy.optimize.minimize`."""

from __future__ import annotations

import time
from typing import Any

from placement.instance import Instance
from placement.result import Result, check_result

__all__ = ["solve", "METHODS"]

# method name -> (module, function). Listed once; modules are imported only when used.
METHODS: dict[str, tuple[str, str]] = {
    "single": ("placement.solvers.reference", "solve_single"),
    "pipeline": ("placement.solvers.reference", "solve_pipeline"),
    "milp": ("placement.solvers.milp", "solve_milp"),
    "myopic": ("placement.solvers.myopic", "solve_myopic"),
    "myopic+": ("placement.solvers.myopic_plus", "solve_myopic_plus"),
    "myopic-milp": ("placement.solvers.milp", "solve_myopic_milp"),
    "pipeline-dp": ("placement.solvers.baselines", "solve_pipeline_dp"),
    "experts": ("placement.solvers.experts", "solve_experts"),
    "memory-proportional": ("placement.solvers.baselines", "solve_memory_proportional"),
    "round-robin": ("placement.solvers.baselines", "solve_round_robin"),
    "greedy": ("placement.solvers.baselines", "solve_greedy"),
    "static": ("placement.solvers.static", "solve_static"),
    "tp": ("placement.solvers.tp", "solve_tp"),
    "ota": ("placement.solvers.ota", "solve_ota"),
    "split": ("placement.solvers.split", "solve_split"),
    "split-adaptive": ("placement.solvers.split", "solve_split_adaptive"),
    "serving": ("placement.serving.choose", "solve_serving"),
}


def solve(instance: Instance, method: str = "pipeline", **options: Any) -> Result:
    """Place the model of `instance` on its devices with the back end `method`.

    Parameters
    ----------
    instance : Instance
    method : str
        One of `METHODS` (``placement methods`` lists them).
    **options
        Back-end options (for example ``time_limit`` in seconds); an option the
        back end does not take is an error listing the ones it does.

    Returns
    -------
    Result
        Status, message, plan, the evaluator's report, objective (the evaluator's
        ``report.total_s``), the objective the back end believed
        (``backend_objective``), bound where one exists, solve time. The status is
        the back end's, downgraded to ``infeasible`` when the evaluator finds its plan
        violates memory, an energy budget or a target the back end was given
        (`placement.result.check_result`); ``success`` follows from it.

    Raises
    ------
    InputError
        On an unknown method or option, or a bad value (`placement.options.resolve_options`).

    Examples
    --------
    >>> from placement import load_instance
    >>> result = solve(load_instance("edge/llama-3.2-1b-4dev"), method="pipeline")
    >>> result.status
    'feasible'
    """
    from placement.options import resolve_options

    key, backend, options = resolve_options(method, options)  # one validator for every method
    start = time.perf_counter()
    result = backend(instance, **options)
    return check_result(instance, result, time.perf_counter() - start)
