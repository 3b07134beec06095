"""Solver interfaces for a `LinearProblem`: HiGHS (highspy), CBC (through PuLP), SCIP (through OR-Tools).

Each takes the same arguments and returns a `SolverOutcome` whose status is one of
the library's statuses, mapped from the solver's own codes (the raw code is kept in
`raw_status`), as cvxpy keeps one status map per solver.

No solver writes to stdout (``--json`` output must be one JSON document): HiGHS prints
its banner from its C++ constructor, before any option can be set, so the constructor
runs with file descriptor 1 pointed away; its log and CBC's are off unless the
environment variable ``PLACEMENT_SOLVER_LOG`` is set (``--verbose``), and then they go
to stderr.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from placement.errors import InputError, SolverNotInstalledError
from placement.solvers.child_watchdog import child_watchdog
from placement.solvers.linear import LinearProblem

__all__ = ["SolverOutcome", "solve_problem", "solve_lp_duals", "SOLVERS", "solver_log_wanted", "new_highs",
           "PROVEN_GAP", "is_proven"]

_FD_LOCK = threading.Lock()  # fd 1 is per process: one redirection at a time


def solver_log_wanted() -> bool:
    """True when the user asked for solver logs (``--verbose`` sets ``PLACEMENT_SOLVER_LOG``)."""
    return os.environ.get("PLACEMENT_SOLVER_LOG", "") not in ("", "0")


@contextmanager
def _stdout_fd_to(target: str) -> Iterator[None]:
    """Point file descriptor 1 at stderr (``"stderr"``) or nowhere (``"null"``) while the block runs."""
    with _FD_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        sink = os.open(os.devnull, os.O_WRONLY) if target == "null" else os.dup(2)
        try:
            os.dup2(sink, 1)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(sink)


def new_highs():
    """A `highspy.Highs` that has printed nothing on stdout, logging to stderr only when asked.

    Returns
    -------
    highspy.Highs

    Raises
    ------
    SolverNotInstalledError
        When highspy cannot be imported.
    """
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise SolverNotInstalledError("the MILP solver 'highs' needs highspy: pip install highspy") from exc
    with _stdout_fd_to("stderr" if solver_log_wanted() else "null"):
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", solver_log_wanted())
    return highs

SOLVERS = ("highs", "cbc", "ortools")


@dataclass(frozen=True, eq=False)
class SolverOutcome:
    """What a solver returned.

    Attributes
    ----------
    status : {"optimal", "feasible", "time_limit", "infeasible", "error"}
        ``optimal`` means proven optimal (bound and objective agree to 1e-6);
        ``feasible`` that a gap tolerance stopped the search with a larger gap.
    raw_status : str
        The solver's own status name.
    x : ndarray or None
        The best solution found.
    objective : float or None
        Its objective value (with the offset).
    bound : float or None
        The best proven lower bound.
    seconds : float
    nodes : int
    """

    status: str
    raw_status: str
    x: np.ndarray | None
    objective: float | None
    bound: float | None
    seconds: float
    nodes: int = 0
    interrupted: bool = False


def solve_problem(problem: LinearProblem, solver: str = "highs", *, time_limit: float | None = None,
                  gap: float = 1e-6, threads: int | None = None, start: np.ndarray | None = None,
                  presolve: bool = True) -> SolverOutcome:
    """Solve `problem` with the named solver.

    Parameters
    ----------
    problem : LinearProblem
    solver : {"highs", "cbc", "ortools"}
    time_limit : float, optional
        Seconds.
    gap : float
        Relative optimality gap at which the search stops.
    threads : int, optional
    start : ndarray, optional
        A starting point (integer columns are used; continuous ones may be completed by the solver).
    presolve : bool
        HiGHS only: False turns its presolve off (it can stall, past the time limit, on
        the configuration master's restricted MILPs).

    Raises
    ------
    InputError
        For an unknown solver name.
    SolverNotInstalledError
        When the solver's package cannot be imported.
    """
    if solver not in SOLVERS:
        raise InputError(f"unknown MILP solver {solver!r}; solvers are {', '.join(SOLVERS)}")
    if solver == "highs":
        return _honest(_highs(problem, time_limit, gap, threads, start, presolve))
    outcome = {"cbc": _cbc, "ortools": _ortools}[solver](problem, time_limit, gap, threads, start)
    return _honest(outcome)


# A plan is called optimal only when its bound is this close (relative): a solve stopped by a
# larger `gap` option reports ``feasible`` with its bound, whichever stage proved it.
PROVEN_GAP = 1e-6


def is_proven(objective: float, bound: float | None, gap: float = PROVEN_GAP) -> bool:
    """True when `bound` is within the relative `gap` of `objective` (both in the same unit)."""
    return bound is not None and objective - bound <= (gap + 1e-12) * max(abs(objective), 1e-9)


def _honest(outcome: SolverOutcome) -> SolverOutcome:
    """A bound never above the objective, and ``optimal`` only when bound and objective agree.

    A solver stopped by a relative gap tolerance reports "optimal"; here that is
    ``feasible`` unless its bound is within 1e-6 of the objective.
    """
    bound, objective = outcome.bound, outcome.objective
    if bound is not None and objective is not None:
        bound = min(bound, objective)
    status = outcome.status
    if status == "optimal" and objective is not None:
        status = "optimal" if is_proven(objective, bound) else "feasible"
    return replace(outcome, status=status, bound=bound)


# ----------------------------------------------------------------------------- HiGHS
_HIGHS_STATUS = {
    "kOptimal": "optimal",
    "kInfeasible": "infeasible",
    "kTimeLimit": "time_limit",
    "kIterationLimit": "time_limit",
    "kSolutionLimit": "time_limit",
    "kInterrupt": "time_limit",
}


def _highs_lp(problem: LinearProblem):
    """`problem` as a `highspy.HighsLp`."""
    import highspy

    lp = highspy.HighsLp()
    rows, cols = problem.shape
    lp.num_col_, lp.num_row_ = cols, rows
    lp.col_cost_ = problem.cost
    lp.col_lower_ = problem.col_lower
    lp.col_upper_ = problem.col_upper
    lp.row_lower_ = problem.row_lower
    lp.row_upper_ = problem.row_upper
    lp.offset_ = problem.offset
    csc = problem.matrix.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr
    lp.a_matrix_.index_ = csc.indices
    lp.a_matrix_.value_ = csc.data
    lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in problem.integer]
    return lp


def _highs(problem: LinearProblem, time_limit, gap, threads, start, presolve: bool = True) -> SolverOutcome:
    import highspy

    highs = new_highs()
    if not presolve:
        highs.setOptionValue("presolve", "off")
    highs.setOptionValue("mip_rel_gap", gap)
    highs.setOptionValue("mip_abs_gap", 0.0)
    if time_limit is not None:
        highs.setOptionValue("time_limit", float(time_limit))
    if threads is not None:
        highs.setOptionValue("threads", int(threads))
    rows, cols = problem.shape
    highs.passModel(_highs_lp(problem))
    if start is not None:
        solution = highspy.HighsSolution()
        solution.col_value = list(map(float, start))
        solution.value_valid = True
        highs.setSolution(solution)
    began = time.perf_counter()
    best = {"x": None if start is None else np.asarray(start, dtype=float)}  # the incumbent, for an abandoned solve

    def improved(event) -> None:
        if len(event.data_out.mip_solution) == cols:
            best["x"] = np.array(event.data_out.mip_solution, dtype=float)

    highs.cbMipImprovingSolution += improved
    stop_s = None if time_limit is None else began + float(time_limit) + OVERRUN_GRACE_S
    if solver_log_wanted():
        with _stdout_fd_to("stderr"):  # HiGHS logs to stdout; the user's stdout stays for results
            interrupted, finished = _run_interruptible(highs, stop_s)
    else:
        interrupted, finished = _run_interruptible(highs, stop_s)
    seconds = time.perf_counter() - began
    if not finished:  # HiGHS is inside a step that polls neither limit nor interrupt: leave it, keep the incumbent
        x = best["x"]
        raw = "interrupted (HiGHS still in an LP solve)" if interrupted else \
            f"abandoned {OVERRUN_GRACE_S:g} s past the time limit (HiGHS inside a step that checks no limit)"
        return SolverOutcome("time_limit", raw, x, None if x is None else problem.objective(x), None, seconds,
                             interrupted=interrupted)
    raw = highs.getModelStatus().name
    info = highs.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.array(highs.getSolution().col_value) if has_solution else None
    status = _HIGHS_STATUS.get(raw, "error")
    if status == "optimal" and x is None:
        status = "error"
    bound = info.mip_dual_bound if problem.integer.any() else info.objective_function_value
    return SolverOutcome(
        status=status, raw_status=raw, x=x, objective=None if x is None else problem.objective(x),
        bound=None if not math.isfinite(bound) else float(bound), seconds=seconds, nodes=int(info.mip_node_count),
        interrupted=interrupted,
    )


def solve_lp_duals(problem: LinearProblem, time_limit: float | None = None) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Solve the linear relaxation of `problem` with HiGHS and return its primal and dual values.

    Parameters
    ----------
    problem : LinearProblem
        Integrality is ignored.
    time_limit : float, optional
        Seconds.

    Returns
    -------
    (x, row_dual, objective) or None
        The optimal point, the row duals (HiGHS's sign: ``cost − Aᵀ·row_dual`` is the
        reduced cost, so a binding ``≤`` row of a minimization has a dual ≤ 0) and the
        objective; None when the LP did not solve to optimality.
    """
    relaxed = replace(problem, integer=np.zeros_like(problem.integer))
    highs = new_highs()
    if time_limit is not None:
        highs.setOptionValue("time_limit", float(time_limit))
    highs.passModel(_highs_lp(relaxed))
    highs.run()
    if highs.getModelStatus().name != "kOptimal":
        return None
    solution = highs.getSolution()
    return (np.array(solution.col_value), np.array(solution.row_dual),
            float(highs.getInfo().objective_function_value))


INTERRUPT_GRACE_S = 0.5  # after Ctrl-C, how long HiGHS may take to stop by itself
# How far past its time limit HiGHS may run before the solve is abandoned. HiGHS checks
# its limit between steps, and one step can be long: on edge-real/qwen2.5-7b-3dev-wifi
# (30k rows) one root round of its mod-k cut separator took 40-55 s on a loaded 2-core VM.
OVERRUN_GRACE_S = 1.0


def _run_interruptible(highs, stop_s: float | None = None) -> tuple[bool, bool]:
    """``highs.run()``, ended within about a second by Ctrl-C or at `stop_s`; returns (interrupted, finished).

    HiGHS holds the main thread in C++ for the whole solve, so Python sees Ctrl-C only
    when it returns. The solve runs in a worker thread instead; the calling thread
    waits in short steps, and on Ctrl-C (main thread only) or at `stop_s`
    (`time.perf_counter` value) asks HiGHS to stop at its next interrupt check
    (highspy's user-interrupt callback). A root LP or cut round of a large model can
    run for minutes without such a check: after `INTERRUPT_GRACE_S` the solve is
    abandoned (the daemon thread finishes its step in the background, then stops, or
    ends with the process) and ``finished`` is False.
    """
    if stop_s is None and threading.current_thread() is not threading.main_thread():
        highs.run()  # signals reach only the main thread, and there is no time to keep
        return False, True
    highs.HandleUserInterrupt = True
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (highs.run(), finished.set()), daemon=True)
    worker.start()
    try:
        while not finished.wait(0.05):
            if stop_s is not None and time.perf_counter() > stop_s:
                highs.cancelSolve()
                return False, finished.wait(INTERRUPT_GRACE_S)
        return False, True
    except KeyboardInterrupt:
        highs.cancelSolve()
    try:
        return True, finished.wait(INTERRUPT_GRACE_S)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting at once
        return True, finished.is_set()


# ----------------------------------------------------------------------------- CBC through PuLP
def _cbc(problem: LinearProblem, time_limit, gap, threads, start) -> SolverOutcome:
    entered = time.perf_counter()  # building PuLP's model and its MPS file counts against the limit
    try:
        import pulp
    except ImportError as exc:  # pragma: no cover
        raise SolverNotInstalledError("the MILP solver 'cbc' needs PuLP: pip install pulp") from exc
    model = pulp.LpProblem("placement", pulp.LpMinimize)
    columns = [
        model.add_variable(f"x{j}", None if not math.isfinite(lo) else lo, None if not math.isfinite(hi) else hi,
                           cat=pulp.LpInteger if integer else pulp.LpContinuous)
        for j, (lo, hi, integer) in enumerate(zip(problem.col_lower, problem.col_upper, problem.integer))
    ]
    model += pulp.lpSum(c * columns[j] for j, c in enumerate(problem.cost) if c) + problem.offset
    csr = problem.matrix
    for i in range(csr.shape[0]):
        lo, hi = problem.row_lower[i], problem.row_upper[i]
        expr = pulp.LpAffineExpression(
            [(columns[j], v) for j, v in zip(csr.indices[csr.indptr[i]:csr.indptr[i + 1]], csr.data[csr.indptr[i]:csr.indptr[i + 1]])]
        )
        if lo == hi:
            model += expr == lo
        else:
            if math.isfinite(lo):
                model += expr >= lo
            if math.isfinite(hi):
                model += expr <= hi
    if start is not None:  # clipped: an LP completion may exceed a bound by its tolerance, which PuLP rejects
        for column, value, lo, hi in zip(columns, start, problem.col_lower, problem.col_upper):
            value = min(max(float(value), lo), hi)
            column.setInitialValue(round(value) if column.cat == pulp.LpInteger else value)
    import warnings

    with warnings.catch_warnings():  # PuLP 3 deprecates its bundled CBC for 4.0; it is what this PuLP ships
        warnings.simplefilter("ignore", DeprecationWarning)
        log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # CBC's bound is only in its log
        log.close()
        left_s = None if time_limit is None else max(1.0, float(time_limit) - (time.perf_counter() - entered))
        cmd = pulp.PULP_CBC_CMD(msg=solver_log_wanted(), timeLimit=left_s, gapRel=gap, threads=threads,
                                warmStart=start is not None, logPath=log.name)
    if not cmd.available():
        raise SolverNotInstalledError("the MILP solver 'cbc' needs PuLP's bundled CBC, which is not available here")
    began = time.perf_counter()
    watchdog = None if time_limit is None else child_watchdog("cbc", entered + float(time_limit) + OVERRUN_GRACE_S)
    try:
        model.solve(cmd)
        log_text = Path(log.name).read_text(errors="replace")
    except pulp.PulpSolverError:
        if watchdog is None or not watchdog.is_set():
            raise
        return SolverOutcome("time_limit", f"stopped {OVERRUN_GRACE_S:g} s past the time limit (CBC inside a step "
                             "that checks no limit)", None, None, None, time.perf_counter() - began)
    finally:
        os.unlink(log.name)
        if watchdog is not None:
            watchdog.cancelled = True
    seconds = time.perf_counter() - began
    raw = pulp.LpStatus[model.status]
    solution_status = getattr(model, "sol_status", None)
    values = [c.varValue for c in columns]
    x = None if any(v is None for v in values) else np.array(values, dtype=float)
    # CBC writes its solution as text, so rows may be off by its print precision: trust
    # its own verdict on the solution (the caller recomputes continuous values exactly).
    if raw == "Optimal" and solution_status == pulp.LpSolutionOptimal:
        status = "optimal"
    elif raw == "Infeasible":
        status, x = "infeasible", None
    elif x is not None and solution_status == pulp.LpSolutionIntegerFeasible:
        status = "time_limit"
    else:
        status, x = ("time_limit" if raw == "Not Solved" else "error"), None
    objective = None if x is None else problem.objective(x)
    return SolverOutcome(status=status, raw_status=raw, x=x, objective=objective,
                         bound=_cbc_bound(log_text, objective, gap), seconds=seconds)


def _cbc_bound(log_text: str, objective: float | None, gap: float) -> float | None:
    """CBC's best bound, read from its log and shifted by the objective constant; None when it printed none.

    CBC prints ``Objective value:`` and ``Lower bound:`` in the same (its own) units;
    their difference is applied to our `objective`, so the constant PuLP folds into
    the model cancels.
    """
    found = {key: float(value) for key, value in re.findall(r"^(Objective value|Lower bound):\s*(\S+)", log_text, re.M)
             if _is_float(value)}
    if objective is None or "Objective value" not in found:
        return None
    if "Lower bound" not in found:
        # A search that ran to completion prints no bound: it proved the objective within its gap tolerance.
        if "Result - Optimal solution found" not in log_text or "within gap tolerance" in log_text:
            return None
        return objective - gap * abs(objective)
    bound = objective - (found["Objective value"] - found["Lower bound"])
    return bound if math.isfinite(bound) else None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- SCIP through OR-Tools
def _ortools(problem: LinearProblem, time_limit, gap, threads, start) -> SolverOutcome:
    # OR-Tools bundles its own HiGHS, whose symbols clash with highspy's when both are
    # loaded in one process (google/or-tools#5246), so SCIP runs in a fresh interpreter.
    import pickle
    import subprocess
    import sys

    worker = "from placement.solvers.backends import _ortools_worker; _ortools_worker()"
    # the limit as an end on the wall clock: the worker's start-up and model building count against it
    payload = pickle.dumps((problem, None if time_limit is None else time.time() + float(time_limit), gap, threads, start))
    timeout_s = None if time_limit is None else float(time_limit) + OVERRUN_GRACE_S + INTERRUPT_GRACE_S
    try:
        done = subprocess.run([sys.executable, "-c", worker], input=payload, capture_output=True, check=False,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:  # SCIP inside a step that checks no limit: the worker was killed
        return SolverOutcome("time_limit", "stopped past the time limit", None, None, None, timeout_s)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        if message and "SolverNotInstalledError" in message[-1]:
            raise SolverNotInstalledError(message[-1].split(":", 1)[-1].strip())
        return SolverOutcome("error", f"worker exit {done.returncode}: {message[-1] if message else ''}", None, None, None, 0.0)
    return pickle.loads(done.stdout)


def _ortools_worker() -> None:
    """Entry of the fresh interpreter: a pickled problem on stdin, a pickled outcome on stdout."""
    import pickle
    import sys

    outcome = _ortools_here(*pickle.loads(sys.stdin.buffer.read()))
    sys.stdout.buffer.write(pickle.dumps(outcome))


def _ortools_here(problem: LinearProblem, end_time, gap, threads, start) -> SolverOutcome:
    try:
        from ortools.linear_solver import pywraplp
    except ImportError as exc:  # pragma: no cover
        raise SolverNotInstalledError("the MILP solver 'ortools' needs OR-Tools: pip install ortools") from exc
    solver = pywraplp.Solver.CreateSolver("SCIP")
    if solver is None:
        raise SolverNotInstalledError("OR-Tools was built without SCIP; the 'ortools' MILP solver needs it")
    infinity = solver.infinity()
    finite = lambda v: v if math.isfinite(v) else (infinity if v > 0 else -infinity)  # noqa: E731
    columns = [
        (solver.IntVar if integer else solver.NumVar)(finite(lo), finite(hi), f"x{j}")
        for j, (lo, hi, integer) in enumerate(zip(problem.col_lower, problem.col_upper, problem.integer))
    ]
    csr = problem.matrix
    for i in range(csr.shape[0]):
        row = solver.RowConstraint(finite(problem.row_lower[i]), finite(problem.row_upper[i]), "")
        for j, v in zip(csr.indices[csr.indptr[i]:csr.indptr[i + 1]], csr.data[csr.indptr[i]:csr.indptr[i + 1]]):
            row.SetCoefficient(columns[j], float(v))
    objective = solver.Objective()
    for j, c in enumerate(problem.cost):
        if c:
            objective.SetCoefficient(columns[j], float(c))
    objective.SetOffset(problem.offset)
    objective.SetMinimization()
    if end_time is not None:  # what the start-up and building left (`end_time`: a `time.time` value)
        solver.SetTimeLimit(max(1, int((end_time - time.time()) * 1000)))
    if threads is not None:
        solver.SetNumThreads(int(threads))
    if start is not None:
        integer_columns = [j for j in range(len(columns)) if problem.integer[j]]
        solver.SetHint([columns[j] for j in integer_columns], [float(round(start[j])) for j in integer_columns])
    parameters = pywraplp.MPSolverParameters()
    parameters.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, gap)
    began = time.perf_counter()
    code = solver.Solve(parameters)
    seconds = time.perf_counter() - began
    names = {pywraplp.Solver.OPTIMAL: "OPTIMAL", pywraplp.Solver.FEASIBLE: "FEASIBLE", pywraplp.Solver.INFEASIBLE: "INFEASIBLE",
             pywraplp.Solver.UNBOUNDED: "UNBOUNDED", pywraplp.Solver.ABNORMAL: "ABNORMAL", pywraplp.Solver.NOT_SOLVED: "NOT_SOLVED"}
    raw = names.get(code, str(code))
    status = {"OPTIMAL": "optimal", "FEASIBLE": "time_limit", "INFEASIBLE": "infeasible", "NOT_SOLVED": "time_limit"}.get(raw, "error")
    x = np.array([c.solution_value() for c in columns]) if raw in ("OPTIMAL", "FEASIBLE") else None
    bound = objective.BestBound() if x is not None else None
    return SolverOutcome(status=status, raw_status=raw, x=x, objective=None if x is None else problem.objective(x),
                         bound=None if bound is None or not math.isfinite(bound) else float(bound), seconds=seconds,
                         nodes=int(solver.nodes()) if x is not None else 0)
