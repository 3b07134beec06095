"""Every back end through the evaluator (STYLE.md: one parametrized test over all methods).

For each method of `placement.METHODS` and each problem of `tests/problems.py`: the
status is one of the vocabulary, the plan is valid for the instance (the evaluator
accepts it, it survives a JSON round trip), the report is the evaluator's, and the
objective the back end reports is the evaluator's total for its own plan.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import PROBLEMS  # noqa: E402

import placement  # noqa: E402
from placement import METHODS, InputError, Plan, evaluate, solve  # noqa: E402
from placement.result import STATUSES  # noqa: E402

REL = 1e-6


@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("method", list(METHODS))
def test_every_back_end_through_the_evaluator(method, name):
    inst = PROBLEMS[name]()
    result = solve(inst, method=method)
    assert result.status in STATUSES
    assert isinstance(result.message, str) and result.message
    if result.status in ("optimal", "feasible"):
        assert result.plan is not None
    if result.plan is None:
        assert result.status in ("infeasible", "error", "time_limit")
        return
    report = evaluate(inst, result.plan)  # raises PlanError on a plan that does not match the instance
    assert len(result.plan.intervals) in (1, inst.workload.n_intervals)
    assert result.objective == pytest.approx(report.total_s, rel=REL)
    assert result.report is not None and result.report.total_s == pytest.approx(report.total_s, rel=REL)
    assert result.report.feasible == report.feasible
    if result.status in ("optimal", "feasible"):
        assert report.feasible, [str(v) for v in report.violations]
    if result.bound is not None:
        assert result.bound <= result.objective * (1 + REL)
    again = Plan.from_json(result.plan.to_json())
    assert evaluate(inst, again).total_s == pytest.approx(report.total_s, rel=1e-12)


def test_methods_are_listed_once():
    assert "milp" in METHODS and "single" in METHODS and "pipeline" in METHODS
    assert placement.METHODS is METHODS


def test_unknown_method_and_option_are_input_errors():
    inst = PROBLEMS["fits-one-two-dev"]()
    with pytest.raises(InputError, match=r"unknown method 'simplex'; methods are .*milp"):
        solve(inst, method="simplex")
    message = r"'milp' does not take option\(s\) max_seconds; its options are: .*time_limit"
    with pytest.raises(InputError, match=message):
        solve(inst, method="milp", max_seconds=3)
