"""Method ``serving``: the placement that serves the instance's request stream best.

What is searched, honestly: not the space of placements. Each back end in
``candidates`` (default ``single``, ``pipeline-dp``, ``myopic+``, ``tp``; add ``milp``
with a short ``time_limit``) proposes its plan for one request of the instance's
``workload``; each plan that fits is simulated under the instance's ``serving:``
workload with `policy`, and the best by `objective` is returned. Objectives:

- ``throughput``: the highest throughput (tokens/s) among plans whose p99 time to
  first token and p99 time per output token meet `p99_ttft_s` / `p99_tpot_s` (when
  given); when none meets them the status is ``infeasible`` and the plan is the one
  closest to the targets (smallest worst ratio of p99 to target);
- ``latency``: the lowest mean end-to-end latency.

The `Result`'s ``objective`` and ``report`` are the single-request evaluator's for the
chosen plan (as for every method); the serving figures of every candidate are in
``stats["candidates"]``.
"""

from __future__ import annotations

from typing import Any

from placement.errors import InputError, PlacementError
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.result import Result

__all__ = ["solve_serving", "CANDIDATES"]

CANDIDATES = ("single", "pipeline-dp", "myopic+", "tp")
OBJECTIVES = ("throughput", "latency")


def _score(summary: dict[str, Any], objective: str, targets: dict[str, float | None]) -> tuple[float, float]:
    """(worst p99 / target ratio, above 1 when a target is missed; value to minimize)."""
    ratios = [summary[f"p99_{key}_s"] / limit for key, limit in targets.items() if limit is not None]
    miss = max([1.0, *ratios])
    value = -summary["throughput_tokens_s"] if objective == "throughput" else summary["mean_e2e_s"]
    return miss, value


def _candidate(instance: Instance, method: str, time_limit: float | None, policy: str) -> dict[str, Any]:
    import placement
    from placement.serving.simulate import simulate

    options = {"time_limit": time_limit} if method == "milp" and time_limit is not None else {}
    result = placement.solve(instance, method=method, **options)
    if result.plan is None or result.report is None or not result.report.feasible:
        return {"method": method, "status": result.status, "fits": False}
    plan = result.plan.replace(intervals=result.plan.intervals[:1])
    serving = instance.serving
    report = simulate(instance, plan, serving.requests, policy, max_batch=serving.max_batch,
                      batch_wait_s=serving.batch_wait_s)
    return {"method": method, "status": result.status, "fits": True, "plan": plan, **report.summary()}


def solve_serving(instance: Instance, *, objective: str = "latency", policy: str | None = None,
                  p99_ttft_s: float | None = None, p99_tpot_s: float | None = None,
                  candidates: tuple[str, ...] | list[str] = CANDIDATES, time_limit: float | None = None) -> Result:
    """Choose among the candidates' plans by simulating the instance's request stream.

    Parameters
    ----------
    instance : Instance
        With a ``serving:`` section (docs/serving.md).
    objective : {"throughput", "latency"}
    policy : str, optional
        Serving policy (default: the section's).
    p99_ttft_s, p99_tpot_s : float, optional
        Targets on the p99 time to first token and time per output token, seconds (``throughput``).
    candidates : sequence of str
        Back ends whose plans are judged.
    time_limit : float, optional
        Seconds for a ``milp`` candidate.

    Returns
    -------
    Result
        ``feasible`` with the best plan; ``infeasible`` when no candidate fits or none meets
        the targets; ``error`` without a serving section.
    """
    if instance.serving is None:
        return Result("error", "method `serving` needs the instance's `serving:` section (arrivals and lengths of the "
                      "requests, docs/serving.md)", None, None)
    if objective not in OBJECTIVES:
        raise InputError(f"`objective` must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    from placement.solve import METHODS

    unknown = [c for c in candidates if c == "serving" or c not in METHODS]
    if unknown:
        raise InputError(f"`candidates`: {', '.join(map(repr, unknown))} cannot propose plans; "
                         f"use back ends such as {', '.join(CANDIDATES)}")
    policy = policy or instance.serving.policy
    targets = {"ttft": p99_ttft_s, "tpot": p99_tpot_s}
    try:
        judged = [_candidate(instance, method, time_limit, policy) for method in candidates]
    except PlacementError as exc:  # e.g. the kafetzis2025 profile, which serving does not take
        return Result("error", str(exc), None, None)
    fitting = [c for c in judged if c["fits"]]
    table = [{k: v for k, v in c.items() if k not in ("plan", "peak_memory_bytes")} for c in judged]
    if not fitting:
        return Result("infeasible", f"no candidate plan fits ({', '.join(candidates)})", None, None,
                      stats={"candidates": table})
    best = min(fitting, key=lambda c: _score(c, objective, targets))
    miss = _score(best, objective, targets)[0]
    report = evaluate(instance, best["plan"])
    what = (f"throughput {best['throughput_tokens_s']:.4g} tokens/s" if objective == "throughput"
            else f"mean end-to-end {best['mean_e2e_s']:.4g} s")
    status = "feasible" if miss <= 1.0 else "infeasible"
    note = "" if miss <= 1.0 else f"; no candidate meets the p99 targets (closest misses by {miss:.2f}x)"
    return Result(status, f"{best['method']}'s plan under `{policy}`: {what}{note}", best["plan"], report,
                  objective=report.total_s, stats={"candidates": table, "chosen": best["method"]})
