"""Expected cost of a mixture-of-experts layer whose experts sit on several devices.

Per token the router (with the shared experts, on the FFN device ``f``) picks the
top-``k`` of the layer's ``E`` experts; the hidden state goes to every other device
holding a chosen expert (dispatch), each runs its chosen experts, and their outputs
come back to ``f`` (combine). Under uniform routing every ``k``-subset is equally
likely, so the numbers ``x_n`` of chosen experts on the devices, which hold ``e_n``
experts each, follow the multivariate hypergeometric law

    P(x) = Π_n C(e_n, x_n) / C(E, k),     Σ_n x_n = k.

The stage costs, after the router's own time,

- switched network: ``max(x_f·t_f, max_{n≠f, x_n>0} (d_n + x_n·t_n + c_n))`` (the slowest chain);
- shared medium: ``Σ_{n≠f, x_n>0} (d_n + c_n) + max_n x_n·t_n`` (transfers take turns,
  computations overlap),

with ``t_n`` one expert's time on ``n`` and ``d_n``, ``c_n`` the dispatch and combine
transfers. `expected_expert_stage` enumerates every outcome ``x`` (at most
``C(k+N-1, N-1)``: 6,435 for ``k = N = 8``) and returns the exact expectation. It is
the expected cost of one token (batch 1), not the worst case; docs/moe.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import comb

import numpy as np

__all__ = ["ExpertStage", "expected_expert_stage", "routing_outcomes"]


@functools.lru_cache(maxsize=4096)
def routing_outcomes(holdings: tuple[int, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every split of ``k`` chosen experts over devices holding `holdings` experts, and its probability.

    Parameters
    ----------
    holdings : tuple of int
        ``e_n``: experts of the layer on each device (they sum to ``E``).
    k : int
        Experts chosen per token.

    Returns
    -------
    outcomes : ndarray of int, shape (M, N)
        ``x``: chosen experts on each device, rows summing to ``k``.
    probability : ndarray, shape (M,)
        ``Π C(e_n, x_n) / C(E, k)``; sums to 1.
    """
    rows: list[tuple[int, ...]] = []

    def split(n: int, left: int, prefix: tuple[int, ...]) -> None:
        if n == len(holdings) - 1:
            if left <= holdings[n]:
                rows.append(prefix + (left,))
            return
        for x in range(min(left, holdings[n]) + 1):
            split(n + 1, left - x, prefix + (x,))

    split(0, k, ())
    outcomes = np.array(rows, dtype=np.int64).reshape(-1, len(holdings))
    weight = np.array([np.prod([comb(e, x) for e, x in zip(holdings, row)]) for row in rows], dtype=float)
    return outcomes, weight / comb(sum(holdings), k)


@dataclass(frozen=True)
class ExpertStage:
    """Expected seconds of the routed experts of one layer for one token.

    Attributes
    ----------
    total_s : float
        Expected time from the router's output to the combined result on the FFN device.
    compute_s : float
        Its expected compute part (the experts' time along the chain that decides it).
    touched : ndarray, shape (N,)
        Probability that each device runs at least one chosen expert.
    """

    total_s: float
    compute_s: float
    touched: np.ndarray


def expected_expert_stage(holdings: np.ndarray, k: int, home: int, expert_s: np.ndarray, dispatch_s: np.ndarray,
                          combine_s: np.ndarray, shared: bool) -> ExpertStage:
    """The exact expectation of a layer's expert stage under uniform top-k routing.

    Parameters
    ----------
    holdings : ndarray of int, shape (N,)
        Experts of the layer on each device.
    k : int
        Experts per token.
    home : int
        The FFN device ``f`` (router, shared experts, where the outputs are combined).
    expert_s : ndarray, shape (N,)
        One expert's seconds on each device.
    dispatch_s, combine_s : ndarray, shape (N,)
        Seconds to send the hidden state from ``f`` to each device and back (0 at ``f``).
    shared : bool
        True for a shared medium (transfers add up), False for a switched network.

    Returns
    -------
    ExpertStage
    """
    outcomes, probability = routing_outcomes(tuple(int(e) for e in holdings), int(k))
    compute = outcomes * np.asarray(expert_s, dtype=float)  # (M, N)
    away = (outcomes > 0) & (np.arange(len(holdings)) != home)
    links = np.where(away, np.asarray(dispatch_s) + np.asarray(combine_s), 0.0)
    if shared:
        slowest = compute.max(axis=1)
        total, part = links.sum(axis=1) + slowest, slowest
    else:
        chains = np.where(outcomes > 0, compute + links, -np.inf)
        chains[:, home] = compute[:, home]  # the FFN device's own experts need no transfer
        best = chains.argmax(axis=1)
        total = chains[np.arange(len(chains)), best]
        part = compute[np.arange(len(chains)), best]
    touched = ((outcomes > 0) * probability[:, None]).sum(axis=0)
    return ExpertStage(float(probability @ total), float(probability @ part), touched)
