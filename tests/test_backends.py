"""Every back end through the evaluator (STYLE.md: one parametrized test over all methods).

For each method of `placement.METHODS` and each problem of `tests/problems.py`: the
status is one of the vocabulary, the plan is valid for the instance (the evaluator
accepts it, it survives a JSON round trip), and what the back end itself believed
(`Result.backend_objective`) stands in its documented relation to the evaluator's
figure (docs/methods.md, "What each back end believes"): the exact back ends' models
are the evaluator, the heuristics predict nothing. The verdict of `placement.solve`
(`check_result`) is tested on plans that break memory and an error target.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import PROBLEMS  # noqa: E402

from placement import METHODS, InputError, Plan, evaluate, solve  # noqa: E402
from placement.result import STATUSES, Result, check_result  # noqa: E402
from placement.solvers.reference import single_plan  # noqa: E402

REL = 1e-6

# Back ends whose own model of the total latency is the evaluator's: what they believe
# must be the evaluator's figure for their plan (tp: under the roofline profile only).
EXACT = ("milp", "pipeline-dp", "split", "split-adaptive", "tp")
# Back ends that build a plan without predicting its latency.
NO_MODEL = ("single", "pipeline", "myopic", "myopic+", "myopic-milp", "memory-proportional", "round-robin",
            "greedy", "static", "ota", "serving", "experts")


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
    assert report.feasible or not result.success  # a plan that overflows is never a success
    if result.status in ("optimal", "feasible"):
        assert report.feasible, [str(v) for v in report.violations]
    believed = result.backend_objective
    if method in NO_MODEL:
        assert believed is None
    elif result.status == "optimal" or (method != "tp" and result.success):
        assert believed == pytest.approx(report.total_s, rel=REL), (method, believed, report.total_s)
    if result.bound is not None:
        assert result.bound <= report.total_s * (1 + REL)
    again = Plan.from_json(result.plan.to_json())
    assert evaluate(inst, again).total_s == pytest.approx(report.total_s, rel=1e-12)


def test_every_method_is_classified():
    assert sorted(EXACT + NO_MODEL) == sorted(METHODS)


def test_tp_believes_the_evaluator_under_roofline_only():
    # tp's MILP sums a layer's head transfers the roofline way; under kafetzis2025 (the
    # paper's three phases) it approximates, so it claims no optimality and no bound there.
    roofline = solve(PROBLEMS["split-three-dev"](), method="tp")
    assert roofline.status == "optimal"
    assert roofline.backend_objective == pytest.approx(roofline.objective, rel=1e-9)
    kafetzis = solve(PROBLEMS["kafetzis-three-dev"](), method="tp")
    assert kafetzis.status == "feasible" and kafetzis.bound is None
    assert abs(kafetzis.backend_objective / kafetzis.objective - 1) > 1e-3


def test_the_verdict_downgrades_a_plan_that_overflows():
    inst = PROBLEMS["split-three-dev"]()
    plan = single_plan(inst, 0)  # the whole model on one device: it does not fit
    claimed = Result("optimal", "claimed optimal", plan, None, backend_objective=1.0)
    judged = check_result(inst, claimed, 0.5)
    assert (judged.status, judged.success) == ("infeasible", False)
    assert "does not fit" in judged.message and inst.cluster.names[0] in judged.message
    assert judged.objective == evaluate(inst, plan).total_s and judged.backend_objective == 1.0
    assert judged.solve_time_s == 0.5


def test_the_verdict_turns_a_claim_without_a_plan_into_an_error():
    inst = PROBLEMS["fits-one-two-dev"]()
    judged = check_result(inst, Result("optimal", "done", None, None), 0.0)
    assert (judged.status, judged.success) == ("error", False) and "gave no plan" in judged.message


def test_repr_is_short_and_ordered():
    text = repr(solve(PROBLEMS["fits-one-two-dev"](), method="pipeline"))
    assert text.startswith("Result(status='feasible', objective=") and len(text) < 400
    assert text.index("objective=") < text.index("backend_objective=") < text.index("plan=") < text.index("message=")


def test_unknown_method_and_option_are_input_errors():
    inst = PROBLEMS["fits-one-two-dev"]()
    with pytest.raises(InputError, match=r"unknown method 'simplex'; methods are .*milp"):
        solve(inst, method="simplex")
    message = r"'milp' does not take option\(s\) max_seconds; its options are: .*time_limit"
    with pytest.raises(InputError, match=message):
        solve(inst, method="milp", max_seconds=3)
