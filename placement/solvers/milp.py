"""Exact MILP back end: provably optimal head-level placement, with migration (docs/milp.md).

`solve_milp` builds the formulation of `placement.solvers.milp_model`, solves it with
HiGHS, CBC or SCIP, reads the plan out of the solution and has the shared evaluator
judge it. Tokens of an interval start as one block; a block whose relaxed cost falls
short of the evaluator's is split and the problem solved again (warm-started), until
every block is exact: the MILP's objective then equals the evaluator's figure and its
bound is a bound on the true optimum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from placement.errors import InputError, SolveInterrupted
from placement.evaluate import check_plan, evaluate
from placement.instance import Instance, capacity_problems
from placement.plan import Placement, Plan
from placement.result import Result
from placement.options import Deadline
from placement.solvers.backends import SolverOutcome, is_proven, solve_problem
from placement.solvers.linear import LinearProblem
from placement.solvers.milp_bounds import ConfigurationBound, configuration_bound
from placement.solvers.milp_branching import Signature, close_signatures, exact_signature_bound, horizon_exact_bound
from placement.solvers.milp_branching import restrict_to_signature
from placement.solvers.milp_classes import with_class_bound
from placement.solvers.milp_experts import expert_start, places_experts, read_experts, warm_holdings
from placement.solvers.milp_model import SECONDS_PER_UNIT, Formulation, build_formulation, identical_devices
from placement.solvers.milp_model import finishing_reserve_s, skip_reason
from placement.solvers.milp_options import MODES, allowed_masks, check_milp_options, check_pins
from placement.solvers.warm_start import best_heuristic_placements

__all__ = ["solve_milp", "branch_over_signatures", "Branched", "MODES", "CONFIGURATION_LAYERS"]

# `bound="auto"` runs the configuration LP for models with at least this many layers.
CONFIGURATION_LAYERS = 4


def _canonical(instance: Instance, placements: list[Placement]) -> list[Placement]:
    """Relabel identical devices so that the first placement's loads are in the order the symmetry rows demand."""
    K = instance.model.kv_heads
    perm = np.arange(instance.n_devices)
    first = placements[0]
    counts = np.zeros((instance.model.layers, instance.n_devices))
    np.add.at(counts, (np.arange(instance.model.layers)[:, None], first.attention), 1)
    load = counts.sum(0) + K * first.projection.sum(0) + K * first.ffn.sum(0)
    load[first.embed] += K
    load[first.lm_head] += K
    for group in identical_devices(instance):
        ordered = sorted(group, key=lambda m: -load[m])
        perm[ordered] = group  # the heaviest takes the first index of its class
    relabel = lambda shares: shares[:, np.argsort(perm)]  # noqa: E731
    return [Placement(perm[p.attention], relabel(p.projection), relabel(p.ffn), int(perm[p.embed]),
                      int(perm[p.lm_head]), p.precision,
                      None if p.experts is None else np.where(p.experts >= 0, perm[np.maximum(p.experts, 0)], -1))
            for p in placements]


def _complete(problem: LinearProblem, columns: np.ndarray, values: np.ndarray,
              deadline: Deadline = Deadline()) -> np.ndarray | None:
    """A full point with `columns` fixed to `values` and every other column from an exact LP (HiGHS); None if infeasible."""
    lower, upper = problem.col_lower.copy(), problem.col_upper.copy()
    lower[columns] = upper[columns] = values
    lp = LinearProblem(problem.cost, problem.matrix, problem.row_lower, problem.row_upper, lower, upper,
                       np.zeros_like(problem.integer), problem.offset)
    outcome = solve_problem(lp, "highs", gap=0.0, time_limit=deadline.remaining_s())
    return outcome.x if outcome.status == "optimal" else None


def _start_vector(form: Formulation, instance: Instance, placements: list[Placement],
                  deadline: Deadline = Deadline()) -> np.ndarray | None:
    """A starting point: the placement columns fixed to the plan's, the rest completed by an LP."""
    fam = form.problem.families
    L, N = instance.model.layers, instance.n_devices
    columns, values = [], []
    for kk, placement in enumerate(placements):
        counts = np.zeros((L, N))
        np.add.at(counts, (np.arange(L)[:, None], placement.attention), 1)
        fixed = {"y": (counts > 0).astype(float), "p": placement.projection, "f": placement.ffn,
                 "e": np.eye(N)[placement.embed], "h": np.eye(N)[placement.lm_head]}
        if "n" in fam:
            fixed["n"] = counts
        else:
            fixed["x"] = np.eye(N)[placement.attention]
        for name, value in fixed.items():
            columns.append(fam[name][kk].ravel())
            values.append(np.asarray(value, dtype=float).ravel())
        if form.experts is not None:
            pattern_cols, pattern_values = expert_start(form.experts, placement, kk)
            columns.append(pattern_cols), values.append(pattern_values)
    return _complete(form.problem, np.concatenate(columns), np.concatenate(values), deadline)


def _polish(form: Formulation, x: np.ndarray) -> np.ndarray:
    """`x` with its integer columns kept and every continuous column recomputed exactly.

    Solvers report continuous values to their tolerances (CBC through a text file);
    the plan's cost in the model is then read from exact values.
    """
    integer = np.flatnonzero(form.problem.integer)
    completed = _complete(form.problem, integer, np.rint(x[integer]))
    return x if completed is None else completed


def _placements(form: Formulation, instance: Instance, x: np.ndarray, current: Placement | None) -> list[Placement]:
    """Read one placement per interval out of a solution, keeping groups where they were."""
    fam = form.problem.families
    L, N = instance.model.layers, instance.n_devices
    rounded = lambda name: np.rint(x[fam[name]]).astype(np.int64)  # noqa: E731
    placements = []
    previous = current
    for kk in range(len(form.intervals)):
        if "x" in fam:
            attention = rounded("x")[kk].argmax(axis=-1)
        else:
            counts = rounded("n")[kk]
            if previous is None:
                attention = np.stack([np.repeat(np.arange(N), counts[l]) for l in range(L)])
            else:
                flow = rounded(f"move{kk}.groups")
                attention = previous.attention.copy()
                for l in range(L):
                    for u in range(N):
                        on_u = np.flatnonzero(previous.attention[l] == u)
                        destinations = np.repeat(np.arange(N), flow[l, u])
                        # stay first, then moves: groups that stay keep their identity
                        order = np.argsort(destinations != u, kind="stable")
                        attention[l, on_u] = destinations[order]
        one_hot = lambda name: np.eye(N)[rounded(name)[kk].argmax(axis=-1)]  # noqa: E731
        placement = Placement(attention, one_hot("p"), one_hot("f"), int(rounded("e")[kk].argmax()),
                              int(rounded("h")[kk].argmax()),
                              experts=None if form.experts is None else read_experts(
                                  form.experts, x, L, kk, previous,
                                  None if previous is None else rounded(f"move{kk}.experts")))
        placements.append(placement)
        previous = placement
    return placements


def _initial_blocks(instance: Instance, intervals: list[int], token_blocks: str | int) -> dict[int, list[np.ndarray]]:
    step_interval = instance.workload.interval_of_step()
    blocks = {}
    for k in intervals:
        steps = np.flatnonzero(step_interval == k)
        if token_blocks == "adaptive":
            blocks[k] = [steps]
        elif token_blocks == "exact":
            blocks[k] = [steps[i:i + 1] for i in range(len(steps))]
        else:
            size = int(token_blocks)
            blocks[k] = [steps[i:i + size] for i in range(0, len(steps), size)]
    return blocks


def solve_milp(
    instance: Instance,
    *,
    solver: str = "highs",
    mode: str = "horizon",
    interval: int = 0,
    current: Placement | Plan | None = None,
    time_limit: float | None = None,
    gap: float = 1e-6,
    threads: int | None = None,
    warm_start: Plan | str | None = "auto",
    pin: dict[str, str] | None = None,
    forbid: dict[str, list[str]] | None = None,
    formulation: str = "counts",
    token_blocks: str | int = "adaptive",
    max_refinements: int = 12,
    bound: str | None = "auto",
) -> Result:
    """The optimal placement of every block for every interval of the generation.

    Parameters
    ----------
    instance : Instance
    solver : {"highs", "cbc", "ortools"}
        HiGHS (highspy), CBC (through PuLP) or SCIP (through OR-Tools).
    mode : {"horizon", "interval"}
        ``horizon``: all intervals at once, migration included (the clairvoyant
        optimum). ``interval``: one interval (`interval`), given the placement
        before it (`current`), as an online re-partitioner would decide it.
    interval : int
        The interval of ``interval`` mode.
    current : Placement or Plan, optional
        The placement before `interval` (a Plan's placement for ``interval - 1``);
        None for no migration cost.
    time_limit : float, optional
        Seconds for the whole solve (all refinements); on expiry the incumbent is
        returned with status ``time_limit``.
    gap : float
        Relative optimality gap (bound to plan) at which every stage stops (the
        configuration stage, the branch, the solver). The plan is reported ``optimal``
        only within 1e-6 (`backends.PROVEN_GAP`), ``feasible`` with its bound otherwise.
    threads : int, optional
    warm_start : Plan, "auto" or None
        A plan to start from; ``"auto"`` takes the best feasible plan of ``single``,
        ``pipeline``, ``pipeline-dp`` and (in ``horizon`` mode) ``myopic+``, or, in
        ``interval`` mode, `current`.
    pin : dict, optional
        Block → device name: ``{"embed": "pi-a", "ffn[3]": "orin", "layer[0]": "orin"}``.
    forbid : dict, optional
        Device name → blocks it must not run: ``{"pi-a": ["ffn", "lm_head"]}``.
    formulation : {"counts", "per-group"}
        ``per-group`` is the naive per-head binary formulation, for comparison.
    token_blocks : "adaptive", "exact" or int
        ``adaptive``: one block per interval, split where inexact; ``exact``: one
        block per token from the start; an int: blocks of that many tokens.
    max_refinements : int
        Most block splittings before returning with status ``feasible``.
    bound : "auto", "configurations" or None
        ``configurations`` (in ``horizon`` mode, without pins): before the MILP, the
        configuration LP is solved by column generation (layer configurations priced
        once per class of identical layers) within a quarter of the time limit; the
        best single placement over the generated configurations (price-and-branch)
        becomes the warm start when it is faster; the better of the two bounds is
        reported, and a plan the LP bound already proves optimal is returned without
        running the MILP; with a gap left, `branch_over_signatures` follows on one
        interval (half the time left), `milp_branching.horizon_exact_bound` on several
        (a quarter). ``auto``: ``configurations`` for models of at least
        `CONFIGURATION_LAYERS` layers (the chain of layers is what the configuration LP
        exploits; with fewer the MILP closes alone). None: the MILP alone.

    Returns
    -------
    Result
        ``optimal`` with the plan, the evaluator's report, the objective (equal to
        the evaluator's total within 1e-6) and the bound; ``time_limit`` with the
        incumbent; ``infeasible`` with a diagnosis; ``stats`` holds the model size,
        refinements, solver status, and in ``interval`` mode ``interval_cost_s``.

    Raises
    ------
    InputError
        On an unknown solver, mode, formulation, pinned device or block name.
    """
    deadline = Deadline.after(time_limit)  # one limit for the whole call: warm start, building, every solve
    check_milp_options(instance, solver, mode, formulation, token_blocks, interval)
    if bound not in ("auto", "configurations", None):
        raise InputError(f"`bound` must be 'auto', 'configurations' or None, got {bound!r}")
    if bound == "auto":
        bound = "configurations" if instance.model.layers >= CONFIGURATION_LAYERS else None
    with_bound = bound == "configurations" and mode == "horizon" and not (pin or forbid)
    check_pins(pin, forbid, current)
    if isinstance(current, Plan):
        current = current.placement(max(interval - 1, 0))
    if mode == "horizon":
        current = None
    started = time.perf_counter()
    # Placed experts (milp_experts) leave only the router whole; the configuration LP's space keeps them with the FFN.
    placed = places_experts(instance, formulation)
    with_bound = with_bound and not placed
    problems = capacity_problems(instance, splittable=placed)
    if problems:
        return Result("infeasible", "no placement fits: " + "; ".join(problems), None, None, stats={"diagnosis": problems})
    allowed = allowed_masks(instance, pin, forbid) if (pin or forbid) else None
    intervals = list(range(instance.workload.n_intervals)) if mode == "horizon" else [interval]
    start_placements = _warm_placements(instance, warm_start, current, len(intervals), deadline)
    warm_plan = None  # the warm start as a whole plan, returned if the solver finds nothing better in time
    if start_placements is not None and mode == "horizon" and allowed is None:  # pins may exclude it
        I = instance.workload.n_intervals
        warm_plan = Plan(instance.cluster.names, start_placements if I > 1 else start_placements[:1], method="milp")
    stats: dict[str, Any] = {"solver": solver, "mode": mode, "formulation": formulation, "refinements": 0}
    columns = None
    if with_bound:
        columns, warm_plan = _configurations_first(instance, deadline, time_limit, warm_plan, start_placements)
        stats.update(configuration_bound_s=None if columns is None else columns.bound_s,
                     configuration_columns=None if columns is None else columns.columns,
                     layer_classes=None if columns is None else columns.classes)
        columns = with_class_bound(instance, columns, warm_plan, deadline=deadline, stats=stats)
        columns, warm_plan = _branch_over_signatures(instance, columns, warm_plan, deadline, time_limit, gap, stats)
        if columns is not None and warm_plan is not None and instance.workload.n_intervals > 1:
            budget = min(0.25 * time_limit, deadline.remaining_s()) if time_limit is not None else 60.0
            bound_s, warm_plan = horizon_exact_bound(instance, warm_plan, columns.bound_s, budget_s=budget, stats=stats)
            columns = replace(columns, bound_s=bound_s)
        if warm_plan is not None:
            start_placements = list(warm_plan.intervals) * (1 if len(warm_plan.intervals) > 1 else len(intervals))
            proven = _proven(instance, warm_plan, columns, gap, started, stats)
            if proven is not None:
                return proven
    # time kept after the solve for reading its solution back (milp_model.finishing_reserve_s)
    solving = deadline if deadline.end_s is None else Deadline(deadline.end_s - finishing_reserve_s(instance, intervals))
    setup = _Setup(intervals, current, allowed, formulation, solver, gap, threads, solving, max_refinements)
    search = _refine(instance, setup, _initial_blocks(instance, intervals, token_blocks), start_placements, stats,
                     have_fallback=warm_plan is not None)
    result = _outcome_result(instance, setup, search, warm_plan, time_limit, time.perf_counter() - started, stats)
    if columns is not None:
        result = _with_configurations(result, columns, started)
    if search.interrupted:
        raise SolveInterrupted(result)  # the CLI writes the incumbent and exits 130
    return result


def _configurations_first(instance: Instance, deadline: Deadline, time_limit: float | None, warm_plan: Plan | None,
                          start: list[Placement] | None):
    """The configuration LP's bound and plan (milp_bounds), and the better of that plan and the warm start.

    Gets a quarter of the time limit (a minute without one), before the MILP, and never
    more than the warm start has left of the limit.
    """
    budget = min(0.25 * time_limit, deadline.remaining_s()) if time_limit is not None else 60.0
    warm_total = None if warm_plan is None else evaluate(instance, warm_plan).total_s
    columns = configuration_bound(instance, time_limit_s=budget, upper_bound_s=warm_total, start=start)
    if columns is not None and columns.plan is not None and (warm_total is None or columns.plan_total_s < warm_total):
        warm_plan = columns.plan
    return columns, warm_plan


def _branch_over_signatures(instance: Instance, columns: ConfigurationBound | None, warm_plan: Plan | None,
                            deadline: Deadline, time_limit: float | None, gap: float,
                            stats: dict[str, Any]) -> tuple[ConfigurationBound | None, Plan | None]:
    """`branch_over_signatures` when the configuration stage left a gap on one interval: the configuration
    bound raised to the branch's, and the better plan. Half the time limit (two minutes without one)."""
    if columns is None or warm_plan is None or instance.workload.n_intervals != 1:
        return columns, warm_plan
    total_s = evaluate(instance, warm_plan).total_s
    if is_proven(total_s, columns.bound_s, gap):
        return columns, warm_plan
    budget = min(0.5 * time_limit, deadline.remaining_s()) if time_limit is not None else 120.0
    branched = branch_over_signatures(instance, warm_plan, time_limit_s=budget)
    if branched is None:
        return columns, warm_plan
    stats.update(branched.stats)
    return replace(columns, bound_s=max(columns.bound_s, branched.bound_s)), branched.plan


@dataclass(frozen=True)
class Branched:
    """What `branch_over_signatures` established.

    Attributes
    ----------
    bound_s : float
        A lower bound on every feasible plan's evaluator total, s.
    plan : Plan
        The best plan known after branching (the given one when nothing beat it).
    total_s : float
        Its evaluator total, s.
    stats : dict
        ``branch_bound_s`` (the signature bound at exact costs), ``branch_open`` (signatures
        it left below the incumbent), ``branch_solved`` (restricted MILPs run),
        ``branch_closed_bound_s`` (the bound after them).
    """

    bound_s: float
    plan: Plan
    total_s: float
    stats: dict


def branch_over_signatures(instance: Instance, incumbent: Plan, *, time_limit_s: float) -> Branched | None:
    """Branch over the signatures below `incumbent` at exact per-token costs (one interval; docs/milp.md).

    First the signature bound on exact tables (`milp_branching.exact_signature_bound`, half
    the time); then the signatures it leaves below the incumbent, best bound first, each
    by the per-layer MILP restricted to it with adaptive token blocks (`_solve_signature`),
    until the gap closes or the time is up.

    Parameters
    ----------
    instance : Instance
        One interval, no mixture-of-experts layers.
    incumbent : Plan
        A feasible plan.
    time_limit_s : float
        Seconds for the whole call.

    Returns
    -------
    Branched or None
        None when out of scope (several intervals, an infeasible incumbent, or too many
        group splits to enumerate: `milp_branching.MAX_COMPOSITIONS`).
    """
    started = time.perf_counter()
    report = evaluate(instance, incumbent)
    if not report.feasible:
        return None
    exact = exact_signature_bound(instance, report.total_s, time_limit_s=0.5 * time_limit_s)
    if exact is None:
        return None
    best, best_s = incumbent, report.total_s
    for placement in exact.found:
        candidate = Plan(instance.cluster.names, [placement], method="milp")
        candidate_report = evaluate(instance, candidate)
        if candidate_report.feasible and candidate_report.total_s < best_s:
            best, best_s = candidate, candidate_report.total_s
    solve = lambda signature, end_s: _solve_signature(instance, signature, end_s)  # noqa: E731
    bound_s, plan, total_s, solved = close_signatures(exact, (best, best_s), solve, started + time_limit_s)
    if plan is not None:
        best, best_s = plan, total_s
    stats = dict(branch_bound_s=exact.bound_s, branch_open=len(exact.open), branch_solved=solved,
                 branch_closed_bound_s=bound_s)
    return Branched(min(bound_s, best_s), best, best_s, stats)


def _solve_signature(instance: Instance, signature: Signature, end_s: float) -> tuple[float, Plan | None, float | None]:
    """The per-layer MILP of the one interval restricted to `signature`, with adaptive token blocks.

    Returns a lower bound on the signature's plans, s (``inf`` when none fits), and the
    best plan found with its evaluator total. The bound is the solver's on the last model
    solved: every token block is a relaxation, so it bounds the signature's plans whether
    or not the blocks were exact by then (once they are, it is the optimum within the gap).
    """
    setup = _Setup([0], None, None, "counts", "highs", 1e-6, None, Deadline(end_s), 12,
                   restrict=lambda problem: restrict_to_signature(problem, signature))
    search = _refine(instance, setup, _initial_blocks(instance, [0], "adaptive"), None, {})
    outcome = search.outcome
    if outcome is not None and outcome.status == "infeasible":
        return float("inf"), None, None
    feasible = search.report is not None and search.report.feasible and not search.over
    plan, total = (search.plan, search.report.total_s) if feasible else (None, None)
    low = -np.inf if outcome is None or outcome.bound is None else outcome.bound * SECONDS_PER_UNIT
    return (low if total is None else min(low, total)), plan, total


def _proven(instance: Instance, plan: Plan, columns: ConfigurationBound | None, gap: float, started: float,
            stats: dict[str, Any]) -> Result | None:
    """The result when the configuration bound is within `gap` of `plan` (``optimal`` only within
    `PROVEN_GAP`), else None."""
    report = evaluate(instance, plan)
    if columns is None or not report.feasible or not is_proven(report.total_s, columns.bound_s, gap):
        return None
    if is_proven(report.total_s, columns.bound_s):
        status, message = "optimal", f"the relaxation bound {columns.bound_s:.6g} s proves the plan optimal"
    else:
        status, message = "feasible", f"the relaxation bound {columns.bound_s:.6g} s is within the gap {gap:g}"
    return Result(status, message, plan, report,
                  objective=report.total_s, bound=min(columns.bound_s, report.total_s),
                  solve_time_s=time.perf_counter() - started, stats=stats, backend_objective=report.total_s)


def _with_configurations(result: Result, columns: ConfigurationBound, started: float) -> Result:
    """`result` with the configuration LP's bound when it is better (and ``optimal`` when that proves it)."""
    if result.plan is None or result.status in ("optimal", "infeasible", "error"):
        return result
    objective = result.report.total_s
    bound = min(max(result.bound or 0.0, columns.bound_s), objective)
    status, message = result.status, f"{result.message}; relaxation bound {columns.bound_s:.6g} s"
    if is_proven(objective, bound):
        status, message = "optimal", message + " proves the plan optimal"
    return replace(result, status=status, message=message, bound=bound, solve_time_s=time.perf_counter() - started)


@dataclass(frozen=True)
class _Setup:
    """What every solve of one `solve_milp` call shares."""

    intervals: list[int]
    current: Placement | None
    allowed: dict[str, np.ndarray] | None
    formulation: str
    solver: str
    gap: float
    threads: int | None
    deadline: Deadline
    max_refinements: int
    restrict: Any = None  # optional LinearProblem -> LinearProblem adding rows (a signature's, milp_branching)


@dataclass(frozen=True)
class _Search:
    """Where the refinement loop ended: the last solve and, when it found a point, its plan."""

    outcome: SolverOutcome | None = None
    form: Formulation | None = None
    x: np.ndarray | None = None
    plan: Plan | None = None
    report: Any = None
    over: tuple = ()
    inexact: tuple = ()
    error: str | None = None
    interrupted: bool = False


def _refine(instance: Instance, setup: _Setup, blocks: dict[int, list[np.ndarray]],
            start_placements: list[Placement] | None, stats: dict[str, Any], *, have_fallback: bool = False) -> _Search:
    """Solve, and solve again with inexact token blocks split or overflowing devices given a margin.

    Stops when every block is exact, at `max_refinements`, at the deadline (keeping the
    last plan; before even building a model when `have_fallback`, a warm-start plan the
    caller returns), or on Ctrl-C (`_Search.interrupted`).
    """
    usable = np.array([d.usable_bytes for d in instance.devices])
    margin = np.zeros((len(setup.intervals), instance.n_devices))
    search = _Search()
    # the expert pattern space keeps the warm start's holdings, as given and as `_canonical` relabels them
    warm_experts = warm_holdings(None if start_placements is None else
                                 list(start_placements) + _canonical(instance, start_placements), instance.n_devices)
    for refinement in range(setup.max_refinements + 1):
        skipped = skip_reason(instance, setup.intervals, setup.deadline.remaining_s())
        if skipped and (search.outcome is not None or have_fallback):
            stats["milp_skipped"] = skipped
            break
        if setup.deadline.expired and (search.outcome is not None or have_fallback):
            break  # building a model takes seconds on large instances: none is left
        # the warm start's holdings are not closed under swaps of identical devices: no symmetry rows with them
        form = build_formulation(instance, setup.intervals, blocks, current=setup.current, allowed=setup.allowed,
                                 formulation=setup.formulation,
                                 break_symmetry=setup.allowed is None and warm_experts is None and setup.restrict is None,
                                 memory_margin=margin, expert_holdings=warm_experts)
        if setup.restrict is not None:
            form = replace(form, problem=setup.restrict(form.problem))
        rows, cols = form.problem.shape
        stats.update(rows=rows, columns=cols, integer_columns=int(form.problem.integer.sum()), blocks=len(form.phases))
        if form.experts is not None:
            stats["expert_space"] = form.experts.space.describe()
        start = None
        if start_placements is not None and not setup.deadline.expired:
            if setup.allowed is None and setup.current is None and setup.formulation == "counts" and setup.restrict is None:
                start_placements = _canonical(instance, start_placements)
            start = _start_vector(form, instance, start_placements, setup.deadline)
        # HiGHS's presolve probes every expert-pattern binary: on Mixtral's 21,000 it spent a 30 s limit there
        outcome = solve_problem(form.problem, setup.solver, time_limit=setup.deadline.remaining_s(), gap=setup.gap,
                                threads=setup.threads, start=start, presolve=form.experts is None)
        stats.update(raw_status=outcome.raw_status, nodes=stats.get("nodes", 0) + outcome.nodes,
                     warm_start=start is not None)
        if outcome.x is None:
            return _Search(outcome=outcome, interrupted=outcome.interrupted)
        # the placement is what the solver chose; the rest is recomputed exactly from it
        x = outcome.x if outcome.interrupted else _polish(form, outcome.x)  # Ctrl-C: no further LP
        placements = _placements(form, instance, x, setup.current)
        try:
            plan, report, inexact = _judge(instance, form, x, placements, setup.current, setup.intervals)
        except RuntimeError as exc:
            return _Search(outcome=outcome, error=str(exc))
        decided = {k: kk for kk, k in enumerate(setup.intervals)}
        over = tuple(v for v in report.violations if v.interval in decided)
        search = _Search(outcome, form, x, plan, report, over, tuple(inexact), interrupted=outcome.interrupted)
        if outcome.interrupted:
            break
        if over:  # a solver tolerance let a device overflow by a few bytes: keep that much free and solve again
            for v in over:
                m = instance.cluster.index(v.device)
                margin[decided[v.interval], m] += max(2 * v.over_bytes, 1e-9 * usable[m])
            start_placements = None
            stats["refinements"] = refinement + 1
            continue
        if not inexact or outcome.status != "optimal":
            break
        _split_blocks(blocks, form, inexact, setup.intervals)
        start_placements = placements
        stats["refinements"] = refinement + 1
    return search


def _split_blocks(blocks: dict[int, list[np.ndarray]], form: Formulation, inexact: list[int], intervals: list[int]) -> None:
    """Split each inexact token block in two, in place."""
    for index in inexact:
        phase = form.phases[index]
        k = intervals[phase.interval]
        blocks[k] = [part for block in blocks[k] for part in
                     ((block[: len(block) // 2], block[len(block) // 2:]) if block is phase.steps else (block,))]


def _no_solution_result(instance: Instance, setup: _Setup, outcome: SolverOutcome | None, warm_plan: Plan | None,
                        time_limit: float | None, elapsed: float, stats: dict[str, Any]) -> Result:
    """The result when the solver returned no point: the warm start, an infeasibility, or the solver's status."""
    solver = setup.solver
    bound = None if outcome is None or outcome.bound is None else outcome.bound * SECONDS_PER_UNIT
    raw = outcome.raw_status if outcome is not None else "not run"
    # A feasible warm start is the incumbent when the solver found nothing (CBC stopped by a
    # time limit before its first solution even reports "Infeasible").
    warm_report = None if warm_plan is None else evaluate(instance, warm_plan)
    if warm_report is not None and warm_report.feasible:
        if bound is not None:
            bound = min(bound, warm_report.total_s)
        why = f"{solver} found no solution ({raw})" if outcome is not None else \
            stats.get("milp_skipped", f"the time limit passed before {solver} ran")
        return Result("time_limit" if time_limit is not None else "feasible",
                      f"{why}; the warm start is returned", warm_plan, warm_report,
                      objective=warm_report.total_s, bound=bound, solve_time_s=elapsed, stats=stats)
    if outcome is not None and outcome.status == "infeasible":
        hint = "every device's memory is too small for its share at some interval; see `placement evaluate` of a reference plan"
        return Result("infeasible", f"no placement fits ({solver}: {raw}); {hint}", None, None,
                      solve_time_s=elapsed, stats=stats)
    status = "time_limit" if outcome is not None and outcome.status == "time_limit" else "error"
    return Result(status, f"{solver} found no solution ({raw})", None, None, bound=bound, solve_time_s=elapsed, stats=stats)


def _outcome_result(instance: Instance, setup: _Setup, search: _Search, warm_plan: Plan | None,
                    time_limit: float | None, elapsed: float, stats: dict[str, Any]) -> Result:
    """The `Result` of a search: status, message, plan, the evaluator's report and the bound in seconds."""
    outcome, solver, intervals = search.outcome, setup.solver, setup.intervals
    if search.error is not None:
        return Result("error", f"{search.error} ({solver}: {outcome.raw_status}); please report this instance", None, None,
                      solve_time_s=elapsed, stats=stats)
    if search.x is None:
        return _no_solution_result(instance, setup, outcome, warm_plan, time_limit, elapsed, stats)
    plan, report = search.plan, search.report
    milp_value = search.form.problem.objective(search.x) * SECONDS_PER_UNIT
    if stats["mode"] == "interval":
        stats["interval_cost_s"] = milp_value
    status = outcome.status
    message = f"{solver}: {outcome.raw_status}"
    if search.interrupted:
        status, message = "time_limit", f"{message}; interrupted (Ctrl-C): the incumbent is returned"
    elif setup.deadline.expired and status == "optimal" and search.inexact:
        status = "time_limit"
    if search.over:
        return Result("error", f"{message}; the plan still overflows after {stats['refinements']} refinements: "
                      f"{search.over[0]}", plan, report, objective=report.total_s, solve_time_s=elapsed, stats=stats)
    if search.inexact:
        status = "feasible" if status == "optimal" else status
        message += f"; {len(search.inexact)} token block(s) still inexact after {stats['refinements']} refinements"
    later = [v for v in report.violations if v.interval not in intervals]
    if later:
        message += (f"; decided for interval {intervals[0]} only: keeping it later would overflow "
                    f"({later[0]}), a decision for those intervals")
    bound = None if outcome.bound is None else outcome.bound * SECONDS_PER_UNIT
    if len(intervals) < instance.workload.n_intervals:
        bound = None  # a bound on the interval's cost, not on the plan's total
    if bound is not None:
        bound = min(bound, report.total_s)  # a reported bound is never above the objective
    return Result(status, message, plan, report, objective=report.total_s, bound=bound, solve_time_s=elapsed, stats=stats,
                  backend_objective=milp_value)


def _warm_placements(instance: Instance, warm_start, current: Placement | None, count: int,
                     deadline: Deadline = Deadline()) -> list[Placement] | None:
    if warm_start is None:
        return None
    if isinstance(warm_start, Plan):
        arrays = check_plan(instance, warm_start)  # in the instance's device order
        plan_placements = [Placement(arrays.attention[k], arrays.projection[k], arrays.ffn[k], int(arrays.embed[k]),
                                     int(arrays.lm_head[k]),
                                     experts=None if arrays.experts is None else arrays.experts[k])
                           for k in range(arrays.attention.shape[0])]
        return plan_placements[:count] if count == len(plan_placements) else [plan_placements[0]] * count
    if warm_start != "auto":
        raise InputError(f"`warm_start` must be a Plan, 'auto' or None, got {warm_start!r}")
    if current is not None:
        return [current] * count
    placements = best_heuristic_placements(instance, whole_generation=count == instance.workload.n_intervals,
                                           expired=lambda: deadline.expired, deadline=deadline)
    if placements is None:
        return None
    return placements if len(placements) == count else [placements[0]] * count


def _judge(instance: Instance, form: Formulation, x: np.ndarray, placements: list[Placement],
           current: Placement | None, intervals: list[int]):
    """The plan, the evaluator's report, and the phases whose relaxed cost is below the evaluator's."""
    I = instance.workload.n_intervals
    names = instance.cluster.names
    if len(intervals) == I:
        plan = Plan(names, placements if I > 1 else placements[:1], method="milp")
    else:  # interval mode: the interval's placement from `interval` on, `current` before it
        k = intervals[0]
        before = [current] * k if current is not None else [placements[0]] * k
        plan = Plan(names, before + [placements[0]] * (I - k), method="milp")
    report = evaluate(instance, plan)
    inexact = []
    scale = max(report.total_s, 1e-12)
    for index, (phase, (cols, coefs)) in enumerate(zip(form.phases, form.phase_cost)):
        model_value = float(coefs @ x[cols]) * SECONDS_PER_UNIT
        true_value = report.ttft_s if phase.steps is None else float(report.decode_s[phase.steps].sum())
        short = true_value - model_value
        if short > 1e-7 * scale + 1e-9 and phase.steps is not None and len(phase.steps) > 1:
            inexact.append(index)
        elif abs(short) > 1e-6 * scale + 1e-9:
            # a one-token block is exact by construction, and no block may cost more in the
            # model than in the evaluator: this is numerical trouble, reported, never hidden
            raise RuntimeError(
                f"MILP phase {index} costs {model_value:.9g} s in the model but {true_value:.9g} s in the evaluator"
            )
    return plan, report, inexact
