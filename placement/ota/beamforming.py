"""Transceivers of the over-the-air all-reduce: zero-forcing precoders, SDR receive beamformer.

Every device ``n`` sends ``d`` symbols per channel use through its precoder
``B_n ∈ C^{N_t×d}``; the server receives ``r = Σ_n H_n B_n s_n + z``, ``z ~ CN(0, σ²I)``,
and estimates the sum ``Σ_n s_n`` as ``A^H r`` with ``A ∈ C^{N_r×d}``. Given ``A``, the
zero-forcing precoders ``B_n = H_n^H A (A^H G_n A)^{-1}`` (``G_n = H_n H_n^H``) make
``A^H H_n B_n = I``, so the error is the noise alone: per element
``MSE = σ²·tr(A^H A)/d``, with transmit power ``‖B_n‖² = tr((A^H G_n A)^{-1}) ≤ P_n``.
Writing ``A = sqrt(η)·F`` for a direction ``F``, the best scale is
``η = max_n tr((F^H G_n F)^{-1}) / P_n`` (`beamformer_mse`): every direction is feasible
once scaled, so only the direction is designed.

The direction comes from a semidefinite relaxation (`sdr_beamformer`): with
``X = A A^H / tr(A A^H)`` and ``tr((A^H G A)^{-1}) ≥ d² / tr(A^H G A)``,

    maximize t   subject to   X ⪰ 0 (complex Hermitian),  tr X = 1,  P_n·tr(G_n X) ≥ t  for every n,

whose optimum ``t*`` bounds every design: ``MSE ≥ σ²·d / t*`` (for ``d = 1`` the
relaxation only drops ``rank X = 1``). The bound reported is certified from the duals
``ν`` (any ``ν`` on the simplex gives ``t* ≤ λ_max(Σ_n ν_n P_n G_n)``), so solver
inaccuracy cannot push it above the truth. Gaussian randomization draws directions
``F = U Λ^{1/2} W`` (``X = U Λ U^H``, ``W`` complex Gaussian) plus the principal
eigenvectors, scales each by its ``η`` and keeps the best. Docs: docs/ota.md.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np

from placement.errors import InputError

__all__ = [
    "BeamformerDesign", "gram", "zf_precoders", "direction_costs", "beamformer_mse", "sdr_beamformer",
    "matched_filter_beamformer", "single_device_mse",
]


@dataclass(frozen=True, eq=False)
class BeamformerDesign:
    """A receive beamformer for one channel realization.

    Attributes
    ----------
    direction : ndarray, shape (N_r, d), complex
        ``F`` with ``‖F‖_F = 1``; the beamformer is ``A = sqrt(η)·F``.
    eta : float
        The scale that makes every device's zero-forcing precoder meet its power.
    mse : float
        Achieved all-reduce MSE per element, ``σ²·η/d``.
    bound : float
        A lower bound on the MSE of every beamformer (the SDR's, certified); ``nan`` without one.
    weights : ndarray, shape (N,)
        The SDR's dual weights ``ν`` (on the simplex): how much each device's power
        constraint holds the MSE up; zeros without SDR.
    rank : int
        Numerical rank of the SDR solution (1 means the relaxation is tight for ``d = 1``).
    """

    direction: np.ndarray
    eta: float
    mse: float
    bound: float
    weights: np.ndarray
    rank: int = 0


def gram(H: np.ndarray) -> np.ndarray:
    """``G_n = H_n H_n^H`` for channels of shape (..., N_r, N_t); shape (..., N_r, N_r)."""
    return H @ np.conj(np.swapaxes(H, -1, -2))


def zf_precoders(A: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Zero-forcing precoders ``B_n = H_n^H A (A^H H_n H_n^H A)^{-1}``, shape (N, N_t, d).

    Parameters
    ----------
    A : ndarray, shape (N_r, d)
        Receive beamformer.
    H : ndarray, shape (N, N_r, N_t)

    Returns
    -------
    ndarray
        ``B`` with ``A^H H_n B_n = I_d`` for every device; ``‖B_n‖_F²`` is its transmit power.
    """
    HA = np.conj(np.swapaxes(H, -1, -2)) @ A  # (N, N_t, d) = H_n^H A
    inner = np.conj(np.swapaxes(HA, -1, -2)) @ HA  # A^H G_n A
    return HA @ np.linalg.inv(inner)


def direction_costs(F: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``c_n = tr((F^H G_n F)^{-1})``: the power device ``n`` needs per unit ``1/η``; shape (..., N).

    `F` has shape (..., N_r, d) and `G` (..., N, N_r, N_r); ``inf`` where ``F^H G_n F``
    is singular.
    """
    inner = np.conj(np.swapaxes(F, -1, -2))[..., None, :, :] @ G @ F[..., None, :, :]  # (..., N, d, d)
    eig = np.linalg.eigvalsh(inner)
    with np.errstate(divide="ignore"):
        return np.where(eig.min(axis=-1) > 1e-14 * np.abs(eig).max(axis=-1).clip(1e-300),
                        (1.0 / np.where(eig > 0, eig, 1.0)).sum(axis=-1), np.inf)


def beamformer_mse(F: np.ndarray, G: np.ndarray, power_w: np.ndarray, noise_w: float) -> tuple[np.ndarray, np.ndarray]:
    """MSE per element and scale ``η`` of the direction `F`, scaled so every device meets its power.

    Parameters
    ----------
    F : ndarray, shape (..., N_r, d)
        Any direction (its norm is accounted for).
    G : ndarray, shape (..., N, N_r, N_r)
        ``H_n H_n^H`` of the participating devices.
    power_w : ndarray, shape (N,)
        ``P_n``, transmit power per channel use, watts (must be positive).
    noise_w : float
        ``σ²``.

    Returns
    -------
    mse, eta : ndarray
        ``η = max_n c_n / P_n`` and ``MSE = σ²·η·‖F‖²/d``, with the batch shape of `F`.

    Examples
    --------
    One device, one receive antenna, gain 4, power 1, noise 0.1: ``η = 1/4``, MSE 0.025.

    >>> mse, eta = beamformer_mse(np.ones((1, 1)), np.full((1, 1, 1), 4.0), np.ones(1), 0.1)
    >>> float(mse), float(eta)
    (0.025, 0.25)
    """
    d = F.shape[-1]
    eta = (direction_costs(F, G) / np.asarray(power_w, dtype=float)).max(axis=-1)
    norm2 = np.sum(np.abs(F) ** 2, axis=(-2, -1))
    return noise_w * eta * norm2 / d, eta


def single_device_mse(G: np.ndarray, power_w: float, noise_w: float, streams: int = 1) -> float:
    """Optimal MSE of one device (closed form): ``σ²·(Σ_{i≤d} λ_i^{-1/2})² / (P·d)``, ``λ`` the top eigenvalues of ``G``.

    With ``d = 1``: ``σ² / (P·λ_max(G))``, the receive beamformer along the strongest
    eigenvector. With one receive antenna and many devices the optimum is
    ``σ² / min_n P_n‖h_n‖²`` (`beamformer_mse` of ``F = 1``).
    """
    lam = np.linalg.eigvalsh(G)[::-1][:streams]
    return float(noise_w * np.sum(lam ** -0.5) ** 2 / (power_w * streams))


@functools.cache
def _sdr_problem(n_devices: int, n_r: int):
    """The SDR as a cvxpy problem with the channels as parameters (compiled once per size, DPP)."""
    import cvxpy as cp

    X = cp.Variable((n_r, n_r), hermitian=True)
    t = cp.Variable()
    Q = [cp.Parameter((n_r, n_r), hermitian=True) for _ in range(n_devices)]
    power = [cp.real(cp.trace(Q[n] @ X)) >= t for n in range(n_devices)]
    problem = cp.Problem(cp.Maximize(t), [X >> 0, cp.real(cp.trace(X)) == 1, *power])
    return problem, X, Q, power


def _solve_sdr(Q: np.ndarray, solver: str) -> tuple[np.ndarray | None, np.ndarray]:
    """Solve the SDR for ``Q_n = P_n G_n``; the solution ``X`` (or None) and the dual weights ``ν`` on the simplex."""
    import cvxpy as cp

    N, n_r = Q.shape[0], Q.shape[1]
    problem, X, params, power = _sdr_problem(N, n_r)
    scale = np.real(np.trace(Q, axis1=1, axis2=2)).mean() / n_r  # conditioning: solve with Q / scale
    for n in range(N):
        params[n].value = (Q[n] + Q[n].conj().T) / (2 * scale)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem.solve(solver=solver, warm_start=False)  # reproducible: the same channels give the same design
    except cp.error.SolverError:
        return None, np.full(N, 1.0 / N)
    if X.value is None:
        return None, np.full(N, 1.0 / N)
    nu = np.array([max(0.0, float(np.real(c.dual_value or 0.0))) for c in power])
    nu = nu / nu.sum() if nu.sum() > 0 else np.full(N, 1.0 / N)
    return X.value, nu


def sdr_beamformer(H: np.ndarray, power_w: np.ndarray, noise_w: float, streams: int = 1, *,
                   randomizations: int = 30, rng: np.random.Generator | int | None = 0,
                   solver: str = "SCS") -> BeamformerDesign:
    """Receive beamformer by semidefinite relaxation with Gaussian randomization.

    Parameters
    ----------
    H : ndarray, shape (N, N_r, N_t)
        Channels of the participating devices for one realization.
    power_w : ndarray, shape (N,)
        Transmit power per channel use of each device, watts (positive).
    noise_w : float
    streams : int
        ``d``.
    randomizations : int
        Gaussian draws besides the principal eigenvectors.
    rng : Generator or int
    solver : str
        A cvxpy solver for complex SDPs (``SCS`` or ``CLARABEL``).

    Returns
    -------
    BeamformerDesign
        The best candidate (every candidate is feasible once scaled), the certified
        bound ``σ²·d / λ_max(Σ ν_n P_n G_n)`` and the duals ``ν``.

    Raises
    ------
    InputError
        On a non-positive power (the device cannot transmit).
    """
    power_w = np.asarray(power_w, dtype=float)
    if not np.all(power_w > 0):
        raise InputError(f"every participating device needs a positive transmit power, got {power_w.tolist()} W")
    rng = np.random.default_rng(rng)
    N, n_r, _ = H.shape
    d = streams
    G = gram(H)
    Q = power_w[:, None, None] * G
    X, nu = _solve_sdr(Q, solver) if N > 1 else (None, np.ones(1))
    t_up = float(np.linalg.eigvalsh(np.tensordot(nu, Q, axes=1))[-1])
    bound = noise_w * d / t_up
    candidates = []
    rank = 0
    if X is not None:
        lam, U = np.linalg.eigh((X + X.conj().T) / 2)
        lam = np.clip(lam, 0.0, None)
        rank = int((lam > 1e-6 * lam.max()).sum())
        candidates.append(U[:, ::-1][:, :d] * np.sqrt(np.maximum(lam[::-1][:d], 1e-12)))
        root = U * np.sqrt(lam)
        W = (rng.standard_normal((randomizations, n_r, d)) + 1j * rng.standard_normal((randomizations, n_r, d))) / math.sqrt(2)
        candidates.extend(root @ W)
    # top eigenvectors of the dual-weighted channel, equally weighted and weighted by λ^{-1/4} (the single-device optimum)
    lam_nu, U_nu = np.linalg.eigh(np.tensordot(nu, Q, axes=1))
    top = U_nu[:, ::-1][:, :d]
    candidates += [top, top * np.maximum(lam_nu[::-1][:d], 1e-300) ** -0.25]
    F = np.stack(candidates)
    mse, eta = beamformer_mse(F, G[None], power_w, noise_w)
    mse = np.where(np.isfinite(mse), mse, np.inf)
    best = int(np.argmin(mse))
    norm = np.linalg.norm(F[best])
    return BeamformerDesign(direction=F[best] / norm, eta=float(eta[best] * norm ** 2), mse=float(mse[best]),
                            bound=bound, weights=nu, rank=rank)


def matched_filter_beamformer(H: np.ndarray, power_w: np.ndarray, noise_w: float, streams: int = 1) -> BeamformerDesign:
    """Baseline without SDR: the top-``d`` left singular vectors of the strongest device's channel (``max_n P_n‖H_n‖²``)."""
    power_w = np.asarray(power_w, dtype=float)
    strongest = int(np.argmax(power_w * np.sum(np.abs(H) ** 2, axis=(1, 2))))
    U = np.linalg.svd(H[strongest], full_matrices=False)[0][:, :streams]
    mse, eta = beamformer_mse(U, gram(H), power_w, noise_w)
    return BeamformerDesign(direction=U, eta=float(eta), mse=float(mse), bound=float("nan"),
                            weights=np.eye(len(H))[strongest])
