"""Baselines of the over-the-air all-reduce: digital OFDMA with quantization, uncoded analog FDMA.

Both send every device's partial sum to the edge server separately, on an equal share
``W/n`` of the band (``n`` participants, noise ``σ²/n`` per share), and the server
broadcasts the sum back like the over-the-air scheme (docs/ota.md).

- **Digital OFDMA, ``q``-bit quantization**: each element is clipped to ``±c`` (``c =
  4``, data normalised to unit variance) and quantized uniformly to ``q`` bits, error
  variance ``Δ²/12`` with ``Δ = 2c/2^q``; the sum carries ``n·Δ²/12`` per element
  (clipping ignored; the links are capacity-achieving and error-free). Device ``n``'s
  rate is the MIMO capacity of its share with equal power over its antennas,
  ``R_n = (W/n)·log2 det(I + P_n·n/(N_t σ²)·H_n H_n^H)``; the upload of ``q·M`` bits takes
  ``max_n q·M/R_n`` (devices in parallel on their subcarriers).
- **Uncoded analog FDMA**: each device sends its ``M`` elements as analog symbols,
  ``d`` per channel use, on its share: ``n·⌈M/d⌉/W`` seconds; the server estimates each
  device's vector with that device's optimal single-user beamformer
  (`single_device_mse`, noise ``σ²/n``) and adds them: the errors add up.
"""

from __future__ import annotations

import numpy as np

from placement.ota.beamforming import gram

__all__ = ["CLIP", "quantization_mse", "ofdma_rates_bps", "fdma_mse"]

CLIP = 4.0  # elements normalised to unit variance, clipped at ±4σ before quantization


def quantization_mse(n_devices: int, bits: int) -> float:
    """Per-element MSE of the sum of `n_devices` uniformly quantized elements: ``n·(2c/2^q)²/12``.

    Examples
    --------
    >>> round(quantization_mse(1, 8), 13)
    8.13802083e-05
    """
    step = 2 * CLIP / 2 ** bits
    return n_devices * step ** 2 / 12


def ofdma_rates_bps(H: np.ndarray, power_w: np.ndarray, noise_w: float, bandwidth_hz: float) -> np.ndarray:
    """Rate of every device on an equal OFDMA share, bits/s; `H` (S, n, N_r, N_t) → (S, n)."""
    n, n_t = H.shape[1], H.shape[-1]
    G = np.conj(np.swapaxes(H, -1, -2)) @ H  # (S, n, N_t, N_t): det(I + c·H H^H) = det(I + c·H^H H)
    snr = (np.asarray(power_w, dtype=float) * n / (n_t * noise_w))[None, :, None, None]
    _, logdet = np.linalg.slogdet(np.eye(n_t) + snr * G)
    return bandwidth_hz / n * logdet.real / np.log(2)


def fdma_mse(H: np.ndarray, power_w: np.ndarray, noise_w: float, streams: int) -> np.ndarray:
    """Per-element MSE of the sum over uncoded analog FDMA, per sample: ``Σ_n σ²/n·(Σ_i λ_i^{-1/2})²/(P_n d)``; (S,)."""
    n = H.shape[1]
    lam = np.linalg.eigvalsh(gram(H))[..., ::-1][..., :streams]  # (S, n, d)
    per_device = (noise_w / n) * np.sum(lam ** -0.5, axis=-1) ** 2 / (np.asarray(power_w, dtype=float) * streams)
    return per_device.sum(axis=-1)
