"""The head-level joint MILP: every free model's groups, projections and FFNs, shared memory and busy rows.

One formulation serves two methods (docs/parallel.md, "The head-level joint MILP"):

- the **joint MILP at head level** (`milp-head`): every model is free; its optimum is a
  lower bound on the objective of every concurrent head-level joint plan that fits;
- the **contention-aware best response** (`best-response-contention`): one model is
  free and the others' plans are data — their busy seconds per device and on the
  shared medium, their bytes per device and their times alone.

Variables of a free model (``L`` layers, ``N`` devices, ``K`` attention groups per layer):
``c[l,n]`` ∈ {0…K} groups of layer ``l`` on ``n``; ``a[l,n]`` ∈ {0,1} (``n`` holds some of
them); ``p[l,n]``, ``f[l,n]`` ∈ {0,1} (projection, FFN); ``e[n]``, ``h[n]`` ∈ {0,1}
(``embed``, ``lm_head``); ``t[n]`` (tied heads counted once); products bounded from below
(``q ≥ x + y − 1``, exact at a 0/1 point because every cost is non-negative): ``qi`` (layer
input from the previous FFN or ``embed`` to a group device), ``qo`` (head outputs to the
projection), ``y`` (projection → FFN), ``g`` (last FFN → ``lm_head``), ``k`` (token id back);
``r[l,n,v]`` ≥ ``(c[l,n] − 1)`` when the projection is on ``v``; ``z[l]`` the layer's attention
stage; ``u[n]`` ≥ every use of device ``n`` (priced in a response only). Every coefficient is a total over the prefill and every decode step of
`placement.cost.tables.phase_totals`, the tables the evaluator itself uses.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from placement.cost.tables import (PhaseTables, block_memory, heads_share_memory, phase_totals, prefill_step_costs,
                                   step_costs, transfer_times, usable_bytes)
from placement.cost.tolerances import MEMORY_RTOL
from placement.instance import Instance
from placement.multi.dags import static_arrays
from placement.multi.instance import MultiInstance
from placement.multi.milp import MILP_STATUS
from placement.plan import Placement, Plan

__all__ = ["HeadTerms", "head_terms", "Fixed", "HeadSolution", "solve_head_milp", "plan_point", "HeadMilp"]

TIE_BREAK = 1e-3  # weight of the free model's own latency beside C in a response (0 in the bound)
RESPONSE_GAP = 1e-2  # a response is a heuristic judged by the joint evaluator: no need to prove it optimal


@dataclass(frozen=True, eq=False)
class HeadTerms:
    """One model's head-level cost terms, seconds summed over the prefill and every decode step.

    Attributes
    ----------
    times : PhaseTables
        `placement.cost.tables.phase_totals` of the prefill plus the decode: ``group_s``,
        ``projection_s``, ``ffn_s`` (L, N), ``embed_s``, ``lm_head_s`` (N,), transfers (N, N).
    out_one_s, out_slope_s : ndarray (N, N)
        Head outputs of ``c ≥ 1`` groups from ``u`` to ``v`` take at least
        ``out_one_s + (c − 1)·out_slope_s`` (exact when the time is affine in the bytes).
    group_bytes, projection_bytes, ffn_bytes : ndarray (L,)
        Resident bytes at the largest context.
    embed_bytes, lm_head_bytes : float
    tied : bool
        A tied ``embed`` and ``lm_head`` on one device are stored once.
    synchronous : bool
        The evaluator's stages are synchronous (shared network, or a profile whose gathers add up).
    shared : bool
        Every transfer needs the one medium.
    """

    times: PhaseTables
    out_one_s: np.ndarray
    out_slope_s: np.ndarray
    group_bytes: np.ndarray
    projection_bytes: np.ndarray
    ffn_bytes: np.ndarray
    embed_bytes: float
    lm_head_bytes: float
    tied: bool
    synchronous: bool
    shared: bool


def _out_totals(instance: Instance, phases, K: int) -> np.ndarray:
    """Seconds of head outputs of ``c = 1 … K`` groups from ``u`` to ``v`` over every step: (K, N, N)."""
    totals = []
    for c in range(1, K + 1):
        total = 0.0
        for costs in phases:
            steps = len(costs.embed_read)
            times = transfer_times(instance.cluster, np.asarray(costs.group_out_bytes, dtype=float) * c)
            total = total + (times.sum(axis=0) if times.shape[0] == steps else steps * times[0])
        totals.append(total)
    return np.array(totals)


def head_terms(instance: Instance) -> HeadTerms:
    """The cost terms of `instance` for the head-level MILP, from the cost layer's tables.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    HeadTerms
    """
    precision, K = instance.precision, instance.model.kv_heads
    phases = (prefill_step_costs(instance, precision), step_costs(instance, precision, instance.workload.contexts()))
    pre, dec = (phase_totals(instance, c) for c in phases)
    out = _out_totals(instance, phases, K)
    slope = np.zeros_like(out[0]) if K == 1 else ((out[1:] - out[0]) / np.arange(1, K)[:, None, None]).min(axis=0)
    memory = block_memory(instance, precision, instance.workload.interval_max_context()[-1:])
    times = PhaseTables(**{f.name: getattr(pre, f.name) + getattr(dec, f.name) for f in fields(PhaseTables)
                           if getattr(pre, f.name) is not None})
    return HeadTerms(
        times=times, out_one_s=out[0], out_slope_s=np.maximum(slope, 0.0),
        group_bytes=memory.group[0], projection_bytes=memory.projection[0], ffn_bytes=memory.ffn[0],
        embed_bytes=float(memory.embed[0]), lm_head_bytes=float(memory.lm_head[0]),
        tied=heads_share_memory(instance.model, precision),
        synchronous=instance.cluster.network == "shared" or bool(phases[0].sum_gather),
        shared=instance.cluster.network == "shared",
    )


class _Block:
    """Column indices of one free model's variables (module docstring), from column ``base`` on."""

    FAMILIES = (("c", "LN"), ("a", "LN"), ("p", "LN"), ("f", "LN"), ("e", "N"), ("h", "N"), ("t", "N"),
                ("qi", "LNN"), ("qo", "LNN"), ("r", "LNN"), ("y", "LNN"), ("g", "NN"), ("k", "NN"), ("z", "L"), ("u", "N"))

    def __init__(self, base: int, L: int, N: int, K: int) -> None:
        self.L, self.N, self.K, column = L, N, K, base
        for name, axes in self.FAMILIES:
            shape = tuple({"L": L, "N": N}[a] for a in axes)
            size = int(np.prod(shape))
            setattr(self, name, np.arange(column, column + size).reshape(shape))
            column += size
        self.base, self.end = base, column


def _lower_products(block: _Block) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """``q ≥ x + y − 1`` rows (as ``x + y − q ≤ 1``) of every product variable, and ``r``'s row."""
    b, rows = block, []

    def product(q, x, y):
        rows.append((np.array([x, y, q]), np.array([1.0, 1.0, -1.0]), 1.0))

    for l in range(b.L):
        source = b.e if l == 0 else b.f[l - 1]
        for u in range(b.N):
            for v in range(b.N):
                if u == v:
                    continue
                product(b.qi[l, u, v], source[u], b.a[l, v])
                product(b.qo[l, u, v], b.a[l, u], b.p[l, v])
                product(b.y[l, u, v], b.p[l, u], b.f[l, v])
                rows.append((np.array([b.c[l, u], b.a[l, u], b.p[l, v], b.r[l, u, v]]),
                             np.array([1.0, -1.0, b.K - 1.0, -1.0]), b.K - 1.0))
    for u in range(b.N):
        for v in range(b.N):
            if u != v:
                product(b.g[u, v], b.f[b.L - 1, u], b.h[v])
                product(b.k[u, v], b.h[u], b.e[v])
    return rows


def _structure(block: _Block) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Every group placed, one projection / FFN / embed / lm_head device, ``a`` marks ``c > 0``, ``t ≤ e, h``, ``u`` any use."""
    b, rows, N = block, [], block.N
    for l in range(b.L):
        rows.append((b.c[l], np.ones(N), b.K, b.K))
        rows += [(b.p[l], np.ones(N), 1.0, 1.0), (b.f[l], np.ones(N), 1.0, 1.0)]
        for n in range(N):
            rows.append((np.array([b.c[l, n], b.a[l, n]]), np.array([1.0, -b.K]), -np.inf, 0.0))
            rows.append((np.array([b.a[l, n], b.c[l, n]]), np.array([1.0, -1.0]), -np.inf, 0.0))
    rows += [(b.e, np.ones(N), 1.0, 1.0), (b.h, np.ones(N), 1.0, 1.0)]
    for n in range(N):
        rows += [(np.array([b.t[n], b.e[n]]), np.array([1.0, -1.0]), -np.inf, 0.0),
                 (np.array([b.t[n], b.h[n]]), np.array([1.0, -1.0]), -np.inf, 0.0)]
    for n in range(N):  # u[n] ≥ every use of device n
        for col in (*b.a[:, n], *b.p[:, n], *b.f[:, n], b.e[n], b.h[n]):
            rows.append((np.array([col, b.u[n]]), np.array([1.0, -1.0]), -np.inf, 0.0))
    rows += [(cols, coefs, -np.inf, hi) for cols, coefs, hi in _lower_products(b)]
    return rows


def _attention_rows(block: _Block, terms: HeadTerms) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """``z[l] ≥`` receive + compute + send of every group device ``n`` (docs/parallel.md, "The head-level joint MILP").

    Switched and not synchronous: ``n``'s own chain. Synchronous: ``n``'s compute after every
    receive (one after another on the shared medium; in parallel otherwise, so ``n``'s own),
    then every send one after another.
    """
    b, s, rows = block, terms, []
    for l in range(b.L):
        receive = [(b.qi[l, :, n], s.times.layer_in_s[:, n]) for n in range(b.N)]
        send = [(np.concatenate([b.qo[l, n], b.r[l, n]]), np.concatenate([s.out_one_s[n], s.out_slope_s[n]]))
                for n in range(b.N)]
        every = lambda parts: (np.concatenate([c for c, _ in parts]), np.concatenate([k for _, k in parts]))  # noqa: E731
        for n in range(b.N):
            if s.synchronous:
                parts = [*(receive if s.shared else [receive[n]]), *send]
            else:
                parts = [receive[n], send[n]]
            cols, coefs = every(parts)
            rows.append((np.concatenate([[b.c[l, n], b.z[l]], cols]),
                         np.concatenate([[s.times.group_s[l, n], -1.0], coefs]), -np.inf, 0.0))
    return rows


def _expressions(block: _Block, terms: HeadTerms, wait_s: np.ndarray) -> dict[str, object]:
    """Linear expressions (columns, coefficients) of the model's latency, busy seconds, medium seconds, bytes.

    The latency is a lower bound on the model's time alone plus ``wait_s[n]`` for every device
    ``n`` it uses (``u[n]``; 0 for the bound).
    """
    b, s = block, terms
    transfer_cols = np.concatenate([b.qi.ravel(), b.qo.ravel(), b.r.ravel(), b.y.ravel(), b.g.ravel(), b.k.ravel()])
    per_layer = lambda table: np.broadcast_to(table, (b.L, b.N, b.N)).ravel()  # noqa: E731
    transfer_coefs = np.concatenate([per_layer(s.times.layer_in_s), per_layer(s.out_one_s), per_layer(s.out_slope_s),
                                     per_layer(s.times.hidden_s), s.times.lm_head_in_s.ravel(), s.times.token_s.ravel()])
    blocks_cols = np.concatenate([b.p.ravel(), b.f.ravel(), b.e, b.h])
    blocks_coefs = np.concatenate([s.times.projection_s.ravel(), s.times.ffn_s.ravel(), s.times.embed_s, s.times.lm_head_s])
    hidden = slice(3 * b.L * b.N * b.N, None)  # projection → FFN, into lm_head, the token id: on the critical path
    latency = (np.concatenate([b.z, blocks_cols, transfer_cols[hidden], b.u]),
               np.concatenate([np.ones(b.L), blocks_coefs, transfer_coefs[hidden], wait_s]))
    busy = [(np.concatenate([b.c[:, n], b.p[:, n], b.f[:, n], [b.e[n], b.h[n]]]),
             np.concatenate([s.times.group_s[:, n], s.times.projection_s[:, n], s.times.ffn_s[:, n], [s.times.embed_s[n], s.times.lm_head_s[n]]]))
            for n in range(b.N)]
    tied = s.embed_bytes if s.tied else 0.0
    memory = [(np.concatenate([b.c[:, n], b.p[:, n], b.f[:, n], [b.e[n], b.h[n], b.t[n]]]),
               np.concatenate([s.group_bytes, s.projection_bytes, s.ffn_bytes, [s.embed_bytes, s.lm_head_bytes, -tied]]))
              for n in range(b.N)]
    return {"latency": latency, "busy": busy, "medium": (transfer_cols, transfer_coefs), "memory": memory}


@dataclass(frozen=True)
class Fixed:
    """The models that are not free, as data for the free ones' rows.

    Attributes
    ----------
    busy_s : ndarray (N,)
        Their compute seconds on every device.
    medium_s : float
        Their seconds on the shared medium (0 on a switched network).
    bytes : ndarray (N,)
        Their bytes on every device.
    alone_s : float
        The longest of their times alone, seconds (the makespan is at least that).
    wait_s : ndarray (N,)
        What using device ``n`` at all adds to the free model's latency in the proxy, seconds:
        the others' busy seconds there, as if it waited for all of their work (a price of
        contention, not a bound: a response judged by the joint evaluator).
    harm : ndarray (N + 1,), optional
        For a ``weighted`` objective: the summed weight of the other models that compute on
        each device (and, last, that send on the shared medium). The response then minimises
        ``w_m · latency + Σ_n harm[n] · busy[n] + harm[N] · medium`` (`HeadMilp.objective`)
        instead of the makespan proxy; None: the makespan proxy.
    """

    busy_s: np.ndarray
    medium_s: float
    bytes: np.ndarray
    alone_s: float
    wait_s: np.ndarray
    harm: np.ndarray | None = None


class HeadMilp:
    """The rows and columns of the head-level MILP for the models ``free`` of `multi` (module docstring)."""

    def __init__(self, multi: MultiInstance, free: tuple[int, ...], terms: tuple[HeadTerms, ...],
                 wait_s: np.ndarray | None = None) -> None:
        self.multi, self.free, self.terms = multi, free, terms
        N, column, self.blocks = multi.n_devices, 0, []
        self.wait_s = np.zeros(N) if wait_s is None else np.asarray(wait_s, dtype=float)
        for m in free:
            inst = multi.instances[m]
            self.blocks.append(_Block(column, inst.model.layers, N, inst.model.kv_heads))
            column = self.blocks[-1].end
        self.C, self.n_columns = column, column + 1
        self.expressions = [_expressions(b, terms[m], self.wait_s) for b, m in zip(self.blocks, free)]

    def point(self, k: int, placement: Placement) -> np.ndarray:
        """Values of the ``k``-th free model's columns (full length, zeros elsewhere) at a static placement.

        Parameters
        ----------
        k : int
            Index into ``free``.
        placement : Placement
            Whole projections and FFNs.

        Returns
        -------
        ndarray, shape (n_columns,)
            Every product at its value and ``z`` at the tightest value its rows allow, so each
            expression evaluated here is the plan's figure.
        """
        b, x, N = self.blocks[k], np.zeros(self.n_columns), self.multi.n_devices
        counts = np.stack([np.bincount(row, minlength=N) for row in placement.attention]).astype(float)
        one_hot = lambda n: np.eye(N)[n]  # noqa: E731
        p, f = np.eye(N)[placement.projection.argmax(axis=1)], np.eye(N)[placement.ffn.argmax(axis=1)]
        e, h, a = one_hot(placement.embed), one_hot(placement.lm_head), (counts > 0).astype(float)
        source = np.vstack([e[None], f[:-1]])
        off = 1.0 - np.eye(N)
        values = {"c": counts, "a": a, "p": p, "f": f, "e": e, "h": h, "t": e * h,
                  "qi": source[:, :, None] * a[:, None, :] * off, "qo": a[:, :, None] * p[:, None, :] * off,
                  "r": np.maximum(counts - 1, 0)[:, :, None] * p[:, None, :] * off,
                  "y": p[:, :, None] * f[:, None, :] * off, "g": np.outer(f[-1], h) * off, "k": np.outer(h, e) * off,
                  "u": np.maximum.reduce([a.max(axis=0), p.max(axis=0), f.max(axis=0), e, h])}
        for name, value in values.items():
            x[getattr(b, name)] = value
        for cols, coefs, _, _ in _attention_rows(b, self.terms[self.free[k]]):  # cols[1] is z[l], coefficient −1
            rest = np.r_[0, 2:len(cols)]
            x[cols[1]] = max(x[cols[1]], float(coefs[rest] @ x[cols[rest]]))
        return x

    def rows(self, fixed: Fixed | None) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
        """Every row: structure, attention stages, ``C ≥`` latency / busy / medium, shared memory."""
        multi, rows = self.multi, []
        for b, m in zip(self.blocks, self.free):
            rows += _structure(b) + _attention_rows(b, self.terms[m])
        N, C = multi.n_devices, self.C
        busy0 = np.zeros(N) if fixed is None else fixed.busy_s
        for cols, coefs in (e["latency"] for e in self.expressions):
            rows.append((np.append(cols, C), np.append(coefs, -1.0), -np.inf, 0.0))
        for n in range(N):
            cols = np.concatenate([e["busy"][n][0] for e in self.expressions] + [[C]])
            coefs = np.concatenate([e["busy"][n][1] for e in self.expressions] + [[-1.0]])
            rows.append((cols, coefs, -np.inf, -float(busy0[n])))
        if multi.cluster.network == "shared":
            cols = np.concatenate([e["medium"][0] for e in self.expressions] + [[C]])
            coefs = np.concatenate([e["medium"][1] for e in self.expressions] + [[-1.0]])
            rows.append((cols, coefs, -np.inf, -(0.0 if fixed is None else fixed.medium_s)))
        usable = usable_bytes(multi.instances[0])
        left = usable - (0.0 if fixed is None else fixed.bytes)
        for n in range(N):  # in units of the device's usable memory, as the single-model MILP
            cols = np.concatenate([e["memory"][n][0] for e in self.expressions])
            coefs = np.concatenate([e["memory"][n][1] for e in self.expressions]) / usable[n]
            rows.append((cols, coefs, -np.inf, left[n] / usable[n] + MEMORY_RTOL))
        return rows

    def objective(self, weighted: bool, tie_break: float = 0.0, harm: np.ndarray | None = None) -> np.ndarray:
        """``C`` (makespan) plus `tie_break` times every free latency, or ``Σ weight · latency bound`` (weighted).

        With `harm` (a weighted response, `Fixed.harm`) the weighted sum also charges every free
        busy second on device ``n`` at ``harm[n]`` and every medium second at ``harm[N]``: the
        weight of the other models it may delay there.
        """
        vector = np.zeros(self.n_columns)
        if not weighted:
            vector[self.C] = 1.0
            for cols, coefs in (e["latency"] for e in self.expressions):
                np.add.at(vector, cols, tie_break * coefs)
            return vector
        for e, m in zip(self.expressions, self.free):
            np.add.at(vector, e["latency"][0], self.multi.weights[m] * e["latency"][1])
            for (cols, coefs), price in zip([*e["busy"], e["medium"]], () if harm is None else harm):
                np.add.at(vector, cols, price * coefs)
        return vector

    def placement(self, k: int, x: np.ndarray) -> Placement:
        """The ``k``-th free model's static placement at a solution ``x``."""
        b = self.blocks[k]
        counts = np.rint(x[b.c]).astype(np.int64)
        attention = np.stack([np.repeat(np.arange(b.N), row) for row in counts])
        one_hot = lambda cols: np.eye(b.N)[np.asarray(x[cols]).argmax(axis=-1)]  # noqa: E731
        return Placement(attention=attention, projection=one_hot(b.p), ffn=one_hot(b.f),
                         embed=int(np.argmax(x[b.e])), lm_head=int(np.argmax(x[b.h])))


@dataclass(frozen=True)
class HeadSolution:
    """What `solve_head_milp` found.

    Attributes
    ----------
    plans : tuple of Plan or None
        One static head-level plan per free model (None: no solution found).
    bound_s : float or None
        The solver's dual bound on the MILP's objective, seconds.
    status, message : str
    """

    plans: tuple[Plan, ...] | None
    bound_s: float | None
    status: str
    message: str


def solve_head_milp(multi: MultiInstance, free: tuple[int, ...], terms: tuple[HeadTerms, ...], *,
                    fixed: Fixed | None = None, time_limit: float = 30.0, method: str = "milp-head") -> HeadSolution:
    """Solve the head-level MILP of the models `free` with HiGHS (`scipy.optimize.milp`).

    Parameters
    ----------
    multi : MultiInstance
    free : tuple of int
        Models whose placement is decided.
    terms : tuple of HeadTerms
        `head_terms` of every model of `multi`.
    fixed : Fixed, optional
        The other models' busy seconds, bytes and times alone (None: every model is free).
    time_limit : float
        Seconds.
    method : str
        Written into the plans.

    Returns
    -------
    HeadSolution
        With every model free, the bound is a lower bound on the objective of every
        concurrent head-level joint plan that fits (docs/parallel.md); with `fixed`, the
        makespan proxy is minimised, or with ``fixed.harm`` the weighted response objective.
    """
    model = HeadMilp(multi, free, terms, None if fixed is None else fixed.wait_s)
    rows = model.rows(fixed)
    A = sparse.csr_array((np.concatenate([c for _, c, _, _ in rows]),
                          (np.repeat(np.arange(len(rows)), [len(c) for c, _, _, _ in rows]),
                           np.concatenate([c for c, _, _, _ in rows]).astype(np.int64))),
                         shape=(len(rows), model.n_columns))
    upper, integrality = np.ones(model.n_columns), np.zeros(model.n_columns)
    lower = np.zeros(model.n_columns)
    for b in model.blocks:
        for name in ("c", "a", "p", "f", "e", "h"):
            integrality[getattr(b, name)] = 1
        upper[b.c], upper[b.z] = b.K, np.inf
        upper[b.r] = b.K - 1
        for name in ("qi", "qo", "r", "y"):
            upper[getattr(b, name)[:, np.arange(b.N), np.arange(b.N)]] = 0.0  # nothing sent to oneself
        upper[b.g[np.arange(b.N), np.arange(b.N)]] = upper[b.k[np.arange(b.N), np.arange(b.N)]] = 0.0
    upper[model.C] = np.inf
    lower[model.C] = 0.0 if fixed is None else fixed.alone_s
    harm = None if fixed is None else fixed.harm
    weighted = multi.objective == "weighted" and (fixed is None or harm is not None)
    # a response whose C the others' time alone fixes still prefers its own shorter latency
    tie_break = 0.0 if fixed is None else TIE_BREAK
    res = milp(model.objective(weighted, tie_break, harm), constraints=LinearConstraint(A, [r[2] for r in rows], [r[3] for r in rows]),
               integrality=integrality, bounds=Bounds(lower, upper),
               options={"time_limit": float(time_limit), "mip_rel_gap": RESPONSE_GAP if fixed is not None else 1e-4})
    bound = getattr(res, "mip_dual_bound", None)
    if bound is None or not np.isfinite(bound):
        bound = float(res.fun) if res.status == 0 else None
    plans = None
    if res.x is not None:
        names = multi.cluster.names
        plans = tuple(Plan(devices=names, intervals=[model.placement(k, res.x)], method=method)
                      for k in range(len(free)))
    return HeadSolution(plans, None if bound is None else float(bound), MILP_STATUS.get(res.status, "error"),
                        str(res.message))


def plan_point(multi: MultiInstance, m: int, plan: Plan, terms: tuple[HeadTerms, ...]) -> dict[str, object]:
    """Model `m`'s figures under the MILP's expressions at its static plan.

    Parameters
    ----------
    multi : MultiInstance
    m : int
    plan : Plan
        Static, whole projections and FFNs (a layer or head-level plan).
    terms : tuple of HeadTerms

    Returns
    -------
    dict
        ``latency_s`` (the MILP's lower bound on the model's time alone), ``busy_s`` (N,)
        (exactly the evaluator's compute seconds per device), ``medium_s`` (its transfer seconds
        on a shared network, a lower bound on its medium time; 0 on a switched one) and ``bytes`` (N,).
    """
    static_arrays(multi.instances[m], plan)  # refuses what the joint evaluator cannot simulate
    model = HeadMilp(multi, (m,), terms)
    x = model.point(0, plan.placement(0))
    e = model.expressions[0]
    value = lambda expr: float(expr[1] @ x[expr[0]])  # noqa: E731
    return {"latency_s": value(e["latency"]), "busy_s": np.array([value(b) for b in e["busy"]]),
            "medium_s": value(e["medium"]) if multi.cluster.network == "shared" else 0.0, "bytes": np.array([value(b) for b in e["memory"]])}
