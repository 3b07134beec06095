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

A measured routing histogram (how often each expert of a layer is chosen) replaces
the uniform law by the conditional Bernoulli law: a ``k``-subset ``A`` has probability
``∝ Π_{e∈A} w_e``, with weights fitted so that each expert's inclusion probability is
its share of the selections times ``k`` (`fit_selection_weights`). Then

    P(x) = Π_n σ_{x_n}(w on device n) / σ_k(w),

``σ_j`` the elementary symmetric polynomial of degree ``j``; equal weights give the
hypergeometric law above (``σ_x = C(e, x)``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from placement.errors import InputError

__all__ = ["ExpertStage", "expected_expert_stage", "routing_outcomes", "elementary_symmetric", "fit_selection_weights",
           "inclusion_probabilities", "device_miss_probability", "routing_weights"]


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


def elementary_symmetric(weights: np.ndarray, k: int) -> np.ndarray:
    """``σ_0 … σ_k`` of `weights`: the sums over every j-subset of the product of its weights, (k+1,).

    Parameters
    ----------
    weights : ndarray, shape (m,)
    k : int

    Returns
    -------
    ndarray, shape (k+1,)
    """
    sigma = np.zeros(k + 1)
    sigma[0] = 1.0
    for w in np.asarray(weights, dtype=float):
        sigma[1:] = sigma[1:] + w * sigma[:-1]
    return sigma


def inclusion_probabilities(weights: np.ndarray, k: int) -> np.ndarray:
    """Each item's probability of being in a ``k``-subset drawn with probability ``∝ Π w`` (conditional Bernoulli).

    Parameters
    ----------
    weights : ndarray, shape (E,)
    k : int

    Returns
    -------
    ndarray, shape (E,)
        ``w_e·σ_{k−1}(w without e) / σ_k(w)``; they sum to ``k``.
    """
    w = np.asarray(weights, dtype=float)
    total = elementary_symmetric(w, k)
    without = np.ones(len(w))  # σ_j(w without e) = σ_j(w) − w_e·σ_{j−1}(w without e), for every e at once
    for j in range(1, k):
        without = total[j] - w * without
    return w * without / total[k]


def fit_selection_weights(histogram: np.ndarray, k: int, *, iterations: int = 200) -> np.ndarray:
    """Weights whose conditional Bernoulli law chooses each expert as often as `histogram` says.

    The target inclusion probability of expert ``e`` is ``π_e = k·h_e/Σh`` (capped just
    below 1); a fixed-point iteration ``w ← w·π/π(w)`` matches it.

    Parameters
    ----------
    histogram : ndarray, shape (E,)
        Non-negative selection counts (or frequencies) of one layer's experts.
    k : int
        Experts per token.
    iterations : int

    Returns
    -------
    ndarray, shape (E,)
        Weights normalised to sum to ``E`` (equal weights for a flat histogram).
    """
    h = np.asarray(histogram, dtype=float)
    target = np.clip(k * h / h.sum(), 1e-12, 1 - 1e-9)
    w = target / (1 - target)
    for _ in range(iterations):
        w = w * target / inclusion_probabilities(w, k)
        w = w * len(w) / w.sum()
    return w


def device_miss_probability(weights: np.ndarray, owner: np.ndarray, device: int, k: int) -> float:
    """Probability that a token's ``k`` experts avoid `device`: ``σ_k(w off the device) / σ_k(w)``.

    Parameters
    ----------
    weights : ndarray, shape (E,)
    owner : ndarray of int, shape (E,)
        The device of each expert.
    device : int
    k : int

    Returns
    -------
    float
    """
    w = np.asarray(weights, dtype=float)
    return float(elementary_symmetric(w[owner != device], k)[k] / elementary_symmetric(w, k)[k])


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
                          combine_s: np.ndarray, shared: bool, device_sigma: np.ndarray | None = None) -> ExpertStage:
    """The exact expectation of a layer's expert stage under uniform (or fitted) top-k routing.

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
    device_sigma : ndarray, shape (N, k+1), optional
        ``σ_0 … σ_k`` of the fitted weights of each device's experts (`elementary_symmetric`);
        None: uniform routing.

    Returns
    -------
    ExpertStage
    """
    outcomes, probability = routing_outcomes(tuple(int(e) for e in holdings), int(k))
    if device_sigma is not None:
        sigma = np.asarray(device_sigma, dtype=float)
        weight = np.prod(sigma[np.arange(len(holdings)), outcomes], axis=1)
        probability = weight / weight.sum()  # Σ over outcomes of Π σ_{x_n} is σ_k of all the weights
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


def routing_weights(entry: Any, model, base_dir: Path | None = None) -> np.ndarray:
    """The fitted routing weights of every MoE layer, (L, E), from an instance's ``expert_routing`` entry.

    Parameters
    ----------
    entry : str or list
        A JSON or YAML file (relative to `base_dir`) holding, or inline: a list with one
        entry per layer, null for a dense layer and otherwise the ``E`` selection counts
        of its experts (how often the router chose each, e.g. over a calibration set).
    model : ModelSpec
    base_dir : Path, optional
        The instance file's folder.

    Returns
    -------
    ndarray, shape (L, E)
        `fit_selection_weights` of each MoE layer's histogram; rows of ones (uniform) for
        MoE layers given as null, zeros for dense layers.

    Raises
    ------
    InputError
        On a dense model, a missing file, a wrong number of layers or experts, or counts that
        are negative, not numbers, or all zero.
    """
    where = "`expert_routing`"
    if not model.is_moe:
        raise InputError(f"{where}: model {model.name!r} has no experts to route to; drop `expert_routing`")
    if isinstance(entry, str):
        path = Path(entry) if base_dir is None or Path(entry).is_absolute() else Path(base_dir) / entry
        if not path.is_file():
            raise InputError(f"{where}: no file at {str(path)!r}; give a JSON or YAML list of per-layer expert counts")
        text = path.read_text()
        entry = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        where = f"`expert_routing` ({path})"
    if not isinstance(entry, list) or len(entry) != model.layers:
        raise InputError(f"{where}: expected a list of {model.layers} entries (one per layer, null for dense layers), "
                         f"got {type(entry).__name__} of {len(entry) if isinstance(entry, list) else 0}")
    out = np.zeros((model.layers, model.experts))
    for l, row in enumerate(entry):
        if not model.moe_layers[l] or row is None:
            out[l] = 1.0 if model.moe_layers[l] else 0.0
            continue
        counts = np.asarray(row, dtype=float) if isinstance(row, list) and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in row) else None
        if counts is None or counts.shape != (model.experts,) or not np.all(np.isfinite(counts)) \
                or (counts < 0).any() or counts.sum() <= 0:
            raise InputError(f"{where}: layer {l} needs {model.experts} non-negative selection counts, not all zero")
        out[l] = fit_selection_weights(counts, model.experts_per_token)
    return out
