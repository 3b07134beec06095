"""``myopic+``: migration-aware online re-partitioning with local search and compound moves.

Still online: at every interval boundary it sees where the blocks are now, the cost
model and the request's token budget, never the tokens' content. Each decision:

1. starts from the placement in use; from the paper's greedy decision too
   (`placement.solvers.myopic.decide`, Algorithm 1) when nothing is placed yet or the
   placement in use no longer fits (a fresh packing moves nearly every block, which
   pays only when it must); and from the cheap baselines (`baseline_placements`:
   every single device, the layer DP's chain, layers in proportion to memory), all
   weighed by the same cost: the first decision searches from each, a later one from
   those that start below the best found;
2. improves each start by local search on the cost of keeping the placement for the
   next ``horizon`` intervals (capped at the intervals left): their decode steps (at
   their mean context), the migration into this interval (so a move must pay for
   itself over the horizon), the prefill for the first interval, and the price of
   memory the caches will need by the horizon's end but that is not there (its bytes
   over a typical route: what moving them later would cost). Memory at the interval's
   own largest context comes first: a placement that overflows it is repaired before
   anything else, cheapest seconds per byte first. Neighbourhoods: move one attention
   group to another device (the group that migrates least: one going home, else one
   already away), relocate a projection, an FFN, ``embed`` or ``lm_head``, and, when
   memory holds back a move that would gain time, swap two groups of different layers
   between two devices. The best candidate is taken until none improves;
3. from the best result, compound moves (`placement.solvers.compound_moves`): a range
   of layers whole to one device, two devices' loads swapped, ``embed`` with
   ``lm_head``, layer splits, block pairs; failing an improving one, the fastest few
   followed by local search (ejection chains, plateaus);
4. given a time budget (``lns_time_s``; by default ``"auto"``: one second on a small
   instance, none on a large one), windows of layers re-solved exactly by the interval
   MILP (`placement.solvers.lns_moves`);
5. hands the placements to the evaluator, like every back end; a run from nothing
   commits to a static plan instead (a baseline, or a whole-run search's placement)
   when that is cheaper over the whole run (`solve_myopic_plus`).

The interval's cost model and the state it scores live in
`placement.solvers.interval_costs`; the one-block neighbourhoods (exact deltas, all
candidates at once with NumPy) and the local search in `placement.solvers.local_moves`;
the compound moves (batched full recounts) in `placement.solvers.compound_moves`;
docs/online.md describes them all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.options import Deadline
from placement.plan import Placement, Plan
from placement.result import Result, judged
from placement.solvers.baselines import solve_pipeline_dp
from placement.solvers.compound_moves import COMPOUND_LIMIT, FIRST_COMPOUND_LIMIT, compound_search, whole_move_count
from placement.solvers.expert_moves import place_experts
from placement.solvers.interval_costs import IMPROVEMENT, IntervalModel, placement_of, state_of
from placement.solvers.lns_moves import lns_budget_s, lns_search
from placement.solvers.local_moves import local_search
from placement.solvers.myopic import decide
from placement.solvers.online import check_current, run_online
from placement.solvers.reference import pipeline_plan, single_plan

__all__ = ["DecisionPlus", "baseline_placements", "decide_plus", "solve_myopic_plus"]


@dataclass(frozen=True)
class _Search:
    """How far a decision searches (the options of `solve_myopic_plus`)."""

    max_moves: int
    compound_limit: int
    lns_time_s: float
    lns_layers: int
    deadline: Deadline = Deadline()


def _search_options(instance, horizon, max_moves, compound_limit, lns_time_s, lns_layers,
                    time_limit=None) -> _Search:
    """The options checked (one line naming a bad one and what it must be), ``"auto"`` resolved for `instance`."""
    for name, value, least in (("horizon", horizon, 1), ("max_moves", max_moves, 0),
                               ("compound_limit", compound_limit, 0), ("lns_layers", lns_layers, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise InputError(f"`{name}` must be a whole number, at least {least}, got {value!r}")
    if lns_time_s != "auto" and (isinstance(lns_time_s, bool) or not isinstance(lns_time_s, (int, float))
                                 or not 0 <= lns_time_s < np.inf):
        raise InputError(f"`lns_time_s` must be \"auto\" or a number of seconds, at least 0 (0: no MILP "
                         f"neighbourhood), got {lns_time_s!r}")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or not 0 <= time_limit < np.inf):
        raise InputError(f"`time_limit` must be a number of seconds, at least 0, or null for none, got {time_limit!r}")
    return _Search(int(max_moves), int(compound_limit), lns_budget_s(instance, lns_time_s), int(lns_layers),
                   Deadline.after(time_limit))


@dataclass(frozen=True, eq=False)
class DecisionPlus:
    """One ``myopic+`` decision.

    Attributes
    ----------
    placement : Placement
        Whole blocks, the instance's precision.
    start : str
        Where the search that won began: ``"current"`` (the placement in use),
        ``"greedy"`` (Algorithm 1's decision) or a baseline of `baseline_placements`
        (``"single:<device>"``, ``"pipeline-dp"``, ``"memory-proportional"``).
    moves : int
        Improving moves the local search, the compound moves and the MILP windows made.
    cost_s : float
        The cost the search minimized, seconds: the horizon's decode steps (at their
        mean context), the migration into the interval, the prefill for interval 0,
        and the price of the memory missing by the horizon's end.
    overflow_bytes : float
        Memory over the devices' limits at the interval's largest context (0 when it fits).
    lns_proven : tuple of bool
        For every window of the MILP neighbourhood, whether its MILP was proven optimal
        (empty when the step did not run).
    cut_short : bool
        True when the time limit passed during the decision (or before it): its search
        stopped at the best placement found so far.
    """

    placement: Placement
    start: str
    moves: int
    cost_s: float
    overflow_bytes: float
    lns_proven: tuple[bool, ...] = ()
    cut_short: bool = False


def _device_of(name: str, instance: Instance) -> int:
    """The device index of a ``single:<device>`` baseline."""
    return instance.cluster.index(name.removeprefix("single:"))


def baseline_placements(instance: Instance) -> dict[str, Placement]:
    """The cheap baselines' placements every decision weighs: static plans of whole blocks.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    dict of str to Placement
        ``single:<device>`` for every device (everything on it), ``pipeline-dp`` (the
        layer DP's chain, `placement.solvers.baselines.solve_pipeline_dp`) and
        ``memory-proportional`` (contiguous layers in proportion to memory).
    """
    out = {f"single:{name}": single_plan(instance, j).intervals[0] for j, name in enumerate(instance.cluster.names)}
    out["pipeline-dp"] = solve_pipeline_dp(instance).plan.intervals[0]
    out["memory-proportional"] = pipeline_plan(instance).intervals[0]
    return out


def decide_plus(instance: Instance, k: int, previous: Placement | None = None, *, horizon: int = 8,
                max_moves: int = 10_000, baselines: dict[str, Placement] | None = None,
                compound_limit: int = COMPOUND_LIMIT, lns_time_s: float | str = "auto", lns_layers: int = 2
                ) -> DecisionPlus:
    """One ``myopic+`` decision for interval `k`, from the placement in use (`previous`).

    Parameters
    ----------
    instance : Instance
    k : int
        The interval decided.
    previous : Placement, optional
        Where the blocks are now; None before the first interval.
    horizon, max_moves, compound_limit, lns_time_s, lns_layers
        As in `solve_myopic_plus`.
    baselines : dict of str to Placement, optional
        The baselines weighed (`baseline_placements`, computed when not given).

    Returns
    -------
    DecisionPlus

    Raises
    ------
    InputError
        On a `k` outside the instance's intervals, a bad option, or a `previous`
        placement that does not fit the instance.
    """
    previous = check_current(instance, previous)
    search = _search_options(instance, horizon, max_moves, compound_limit, lns_time_s, lns_layers)
    if not 0 <= k < instance.workload.n_intervals:
        raise InputError(f"`k` must be an interval of the instance, 0..{instance.workload.n_intervals - 1}, got {k!r}")
    iv = IntervalModel(instance, k, previous, horizon)
    baselines = baseline_placements(instance) if baselines is None else baselines
    return _decide(instance, iv, k, previous, baselines, search)


def _decide(instance: Instance, iv: IntervalModel, k: int, previous: Placement | None,
            baselines: dict[str, Placement], search: _Search) -> DecisionPlus:
    """`decide_plus` on the interval model `iv`: local search from every start, compound moves from the best."""
    N, K, max_moves, deadline = instance.n_devices, instance.model.kv_heads, search.max_moves, search.deadline
    starts = [] if previous is None else [("current", state_of(previous, previous, N))]
    # A fresh greedy packing migrates nearly every block: it is a start only when nothing
    # is placed yet or the placement in use no longer fits.
    if not starts or iv.cost(starts[0][1])[0] > iv.tolerance:
        greedy = decide(instance, k, previous, scoring="max", weights=(0.4, 0.3, 0.3)).placement
        starts.append(("greedy", state_of(greedy, previous, N)))
    searched = [(name, *local_search(iv, state, max_moves, deadline)) for name, state in starts]
    # The baselines, by the same horizon cost. The first decision searches from each (of the
    # single-device plans, the best one); later ones from those that start below the best so far.
    best = min(iv.cost(item[1]) for item in searched)
    raw = []
    for name, placement in baselines.items():
        if best[0] <= iv.tolerance and name.startswith("single:") and iv.whole_bytes > iv.limit[_device_of(name, instance)]:
            continue  # cannot beat a placement that fits
        state = state_of(placement, previous, N)
        raw.append((iv.cost(state), name, state))
    raw.sort(key=lambda item: item[0])
    single_seen = False
    for cost, name, state in raw:
        if deadline.expired:
            break
        first = previous is None and not (single_seen and name.startswith("single:"))
        single_seen |= name.startswith("single:")
        if first or iv.better(cost, best):
            searched.append((name, *local_search(iv, state, max_moves, deadline)))
            best = min(best, iv.cost(searched[-1][1]))
    name, state, moves = min(searched, key=lambda item: iv.cost(item[1]))
    # Compound moves from the best of them (the first decision may score more candidates),
    # then, given a budget, windows of layers re-solved by the interval MILP.
    limit = FIRST_COMPOUND_LIMIT if previous is None else search.compound_limit
    state, more = compound_search(iv, state, max_moves - moves, limit, deadline)
    moves += more
    proven: tuple[bool, ...] = ()
    if search.lns_time_s > 0 and not deadline.expired:
        budget_s = search.lns_time_s if deadline.end_s is None else min(search.lns_time_s, deadline.remaining_s())
        state, more, proven = lns_search(instance, iv, k, previous, state, budget_s, search.lns_layers,
                                         max_moves - moves)
        moves += more
    overflow, cost = iv.cost(state)
    return DecisionPlus(placement_of(state, previous, K), name, moves, cost, overflow, proven, deadline.expired)


def solve_myopic_plus(instance: Instance, *, current: Placement | Plan | None = None,
                      horizon: int = 8, max_moves: int = 10_000, compound_limit: int = COMPOUND_LIMIT,
                      lns_time_s: float | str = "auto", lns_layers: int = 2, time_limit: float | None = None) -> Result:
    """Re-decide every interval from the current state: greedy start, migration-aware local search.

    Parameters
    ----------
    instance : Instance
    current : Placement or Plan, optional
        Where the blocks are before the first interval (a running system); the
        evaluator does not charge the moves out of it (``stats["blocks_moved_from_current"]``
        counts them).
    horizon : int
        Intervals a decision assumes its placement is kept for (at least 1): it
        amortizes migration over them and prices the memory their caches will need.
        ``1`` looks at the coming interval alone. The default, 8, was chosen on
        ``paper-small`` (docs/methods.md has the sensitivity).
    max_moves : int
        Cap on each decision's improving moves (default: effectively none).
    compound_limit : int
        Decisions after the first make compound moves (layer ranges, device swaps,
        embed with lm_head, ejection chains) only when a round has at most this many
        candidates; the first decision makes them up to 1,000 (docs/methods.md has the
        count). 0 turns them off after the first decision.
    lns_time_s : float or "auto"
        Wall-clock seconds each decision may give the interval MILP to re-solve windows
        of `lns_layers` layers exactly (the large-neighbourhood step,
        `placement.solvers.lns_moves`); 0 turns it off. ``"auto"``, the default: 1 s
        when layers × attention groups × devices is at most 128, else off
        (`placement.solvers.lns_moves.lns_budget_s`; docs/online.md).
    lns_layers : int
        Layers a window of the large-neighbourhood step holds (default 2).
    time_limit : float, optional
        Wall-clock seconds for the whole run (None, the default: no limit; 0: already
        up). Checked before every round of moves and every decision: once it has passed,
        the decision under way keeps the best placement it has found and every later one
        keeps the placement in use when it fits (else Algorithm 1's greedy decision). The
        plan is still judged by the evaluator; status ``time_limit`` when it fits.

    Returns
    -------
    Result
        One placement per interval, judged by `placement.evaluate`; objective
        ``report.total_s``; status ``feasible`` or ``infeasible`` (the worst violation
        named). ``stats``: ``decision_time_median_s`` / ``decision_time_max_s`` (one
        decision's wall-clock seconds), ``decision_times_s``, ``moves`` (local-search
        and compound moves per decision), ``starts`` (per decision: ``current``,
        ``greedy`` or a baseline's name, ``single:<device>``, ``pipeline-dp``,
        ``memory-proportional``), ``blocks_moved`` (between intervals, charged by the
        evaluator), ``horizon``, ``static`` (the static plan kept for the whole run when
        it beat re-deciding: a baseline's name or ``static-search``; else None),
        ``lns_time_s`` (the MILP neighbourhood's budget a decision, seconds, ``"auto"``
        resolved; 0: it did not run), ``lns_proven`` (per decision, for every MILP window,
        whether it was proven optimal; a result depends on the wall clock only when one
        of them is False), ``lns_static_proven`` (the same for the whole-run search),
        ``time_limit`` (seconds, or None) and ``cut_short`` (decisions the time limit cut
        short or skipped; 0 when it was not reached, and then the plan is the one without
        a limit).

    Raises
    ------
    InputError
        On a `horizon` or `lns_layers` below 1, a negative `max_moves` or
        `compound_limit`, an `lns_time_s` neither ``"auto"`` nor a number at least 0, a
        `time_limit` neither None nor a number at least 0, or a `current` placement that
        does not fit the instance.

    Examples
    --------
    >>> from placement import load_instance
    >>> result = solve_myopic_plus(load_instance("paper-small/h8-3dev-low-s1-kafetzis"))
    >>> result.objective == result.report.total_s
    True
    """
    previous = check_current(instance, current)
    search = _search_options(instance, horizon, max_moves, compound_limit, lns_time_s, lns_layers, time_limit)
    baselines: dict[str, Placement] = {}

    def one(k: int, before: Placement | None) -> DecisionPlus:
        if not baselines and not search.deadline.expired:  # computed within the first decision (its time)
            baselines.update(baseline_placements(instance))
        iv = IntervalModel(instance, k, before, horizon)
        return place_experts(instance, k, _decide(instance, iv, k, before, baselines, search), before, horizon)

    decisions, placements, stats = run_online(instance, previous, one)
    plan = Plan(devices=instance.cluster.names, intervals=placements, method="myopic+")
    stats.update(moves=[d.moves for d in decisions], starts=[d.start for d in decisions], horizon=horizon,
                 static=None, lns_time_s=search.lns_time_s, lns_proven=[list(d.lns_proven) for d in decisions],
                 lns_static_proven=[], time_limit=time_limit, cut_short=sum(d.cut_short for d in decisions))
    note = (f"myopic+: {len(decisions)} decision(s), {sum(stats['moves'])} local-search move(s), "
            f"{stats['blocks_moved']} block move(s) between intervals")
    result = judged(instance, plan, note, stats)
    if previous is not None or search.deadline.expired:
        return _limited(result, time_limit)
    # The run is deterministic given the cost model and the token budget, so the first decision
    # can foresee its total: it commits to a static baseline when one is cheaper (its time is
    # counted in the first decision's).
    began = time.perf_counter()
    searched = _whole_run_search(instance, placements[0], baselines, search)
    stats["lns_static_proven"] = [] if searched is None else list(searched.lns_proven)
    static = _cheaper_static(instance, {**baselines, **({} if searched is None else {"static-search": searched.placement})},
                             result)
    stats["decision_times_s"][0] += time.perf_counter() - began
    stats["decision_time_max_s"] = max(stats["decision_times_s"])
    stats["decision_time_median_s"] = float(np.median(stats["decision_times_s"]))
    stats["cut_short"] += int(searched is not None and searched.cut_short)  # no decision was cut before it
    if static is None:
        return _limited(result, time_limit)
    name, static_plan = static
    stats.update(static=name, blocks_moved=0)
    return _limited(judged(instance, static_plan, f"myopic+: the static {name} plan, cheaper over the whole run "
                           f"than re-deciding ({result.objective:.6g} s)", stats), time_limit)


def _limited(result: Result, time_limit: float | None) -> Result:
    """`result` with status ``time_limit`` (when its plan fits) and a message saying so, if the limit cut a search short."""
    cut = result.stats["cut_short"]
    if not cut:
        return result
    why = f"; the time limit ({time_limit:g} s) cut {cut} decision(s) short: they kept the best placement found"
    return replace(result, status="time_limit" if result.status == "feasible" else result.status,
                   message=result.message + why)


def _whole_run_search(instance: Instance, first: Placement, baselines: dict[str, Placement],
                      search: _Search) -> DecisionPlus | None:
    """A first decision whose placement must fit the whole run's memory and is costed over
    the whole run (the ``static-search`` plan); None for one interval, and on an instance
    too large for the first decision's compound moves when the online run's first placement
    fits the whole run (only caches that outgrow it force later decisions to move)."""
    n = instance.workload.n_intervals
    iv = IntervalModel(instance, 0, None, n, fit_horizon=True)
    # On an instance small enough for the first decision's compound moves it always runs (one
    # more first decision); on a larger one only when the caches outgrow the first placement.
    small = whole_move_count(instance.model.layers, instance.n_devices) <= FIRST_COMPOUND_LIMIT
    if n == 1 or (not small and iv.cost(state_of(first, None, instance.n_devices))[0] <= iv.tolerance):
        return None
    return _decide(instance, iv, 0, None, baselines, search)


def _cheaper_static(instance: Instance, baselines: dict[str, Placement], online: Result) -> tuple[str, Plan] | None:
    """The cheapest feasible static plan (a baseline, or the whole-run search's) if it beats the online plan's total."""
    best, limit = None, online.objective * (1 - IMPROVEMENT) if online.report.feasible else np.inf
    for name, placement in baselines.items():
        report = evaluate(instance, Plan(devices=instance.cluster.names, intervals=[placement], method="myopic+"))
        if report.feasible and report.total_s < limit:
            best, limit = (name, Plan(devices=instance.cluster.names, intervals=[placement], method="myopic+")), report.total_s
    return best
