"""The wireless description of an over-the-air (OTA) instance, and seeded channel sampling.

An instance file may carry a ``wireless:`` section (docs/ota.md): the edge server's
``N_r`` antennas, every device's ``N_t``, the bandwidth, the noise power, the symbols
(streams) sent per channel use, the fading (Rayleigh or Rician with a K-factor), each
device's path loss (in dB, or from a distance and an exponent), its peak transmit
power, its energy budget per decode token and its compute energy per FLOP, and the
rate at which the server broadcasts the sum back. `Wireless` holds it in SI units
(units in the field names); `sample_channels` draws block-fading MIMO uplinks
``H_n ∈ C^{N_r×N_t}`` from it, reproducibly from a seed.

Quantities are parsed by pint's default registry (it knows ``MHz``, ``dBm``, ``dB``,
``pJ``, ``m``), which the library's own registry (`placement.cost.units`) does not.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from placement.errors import InputError

__all__ = ["Wireless", "FADINGS", "sample_channels", "wireless_from_mapping", "parse_wireless_quantity"]

FADINGS = ("rayleigh", "rician")


@dataclass(frozen=True, eq=False)
class Wireless:
    """A block-fading MIMO multiple-access channel from N devices to one edge server.

    Attributes
    ----------
    server_antennas : int
        ``N_r``.
    device_antennas : int
        ``N_t`` (every device alike).
    bandwidth_hz : float
        ``W``; one complex symbol per channel use, ``W`` channel uses per second.
    noise_power_w : float
        ``σ²``, receiver noise power over the band, watts.
    streams : int
        ``d``, symbols (elements) sent per channel use, ``d ≤ min(N_t, N_r)``.
    fading : {"rayleigh", "rician"}
    rician_k : float
        Linear K-factor (line-of-sight to scattered power); 0 for Rayleigh.
    path_gain : ndarray, shape (N,)
        Large-scale power gain of each device (``10^(-path loss dB / 10)``).
    max_power_w : ndarray, shape (N,)
        Peak transmit power of each device, watts.
    energy_per_token_j : ndarray, shape (N,)
        Energy budget of each device per decode token (compute + transmission), joules;
        ``inf`` where there is none.
    compute_energy_j_per_flop : ndarray, shape (N,)
        ``e_n``, joules per FLOP.
    downlink_bits_per_s : float
        Rate of the server's broadcast of the sum, bits per second.
    overhead_s : float
        Fixed time per all-reduce (synchronisation, turnaround), seconds.
    devices : tuple of str
        Device names, in the instance's order.
    """

    server_antennas: int
    device_antennas: int
    bandwidth_hz: float
    noise_power_w: float
    streams: int
    fading: str
    rician_k: float
    path_gain: np.ndarray
    max_power_w: np.ndarray
    energy_per_token_j: np.ndarray
    compute_energy_j_per_flop: np.ndarray
    downlink_bits_per_s: float
    overhead_s: float = 0.0
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.fading not in FADINGS:
            raise InputError(f"`wireless.fading` must be one of {', '.join(FADINGS)}, got {self.fading!r}")
        for name in ("server_antennas", "device_antennas", "streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"`wireless.{name}` must be a whole number of at least 1, got {value!r}")
        if self.streams > min(self.server_antennas, self.device_antennas):
            raise InputError(f"`wireless.streams` ({self.streams}) must not exceed the antennas of the server "
                             f"({self.server_antennas}) or of a device ({self.device_antennas}): zero-forcing needs "
                             "one spatial dimension per stream at both ends")
        for name in ("bandwidth_hz", "noise_power_w", "downlink_bits_per_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"`wireless.{name}` must be positive and finite, got {value!r}")
        if not (math.isfinite(self.rician_k) and self.rician_k >= 0):
            raise InputError(f"`wireless.rician_k` must be zero or more, got {self.rician_k!r}")
        if not (math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise InputError(f"`wireless.overhead` must be zero or more, got {self.overhead_s!r}")
        n = len(self.path_gain)
        for name in ("max_power_w", "energy_per_token_j", "compute_energy_j_per_flop"):
            if len(getattr(self, name)) != n:
                raise InputError(f"`wireless.{name}` has {len(getattr(self, name))} entries for {n} devices")
        if not np.all(np.isfinite(self.path_gain) & (self.path_gain > 0)):
            raise InputError(f"`wireless.path_loss`: every device needs a finite path loss, got gains {self.path_gain.tolist()}")
        if not np.all(np.isfinite(self.max_power_w) & (self.max_power_w > 0)):
            raise InputError(f"`wireless.max_power` must be positive for every device, got {self.max_power_w.tolist()} W")
        if not np.all(self.energy_per_token_j > 0):
            raise InputError(f"`wireless.energy_per_token` must be positive, got {self.energy_per_token_j.tolist()} J")
        if not np.all(np.isfinite(self.compute_energy_j_per_flop) & (self.compute_energy_j_per_flop >= 0)):
            raise InputError("`wireless.compute_energy` must be zero or more joules per FLOP, got "
                             f"{self.compute_energy_j_per_flop.tolist()}")

    @property
    def n_devices(self) -> int:
        return len(self.path_gain)

    def power_budget_w(self, flops_per_token: np.ndarray, uses_per_token: float) -> np.ndarray:
        """Transmit power each device may spend per channel use, watts, shape (N,).

        ``P_n = min(P_max,n, (E_n − e_n·F_n) · W / U)``: the energy left per token after
        computing its ``F_n`` FLOPs, spread over the ``U`` channel uses (each ``1/W``
        seconds) of a token's all-reduces. Zero or negative where computing alone
        exhausts the budget (the caller reports that as infeasible).
        """
        left = self.energy_per_token_j - self.compute_energy_j_per_flop * np.asarray(flops_per_token, dtype=float)
        if uses_per_token <= 0:
            return np.where(left > 0, self.max_power_w, left)
        with np.errstate(invalid="ignore"):
            return np.minimum(self.max_power_w, left * self.bandwidth_hz / uses_per_token)


def sample_channels(wireless: Wireless, n_samples: int, seed: int) -> np.ndarray:
    """Block-fading uplinks ``H_n`` of every device, shape (S, N, N_r, N_t), complex.

    Small-scale fading is Rayleigh (i.i.d. ``CN(0, 1)`` entries) or Rician with K-factor
    ``K``: ``sqrt(K/(K+1))·H_los + sqrt(1/(K+1))·H_nlos``, ``H_los = a_r(θ_r) a_t(θ_t)^H``
    with half-wavelength uniform linear arrays and one fixed angle pair per device
    (drawn from the same seed); each ``H_n`` is then scaled by the device's path gain
    ``sqrt(β_n)``. The same (wireless, n_samples, seed) always gives the same channels.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"`samples` must be a whole number of at least 1, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    N, Nr, Nt = wireless.n_devices, wireless.server_antennas, wireless.device_antennas
    scattered = (rng.standard_normal((n_samples, N, Nr, Nt)) + 1j * rng.standard_normal((n_samples, N, Nr, Nt))) / math.sqrt(2)
    if wireless.fading == "rician":
        K = wireless.rician_k
        angles = rng.uniform(-np.pi / 2, np.pi / 2, size=(2, N))
        a_r = np.exp(1j * np.pi * np.arange(Nr)[None, :] * np.sin(angles[0])[:, None])  # (N, Nr)
        a_t = np.exp(1j * np.pi * np.arange(Nt)[None, :] * np.sin(angles[1])[:, None])  # (N, Nt)
        los = a_r[:, :, None] * a_t.conj()[:, None, :]
        H = math.sqrt(K / (K + 1)) * los[None] + math.sqrt(1 / (K + 1)) * scattered
    else:
        H = scattered
    return H * np.sqrt(wireless.path_gain)[None, :, None, None]


# ----------------------------------------------------------------------------- parsing
@functools.cache
def _registry():
    import pint

    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def parse_wireless_quantity(value: Any, unit: str, *, field: str, example: str) -> float:
    """A quantity of the wireless section in `unit` (``"Hz"``, ``"W"``, ``"J"``, ``"m"``, ``"dB"``, ``"bit/s"``).

    Bare numbers are taken in `unit`; ``"dBm"`` converts to watts; with `unit` ``"dB"``
    the value is returned in dB.

    Examples
    --------
    >>> float(f'{parse_wireless_quantity("-90 dBm", "W", field="noise_power", example="-90 dBm"):.6g}')
    1e-12
    >>> parse_wireless_quantity("20 MHz", "Hz", field="bandwidth", example="20 MHz")
    20000000.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"`wireless.{field}`: expected a quantity such as {example!r}, got {value!r}")
    if isinstance(value, (int, float)):
        magnitude = float(value)
    else:
        try:
            quantity = _registry().Quantity(value.strip())
        except Exception as exc:  # pint raises several unrelated exception types
            raise InputError(f"`wireless.{field}`: cannot read {value!r} ({exc}); write it like {example!r}") from None
        if isinstance(quantity, (int, float)):
            magnitude = float(quantity)
        else:
            try:
                if unit == "dB":
                    magnitude = float(quantity.to("decibel").magnitude)
                else:
                    magnitude = float(quantity.to(unit).magnitude)
            except Exception:
                raise InputError(f"`wireless.{field}`: {value!r} is not in units of {unit}; write it like {example!r}") from None
    if not math.isfinite(magnitude):
        raise InputError(f"`wireless.{field}`: must be finite, got {value!r}")
    return magnitude


def _per_device(value: Any, n: int, parse, field: str) -> np.ndarray:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise InputError(f"`wireless.{field}`: give one value, or one per device ({n}), got {len(value)}")
        return np.array([parse(v, f"{field}[{i}]") for i, v in enumerate(value)], dtype=float)
    return np.full(n, parse(value, field), dtype=float)


def wireless_from_mapping(data: dict[str, Any], devices: tuple[str, ...]) -> Wireless:
    """Build `Wireless` from the fields of a ``wireless:`` section (already checked for names and types).

    Per-device fields (``path_loss``, ``distance``, ``max_power``, ``energy_per_token``,
    ``compute_energy``) take one value for all or a list in device order.
    """
    n = len(devices)

    def q(unit: str, example: str, positive: bool = True):
        def parse(v, field):
            x = parse_wireless_quantity(v, unit, field=field, example=example)
            if positive and not x > 0:
                raise InputError(f"`wireless.{field}`: must be positive, got {v!r}")
            return x
        return parse

    def db(v, field):
        return parse_wireless_quantity(v, "dB", field=field, example="60 dB")

    if data.get("path_loss") is not None and data.get("distance") is not None:
        raise InputError("`wireless`: give `path_loss` or `distance` (with `path_loss_exponent`), not both")
    if data.get("path_loss") is not None:
        loss_db = _per_device(data["path_loss"], n, db, "path_loss")
    elif data.get("distance") is not None:
        distance = _per_device(data["distance"], n, q("m", "20 m"), "distance")
        exponent = float(data.get("path_loss_exponent", 3.0))
        if not exponent > 0:
            raise InputError(f"`wireless.path_loss_exponent` must be positive, got {exponent!r}")
        reference = db(data.get("reference_loss", "30 dB"), "reference_loss")
        loss_db = reference + 10 * exponent * np.log10(distance)
    else:
        raise InputError("`wireless`: give each device's `path_loss` (e.g. '70 dB') or its `distance` "
                         "(e.g. '20 m', with `path_loss_exponent` and `reference_loss`)")
    energy = data.get("energy_per_token")
    k_value = data.get("rician_k", 0.0)
    rician_k = 10 ** (db(k_value, "rician_k") / 10) if isinstance(k_value, str) else float(k_value)
    fading = data.get("fading", "rayleigh")
    if fading == "rician" and data.get("rician_k") is None:
        raise InputError("`wireless.rician_k` is missing: a Rician channel needs a K-factor, e.g. '3 dB' or 2.0")
    return Wireless(
        server_antennas=data["server_antennas"],
        device_antennas=data["device_antennas"],
        bandwidth_hz=q("Hz", "20 MHz")(data["bandwidth"], "bandwidth"),
        noise_power_w=q("W", "-90 dBm")(data["noise_power"], "noise_power"),
        streams=data.get("streams", 1),
        fading=fading,
        rician_k=rician_k if fading == "rician" else 0.0,
        path_gain=10 ** (-loss_db / 10),
        max_power_w=_per_device(data["max_power"], n, q("W", "23 dBm"), "max_power"),
        energy_per_token_j=np.full(n, np.inf) if energy is None else _per_device(energy, n, q("J", "50 mJ"), "energy_per_token"),
        compute_energy_j_per_flop=_per_device(data.get("compute_energy", 0.0), n, q("J", "5 pJ", positive=False),
                                              "compute_energy"),
        downlink_bits_per_s=q("bit/s", "1 Gbit/s")(data["downlink_rate"], "downlink_rate"),
        overhead_s=q("s", "0.1 ms", positive=False)(data.get("overhead", 0.0), "overhead"),
        devices=tuple(devices),
    )
