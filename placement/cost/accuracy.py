"""Accuracy models for split computing with quantization: how much a configuration distorts the model.

A configuration of the split back end (`placement.solvers.split`) is: split layer
``ℓ`` (layers ``0 … ℓ-1`` on the device, ``ℓ … L-1`` on the server), weight bits of
the front and back segments ``w1``, ``w2``, their KV-cache bits ``c1``, ``c2``, and
the compression of the hidden state crossing the split: threshold splitting (a
fraction ``f`` of outlier elements kept at 16 bits) followed by token-wise
quantization of the rest to ``b`` bits (TS + TAB-Q, Sung et al., arXiv 2511.04002).

An accuracy model maps arrays of these (broadcast against each other) to an error
figure, lower is better, NaN where it does not know (the search then never picks
that configuration, so it never reports an accuracy it did not compute):

- `DistortionProxy` (the default): an analytic proxy, the relative noise energy the
  quantizers inject, weighted by a per-layer sensitivity profile (docs/split.md
  states every assumption and limit);
- `TableAccuracy`: measured figures (perplexity, or task accuracy) read from a CSV,
  one row per configuration, linearly interpolated over the split layer.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from placement.errors import InputError

__all__ = ["AccuracyModel", "DistortionProxy", "TableAccuracy", "uniform_noise", "TABLE_COLUMNS"]

TABLE_COLUMNS = ("split", "w_front", "w_back", "kv_front", "kv_back", "act_bits", "outlier_fraction")


class AccuracyModel(Protocol):
    """What the split search needs of an accuracy model."""

    def error(self, layers: int, split, w_front, kv_front, w_back, kv_back, act_bits, outlier_fraction) -> np.ndarray:
        """Error of every configuration (arguments broadcast together); lower is better, NaN = unknown."""
        ...


def uniform_noise(bits, range_over_sigma: float) -> np.ndarray:
    """Relative MSE of a uniform quantizer: ``(Δ²/12)/σ²`` with ``Δ = 2R/2^b``, i.e. ``(R/σ)²·2^(-2b)/3``.

    At 16 bits and above the element is taken as exact (0): that is the reference precision.
    """
    bits = np.asarray(bits, dtype=float)
    return np.where(bits >= 16, 0.0, range_over_sigma**2 * 2.0 ** (-2 * bits) / 3)


@dataclass(frozen=True)
class DistortionProxy:
    """Analytic distortion: the relative noise energy the quantizers inject into the residual stream.

    ``error = Σ_l s_l·(e_w(w_l) + e_kv(c_l)) + s_e·(e_w(w_embed) + e_w(w_head)) + e_a(b, f)``
    where ``e(b) = (R/σ)²·2^(-2b)/3`` is the uniform quantizer's relative MSE
    (`uniform_noise`), zero at 16 bits, and

    - weights and KV cache use a clipping range ``R = weight_range`` σ (per-channel
      scales: a weight or cache row rarely exceeds ``4σ``);
    - the hidden state at the split is quantized token-wise (one scale per token);
      its range is set by outlier elements, ``outlier_ratio`` times the typical
      range ``activation_range``·σ, held by a fraction ``outlier_share`` of the
      elements (LLM.int8 reports a few outlier features per token, up to 20× the
      others). Threshold splitting keeps the largest ``f`` of the elements at 16
      bits; the range of the rest shrinks geometrically,
      ``R(f) = activation_range·outlier_ratio^(1 - min(f/outlier_share, 1))``, and
      only ``1 - f`` of the elements carry noise: ``e_a = (1-f)·R(f)²·2^(-2b)/3``;
    - ``s_l`` (`sensitivity`) weights layer ``l``; by default
      ``1 + 3·exp(-l/2) + 3·exp(-(L-1-l)/2)``: the first and last layers, known to be the
      most fragile under quantization, count up to 4×; ``s_e`` weights the
      embedding and output head (default 1).

    The proxy ranks configurations; its absolute value is not a perplexity.
    Assumptions and limits are in docs/split.md.
    """

    weight_range: float = 4.0
    activation_range: float = 4.0
    outlier_ratio: float = 20.0
    outlier_share: float = 0.005
    embed_sensitivity: float = 1.0
    sensitivity: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("weight_range", "activation_range", "outlier_ratio", "outlier_share"):
            if not getattr(self, name) > 0:
                raise InputError(f"`DistortionProxy.{name}` must be positive, got {getattr(self, name)!r}")
        if self.outlier_ratio < 1:
            raise InputError(f"`DistortionProxy.outlier_ratio` must be at least 1, got {self.outlier_ratio!r}")

    def layer_sensitivity(self, layers: int) -> np.ndarray:
        """``s_l`` for ``l = 0 … L-1``: the given profile, or the default U shape."""
        if self.sensitivity is not None:
            s = np.asarray(self.sensitivity, dtype=float)
            if s.shape != (layers,) or not np.all(s >= 0):
                raise InputError(f"`sensitivity`: expected {layers} non-negative values (one per layer), got {s.shape[0]}")
            return s
        l = np.arange(layers)
        return 1 + 3 * np.exp(-l / 2) + 3 * np.exp(-(layers - 1 - l) / 2)

    def activation_error(self, act_bits, outlier_fraction) -> np.ndarray:
        """``e_a(b, f)``: relative MSE of the compressed hidden state (0 at 16 bits)."""
        f = np.asarray(outlier_fraction, dtype=float)
        reach = np.minimum(f / self.outlier_share, 1.0)
        range_ = self.activation_range * self.outlier_ratio ** (1 - reach)
        bits = np.asarray(act_bits, dtype=float)
        return np.where(bits >= 16, 0.0, (1 - f) * range_**2 * 2.0 ** (-2 * bits) / 3)

    def error(self, layers: int, split, w_front, kv_front, w_back, kv_back, act_bits, outlier_fraction) -> np.ndarray:
        """The proxy for every configuration (broadcast); the activation term only where ``split < L``."""
        s = self.layer_sensitivity(layers)
        prefix = np.concatenate([[0.0], np.cumsum(s)])  # Σ_{l<ℓ} s_l
        split = np.asarray(split, dtype=np.int64)
        front, back = prefix[split], prefix[-1] - prefix[split]
        e = lambda b: uniform_noise(b, self.weight_range)  # noqa: E731
        head_bits = np.where(split < layers, w_back, w_front)
        layers_error = front * (e(w_front) + e(kv_front)) + back * (e(w_back) + e(kv_back))
        ends = self.embed_sensitivity * (e(w_front) + e(head_bits))
        crossing = np.where(split < layers, self.activation_error(act_bits, outlier_fraction), 0.0)
        return layers_error + ends + crossing


@dataclass(frozen=True)
class TableAccuracy:
    """Measured error figures per configuration, read from a CSV.

    Columns: ``split``, ``w_front``, ``w_back`` (required), ``kv_front``, ``kv_back``,
    ``act_bits``, ``outlier_fraction`` (optional: a missing column matches any
    value) and the metric column `metric` (default ``perplexity``). Rows that agree
    on every column but ``split`` are one curve, linearly interpolated over the
    split layer between the splits measured; outside them, and for any
    configuration no row covers, the error is NaN (the search will not pick it).
    With ``higher_is_better`` (task accuracy) the error is the negated metric, so a
    budget is given as ``-min_accuracy``.

    Parameters
    ----------
    path : str or Path
    metric : str
    higher_is_better : bool
    """

    path: str | Path
    metric: str = "perplexity"
    higher_is_better: bool = False
    _curves: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _keys: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        path = Path(self.path)
        if not path.is_file():
            raise InputError(f"accuracy table {str(path)!r} does not exist; give a CSV with columns "
                             f"{', '.join(TABLE_COLUMNS)}, {self.metric}")
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise InputError(f"accuracy table {str(path)!r} has no rows")
        header = set(rows[0])
        missing = [c for c in ("split", "w_front", "w_back", self.metric) if c not in header]
        if missing:
            raise InputError(f"accuracy table {str(path)!r} lacks column(s) {', '.join(missing)}; "
                             f"columns are {', '.join(TABLE_COLUMNS)} and the metric (`metric`={self.metric!r})")
        keys = tuple(c for c in TABLE_COLUMNS[1:] if c in header)
        curves: dict[tuple, list[tuple[float, float]]] = {}
        for i, row in enumerate(rows, start=2):
            try:
                key = tuple(float(row[c]) for c in keys)
                point = (float(row["split"]), float(row[self.metric]))
            except (TypeError, ValueError):
                raise InputError(f"accuracy table {str(path)!r}, line {i}: every value must be a number") from None
            if not all(math.isfinite(v) for v in key + point):
                raise InputError(f"accuracy table {str(path)!r}, line {i}: values must be finite")
            curves.setdefault(key, []).append(point)
        sign = -1.0 if self.higher_is_better else 1.0
        ready = {}
        for key, points in curves.items():
            points.sort()
            xs = np.array([p[0] for p in points])
            if len(np.unique(xs)) != len(xs):
                raise InputError(f"accuracy table {str(path)!r}: split {xs[np.diff(xs) == 0][0]:g} is given twice "
                                 f"for the configuration {dict(zip(keys, key))}")
            ready[key] = (xs, sign * np.array([p[1] for p in points]))
        object.__setattr__(self, "_curves", ready)
        object.__setattr__(self, "_keys", keys)

    def error(self, layers: int, split, w_front, kv_front, w_back, kv_back, act_bits, outlier_fraction) -> np.ndarray:
        values = dict(w_front=w_front, w_back=w_back, kv_front=kv_front, kv_back=kv_back, act_bits=act_bits,
                      outlier_fraction=outlier_fraction)
        arrays = np.broadcast_arrays(np.asarray(split, dtype=float), *(np.asarray(values[k], dtype=float) for k in self._keys))
        split_b, columns = arrays[0], arrays[1:]
        out = np.full(split_b.shape, np.nan)
        for key, (xs, ys) in self._curves.items():
            match = np.ones(split_b.shape, dtype=bool)
            for column, value in zip(columns, key):
                match &= np.isclose(column, value)
            inside = match & (split_b >= xs[0]) & (split_b <= xs[-1])
            out[inside] = np.interp(split_b[inside], xs, ys)
        return out
