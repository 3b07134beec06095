"""Precision of every block, in bits per element.

Weights may differ per block kind and per layer (after quantization), the KV cache
per layer, and activations on the wire are one figure. Bytes are bits / 8, and a
fractional bit width (BitNet's 1.58) is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from placement.errors import PlanError

__all__ = ["Precision", "LAYER_KINDS"]

LAYER_KINDS = ("attention", "projection", "ffn", "kv")


@dataclass(frozen=True, eq=False)
class Precision:
    """Bits per element of every block.

    Attributes
    ----------
    attention, projection, ffn : ndarray, shape (L,)
        Weight bits of each layer's attention groups, output projection and FFN.
    kv : ndarray, shape (L,)
        KV-cache bits of each layer.
    embed, lm_head : float
        Weight bits of the embedding and of the output head.
    activation : float
        Bits per element of hidden states and head outputs sent between devices.
    """

    attention: np.ndarray
    projection: np.ndarray
    ffn: np.ndarray
    kv: np.ndarray
    embed: float
    lm_head: float
    activation: float

    @classmethod
    def uniform(cls, layers: int, weight_bits: float, kv_bits: float, activation_bits: float,
                embed_bits: float | None = None) -> "Precision":
        """The same weight bits for every layer block, one cache and one activation precision.

        ``embed`` and ``lm_head`` take `embed_bits` when given (a 4-bit checkpoint keeps them at 16), else `weight_bits`.
        """
        row = np.full(layers, float(weight_bits))
        ends = float(weight_bits if embed_bits is None else embed_bits)
        return cls(row, row, row, np.full(layers, float(kv_bits)), ends, ends, float(activation_bits))

    def with_overrides(self, overrides: dict[str, Any] | None, *, where: str = "precision") -> "Precision":
        """A copy with some fields replaced; per-layer fields accept a scalar or a list of L values.

        Raises
        ------
        PlanError
            On an unknown field, a wrong length, or bits outside (0, 64].
        """
        if not overrides:
            return self
        if not isinstance(overrides, dict):
            raise PlanError(f"{where}: expected a mapping such as {{'ffn': 8}}, got {overrides!r}")
        layers = len(self.kv)
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            try:
                numbers = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise PlanError(f"{where}.{key}: bits must be a number or a list of numbers, got {value!r}") from None
            if numbers.ndim > 1 or (isinstance(value, bool)):
                raise PlanError(f"{where}.{key}: bits must be a number or a list of numbers, got {value!r}")
            if key in LAYER_KINDS:
                array = np.broadcast_to(numbers, (layers,)) if numbers.ndim == 0 else numbers
                if array.shape != (layers,):
                    raise PlanError(f"{where}.{key}: expected one value or {layers} (one per layer), got {len(array)}")
                changes[key] = np.array(array)
            elif key in ("embed", "lm_head", "activation"):
                if numbers.ndim:
                    raise PlanError(f"{where}.{key}: one number of bits, got {value!r}")
                changes[key] = float(numbers)
            else:
                raise PlanError(
                    f"{where}: unknown field {key!r}; fields are {', '.join(LAYER_KINDS + ('embed', 'lm_head', 'activation'))}"
                )
            if not np.all((np.asarray(changes[key]) > 0) & (np.asarray(changes[key]) <= 64)):
                raise PlanError(f"{where}.{key}: bits must be in (0, 64], got {value!r}")
        return replace(self, **changes)

    def to_dict(self, default: "Precision") -> dict[str, Any]:
        """The fields that differ from `default`, in the compact JSON form (scalar when uniform)."""
        out: dict[str, Any] = {}
        for key in LAYER_KINDS:
            mine, theirs = getattr(self, key), getattr(default, key)
            if not np.array_equal(mine, theirs):
                out[key] = float(mine[0]) if np.all(mine == mine[0]) else mine.tolist()
        for key in ("embed", "lm_head", "activation"):
            if getattr(self, key) != getattr(default, key):
                out[key] = getattr(self, key)
        return out
