"""Long timescale: the model assignment ``m`` by stochastic successive convex approximation (SSCA).

Device ``n`` holds a share ``m_n`` of every layer (``Σ m_n = 1``, ``0 ≤ m_n ≤ u_n``; the cap
``u_n`` folds in its memory, ``m_n·(model bytes) ≤ memory``, and its energy, computing
``e_n·m_n·s_tot`` must leave energy to transmit). Its share sets its transmit power
``P_n(m_n) = min(P_max, (E_n − e_n·m_n·s_tot)·W/U)`` and so the all-reduce MSE of every
channel realization. The objective ``f(m) = E_H[MSE*(m; H)]`` has no closed form;
SSCA (docs/ota.md) samples a channel per iteration ``t``, solves the short-timescale
problem at ``m^t`` (`sdr_beamformer`), and takes the gradient from the SDR's
sensitivity: ``∂MSE/∂P_n = −MSE·ν_n/P_n`` (``ν`` the SDR's duals on the simplex), so

    g_n = MSE·ν_n/P_n · e_n·s_tot·W/U   where the energy binds (else 0).

Recursive averaging ``ḡ^t = (1−ρ_t)ḡ^{t−1} + ρ_t g^t`` builds the quadratic surrogate
``f̄(m) = f̄^t + ḡ^t·(m − m^t) + τ‖m − m^t‖²``; minimizing it over the constraints gives
``m̂`` (a projection onto the capped simplex), and ``m^{t+1} = (1−γ_t)m^t + γ_t m̂`` with
``ρ_t = (t+1)^{-0.6}``, ``γ_t = (t+1)^{-0.8}`` (``Σρ = Σγ = ∞``, ``Σρ², Σγ² < ∞``,
``γ_t/ρ_t → 0``). With the ``latency`` objective the surrogate problem is
``min max_n τ_n m_n`` subject to ``f̄(m) ≤ target`` (a slack, heavily penalised, keeps
it feasible while the averages settle), solved by cvxpy.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from placement.errors import InputError
from placement.ota.beamforming import BeamformerDesign, direction_costs, gram, matched_filter_beamformer, sdr_beamformer
from placement.ota.channel import Wireless, sample_channels

__all__ = ["SscaResult", "capped_simplex_projection", "share_caps", "ssca_assignment", "design_for", "expected_mse"]

RHO_EXPONENT, GAMMA_EXPONENT = 0.6, 0.8
STEP = 0.05  # the first surrogate's curvature lets a full step move a share by at most this
ENERGY_RESERVE = 1e-3  # a share may use at most this fraction less than the whole energy budget for compute


@dataclass(frozen=True, eq=False)
class SscaResult:
    """The assignment SSCA found and how it got there.

    Attributes
    ----------
    shares : ndarray, shape (N,)
    trace : list of dict
        Per iteration: ``iteration``, ``sampled_mse`` (the achieved MSE on that
        iteration's channel at ``m^t``), ``averaged_mse`` (the recursive average
        ``f̄^t``), ``change`` (``‖m̂ − m^t‖_∞``), ``rho``, ``gamma``.
    converged : bool
    iterations : int
    seconds : float
    """

    shares: np.ndarray
    trace: list[dict[str, float]] = field(default_factory=list)
    converged: bool = False
    iterations: int = 0
    seconds: float = 0.0


def capped_simplex_projection(v: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Euclidean projection of `v` onto ``{m : Σm = 1, 0 ≤ m ≤ caps}`` (bisection on the shift).

    Examples
    --------
    >>> capped_simplex_projection(np.array([1.2, 0.6, 0.0]), np.array([0.6, 1.0, 1.0])).round(6).tolist()
    [0.6, 0.4, 0.0]
    """
    v, caps = np.asarray(v, dtype=float), np.asarray(caps, dtype=float)
    if caps.sum() < 1 - 1e-12:
        raise InputError(f"the share caps sum to {caps.sum():.4f} < 1: no assignment fits")
    lo, hi = float(np.min(v - caps)) - 1.0, float(np.max(v)) + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.clip(v - mid, 0, caps).sum() > 1:
            lo = mid
        else:
            hi = mid
    m = np.clip(v - (lo + hi) / 2, 0, caps)
    return m / m.sum()


def share_caps(wireless: Wireless, flops_per_token: float, memory_caps: np.ndarray,
               extra_flops: np.ndarray | float = 0.0) -> np.ndarray:
    """``u_n = min(1, memory cap, ((1 − reserve)·E_n − e_n·F⁰_n) / (e_n·s_tot))``: the largest share each device can take.

    ``F⁰_n`` (`extra_flops`) are FLOPs a device runs whatever its share (the output head on the master).
    """
    e = wireless.compute_energy_j_per_flop * flops_per_token
    budget = (1 - ENERGY_RESERVE) * wireless.energy_per_token_j - wireless.compute_energy_j_per_flop * extra_flops
    with np.errstate(divide="ignore", invalid="ignore"):
        energy_cap = np.where(e > 0, budget / np.where(e > 0, e, 1.0), np.inf)
    return np.clip(np.minimum(memory_caps, energy_cap), 0.0, 1.0)


def _powers(wireless: Wireless, shares: np.ndarray, flops_per_token: float, uses: float,
            extra_flops: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Power budgets at `shares` and ``−dP_n/dm_n`` (zero where the peak power binds)."""
    flops = shares * flops_per_token + extra_flops
    power = wireless.power_budget_w(flops, uses)
    left = (wireless.energy_per_token_j - wireless.compute_energy_j_per_flop * flops) * wireless.bandwidth_hz / uses
    slope = np.where(left < wireless.max_power_w, wireless.compute_energy_j_per_flop * flops_per_token * wireless.bandwidth_hz / uses, 0.0)
    return power, slope


def design_for(H: np.ndarray, power: np.ndarray, wireless: Wireless, beamformer: str, rng, randomizations: int = 30) -> BeamformerDesign:
    """The short-timescale design of one realization: ``sdr`` or ``matched-filter``."""
    if beamformer == "sdr":
        return sdr_beamformer(H, power, wireless.noise_power_w, wireless.streams, rng=rng, randomizations=randomizations)
    design = matched_filter_beamformer(H, power, wireless.noise_power_w, wireless.streams)
    costs = direction_costs(design.direction, gram(H)) / power
    return BeamformerDesign(design.direction, design.eta, design.mse, design.bound, np.eye(len(H))[int(np.argmax(costs))])


def expected_mse(wireless: Wireless, shares: np.ndarray, flops_per_token: float, uses: float, channels: np.ndarray,
                 beamformer: str = "sdr", seed: int = 0, extra_flops: np.ndarray | float = 0.0) -> float:
    """Mean achieved MSE of `shares` over fixed `channels` (S, N, N_r, N_t): the objective SSCA estimates."""
    power, _ = _powers(wireless, shares, flops_per_token, uses, extra_flops)
    rng = np.random.default_rng(seed)
    return float(np.mean([design_for(H, power, wireless, beamformer, rng).mse for H in channels]))


@functools.cache
def _latency_surrogate(n: int):
    import cvxpy as cp

    m, step, z, slack = cp.Variable(n, nonneg=True), cp.Variable(n), cp.Variable(), cp.Variable(nonneg=True)
    speed, caps, grad, center = (cp.Parameter(n, nonneg=True), cp.Parameter(n, nonneg=True), cp.Parameter(n),
                                 cp.Parameter(n))
    budget, tau, penalty = cp.Parameter(), cp.Parameter(nonneg=True), cp.Parameter(nonneg=True)  # tau: its square root
    constraints = [cp.sum(m) == 1, m <= caps, z >= cp.multiply(speed, m), step == m - center,
                   grad @ step + cp.sum_squares(tau * step) <= budget + slack]
    problem = cp.Problem(cp.Minimize(z + penalty * slack), constraints)
    return problem, m, (speed, caps, grad, center, budget, tau, penalty)


def _latency_step(time_per_share: np.ndarray, caps: np.ndarray, grad: np.ndarray, center: np.ndarray,
                  budget: float, tau: float) -> np.ndarray:
    problem, m, params = _latency_surrogate(len(caps))
    scale = float(time_per_share.max())
    speed, cap, g, c, b, t, penalty = params
    norm = max(abs(budget), float(np.abs(grad).max()), 1e-300)
    speed.value, cap.value, g.value, c.value = time_per_share / scale, caps, grad / norm, center
    b.value, t.value, penalty.value = budget / norm, math.sqrt(tau / norm), 1e3
    problem.solve(solver="CLARABEL")
    if m.value is None:
        return center
    return capped_simplex_projection(np.asarray(m.value), caps)


def ssca_assignment(wireless: Wireless, flops_per_token: float, caps: np.ndarray, uses_per_token: float, *,
                    objective: str = "mse", mse_target: float | None = None,
                    time_per_share_s: np.ndarray | None = None, beamformer: str = "sdr", start: np.ndarray | None = None,
                    iterations: int = 100, batch: int = 1, tol: float = 1e-3, seed: int = 0,
                    randomizations: int = 20, extra_flops: np.ndarray | float = 0.0,
                    min_iterations: int = 20) -> SscaResult:
    """Stochastic SCA over the shares ``m``.

    Parameters
    ----------
    wireless : Wireless
    flops_per_token : float
        ``s_tot``, the FLOPs of all the layers for one decode token.
    caps : ndarray, shape (N,)
        ``u_n`` (`share_caps`); zero for a device that takes no share.
    uses_per_token : float
        ``U``, channel uses of a token's all-reduces.
    objective : {"mse", "latency"}
        ``mse``: minimize the average MSE; ``latency``: minimize ``max_n τ_n m_n`` (the
        per-token compute time) subject to average MSE ≤ `mse_target`.
    mse_target : float, optional
    time_per_share_s : ndarray, shape (N,), optional
        ``τ_n``, seconds device ``n`` needs per token for the whole layer stack (latency objective).
    beamformer : {"sdr", "matched-filter"}
    start : ndarray, optional
        ``m^0`` (default: the equal split, projected onto the caps).
    iterations, batch, tol, seed, randomizations
        Iteration limit, channels per iteration, stopping tolerance on ``‖m̂ − m^t‖_∞``
        (held for 3 iterations, after at least `min_iterations`), seed of the sampled
        channels, Gaussian draws per SDR.
    extra_flops : ndarray, shape (N,), optional
        FLOPs per token a device runs whatever its share (the output head on the master).

    Returns
    -------
    SscaResult
    """
    if objective not in ("mse", "latency"):
        raise InputError(f"option `objective` must be 'mse' or 'latency', got {objective!r}")
    if objective == "latency" and (mse_target is None or time_per_share_s is None):
        raise InputError("objective 'latency' needs `mse_target` (the largest average all-reduce MSE allowed)")
    began = time.perf_counter()
    caps = np.asarray(caps, dtype=float)
    members = caps > 0
    m = capped_simplex_projection(np.where(members, 1.0 / members.sum(), 0.0), caps) if start is None else np.asarray(start, float)
    rng = np.random.default_rng(seed)
    g_bar, f_bar, tau = np.zeros(len(caps)), 0.0, None
    trace: list[dict[str, float]] = []
    calm, converged, t = 0, False, 0
    for t in range(iterations):
        rho, gamma = (t + 1) ** -RHO_EXPONENT, (t + 1) ** -GAMMA_EXPONENT
        power, slope = _powers(wireless, m, flops_per_token, uses_per_token, extra_flops)
        H = sample_channels(wireless, batch, int(rng.integers(2**31)))[:, members]
        grad, mses = np.zeros(len(caps)), []
        for h in H:
            design = design_for(h, power[members], wireless, beamformer, rng, randomizations)
            grad[members] += design.mse * design.weights / power[members] * slope[members] / batch
            mses.append(design.mse)
        mse = float(np.mean(mses))
        g_bar = (1 - rho) * g_bar + rho * grad
        f_bar = (1 - rho) * f_bar + rho * mse
        if tau is None:  # the surrogate's curvature: a full step moves a share by at most STEP
            tau = max(float(np.abs(g_bar).max()) / (2 * STEP), 1e-12 * max(mse, 1e-300))
        if objective == "mse":
            m_hat = capped_simplex_projection(m - g_bar / (2 * tau), caps)
        else:
            m_hat = _latency_step(np.asarray(time_per_share_s, float), caps, g_bar, m, mse_target - f_bar, tau)
        change = float(np.abs(m_hat - m).max())
        trace.append({"iteration": t, "sampled_mse": mse, "averaged_mse": f_bar, "change": change,
                      "rho": rho, "gamma": gamma})
        m = capped_simplex_projection((1 - gamma) * m + gamma * m_hat, caps)
        calm = calm + 1 if change < tol else 0
        if calm >= 3 and t + 1 >= min(min_iterations, iterations):
            converged = True
            break
    return SscaResult(shares=m, trace=trace, converged=converged, iterations=t + 1, seconds=time.perf_counter() - began)
