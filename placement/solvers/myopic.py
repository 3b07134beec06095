"""Resource-aware myopic re-partitioning: Algorithm 1 of Kafetzis, Khalili, Koutsopoulos (arXiv 2505.02533).

Every re-decision interval the controller looks only at the current state (where
every block was in the previous interval, and what every block will need during
the coming interval) and places the blocks again, one at a time:

1. order the blocks by normalized demand, largest first:
   ``demand_i = mem_i / max_j M_j + min_j t_ij / T_ref`` (``t_ij``: the block's time on
   device j; ``T_ref``: one token of the whole model on the fastest device);
2. for each block, score every device that still has the memory for it (after the
   blocks already placed in this decision):
   ``S(i, j) = max(memory_ratio, compute_ratio, comm_ratio)`` (``scoring="max"``) or
   ``α·compute_ratio + β·memory_ratio + γ·comm_ratio`` (``scoring="weighted"``);
   a device is feasible when ``S(i, j) <= 1``;
3. put the block on the device with the lowest score.

The paper's text was not available; the algorithm follows its authors' public
simulator (``ResourceAwareDistributor``), as summarized in the project's notes.
Where the notes leave a choice open, `solve_myopic` says which one it makes.
The plan is judged by `placement.evaluate`, which also charges the migration of
every block that moves between intervals (an attention group with its KV cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from placement.cost.tables import block_memory, heads_share_memory, phase_tables, step_costs, transfer_times, usable_bytes
from placement.errors import InputError
from placement.instance import Instance
from placement.plan import Placement, Plan
from placement.result import Result, judged
from placement.solvers.online import check_current, run_online

__all__ = ["SCORINGS", "Decision", "decide", "solve_myopic"]

SCORINGS = ("max", "weighted")

# Block kinds, in the order a token meets them within a layer.
_EMBED, _GROUP, _PROJECTION, _FFN, _LM_HEAD = range(5)
# Scores this close to the best count as ties (then the block stays where it was).
_TIE = 1e-9


@dataclass(frozen=True, eq=False)
class Decision:
    """One myopic decision: the placement of one interval and how it was reached.

    Attributes
    ----------
    placement : Placement
        Whole blocks only (one-hot projection and FFN rows), the instance's precision.
    order : tuple of str
        The blocks in the order they were placed (largest demand first), named
        ``"embed"``, ``"attention[l,g]"``, ``"projection[l]"``, ``"ffn[l]"``, ``"lm_head"``.
    scores : ndarray, shape (blocks, N)
        Score of each block (rows in `order`) on each device when it was placed;
        ``inf`` where the device no longer had the memory for it.
    devices : ndarray of int, shape (blocks,)
        The device each block went to (rows in `order`).
    demand : ndarray, shape (blocks,)
        Normalized demand of each block (rows in `order`), dimensionless.
    fallbacks : tuple of str
        Blocks that no device could host with a score of at most 1: placed on the
        lowest score among the devices with memory.
    homeless : tuple of str
        Blocks that no device had the memory for: placed where they overflow least.
    memory_bytes : ndarray, shape (N,)
        What each device holds after the decision (the evaluator's peak memory of the interval).
    budget_s : float
        ``T_ref``, the per-token time that normalizes compute and transfer times, seconds.
    context : int
        The context at which memory and costs were taken (the interval's largest).
    """

    placement: Placement
    order: tuple[str, ...]
    scores: np.ndarray
    devices: np.ndarray
    demand: np.ndarray
    fallbacks: tuple[str, ...]
    homeless: tuple[str, ...]
    memory_bytes: np.ndarray
    budget_s: float
    context: int


# ----------------------------------------------------------------------------- options
def _check_scoring(scoring: str, weights: Sequence[float]) -> tuple[str, tuple[float, float, float]]:
    if not isinstance(scoring, str) or scoring.lower() not in SCORINGS:
        raise InputError(f"`scoring` must be one of {', '.join(map(repr, SCORINGS))}, got {scoring!r}")
    try:
        values = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        raise InputError(f"`weights` must be three numbers (alpha, beta, gamma), got {weights!r}") from None
    if len(values) != 3 or any(isinstance(w, bool) for w in weights):
        raise InputError(f"`weights` must be three numbers (alpha, beta, gamma), got {weights!r}")
    if not all(np.isfinite(values)) or min(values) < 0 or sum(values) == 0:
        raise InputError(f"`weights` (alpha, beta, gamma) must be finite, at least 0 and not all 0, got {values}")
    return scoring.lower(), values  # type: ignore[return-value]


def _check_forbid_source(instance: Instance, forbid_source: bool) -> None:
    if not isinstance(forbid_source, (bool, np.bool_)):
        raise InputError(f"`forbid_source` must be true or false, got {forbid_source!r}")
    if forbid_source and instance.n_devices < 2:
        raise InputError("`forbid_source` leaves no device: the instance has one; give it more devices, "
                         "or leave `forbid_source` off")


def _check_tau(instance: Instance, tau: int | None) -> int:
    workload = instance.workload
    if tau is None:
        return workload.tau
    if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)) or tau < 1:
        raise InputError(f"`tau` must be a whole number of tokens, at least 1, got {tau!r}")
    whole_generation = workload.tau == workload.generate_tokens and tau >= workload.generate_tokens
    if tau != workload.tau and not whole_generation:
        given = ("not set (the whole generation)" if workload.interval_tokens is None
                 else f"{workload.interval_tokens} tokens")
        raise InputError(
            f"`tau` = {tau} tokens differs from the instance's re-decision interval (`workload.interval` {given}, "
            f"tau = {workload.tau}): myopic decides once per interval of the instance, the only boundaries where the "
            f"evaluator lets a plan change and charges migration; set `workload.interval: {tau}` in the instance, "
            "or leave `tau` unset"
        )
    return int(tau)


# ----------------------------------------------------------------------------- one decision
def _block_names(L: int, K: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Names, kinds, layers and groups of every block in the order a token meets them."""
    names, kinds, layers, groups = ["embed"], [_EMBED], [0], [0]
    for l in range(L):
        for g in range(K):
            names.append(f"attention[{l},{g}]"), kinds.append(_GROUP), layers.append(l), groups.append(g)
        names.append(f"projection[{l}]"), kinds.append(_PROJECTION), layers.append(l), groups.append(0)
        names.append(f"ffn[{l}]"), kinds.append(_FFN), layers.append(l), groups.append(0)
    names.append("lm_head"), kinds.append(_LM_HEAD), layers.append(L - 1), groups.append(0)
    return names, np.array(kinds), np.array(layers), np.array(groups)


def decide(instance: Instance, k: int, previous: Placement | None = None, *, scoring: str = "max",
           weights: Sequence[float] = (0.4, 0.3, 0.3), forbid_source: bool = False) -> Decision:
    """Place every block for interval `k` from the current state only (one step of Algorithm 1).

    Parameters
    ----------
    instance : Instance
    k : int
        The interval decided; memory and costs are taken at its largest context.
    previous : Placement, optional
        Where the blocks are now (the previous interval's placement); None for the
        first placement.
    scoring, weights, forbid_source
        As in `solve_myopic`.

    Returns
    -------
    Decision
    """
    scoring, weights = _check_scoring(scoring, weights)
    _check_forbid_source(instance, forbid_source)
    if not 0 <= k < instance.workload.n_intervals:
        raise InputError(f"`k` must be an interval of the instance, 0..{instance.workload.n_intervals - 1}, got {k!r}")
    return _decide(instance, k, check_current(instance, previous), scoring, weights, forbid_source)


@dataclass(frozen=True, eq=False)
class _Needs:
    """What every block needs at the interval's largest context, and what its inputs cost."""

    context: int
    names: list[str]
    kinds: np.ndarray  # (blocks,)
    layers: np.ndarray
    groups: np.ndarray
    need: np.ndarray  # (blocks,) bytes
    times: np.ndarray  # (blocks, N) seconds
    budget: float  # T_ref, seconds
    limit: np.ndarray  # (N,) usable bytes
    comm: dict[str, np.ndarray]  # input transfers from → to, as fractions of the budget (N, N)
    out_ratio: np.ndarray  # (K+1, N, N) head outputs of c groups, as fractions of the budget
    tied: bool
    no_comm: np.ndarray  # (N,) zeros: a block whose inputs are nowhere yet
    sends_outputs: bool  # head outputs have bytes (they cost something off the device)

    @property
    def demand(self) -> np.ndarray:
        """``mem_i / max_j M_j + min_j t_ij / T_ref``."""
        return self.need / self.limit.max() + self.times.min(axis=1) / self.budget


def _needs(instance: Instance, k: int) -> _Needs:
    model, precision = instance.model, instance.precision
    L, K, N = model.layers, model.kv_heads, instance.n_devices
    context = int(instance.workload.interval_max_context()[k])
    costs = step_costs(instance, precision, np.array([context]))
    memory = block_memory(instance, precision, np.array([context]))
    tables = phase_tables(instance, costs)  # one step
    group_t, proj_t, ffn_t = tables.group_s[0], tables.projection_s[0], tables.ffn_s[0]  # (L, N)
    embed_t, lm_t = tables.embed_s[0], tables.lm_head_s[0]  # (N,)
    # T_ref: one token of the whole model on the single fastest device (compute only).
    whole_model = K * group_t.sum(axis=0) + proj_t.sum(axis=0) + ffn_t.sum(axis=0) + embed_t + lm_t
    budget = float(whole_model.min()) if whole_model.min() > 0 else 1.0
    names, kinds, layers, groups = _block_names(L, K)
    need, times = np.empty(len(names)), np.empty((len(names), N))
    is_group, is_proj, is_ffn = kinds == _GROUP, kinds == _PROJECTION, kinds == _FFN
    need[is_group], times[is_group] = memory.group[0][layers[is_group]], group_t[layers[is_group]]
    need[is_proj], times[is_proj] = memory.projection[0], proj_t
    need[is_ffn], times[is_ffn] = memory.ffn[0], ffn_t
    need[0], times[0] = memory.embed[0], embed_t
    need[-1], times[-1] = memory.lm_head[0], lm_t
    out_bytes = float(np.asarray(costs.group_out_bytes, dtype=float).reshape(-1)[0])  # the one step here
    comm = {"layer_in": tables.layer_in_s[0], "hidden": tables.hidden_s[0], "lm_in": tables.lm_head_in_s[0],
            "token": tables.token_s}
    return _Needs(context, names, kinds, layers, groups, need, times, budget, usable_bytes(instance),
                  {key: value / budget for key, value in comm.items()},
                  transfer_times(instance.cluster, out_bytes * np.arange(K + 1)) / budget,
                  heads_share_memory(model, precision), np.zeros(N), out_bytes > 0)


@dataclass(eq=False)
class _Where:
    """Where every block is: the previous interval's device, overwritten as blocks are placed now (-1: nowhere)."""

    att: np.ndarray  # (L, K)
    proj: np.ndarray  # (L,)
    ffn: np.ndarray  # (L,)
    ends: dict[str, int]  # embed, lm_head

    @classmethod
    def of(cls, placement: Placement | None, L: int, K: int) -> _Where:
        if placement is None:
            return cls(np.full((L, K), -1), np.full(L, -1), np.full(L, -1), {"embed": -1, "lm_head": -1})
        return cls(np.asarray(placement.attention, dtype=np.int64).copy(), np.asarray(placement.projection).argmax(axis=1),
                   np.asarray(placement.ffn).argmax(axis=1), {"embed": int(placement.embed), "lm_head": int(placement.lm_head)})


def _input_cost(x: _Needs, at: _Where, was: _Where, kind: int, l: int, g: int) -> tuple[np.ndarray, int]:
    """The communication ratio of a block on every device (N,) given where its inputs are, and where it was."""
    N, L, none = len(x.limit), len(at.proj), x.no_comm
    if kind == _GROUP:
        source = int(at.ffn[l - 1]) if l > 0 else at.ends["embed"]
        return (x.comm["layer_in"][source] if source >= 0 else none), int(was.att[l, g])
    if kind == _PROJECTION:
        where = at.att[l][at.att[l] >= 0]
        if x.sends_outputs and len(where):
            return x.out_ratio[np.bincount(where, minlength=N), np.arange(N)].sum(axis=0), int(was.proj[l])
        return none, int(was.proj[l])
    if kind == _FFN:
        source = int(at.proj[l])
        return (x.comm["hidden"][source] if source >= 0 else none), int(was.ffn[l])
    if kind == _LM_HEAD:
        source = int(at.ffn[L - 1])
        return (x.comm["lm_in"][source] if source >= 0 else none), was.ends["lm_head"]
    source = at.ends["lm_head"]
    return (x.comm["token"][source] if source >= 0 else none), was.ends["embed"]


def _decide(instance: Instance, k: int, previous: Placement | None, scoring: str,
            weights: tuple[float, float, float], forbid_source: bool = False) -> Decision:
    alpha, beta, gamma = weights
    L, K, N = instance.model.layers, instance.model.kv_heads, instance.n_devices
    x = _needs(instance, k)
    demand = x.demand
    order = np.argsort(-demand, kind="stable")
    was, at = _Where.of(previous, L, K), _Where.of(previous, L, K)
    placed = {"embed": -1, "lm_head": -1}  # placed in this decision (for tied embeddings)

    # the parts of every block's score that do not depend on the others
    with np.errstate(divide="ignore", invalid="ignore"):
        memory_ratio = np.where(x.limit > 0, x.need[:, None] / x.limit, np.where(x.need[:, None] > 0, np.inf, 0.0))
    compute_ratio = x.times / x.budget

    def part_of(mem, compute):  # the score without communication
        return np.maximum(mem, compute) if scoring == "max" else alpha * compute + beta * mem

    def combine(part, comm):
        return np.maximum(part, comm) if scoring == "max" else part + gamma * comm

    base = part_of(memory_ratio, compute_ratio)
    allowed = np.ones(N, dtype=bool)
    allowed[0] = not forbid_source  # the authors' rule: the source device (index 0) hosts no block
    kinds, layers, groups, need = x.kinds.tolist(), x.layers.tolist(), x.groups.tolist(), x.need.tolist()

    room, held = x.limit.astype(float).copy(), np.zeros(N)
    scores = np.full((len(x.names), N), np.inf)
    chosen = np.empty(len(x.names), dtype=np.int64)
    fallbacks, homeless = [], []
    for row, b in enumerate(order.tolist()):
        kind, l, g = kinds[b], layers[b], groups[b]
        comm, before = _input_cost(x, at, was, kind, l, g)
        extra = need[b]
        score = combine(base[b], comm)
        partner = placed["lm_head" if kind == _EMBED else "embed"] if x.tied and kind in (_EMBED, _LM_HEAD) else -1
        if partner >= 0:  # one shared matrix: nothing more on the partner's device
            extra = np.full(N, need[b])
            extra[partner] = 0.0
            mem_row = memory_ratio[b].copy()
            mem_row[partner] = 0.0
            score = combine(part_of(mem_row, compute_ratio[b]), comm)
        fits = (room >= extra) & allowed
        if fits.any():
            score = np.where(fits, score, np.inf)
            scores[row] = score
            best = score.min()
            ties = score <= best * (1 + _TIE)
            if best > 1:
                fallbacks.append(x.names[b])
        else:
            left = np.where(allowed, room - extra, -np.inf)
            ties = left >= left.max() - _TIE * abs(left.max())
            homeless.append(x.names[b])
        j = before if before >= 0 and ties[before] else int(np.argmax(ties))
        chosen[row] = j
        added = extra if partner < 0 else extra[j]
        room[j] -= added
        held[j] += added
        if kind == _GROUP:
            at.att[l, g] = j
        elif kind == _PROJECTION:
            at.proj[l] = j
        elif kind == _FFN:
            at.ffn[l] = j
        else:
            key = "embed" if kind == _EMBED else "lm_head"
            at.ends[key] = placed[key] = j

    one_hot = np.eye(N)
    placement = Placement(attention=at.att, projection=one_hot[at.proj], ffn=one_hot[at.ffn],
                          embed=int(at.ends["embed"]), lm_head=int(at.ends["lm_head"]))
    return Decision(
        placement=placement, order=tuple(x.names[b] for b in order), scores=scores, devices=chosen,
        demand=demand[order], fallbacks=tuple(fallbacks), homeless=tuple(homeless),
        memory_bytes=held, budget_s=x.budget, context=x.context,
    )


# ----------------------------------------------------------------------------- the back end
def solve_myopic(instance: Instance, *, tau: int | None = None, scoring: str = "max",
                 weights: Sequence[float] = (0.4, 0.3, 0.3), current: Placement | Plan | None = None,
                 forbid_source: bool = False) -> Result:
    """Re-decide the placement every `tau` tokens from the current state only (Kafetzis et al., Algorithm 1).

    At each interval boundary (`decide`): the blocks are ordered by normalized
    demand, largest first, ``demand_i = mem_i / max_j M_j + min_j t_ij / T_ref``; each in turn
    is scored on every device that still has the memory for it, and goes to the
    lowest score. An attention group moves with its KV cache; the evaluator charges
    every move at the interval boundary.

    Parameters
    ----------
    instance : Instance
    tau : int, optional
        Re-decision interval in tokens. It must be the instance's interval
        (``workload.interval``; the default), since the evaluator lets a plan change
        only there (any ``tau >= T`` is accepted when the instance decides once).
    scoring : {"max", "weighted"}
        ``"max"``: ``S = max(memory_ratio, compute_ratio, comm_ratio)``, the paper's
        max-ratio score. ``"weighted"``: ``S = α·compute_ratio + β·memory_ratio +
        γ·comm_ratio``.
    weights : (alpha, beta, gamma)
        Weights of the weighted score (the authors' defaults 0.4, 0.3, 0.3).
    current : Placement or Plan, optional
        Where the blocks are before the first interval (a running system); the
        first decision starts from it. The evaluator does not charge the moves out
        of it (a plan starts at interval 0); ``stats["blocks_moved_from_current"]``
        counts them.
    forbid_source : bool
        The authors' simulator's rule (``ResourceAwareDistributor``): the first device
        (index 0, their "source", which generates the request and in their scenarios
        is also the fastest) hosts no block; every block goes to the other devices.
        Off by default (our instances have no source); on, it reproduces their
        algorithm's figures like for like (``kafetzis-toy``: 38.9231 ms a step on
        ``toy_optimal_comparison`` with it, 19.4616 ms without).

    Returns
    -------
    Result
        One placement per interval, judged by `placement.evaluate`; objective
        ``report.total_s``; status ``feasible``, or ``infeasible`` with the worst
        memory violation named. ``stats``: ``decision_time_median_s`` and
        ``decision_time_max_s`` (wall-clock time of one decision, seconds),
        ``decision_times_s``, ``blocks_moved`` (moves between intervals, all charged
        by the evaluator), ``fallbacks`` (blocks placed with a score above 1),
        ``homeless`` (blocks no device had memory for), ``intervals``, ``tau``,
        ``scoring``, ``weights``.

    Raises
    ------
    InputError
        On a `tau` other than the instance's interval, an unknown `scoring`, bad
        `weights`, or a `current` placement that does not fit the instance.

    Notes
    -----
    The paper's text was not available; this follows its authors' simulator. The
    choices made where the sources are silent, or where our cost model differs:

    - **When.** One decision per interval of the instance (``workload.interval``),
      before its first token. Memory and costs are taken at the interval's largest
      context, where the evaluator judges memory, so a placement decided now still
      fits when the interval ends (the authors re-decide every token, where the two
      coincide).
    - **Memory.** The authors' code frees the projection and FFN after every step
      ("ephemeral"); in our cost model every block is resident, so memory is
      `placement.cost.blocks.block_memory` (weights, plus the KV cache for an attention
      group, at the interval's largest context). ``M_j`` is the device's memory less
      its reservation (``usable_bytes``); ``memory_ratio = mem_i / M_j`` uses that
      whole capacity (the code's "ratio to total capacity"), while whether a device
      *can host* the block is judged on what is left after the blocks already placed
      in this decision. A tied embedding and ``lm_head`` on one device count once.
    - **Current state.** Each decision re-packs every block on empty devices (the
      previous placement holds no memory while the blocks are placed again). The
      previous placement is the state the decision starts from: a block whose
      predecessors are not placed yet in this decision is scored against where they
      are now, and among equal scores a block stays where it was (otherwise the
      lowest device index wins). The first decision has no such state: predecessors
      not yet placed cost nothing.
    - **Normalization.** The code mixes a dimensionless memory ratio with
      ``FLOPs_i / C_j`` (seconds: C_j is FLOP/s) and an unnormalized transfer time in
      seconds. Here both times are divided by a per-token budget ``T_ref``: the time of
      one token of the whole model on the single fastest device (the sum of its
      blocks' times, without transfers). So ``compute_ratio = t_ij / T_ref`` with
      ``t_ij`` the evaluator's time of the block on device j (the roofline, or FLOPs /
      peak under ``kafetzis2025``, where this is exactly ``FLOPs_i / C_j`` with
      ``C_j = peak_j·T_ref`` the FLOPs j can do within the budget), and the demand's
      compute term ``FLOPs_i / max_j C_j`` becomes ``min_j t_ij / T_ref``.
    - **Communication.** ``comm_ratio`` is the time for the block's inputs to reach
      device j from where its predecessors are, over ``T_ref``: the layer input from
      the previous FFN (or the embedding) for an attention group; every group's head
      outputs for the projection, one message per device and the times summed (the
      code's ``"sum"`` mode); the projection's output for the FFN; the last FFN's
      output for ``lm_head``; the token id from ``lm_head`` for the embedding (blocks
      the paper's one-layer model lacks). Sizes, route latency and bandwidth are the
      evaluator's.
    - **Feasibility.** A device is feasible when its score is at most 1 (stated by the
      authors, not enforced in their code). If no device with the memory scores
      at most 1, the block goes to the lowest score among them (``stats["fallbacks"]``);
      if no device has the memory, it goes where it overflows least and the result is
      ``infeasible``. The older code's contention resolution (backtracking) is not
      done.
    - **Migration** is not in the score (the authors' distributor does not add it
      either); the evaluator charges it. Blocks are never split across devices and
      keep the instance's precision. The code's "source device" rule (no block on
      device 0) is the option ``forbid_source``, off by default.

    Examples
    --------
    >>> from placement import load_instance
    >>> result = solve_myopic(load_instance("edge/llama-3.2-1b-2dev"))
    >>> result.objective == result.report.total_s
    True
    """
    scoring, weights = _check_scoring(scoring, weights)
    _check_forbid_source(instance, forbid_source)
    tau = _check_tau(instance, tau)
    start = check_current(instance, current)
    I = instance.workload.n_intervals

    decisions, placements, stats = run_online(
        instance, start, lambda k, previous: _decide(instance, k, previous, scoring, weights, forbid_source))
    plan = Plan(devices=instance.cluster.names, intervals=placements, method="myopic")
    fallbacks = sum(len(d.fallbacks) for d in decisions)
    homeless = sorted({name for d in decisions for name in d.homeless})
    stats.update(fallbacks=fallbacks, homeless=homeless, tau=tau, scoring=scoring, weights=list(weights),
                 forbid_source=bool(forbid_source))
    note = (f"myopic ({scoring} score): {I} decision(s) every {tau} token(s), {stats['blocks_moved']} block move(s)"
            + (f", {fallbacks} placement(s) with no device scoring at most 1" if fallbacks else ""))
    why = f"no device had the memory for {', '.join(homeless)}; " if homeless else ""
    return judged(instance, plan, note, stats, why)
