"""One wireless all-reduce through the edge server: its time and the error it carries, as the evaluator sees them.

A plan whose collective is ``ota`` carries its transceiver design in
``plan.extras["ota"]`` (JSON): the ``scheme`` (``aircomp``, ``digital`` or
``analog-fdma``), the channel ``seed`` and ``samples``, and for ``aircomp`` the unit-norm
receive beamformer direction of every sample (``direction_re``/``direction_im``,
shape (samples, N_r, d)). `ota_context` rebuilds the channels from the instance's
``wireless`` section and the seed, the power every participant may spend (peak power,
and the energy per token left after computing the FLOPs the plan gives it), and
recomputes the MSE in closed form (no SDR in the evaluator). Time of one all-reduce of
``M`` elements (``a`` bits each on the downlink; ``d`` streams, bandwidth ``W``):

- ``aircomp``: ``⌈M/d⌉/W + M·a/R_dl + overhead`` (all devices transmit at once);
- ``digital``: ``E_H[max_n q·M/R_n] + M·a/R_dl + overhead`` (`baselines.ofdma_rates_bps`);
- ``analog-fdma``: ``n·⌈M/d⌉/W + M·a/R_dl + overhead``.

Docs: docs/ota.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placement.cost.tables import step_costs
from placement.errors import PlanError
from placement.ota.baselines import fdma_mse, ofdma_rates_bps, quantization_mse
from placement.ota.beamforming import beamformer_mse, gram
from placement.ota.channel import sample_channels

__all__ = ["SCHEMES", "OtaContext", "ota_context", "plan_device_flops", "uses_per_token", "design_extras"]

SCHEMES = ("aircomp", "digital", "analog-fdma")


@dataclass(frozen=True, eq=False)
class OtaContext:
    """What the evaluator needs of a wireless all-reduce: seconds per message, and the error figures.

    Attributes
    ----------
    scheme : str
    uplink_s_per_element : float
        Uplink seconds per element, before rounding to whole channel uses (``aircomp``
        and ``analog-fdma`` round ``M/d`` up; ``digital`` does not).
    streams : int
    bandwidth_hz : float
    channel_factor : float
        ``1`` for ``aircomp``, ``n`` for ``analog-fdma`` (channel uses per element group), 0 for ``digital``.
    downlink_s_per_bit, overhead_s, activation_bits : float
    errors : dict of str to float
        ``allreduce_mse`` (mean over the samples), ``allreduce_mse_max``, and
        ``energy_over_j`` when a participant's computing alone exceeds its energy budget.
    """

    scheme: str
    uplink_s_per_element: float
    streams: int
    bandwidth_hz: float
    channel_factor: float
    downlink_s_per_bit: float
    overhead_s: float
    activation_bits: float
    errors: dict[str, float] = field(default_factory=dict)

    def time_s(self, message_bytes: float) -> float:
        """Seconds of one all-reduce of a message of `message_bytes` (the hidden state at ``activation_bits``)."""
        elements = message_bytes * 8 / self.activation_bits
        if self.scheme == "digital":
            uplink = elements * self.uplink_s_per_element
        else:
            uplink = self.channel_factor * math.ceil(elements / self.streams - 1e-9) / self.bandwidth_hz
        return uplink + elements * self.activation_bits * self.downlink_s_per_bit + self.overhead_s


def _rows(instance, plan) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Interval 0 of `plan` in instance device order: groups (L, N), projection and FFN shares (L, N), lm_head device."""
    names = instance.cluster.names
    remap = np.array([names.index(n) for n in plan.devices])
    p = plan.intervals[0]
    N, L = instance.n_devices, instance.model.layers
    counts = np.zeros((L, N))
    np.add.at(counts, (np.arange(L)[:, None], remap[np.asarray(p.attention)]), 1.0)
    proj, ffn = np.zeros((L, N)), np.zeros((L, N))
    np.add.at(proj, (slice(None), remap), np.asarray(p.projection, dtype=float))
    np.add.at(ffn, (slice(None), remap), np.asarray(p.ffn, dtype=float))
    return counts, proj, ffn, int(remap[p.lm_head])


def plan_device_flops(instance, plan) -> np.ndarray:
    """FLOPs every device computes for one decode token at the workload's largest context, shape (N,)."""
    counts, proj, ffn, lm_head = _rows(instance, plan)
    context = np.array([instance.workload.prompt_tokens + instance.workload.generate_tokens])
    costs = step_costs(instance, instance.precision, context)
    flops = (counts * costs.group_flops[0][:, None] + proj * costs.projection_flops[0][:, None]
             + ffn * costs.ffn_flops[0][:, None]).sum(axis=0)
    flops[lm_head] += float(costs.lm_head_flops[0])
    return flops


def uses_per_token(instance, plan, streams: int) -> tuple[int, np.ndarray]:
    """Channel uses of a decode token's all-reduces, and the participants (devices holding a share of a split block)."""
    counts, proj, ffn, _ = _rows(instance, plan)
    split_proj, split_ffn = (proj > 0).sum(axis=1) > 1, (ffn > 0).sum(axis=1) > 1
    participants = ((proj > 0) & split_proj[:, None]).any(axis=0) | ((ffn > 0) & split_ffn[:, None]).any(axis=0)
    elements = instance.workload.batch * instance.model.hidden
    return int(split_proj.sum() + split_ffn.sum()) * math.ceil(elements / streams), participants


def design_extras(scheme: str, seed: int, samples: int, directions: np.ndarray | None = None, **info: Any) -> dict[str, Any]:
    """``plan.extras["ota"]`` for a design (directions of shape (samples, N_r, d) for ``aircomp``)."""
    extras: dict[str, Any] = {"scheme": scheme, "seed": int(seed), "samples": int(samples)}
    if directions is not None:
        extras["direction_re"] = np.real(directions).tolist()
        extras["direction_im"] = np.imag(directions).tolist()
    extras.update(info)
    return extras


def _design(plan, wireless) -> tuple[str, int, int, np.ndarray | None]:
    design = plan.extras.get("ota")
    if not isinstance(design, dict):
        raise PlanError("collective 'ota' needs a transceiver design from the over-the-air back end in the plan's "
                        "`extras.ota`: solve with method 'ota' (docs/ota.md), or use 'ring', 'star' or 'gather'")
    scheme = design.get("scheme", "aircomp")
    if scheme not in SCHEMES:
        raise PlanError(f"plan `extras.ota.scheme` must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    seed, samples = design.get("seed"), design.get("samples")
    for name, value in (("seed", seed), ("samples", samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "samples" else 0):
            raise PlanError(f"plan `extras.ota.{name}` must be a whole number, got {value!r}")
    if scheme != "aircomp":
        return scheme, seed, samples, None
    try:
        F = np.asarray(design["direction_re"], dtype=float) + 1j * np.asarray(design["direction_im"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise PlanError("plan `extras.ota` needs `direction_re` and `direction_im`, the receive beamformer of every "
                        "channel sample as (samples, N_r, d) lists of numbers") from None
    expected = (samples, wireless.server_antennas, wireless.streams)
    if F.shape != expected:
        raise PlanError(f"plan `extras.ota` beamformer has shape {F.shape}; the instance's wireless section needs "
                        f"(samples, server_antennas, streams) = {expected}")
    return scheme, seed, samples, F


def ota_context(instance, plan) -> OtaContext:
    """Rebuild a plan's wireless all-reduce on `instance`: time coefficients and the recomputed MSE.

    Raises
    ------
    PlanError
        When the instance has no ``wireless`` section, or the design is missing or malformed.
    """
    wireless = getattr(instance, "wireless", None)
    if wireless is None:
        raise PlanError("collective 'ota' needs a transceiver design from the over-the-air back end (method 'ota') "
                        "and a `wireless` section in the instance (antennas, bandwidth, noise power, path loss, power; "
                        "docs/ota.md), which this instance lacks: add one, or use 'ring', 'star' or 'gather'")
    if len(wireless.path_gain) != instance.n_devices:
        raise PlanError(f"the instance's `wireless` section describes {len(wireless.path_gain)} devices, it has "
                        f"{instance.n_devices}")
    scheme, seed, samples, F = _design(plan, wireless)
    uses, members = uses_per_token(instance, plan, wireless.streams)
    power = wireless.power_budget_w(plan_device_flops(instance, plan), uses)[members]
    n = int(members.sum())
    H = sample_channels(wireless, samples, seed)[:, members]
    errors: dict[str, float] = {}
    short = np.flatnonzero(power <= 0)
    if len(short):
        flops = plan_device_flops(instance, plan)[members]
        over = wireless.compute_energy_j_per_flop[members] * flops - wireless.energy_per_token_j[members]
        errors["energy_over_j"] = float(over.max())
    bits = instance.precision.activation
    if n <= 1:
        mse = np.zeros(samples)
        up = 0.0
    elif len(short):
        mse = np.full(samples, np.inf)
        up = 0.0
    elif scheme == "aircomp":
        mse, _ = beamformer_mse(F, gram(H), power, wireless.noise_power_w)
        up = 1.0 / wireless.bandwidth_hz
    elif scheme == "digital":
        q = int(plan.extras["ota"].get("bits", 8))
        mse = np.full(samples, quantization_mse(n, q))
        rates = ofdma_rates_bps(H, power, wireless.noise_power_w, wireless.bandwidth_hz)
        up = float(np.mean(np.max(q / rates, axis=1)))
    else:
        mse = fdma_mse(H, power, wireless.noise_power_w, wireless.streams)
        up = n / wireless.bandwidth_hz
    errors.update({"allreduce_mse": float(np.mean(mse)), "allreduce_mse_max": float(np.max(mse))})
    return OtaContext(scheme=scheme, uplink_s_per_element=up, streams=wireless.streams, bandwidth_hz=wireless.bandwidth_hz,
                      channel_factor=0.0 if scheme == "digital" else (n if scheme == "analog-fdma" else 1.0),
                      downlink_s_per_bit=1.0 / wireless.downlink_bits_per_s, overhead_s=wireless.overhead_s,
                      activation_bits=bits, errors=errors)
