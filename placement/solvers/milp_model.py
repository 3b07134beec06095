"""The MILP formulation of head-level placement over the generation (docs/milp.md).

Variables and constraint families are named after the math in docs/milp.md. The
formulation follows the shared evaluator term by term, so that its objective, once
each token block is exact, equals the evaluator's total latency for the plan it
encodes. Two formulations build the same problem:

- ``counts`` (default): the groups of a layer are interchangeable, so an integer
  ``n[k,l,m]`` counts those on device ``m``; products of decisions are bounded below
  with their exact coefficients (no big-M guesses); migration is a transport of
  groups between devices; identical devices are ordered by load.
- ``per-group``: one binary per (group, device), with explicit product variables:
  the naive formulation, kept to measure what ``counts`` gains.

Tokens of an interval are gathered into blocks whose costs are summed. A block's
chain constraint ``A ≥ Σ_{S∈block} chain_m(S)`` is a relaxation of the evaluator's
``Σ_S max_m chain_m(S)`` (a sum of maxima is at least the maximum of sums), exact when
one device is the slowest for every token of the block; `placement.solvers.milp`
splits blocks until every block is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from placement.cost.tables import (
    block_memory, heads_share_memory, phase_totals, prefill_step_costs, step_costs, transfer_times, usable_bytes,
)
from placement.instance import Instance
from placement.plan import Placement
from placement.solvers.linear import LinearProblem, ProblemBuilder
from placement.solvers.milp_experts import (
    ExpertChoice, expert_choice, expert_memory_terms, expert_migration, expert_phase_terms, places_experts,
)

__all__ = ["Phase", "Formulation", "build_formulation", "identical_devices", "phase_terms", "output_routes",
           "profile_sends_input", "SECONDS_PER_UNIT", "model_columns", "skip_reason", "finishing_reserve_s"]

# The model measures time in milliseconds: latencies of a few microseconds then stay
# well above the solvers' feasibility and optimality tolerances (about 1e-7), which
# they would not in seconds.
SECONDS_PER_UNIT = 1e-3


# Columns of the per-layer MILP that HiGHS gets through per second of its time limit before
# the first improvement over a warm start, measured on the loaded 2-core VM: the 570k-column
# model of large/llama-3.1-8b-16dev-eth had not finished its root LP after 85 s (docs/milp.md,
# "Model size"). A model larger than this rate times the time left is not built.
SOLVE_COLUMNS_PER_S = 2e3
# Models up to this size build in well under a second and HiGHS keeps to its time limit on
# them: they are always built, whatever the time left.
ALWAYS_BUILT_COLUMNS = 2e5
# Columns per second of the work after the solve (the LP that recomputes the continuous
# columns, reading the plan, the evaluator): 570k columns took about 10 s there.
FINISH_COLUMNS_PER_S = 5e4


def model_columns(instance: Instance, intervals: list[int]) -> int:
    """Columns of the ``counts`` formulation over `intervals`, counted from its families without building it.

    Placement variables ``n, y, p, f`` (``4·L·N`` per interval), ``e, h, t`` (``3N``), the
    products ``psi, omega, nu, kappa`` (``4·L·N²``; no ``psi`` when the input does not
    travel), the count choices ``lam`` (``L·N²·K`` when some pair's route depends on the
    size), the two ends (``2N²``), and per interval boundary
    the moves (``L·N²`` of groups, ``2·(L+1)·N(N−1)`` of whole blocks). The stage variables
    (a few per layer and phase) are left out.

    Parameters
    ----------
    instance : Instance
    intervals : list of int

    Returns
    -------
    int
        Columns, within a few per cent of the built model's (tests check it).
    """
    I, L, K, N = len(intervals), instance.model.layers, instance.model.kv_heads, instance.n_devices
    _, varies = output_routes(instance)
    products = 4 if profile_sends_input(instance) else 3  # psi only when the layer input travels
    per_interval = 4 * L * N + 3 * N + products * L * N * N + (L * N * N * K if varies.any() else 0) + 2 * N * N
    boundaries = I - 1 if intervals[0] == 0 else I
    return I * per_interval + boundaries * (L * N * N + 2 * (L + 1) * N * (N - 1))


def skip_reason(instance: Instance, intervals: list[int], remaining_s: float | None) -> str | None:
    """Why the per-layer MILP is not worth building in the time left, or None when it is.

    Parameters
    ----------
    instance : Instance
    intervals : list of int
    remaining_s : float or None
        Seconds left of the call's time limit (None: no limit, always built).

    Returns
    -------
    str or None
        One line naming the model's size and the time it would need (`SOLVE_COLUMNS_PER_S`);
        None for models of at most `ALWAYS_BUILT_COLUMNS` columns.
    """
    if remaining_s is None:
        return None
    columns = model_columns(instance, intervals)
    needed = columns / SOLVE_COLUMNS_PER_S
    if columns <= ALWAYS_BUILT_COLUMNS or needed <= remaining_s:
        return None
    return (f"the per-layer MILP would have about {columns:,} columns, which needs about {needed:.0f} s before "
            f"HiGHS improves on a warm start; {remaining_s:.0f} s were left, so it was not built")


def finishing_reserve_s(instance: Instance, intervals: list[int]) -> float:
    """Seconds to keep free after the MILP's solve for the work that reads and checks its solution.

    Parameters
    ----------
    instance : Instance
    intervals : list of int

    Returns
    -------
    float
        `model_columns` over `FINISH_COLUMNS_PER_S`, seconds.
    """
    return model_columns(instance, intervals) / FINISH_COLUMNS_PER_S


@dataclass(frozen=True, eq=False)
class Phase:
    """Tokens whose costs are summed in the model: the prefill, or a block of decode steps of one interval."""

    interval: int  # position in the formulation's intervals
    steps: np.ndarray | None  # decode step indices (0-based); None for the prefill


@dataclass(eq=False)
class Formulation:
    """A built problem with the maps needed to read a plan out of a solution."""

    problem: LinearProblem
    intervals: list[int]  # instance interval indices covered, in order
    phases: list[Phase]
    phase_cost: list[tuple[np.ndarray, np.ndarray]]  # per phase: columns and coefficients of its objective terms
    migration_cost: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    experts: ExpertChoice | None = None  # the MoE layers' holding patterns (placement.solvers.milp_experts)


def identical_devices(instance: Instance) -> list[list[int]]:
    """Classes of devices that are interchangeable: same figures, same routes to every other device."""
    devices, cluster = instance.devices, instance.cluster
    lat, bw = cluster.candidate_latency_s, cluster.candidate_bandwidth_bytes_per_s  # (B, N, N): every route
    N = len(devices)

    def figures(d):
        return (d.memory_bytes, d.peak_flops_per_s, d.memory_bandwidth_bytes_per_s, d.compute_efficiency,
                d.memory_efficiency, d.reserved_bytes, d.disk_bandwidth_bytes_per_s, d.block_overhead_s)

    classes: list[list[int]] = []
    for m in range(N):
        for group in classes:
            a = group[0]
            swap = np.arange(N)
            swap[[a, m]] = [m, a]
            if figures(devices[a]) == figures(devices[m]) and np.array_equal(lat, lat[:, swap][:, :, swap]) \
                    and np.array_equal(bw, bw[:, swap][:, :, swap]):
                group.append(m)
                break
        else:
            classes.append([m])
    return [c for c in classes if len(c) > 1]


def profile_sends_input(instance: Instance) -> bool:
    """Whether the layer input travels to the group devices (not in ``kafetzis2025``, whose heads get it free)."""
    return instance.workload.profile != "kafetzis2025"


def output_routes(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """The route the head outputs take between every pair of devices, and where it depends on their size.

    A device with ``c`` groups of a layer sends one message of ``c`` groups' outputs; its
    route is the fastest for that size (`Cluster.route_index`), so it may change with
    ``c`` and, when sizes grow with the context, with the step.

    Returns
    -------
    route : ndarray of int, shape (N, N)
        The candidate route (`Cluster.candidate_latency_s`) of the smallest message.
    varies : ndarray of bool, shape (N, N)
        Pairs whose route differs between message sizes: the MILP charges them by count.
    """
    K, precision = instance.model.kv_heads, instance.precision
    per_group = np.concatenate([np.ravel(prefill_step_costs(instance, precision).group_out_bytes),
                                np.ravel(step_costs(instance, precision, instance.workload.contexts()).group_out_bytes)])
    sizes = np.unique(per_group[:, None] * np.arange(1, K + 1))
    choice = instance.cluster.route_index(sizes[sizes > 0] if (sizes > 0).any() else sizes[:1])
    off = ~np.eye(instance.n_devices, dtype=bool)
    return choice[0], (choice != choice[0]).any(axis=0) & off


def phase_terms(instance: Instance, phase: Phase, route: np.ndarray, varies: np.ndarray):
    """Summed costs of a phase: block times (L, N) / (N,), transfer time matrices (N, N).

    Head outputs between a pair whose route does not depend on the size cost
    ``out_latency + c · out_per_group`` for ``c`` groups; ``out_by_count`` (K+1, N, N)
    gives the others by count (`output_routes`).

    Parameters
    ----------
    instance : Instance
    phase : Phase
        The prefill (``steps`` None) or a block of decode steps.
    route, varies : ndarray
        From `output_routes`.

    Returns
    -------
    dict
        ``group``, ``proj``, ``ffn`` (L, N); ``embed``, ``lm`` (N,); ``t_in``, ``t_hidden``,
        ``t_lm``, ``t_token``, ``out_latency``, ``out_per_group`` (N, N); ``out_by_count``
        (K+1, N, N): milliseconds summed over the phase's tokens; ``sum_gather`` (bool).
    """
    precision = instance.precision
    if phase.steps is None:
        costs = prefill_step_costs(instance, precision)
        steps = 1
    else:
        costs = step_costs(instance, precision, instance.workload.contexts()[phase.steps])
        steps = len(phase.steps)
    cluster = instance.cluster
    t = phase_totals(instance, costs)
    out_bytes = np.broadcast_to(np.asarray(costs.group_out_bytes, dtype=float), (steps,))
    fixed = ~np.eye(instance.n_devices, dtype=bool) & ~varies
    latency = np.take_along_axis(cluster.candidate_latency_s, route[None], axis=0)[0]
    bandwidth = np.take_along_axis(cluster.candidate_bandwidth_bytes_per_s, route[None], axis=0)[0]
    out_latency = np.where(fixed, latency * np.count_nonzero(out_bytes > 0), 0.0)
    out_per_group = np.where(fixed, out_bytes.sum() / bandwidth, 0.0)
    K = instance.model.kv_heads
    by_count = np.zeros((K + 1,) + varies.shape)
    if varies.any():
        sent = transfer_times(cluster, (out_bytes[:, None] * np.arange(K + 1)).ravel())
        by_count = np.where(varies, sent.reshape(steps, K + 1, *varies.shape).sum(axis=0), 0.0)
    times = dict(
        group=t.group_s, proj=t.projection_s, ffn=t.ffn_s, embed=t.embed_s, lm=t.lm_head_s,
        t_in=t.layer_in_s, t_hidden=t.hidden_s, t_lm=t.lm_head_in_s,
        t_token=t.token_s, out_latency=out_latency, out_per_group=out_per_group, out_by_count=by_count,
    )
    return {**{key: value / SECONDS_PER_UNIT for key, value in times.items()}, "sum_gather": costs.sum_gather}


def build_formulation(
    instance: Instance,
    intervals: list[int],
    blocks: dict[int, list[np.ndarray]],
    *,
    current: Placement | None = None,
    allowed: dict[str, np.ndarray] | None = None,
    formulation: str = "counts",
    break_symmetry: bool = True,
    memory_margin: np.ndarray | None = None,
    expert_holdings: np.ndarray | None = None,
) -> Formulation:
    """Build the MILP over `intervals` of `instance`.

    Parameters
    ----------
    instance : Instance
    intervals : list of int
        Instance interval indices, consecutive (all of them for ``horizon`` mode,
        one for ``interval`` mode). The prefill is included when interval 0 is.
    blocks : dict of int to list of ndarray
        For each interval, the decode steps (0-based) of each token block.
    current : Placement, optional
        The placement before the first interval (``interval`` mode): migration into
        the first interval is charged from it.
    allowed : dict of str to ndarray, optional
        Boolean masks of allowed devices: ``attention``, ``projection``, ``ffn`` (L, N),
        ``embed``, ``lm_head`` (N,), and ``pin_attention`` (L, N): all groups there.
    formulation : {"counts", "per-group"}
    break_symmetry : bool
        Order identical devices by load in the first interval (``counts`` only).
    memory_margin : ndarray, optional
        Bytes kept free on each device in each interval (len(intervals), N), to keep
        a solver's tolerance from packing a few bytes over a device's memory.
    expert_holdings : ndarray of int, shape (M, N), optional
        Holdings added to the MoE layers' pattern space (`placement.solvers.milp_experts`).

    Returns
    -------
    Formulation
    """
    allowed = allowed or {}
    v = _placement_variables(instance, intervals, allowed, formulation)
    if places_experts(instance, formulation):
        v.experts = expert_choice(v.b, instance, v.f, allowed.get("ffn"), expert_holdings)
    _assignment(v, allowed)
    _hosts(v)
    _memory(v, memory_margin)
    if break_symmetry and formulation == "counts" and current is None and not allowed:
        _symmetry(v)
    route, varies = output_routes(instance)
    products = [_interval_products(v, kk, varies) for kk in range(len(intervals))]
    phases = ([Phase(0, None)] if intervals[0] == 0 else []) + [
        Phase(kk, steps) for kk, k in enumerate(intervals) for steps in blocks[k]
    ]
    phase_cost = []
    for index_phase, phase in enumerate(phases):
        phase_cost.append(_phase_latency(v, f"phase{index_phase}", phase, products[phase.interval], route, varies))
        if v.experts is not None:  # each MoE layer's placed experts in place of its whole FFN block
            extra = expert_phase_terms(v.experts, instance, phase.interval, phase.steps, SECONDS_PER_UNIT)
            phase_cost[-1] = tuple(np.concatenate(pair) for pair in zip(phase_cost[-1], extra))
        v.b.add_cost(*phase_cost[-1])
    migration_cost = [_migration(v, kk, current) for kk in range(len(intervals))
                      if not (intervals[kk] == 0 or (kk == 0 and current is None))]
    return Formulation(problem=v.b.build(), intervals=list(intervals), phases=phases, phase_cost=phase_cost,
                       migration_cost=migration_cost, experts=v.experts)


@dataclass(eq=False)
class _Model:
    """The problem being written: the builder and the placement variables (column indices)."""

    instance: Instance
    intervals: list[int]
    formulation: str
    b: ProblemBuilder
    n: np.ndarray | None  # (I, L, N) groups per device (counts formulation)
    x: np.ndarray | None  # (I, L, K, N) group g on device m (per-group formulation)
    n_terms: np.ndarray  # (I, L, N, ·): columns whose sum is the number of groups
    y: np.ndarray  # (I, L, N) the device runs a group of the layer
    p: np.ndarray  # (I, L, N) projection
    f: np.ndarray  # (I, L, N) FFN
    e: np.ndarray  # (I, N) embed
    h: np.ndarray  # (I, N) lm_head
    experts: ExpertChoice | None = None  # holding patterns of the MoE layers

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """I, L, K, N."""
        model = self.instance.model
        return len(self.intervals), model.layers, model.kv_heads, self.instance.n_devices

    def sum_n(self, index_arrays, coef) -> tuple[np.ndarray, np.ndarray]:
        """Columns and coefficients of coef·n for rows given by index arrays into (I, L, N)."""
        cols = self.n_terms[index_arrays]
        return cols, np.broadcast_to(np.asarray(coef, dtype=float)[..., None], cols.shape)


def _placement_variables(instance: Instance, intervals: list[int], allowed: dict, formulation: str) -> _Model:
    I, L, K, N = len(intervals), instance.model.layers, instance.model.kv_heads, instance.n_devices
    b = ProblemBuilder()
    att_ok = allowed.get("attention", np.ones((L, N), bool))
    upper_n = np.where(att_ok, K, 0)[None].repeat(I, axis=0)
    n = x = None
    if formulation == "counts":
        n = b.variables("n", (I, L, N), upper=upper_n, integer=True)
        n_terms = n[..., None]  # (I, L, N, 1): columns whose sum is n
    elif formulation == "per-group":
        x = b.variables("x", (I, L, K, N), upper=np.broadcast_to(att_ok[None, :, None, :], (I, L, K, N)), integer=True)
        n_terms = x.transpose(0, 1, 3, 2)  # (I, L, N, K)
    else:
        raise ValueError(f"unknown formulation {formulation!r}")
    ones = lambda key, shape: np.broadcast_to(allowed.get(key, True), shape).astype(float)  # noqa: E731
    return _Model(
        instance, list(intervals), formulation, b, n, x, n_terms,
        y=b.variables("y", (I, L, N), upper=np.where(att_ok, 1, 0)[None].repeat(I, axis=0), integer=True),
        p=b.variables("p", (I, L, N), upper=ones("projection", (I, L, N)), integer=True),
        f=b.variables("f", (I, L, N), upper=ones("ffn", (I, L, N)), integer=True),
        e=b.variables("e", (I, N), upper=ones("embed", (I, N)), integer=True),
        h=b.variables("h", (I, N), upper=ones("lm_head", (I, N)), integer=True),
    )


def _assignment(v: _Model, allowed: dict) -> None:
    """Every group placed once; one device for each whole block; pinned layers' groups where pinned."""
    b, (I, L, K, N) = v.b, v.sizes
    if v.formulation == "counts":
        b.constraints("assign_groups", v.n.reshape(I * L, N), 1.0, lower=K, upper=K)
    else:
        b.constraints("assign_groups", v.x.reshape(I * L * K, N), 1.0, lower=1, upper=1)
    for name, var in (("assign_projection", v.p), ("assign_ffn", v.f)):
        b.constraints(name, var.reshape(I * L, N), 1.0, lower=1, upper=1)
    b.constraints("assign_embed", v.e, 1.0, lower=1, upper=1)
    b.constraints("assign_lm_head", v.h, 1.0, lower=1, upper=1)
    pin = allowed.get("pin_attention")
    if pin is not None:
        kk, ll, mm = np.nonzero(np.broadcast_to(pin, (I, L, N)))
        cols, coefs = v.sum_n((kk, ll, mm), np.ones(len(kk)))
        b.constraints("pin_attention", cols, coefs, lower=K, upper=K)


def _hosts(v: _Model) -> None:
    """y = 1 exactly when the device runs a group of the layer."""
    b, (I, L, K, N) = v.b, v.sizes
    index = np.indices((I, L, N)).reshape(3, -1)
    cols, coefs = v.sum_n(tuple(index), -np.ones(index.shape[1]))
    b.constraints("host_lower", np.concatenate([v.y.reshape(-1, 1), cols], 1),
                  np.concatenate([np.full((cols.shape[0], 1), K), coefs], 1), lower=0)
    b.constraints("host_upper", np.concatenate([v.y.reshape(-1, 1), cols], 1),
                  np.concatenate([np.ones((cols.shape[0], 1)), coefs], 1), upper=0)


def _memory(v: _Model, memory_margin: np.ndarray | None) -> None:
    """Memory at the largest context of each interval; tied embeddings shared when together."""
    b, (I, L, _, N), instance = v.b, v.sizes, v.instance
    p, f, e, h = v.p, v.f, v.e, v.h
    tied = heads_share_memory(instance.model, instance.precision)
    t = b.variables("t", (I, N), upper=1.0) if tied else None
    # Each device's row is in units of its own memory, so a solver's feasibility
    # tolerance is a fraction of that memory (see `memory_margin`).
    usable = usable_bytes(instance)
    margin = np.zeros((I, N)) if memory_margin is None else memory_margin
    s_max = instance.workload.interval_max_context()[v.intervals]
    for kk in range(I):
        memory = block_memory(instance, instance.precision, s_max[kk:kk + 1])
        rows_cols, rows_coefs = [], []
        moved = None if v.experts is None else expert_memory_terms(v.experts, instance, memory.expert[0], kk)
        for m in range(N):
            c_n, k_n = v.sum_n((np.full(L, kk), np.arange(L), np.full(L, m)), memory.group[0])
            cols = [c_n.ravel(), p[kk, :, m], f[kk, :, m], [e[kk, m]], [h[kk, m]]]
            coefs = [k_n.ravel(), memory.projection[0], memory.ffn[0], memory.embed, memory.lm_head]
            if tied:
                cols.append([t[kk, m]])
                coefs.append(-memory.embed)
            if v.experts is not None:
                cols.append(moved[0][m]), coefs.append(moved[1][m])
            rows_cols.append(np.concatenate(cols))
            rows_coefs.append(np.concatenate(coefs))
        b.constraints(f"memory{kk}", np.array(rows_cols), np.array(rows_coefs) / usable[:, None],
                      upper=(usable - margin[kk]) / usable)
        if tied:
            b.constraints(f"tied_embed{kk}", np.stack([t[kk], e[kk]], 1), np.array([1.0, -1.0]), upper=0)
            b.constraints(f"tied_lm_head{kk}", np.stack([t[kk], h[kk]], 1), np.array([1.0, -1.0]), upper=0)


def _symmetry(v: _Model) -> None:
    """Identical devices ordered by load in the first interval."""
    _, L, K, _ = v.sizes
    for group in identical_devices(v.instance):
        for a, c in zip(group, group[1:]):
            load = lambda m: np.concatenate([v.n[0, :, m], v.p[0, :, m], v.f[0, :, m], [v.e[0, m], v.h[0, m]]])  # noqa: E731
            weights = np.concatenate([np.ones(L), np.full(L, K), np.full(L, K), [K, K]])
            v.b.constraints("symmetry", np.concatenate([load(a), load(c)])[None],
                            np.concatenate([weights, -weights])[None], lower=0)


def _joint(b: ProblemBuilder, name: str, joint: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
    """`joint` (L, N, N) is a transport with margins `first` (L, N) and `second` (L, N)."""
    L, N = first.shape
    b.constraints(f"{name}.first", np.concatenate([joint.reshape(L * N, N), first.reshape(-1, 1)], 1),
                  np.concatenate([np.ones((L * N, N)), -np.ones((L * N, 1))], 1), lower=0, upper=0)
    b.constraints(f"{name}.second", np.concatenate([joint.transpose(0, 2, 1).reshape(L * N, N), second.reshape(-1, 1)], 1),
                  np.concatenate([np.ones((L * N, N)), -np.ones((L * N, 1))], 1), lower=0, upper=0)


def _interval_products(v: _Model, kk: int, varies: np.ndarray) -> dict[str, np.ndarray]:
    """Products of placements of interval `kk`.

    Each product of two one-of-N choices is a joint distribution whose margins are the
    choices (psi: input holder × group device, omega/nu: group device × projection,
    kappa: projection × FFN, and the two ends). Exact for integral placements, and a
    much tighter relaxation than bounding each product alone.
    """
    b, (_, L, K, N) = v.b, v.sizes
    y, p, f, e, h = v.y, v.p, v.f, v.e, v.h
    ll3, aa3, bb3 = (a.ravel() for a in np.indices((L, N, N)))
    src = np.concatenate([e[kk][None], f[kk][:-1]], 0)  # (L, N): where each layer's input is
    prod: dict[str, np.ndarray] = {}
    if profile_sends_input(v.instance):
        psi = prod["psi"] = b.variables(f"psi{kk}", (L, N, N), upper=1.0)  # [l, u (holder), m (group device)]
        b.constraints(f"psi{kk}.group", np.concatenate([psi.transpose(0, 2, 1).reshape(L * N, N), y[kk].reshape(-1, 1)], 1),
                      np.concatenate([np.ones((L * N, N)), -np.ones((L * N, 1))], 1), lower=0, upper=0)
        b.constraints(f"psi{kk}.holder", np.stack([psi[ll3, aa3, bb3], src[ll3, aa3]], 1), np.array([1.0, -1.0]), upper=0)
    omega = prod["omega"] = b.variables(f"omega{kk}", (L, N, N), upper=1.0)  # [l, m (group device), q (projection)]
    nu = prod["nu"] = b.variables(f"nu{kk}", (L, N, N), upper=K)  # groups of m whose outputs go to q
    b.constraints(f"omega{kk}.group", np.concatenate([omega.reshape(L * N, N), y[kk].reshape(-1, 1)], 1),
                  np.concatenate([np.ones((L * N, N)), -np.ones((L * N, 1))], 1), lower=0, upper=0)
    b.constraints(f"omega{kk}.projection", np.stack([omega[ll3, aa3, bb3], p[kk, ll3, bb3]], 1), np.array([1.0, -1.0]), upper=0)
    cols, coefs = v.sum_n((np.full(L * N, kk), *np.indices((L, N)).reshape(2, -1)), -np.ones(L * N))
    b.constraints(f"nu{kk}.group", np.concatenate([nu.reshape(L * N, N), cols], 1),
                  np.concatenate([np.ones((L * N, N)), coefs], 1), lower=0, upper=0)
    b.constraints(f"nu{kk}.projection", np.concatenate([nu.transpose(0, 2, 1).reshape(L * N, N), p[kk].reshape(-1, 1)], 1),
                  np.concatenate([np.ones((L * N, N)), np.full((L * N, 1), -K)], 1), lower=0, upper=0)
    b.constraints(f"nu{kk}.omega", np.stack([nu[ll3, aa3, bb3], omega[ll3, aa3, bb3]], 1), np.array([1.0, -K]), upper=0)
    if varies.any():
        prod["lam"] = _count_choices(v, kk, omega, nu, varies)
    prod["kappa"] = b.variables(f"kappa{kk}", (L, N, N), upper=1.0)  # [l, q (projection), v (FFN)]
    _joint(b, f"kappa{kk}", prod["kappa"], p[kk], f[kk])
    for label, first, second in (("lm", f[kk, L - 1], h[kk]), ("token", h[kk], e[kk])):
        prod[label] = b.variables(f"{label}{kk}", (N, N), upper=1.0)
        _joint(b, f"{label}{kk}", prod[label][None], first[None], second[None])
    return prod


def _count_choices(v: _Model, kk: int, omega: np.ndarray, nu: np.ndarray, varies: np.ndarray) -> np.ndarray:
    """lam[l, m, q, c-1] = 1: m sends its c groups' outputs to q (pairs whose route depends on c).

    Binary: the time of c groups is concave in c, so a fractional mix of counts would undercut it.
    """
    b, (_, L, K, N) = v.b, v.sizes
    lam = b.variables(f"lam{kk}", (L, N, N, K), upper=np.broadcast_to(varies[..., None], (L, N, N, K)).astype(float),
                      integer=True)
    lv, mv, qv = (a.ravel() for a in np.nonzero(np.broadcast_to(varies, (L, N, N))))
    b.constraints(f"lam{kk}.omega", np.concatenate([lam[lv, mv, qv], omega[lv, mv, qv][:, None]], 1),
                  np.concatenate([np.ones((len(lv), K)), -np.ones((len(lv), 1))], 1), lower=0, upper=0)
    b.constraints(f"lam{kk}.nu", np.concatenate([lam[lv, mv, qv], nu[lv, mv, qv][:, None]], 1),
                  np.concatenate([np.broadcast_to(np.arange(1.0, K + 1), (len(lv), K)), -np.ones((len(lv), 1))], 1),
                  lower=0, upper=0)
    return lam


def _phase_latency(v: _Model, name: str, phase: Phase, prod: dict, route: np.ndarray,
                   varies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The latency of one phase: columns and coefficients of its objective terms (and its stage rows)."""
    b, (_, L, K, N) = v.b, v.sizes
    kk, shared = phase.interval, v.instance.cluster.network == "shared"
    needs_input = profile_sends_input(v.instance)
    terms = phase_terms(v.instance, phase, route, varies)
    objective_cols: list[np.ndarray] = []
    objective_coefs: list[np.ndarray] = []

    def cost(cols, coefs) -> None:
        cols = np.asarray(cols)
        objective_cols.append(cols.ravel())
        objective_coefs.append(np.broadcast_to(np.asarray(coefs, dtype=float), cols.shape).ravel())

    A = b.variables(f"{name}.A", (L,))
    cost(A, 1.0)
    cost(v.p[kk], terms["proj"])  # whole projection after the groups
    cost(v.f[kk], terms["ffn"])
    cost(v.e[kk], terms["embed"])
    cost(v.h[kk], terms["lm"])
    cost(prod["kappa"], np.broadcast_to(terms["t_hidden"], (L, N, N)))  # projection output to the FFN
    cost(prod["lm"], terms["t_lm"])
    cost(prod["token"], terms["t_token"])

    # per (l, m): receive = Σ_u t_in[u, m] psi[l, u, m]; send = Σ_q lat[m, q] omega + per_group[m, q] nu
    recv_cols = prod["psi"].transpose(0, 2, 1) if needs_input else None  # (L, N_m, N_u)
    recv_coefs = np.broadcast_to(terms["t_in"].T, (L, N, N)) if needs_input else None
    send_cols = np.concatenate([prod["omega"], prod["nu"]], axis=2)  # (L, N_m, 2N)
    send_coefs = np.broadcast_to(np.concatenate([terms["out_latency"], terms["out_per_group"]], axis=1), (L, N, 2 * N))
    if varies.any():  # + Σ_{q, c} out_by_count[c, m, q] lam[l, m, q, c-1]
        send_cols = np.concatenate([send_cols, prod["lam"].reshape(L, N, N * K)], axis=2)
        by_count = terms["out_by_count"][1:].transpose(1, 2, 0).reshape(N, N * K)
        send_coefs = np.concatenate([send_coefs, np.broadcast_to(by_count, (L, N, N * K))], axis=2)
    ll, m = np.repeat(np.arange(L), N), np.tile(np.arange(N), L)
    n_cols, n_coefs = v.sum_n((np.full(len(ll), kk), ll, m), -terms["group"][ll, m])  # group time over the tokens
    if shared or terms["sum_gather"]:
        b.constraints(f"{name}.compute", np.concatenate([A[ll][:, None], n_cols], 1),
                      np.concatenate([np.ones((len(ll), 1)), n_coefs], 1), lower=0)
        cost(send_cols, send_coefs)
        if needs_input and shared:
            cost(recv_cols, recv_coefs)
        elif needs_input:
            slowest = b.variables(f"{name}.recv_max", (L,))
            b.constraints(f"{name}.receive_max", np.concatenate([slowest[ll][:, None], recv_cols.reshape(L * N, N)], 1),
                          np.concatenate([np.ones((L * N, 1)), -recv_coefs.reshape(L * N, N)], 1), lower=0)
            cost(slowest, 1.0)
    else:  # switched: each group device is its own chain, the slowest one counts
        parts_cols = [A[ll][:, None], send_cols.reshape(L * N, -1), n_cols]
        parts_coefs = [np.ones((L * N, 1)), -send_coefs.reshape(L * N, -1), n_coefs]
        if needs_input:
            parts_cols.insert(1, recv_cols.reshape(L * N, N))
            parts_coefs.insert(1, -recv_coefs.reshape(L * N, N))
        b.constraints(f"{name}.chain", np.concatenate(parts_cols, 1), np.concatenate(parts_coefs, 1), lower=0)
    return np.concatenate(objective_cols), np.concatenate(objective_coefs)


def _pairs(N: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.array([(u, v) for u in range(N) for v in range(N) if u != v]).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def _migration(v: _Model, kk: int, current: Placement | None) -> tuple[np.ndarray, np.ndarray]:
    """Migration at the start of interval `kk`: its cost terms (and the rows that define the moves)."""
    b, (_, L, _, N), instance = v.b, v.sizes, v.instance
    workload, cluster = instance.workload, instance.cluster
    uu, vv = _pairs(N)
    k = v.intervals[kk]

    def move_time(nbytes) -> np.ndarray:  # one block per message, on its fastest route: (pairs, ...) units
        return np.moveaxis(cluster.message_time_s(np.asarray(nbytes, dtype=float))[..., uu, vv], -1, 0) / SECONDS_PER_UNIT

    memory = block_memory(instance, instance.precision, np.array([workload.prompt_tokens + k * workload.tau]))
    prev = None
    if kk == 0:  # interval mode: the previous placement is data
        prev = {"projection": current.projection.argmax(1), "ffn": current.ffn.argmax(1),
                "embed": current.embed, "lm_head": current.lm_head}
    group_cols, group_moves = _group_moves(v, kk, current, uu, vv)
    pair_cols, pair_coefs = [group_cols], [np.repeat(move_time(memory.group[0]), group_moves, axis=1)]
    # whole blocks: mu ≥ before_u + after_v − 1
    apart = 0.0 if v.experts is None else instance.model.experts * memory.expert[0]  # placed experts move alone
    for kind, var, nbytes in (("projection", v.p, memory.projection[0]), ("ffn", v.f, memory.ffn[0] - apart)):
        mu = b.variables(f"move{kk}.{kind}", (L, len(uu)), upper=1.0)
        ll, pp = (a.ravel() for a in np.indices((L, len(uu))))
        if kk == 0:
            keep = prev[kind][ll] == uu[pp]
            b.constraints(f"move{kk}.{kind}", np.stack([mu[ll, pp], var[kk, ll, vv[pp]]], 1)[keep], np.array([1.0, -1.0]), lower=0)
        else:
            b.constraints(f"move{kk}.{kind}", np.stack([mu[ll, pp], var[kk - 1, ll, uu[pp]], var[kk, ll, vv[pp]]], 1),
                          np.array([1.0, -1.0, -1.0]), lower=-1)
        pair_cols.append(mu.T)
        pair_coefs.append(move_time(nbytes))
    for kind, var, nbytes in (("embed", v.e, memory.embed[0]), ("lm_head", v.h, memory.lm_head[0])):
        mu = b.variables(f"move{kk}.{kind}", (len(uu),), upper=1.0)
        if kk == 0:
            keep = uu == prev[kind]
            b.constraints(f"move{kk}.{kind}", np.stack([mu, var[kk, vv]], 1)[keep], np.array([1.0, -1.0]), lower=0)
        else:
            b.constraints(f"move{kk}.{kind}", np.stack([mu, var[kk - 1, uu], var[kk, vv]], 1), np.array([1.0, -1.0, -1.0]), lower=-1)
        pair_cols.append(mu[:, None])
        pair_coefs.append(move_time(nbytes)[:, None])
    if v.experts is not None:
        for part, terms in zip((pair_cols, pair_coefs), expert_migration(b, v.experts, instance, kk, current,
                                                                           move_time(memory.expert[0]), (uu, vv))):
            part.append(terms)
    cols, coefs = np.concatenate(pair_cols, 1), np.concatenate(pair_coefs, 1)
    if cluster.network == "shared":  # every move follows the others
        b.add_cost(cols, coefs)
        return cols.ravel(), coefs.ravel()
    M = b.variables(f"move{kk}.time", (1,), cost=1.0)  # the slowest pair of devices
    b.constraints(f"move{kk}.pair", np.concatenate([np.full((len(uu), 1), M[0]), cols], 1),
                  np.concatenate([np.ones((len(uu), 1)), -coefs], 1), lower=0)
    return M, np.ones(1)


def _group_moves(v: _Model, kk: int, current: Placement | None, uu: np.ndarray, vv: np.ndarray) -> tuple[np.ndarray, int]:
    """Groups moving between each pair: a transport of counts (counts) or one move variable per group
    (per-group). Returns their columns (pairs, L·r) and r, the columns per layer (1 or K)."""
    b, (_, L, K, N) = v.b, v.sizes
    if v.formulation == "counts":
        flow = b.variables(f"move{kk}.groups", (L, N, N), upper=K, integer=True)
        out_rows = flow.reshape(L * N, N)
        if kk == 0:
            prev_counts = np.zeros((L, N))
            np.add.at(prev_counts, (np.arange(L)[:, None], current.attention), 1)
            b.constraints(f"move{kk}.leave", out_rows, 1.0, lower=prev_counts.ravel(), upper=prev_counts.ravel())
        else:
            b.constraints(f"move{kk}.leave", np.concatenate([out_rows, v.n[kk - 1].reshape(-1, 1)], 1),
                          np.concatenate([np.ones((L * N, N)), -np.ones((L * N, 1))], 1), lower=0, upper=0)
        in_rows = flow.transpose(0, 2, 1).reshape(L * N, N)
        b.constraints(f"move{kk}.arrive", np.concatenate([in_rows, v.n[kk].reshape(-1, 1)], 1),
                      np.concatenate([np.ones((L * N, N)), -np.ones((L * N, 1))], 1), lower=0, upper=0)
        return flow[:, uu, vv].T, 1  # (pairs, L)
    x = v.x
    moves = b.variables(f"move{kk}.groups", (L, K, len(uu)), upper=1.0)
    ll, gg, pp = (a.ravel() for a in np.indices((L, K, len(uu))))
    if kk == 0:
        src = current.attention[ll, gg] == uu[pp]
        b.constraints(f"move{kk}.group", np.stack([moves[ll, gg, pp], x[kk, ll, gg, vv[pp]]], 1)[src],
                      np.array([1.0, -1.0]), lower=0)
    else:
        b.constraints(f"move{kk}.group", np.stack([moves[ll, gg, pp], x[kk - 1, ll, gg, uu[pp]], x[kk, ll, gg, vv[pp]]], 1),
                      np.array([1.0, -1.0, -1.0]), lower=-1)
    return moves.transpose(2, 0, 1).reshape(len(uu), L * K), K
