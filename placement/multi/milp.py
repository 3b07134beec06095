"""The joint MILP: every model's layer pipeline at once, shared memory, makespan over resource bounds.

Variables (docs/parallel.md, "The joint MILP"), for every model ``m``:

- ``x[m,l,n]`` ∈ {0,1}: layer ``l`` of model ``m`` runs on device ``n`` (``embed`` with
  layer 0, ``lm_head`` with the last layer, as `placement.multi.chains.layer_plan`);
- ``w[m,l,u,v]`` ≥ 0: the hidden state goes from layer ``l`` on ``u`` to layer ``l+1`` on
  ``v``; for ``l = L-1`` the token id from ``lm_head`` on ``u`` back to ``embed`` on ``v``.
  Its flow rows ``Σ_v w[m,l,u,v] = x[m,l,u]`` and ``Σ_u w[m,l,u,v] = x[m,l+1,v]`` make it
  the product of the two one-hot rows;
- ``C`` ≥ 0: the makespan's bound.

Every coefficient is a term of `placement.solvers.baselines.pipeline_dp_costs` (the
single-model evaluator's own tables summed over all steps): ``lat[m]`` = compute +
transfers of model ``m`` alone, ``busy[n]`` = every model's compute on ``n``,
``medium`` = every transfer (``shared`` networks). Rows: ``lat[m] ≤ C``, ``busy[n] ≤ C``,
``medium ≤ C``, and per device ``Σ_m bytes[m,n] ≤ usable[n]`` at each model's largest
context. Minimising ``C`` (or ``Σ_m weight_m · lat[m]``, ``weighted``) gives a lower bound
on the simulated objective of every concurrent joint layer plan that fits memory.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from placement.cost.tolerances import MEMORY_RTOL
from placement.multi.instance import MultiInstance

__all__ = ["JointMilp", "joint_milp", "MILP_STATUS"]

# scipy.optimize.milp's status codes in the library's vocabulary (``infeasible``: no concurrent layer plan fits)
MILP_STATUS = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded", 4: "error"}


class JointMilp:
    """Column indices and rows of the joint MILP, built from each model's pipeline costs.

    Attributes
    ----------
    costs : list of dict
        `pipeline_dp_costs` of every model.
    offsets : list of int
        First column of model ``m``'s ``x`` block; its ``w`` block follows it.
    n_columns : int
        Every variable; ``C`` is the last.
    """

    def __init__(self, multi: MultiInstance) -> None:
        from placement.solvers.baselines import pipeline_dp_costs

        self.multi = multi
        self.costs = [pipeline_dp_costs(inst) for inst in multi.instances]
        N = multi.n_devices
        self.offsets, column = [], 0
        for c in self.costs:
            self.offsets.append(column)
            column += c["layer_s"].shape[0] * (N + N * N)
        self.n_columns = column + 1
        self.rows: list[tuple[dict[int, float], float, float]] = []  # ({column: coefficient}, low, high)

    def x(self, m: int, l: int, n: int) -> int:
        return self.offsets[m] + l * self.multi.n_devices + n

    def w(self, m: int, l: int, u: int, v: int) -> int:
        L, N = self.costs[m]["layer_s"].shape
        return self.offsets[m] + L * N + (l * N + u) * N + v

    def compute_terms(self, m: int) -> dict[int, tuple[int, float]]:
        """Column → (device, seconds of compute) of model `m`: its layers, ``embed`` and ``lm_head``."""
        c = self.costs[m]
        L, N = c["layer_s"].shape
        terms = {self.x(m, l, n): (n, float(c["layer_s"][l, n])) for l in range(L) for n in range(N)}
        for n in range(N):
            for l, extra in ((0, c["embed_s"][n]), (L - 1, c["lm_head_s"][n])):
                device, seconds = terms[self.x(m, l, n)]
                terms[self.x(m, l, n)] = (device, seconds + float(extra))
        return terms

    def transfer_terms(self, m: int) -> dict[int, float]:
        """Column → seconds of transfer of model `m`: the hidden state between layers, the token id back."""
        c = self.costs[m]
        L, N = c["layer_s"].shape
        terms = {}
        for l in range(L):
            seconds = c["token_s"] if l == L - 1 else c["hop_s"]
            for u in range(N):
                for v in range(N):
                    if u != v and seconds[u, v] > 0:
                        terms[self.w(m, l, u, v)] = float(seconds[u, v])
        return terms

    def memory_terms(self, m: int, n: int) -> dict[int, float]:
        """Column → bytes on device `n` of model `m`, at its largest context (a tied pair on one device once)."""
        c = self.costs[m]
        L = c["layer_s"].shape[0]
        layer_bytes = c["memory_bytes"][-1]
        terms = {self.x(m, l, n): float(layer_bytes[l]) for l in range(L)}
        terms[self.x(m, 0, n)] += c["embed_bytes"]
        terms[self.x(m, L - 1, n)] = terms.get(self.x(m, L - 1, n), 0.0) + c["lm_head_bytes"]
        if c["shared_heads"]:
            terms[self.w(m, L - 1, n, n)] = -c["lm_head_bytes"]
        return terms


def _structure_rows(model: JointMilp) -> None:
    """One device per layer; the flow rows that make ``w`` the product of consecutive ``x`` rows."""
    N = model.multi.n_devices
    for m, c in enumerate(model.costs):
        L = c["layer_s"].shape[0]
        for l in range(L):
            model.rows.append(({model.x(m, l, n): 1.0 for n in range(N)}, 1.0, 1.0))
            nxt = (l + 1) % L
            for u in range(N):
                out = {model.w(m, l, u, v): 1.0 for v in range(N)}
                out[model.x(m, l, u)] = out.get(model.x(m, l, u), 0.0) - 1.0
                model.rows.append((out, 0.0, 0.0))
                into = {model.w(m, l, v, u): 1.0 for v in range(N)}
                into[model.x(m, nxt, u)] = into.get(model.x(m, nxt, u), 0.0) - 1.0
                model.rows.append((into, 0.0, 0.0))


def _resource_rows(model: JointMilp) -> np.ndarray:
    """``lat[m] ≤ C`` (makespan), ``busy[n] ≤ C``, ``medium ≤ C``, shared memory; returns the objective vector."""
    multi, N = model.multi, model.multi.n_devices
    C = model.n_columns - 1
    objective = np.zeros(model.n_columns)
    busy = [dict() for _ in range(N)]
    medium: dict[int, float] = {}
    for m in range(multi.n_models):
        compute, transfer = model.compute_terms(m), model.transfer_terms(m)
        latency = {col: s for col, (_, s) in compute.items()} | transfer
        for col, (n, s) in compute.items():
            busy[n][col] = s
        medium |= transfer
        if multi.objective == "makespan":
            model.rows.append((latency | {C: -1.0}, -np.inf, 0.0))
        else:
            for col, s in latency.items():
                objective[col] += multi.weights[m] * s
    if multi.objective == "makespan":
        objective[C] = 1.0
        for n in range(N):
            model.rows.append((busy[n] | {C: -1.0}, -np.inf, 0.0))
        if multi.cluster.network == "shared":
            model.rows.append((medium | {C: -1.0}, -np.inf, 0.0))
    limits = model.costs[0]["limit_bytes"]
    for n in range(N):  # scaled to the device's usable memory
        row: dict[int, float] = {}
        for m in range(multi.n_models):
            for col, b in model.memory_terms(m, n).items():
                row[col] = row.get(col, 0.0) + b / limits[n]
        model.rows.append((row, -np.inf, 1.0 + MEMORY_RTOL))
    return objective


def joint_milp(multi: MultiInstance, *, time_limit: float = 30.0) -> tuple[list[np.ndarray] | None, float | None, str, str]:
    """Solve the joint MILP with HiGHS (through `scipy.optimize.milp`).

    Parameters
    ----------
    multi : MultiInstance
    time_limit : float
        Seconds.

    Returns
    -------
    devices : list of ndarray or None
        Every model's layer devices in the best solution found (None: none found).
    bound : float or None
        The solver's dual bound on the objective, seconds (None when it has none).
    status : str
        `MILP_STATUS` of the solver's code.
    message : str
        The solver's own message.
    """
    model = JointMilp(multi)
    _structure_rows(model)
    objective = _resource_rows(model)
    cols, rows, data, low, high = [], [], [], [], []
    for i, (coefficients, lo, hi) in enumerate(model.rows):
        cols += list(coefficients)
        rows += [i] * len(coefficients)
        data += list(coefficients.values())
        low.append(lo)
        high.append(hi)
    A = sparse.csr_array((data, (rows, cols)), shape=(len(model.rows), model.n_columns))
    integrality = np.zeros(model.n_columns)
    for m, c in enumerate(model.costs):
        L, N = c["layer_s"].shape
        integrality[model.offsets[m]:model.offsets[m] + L * N] = 1
    upper = np.ones(model.n_columns)
    upper[-1] = np.inf
    res = milp(objective, constraints=LinearConstraint(A, low, high), integrality=integrality,
               bounds=Bounds(np.zeros(model.n_columns), upper), options={"time_limit": float(time_limit)})
    bound = getattr(res, "mip_dual_bound", None)
    if bound is None or not np.isfinite(bound):
        bound = float(res.fun) if res.status == 0 else None
    devices = None
    if res.x is not None:
        devices = []
        for m, c in enumerate(model.costs):
            L, N = c["layer_s"].shape
            block = res.x[model.offsets[m]:model.offsets[m] + L * N].reshape(L, N)
            devices.append(block.argmax(axis=1).astype(np.int64))
    return devices, None if bound is None else float(bound), MILP_STATUS.get(res.status, "error"), str(res.message)
