"""One entry to every back end: `solve(instance, method=...)`, like `scipy.optimize.minimize`."""

from __future__ import annotations

import time
from typing import Any

from placement.instance import Instance
from placement.methods import METHODS
from placement.result import Result, check_result

__all__ = ["solve", "METHODS"]

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
