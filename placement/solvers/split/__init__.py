"""Split computing with one-point split compression (Sung et al., arXiv 2511.04002).

A memory-poor **device** runs the embedding and layers ``0 … ℓ-1``; a **server** runs
layers ``ℓ … L-1`` and the output head, and sends each sampled token back. The two
segments have their own weight bits (``w1``, ``w2``: one-point split compression,
OPSC) and KV-cache bits (``c1``, ``c2``); the hidden state crossing the split is
compressed by threshold splitting (a fraction ``f`` of outlier elements kept at 16
bits with their positions) and token-wise quantization of the rest to ``b`` bits
(TAB-Q). ``ℓ = L`` runs everything on the device; ``ℓ = 0`` only the embedding.

Back ends (plain functions returning a `Result`, objective = the evaluator's total):

- `solve_split`: exact search over every ``(ℓ, w1, c1, w2, c2, b, f)`` of the
  discrete space, vectorised with NumPy. The total latency of a split plan is a sum
  of terms (front segment, back segment, crossing) that come from the evaluator's
  own cost functions, so the search's value is the evaluator's figure and its
  argmin the proven optimum of the discrete problem. With ``baseline=`` it gives a
  baseline instead (see `BASELINES`).
- `solve_split_adaptive`: the split layer may change at every re-decision interval
  of the instance (layers move with their KV caches; migration as the evaluator
  charges it); exact over split sequences by dynamic programming for every
  precision setting whose lower bound beats the incumbent (the static optimum).

The cost model of the split, the formulation and the accuracy proxy: docs/split.md.
"""

from __future__ import annotations

from placement.solvers.split.adaptive import solve_split_adaptive
from placement.solvers.split.configuration import (
    BASELINES,
    DEFAULT_ACTIVATION_BITS,
    DEFAULT_KV_BITS,
    DEFAULT_OUTLIER_FRACTIONS,
    DEFAULT_WEIGHT_BITS,
    SplitConfig,
    effective_activation_bits,
    split_plan,
)
from placement.solvers.split.static import solve_split

__all__ = [
    "solve_split",
    "solve_split_adaptive",
    "split_plan",
    "effective_activation_bits",
    "SplitConfig",
    "BASELINES",
    "DEFAULT_WEIGHT_BITS",
    "DEFAULT_KV_BITS",
    "DEFAULT_OUTLIER_FRACTIONS",
    "DEFAULT_ACTIVATION_BITS",
]
