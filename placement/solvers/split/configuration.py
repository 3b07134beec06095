"""Split computing: the discrete space (bits, outliers), one configuration and its plan, and the option checks.

The method: `placement.solvers.split`; the formulation: docs/split.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from placement.cost.accuracy import AccuracyModel, DistortionProxy, TableAccuracy
from placement.cost.tables import usable_bytes
from placement.errors import InputError
from placement.instance import Instance
from placement.plan import Placement

__all__ = ["DEFAULT_WEIGHT_BITS", "DEFAULT_KV_BITS", "DEFAULT_ACTIVATION_BITS", "DEFAULT_OUTLIER_FRACTIONS", "BASELINES", "effective_activation_bits", "SplitConfig", "split_plan", "config_extras", "error_figures", "endpoints", "bit_options", "accuracy_model", "activation_settings", "check_options", "reference_distortion", "default_workspace_bytes"]


DEFAULT_WEIGHT_BITS = (2, 3, 4, 8, 16)
DEFAULT_KV_BITS = (4, 8, 16)
DEFAULT_ACTIVATION_BITS = (2, 4, 8, 16)
DEFAULT_OUTLIER_FRACTIONS = (0.0, 0.001, 0.005, 0.01)

# name -> (weight bits, kv bits, activation bits, outlier fraction or "share"), or a special layout.
BASELINES: dict[str, Any] = {
    "device-only": "device",  # everything on the device, 16 bits
    "server-only": "server",  # everything on the server (the embedding too), 16 bits
    "w16a16": (16, 16, 16, 0.0),
    "w8a8": (8, 16, 8, 0.0),  # SmoothQuant-like: per-token 8-bit activations, no outlier split
    "w4a16": (4, 16, 16, 0.0),  # OmniQuant-like weight-only
    "w4a4": (4, 4, 4, "share"),  # Atom-like: 4-bit weights, KV and activations, outliers kept apart
    "neurosurgeon": "neurosurgeon",  # 16 bits, split by first-token latency, memory checked at the prompt only
}



def effective_activation_bits(bits: float, outlier_fraction: float, hidden: int) -> float:
    """Bits per element of the hidden state crossing the split after TS + TAB-Q.

    ``(1-f)·b + f·(16 + ⌈log2 D⌉) + 32/D``: the inliers at ``b`` bits, each outlier at
    16 bits with its position in the token's ``D`` elements, and one 16-bit scale and
    zero point per token. At 16 bits nothing is compressed: 16.

    Parameters
    ----------
    bits : float
        TAB-Q bits of the inliers.
    outlier_fraction : float
        ``f``, the share of elements kept at 16 bits.
    hidden : int
        ``D``.

    Returns
    -------
    float
        Bits per element.
    """
    if bits >= 16:
        return 16.0
    return (1 - outlier_fraction) * bits + outlier_fraction * (16 + math.ceil(math.log2(hidden))) + 32 / hidden


@dataclass(frozen=True)
class SplitConfig:
    """One point of the discrete space (bits per element; ``split`` = layers on the device)."""

    device: int
    server: int
    split: int
    w_front: float
    kv_front: float
    w_back: float
    kv_back: float
    act_bits: float
    outlier_fraction: float
    effective_bits: float

    def describe(self, layers: int) -> str:
        if self.split == layers:
            return f"all {layers} layers on the device, W{self.w_front:g} KV{self.kv_front:g}"
        act = "A16" if self.act_bits >= 16 else f"A{self.act_bits:g} (TS {self.outlier_fraction:g}, {self.effective_bits:.3g} b/elem)"
        return (f"split after layer {self.split} of {layers}: front W{self.w_front:g} KV{self.kv_front:g}, "
                f"back W{self.w_back:g} KV{self.kv_back:g}, {act}")


def split_plan(instance: Instance, config: SplitConfig) -> Placement:
    """The placement of a split configuration: embed + layers ``< ℓ`` on the device, the rest on the server.

    Parameters
    ----------
    instance : Instance
    config : SplitConfig

    Returns
    -------
    Placement
        Its ``precision`` carries the segment bits and the crossing's effective activation bits.
    """
    model = instance.model
    L, l = model.layers, config.split
    layer_devices = np.array([config.device] * l + [config.server] * (L - l))
    head = config.server if l < L else config.device
    placement = Placement.by_layer(layer_devices, model.kv_heads, instance.n_devices, embed=config.device, lm_head=head)
    weights = [config.w_front] * l + [config.w_back] * (L - l)
    kv = [config.kv_front] * l + [config.kv_back] * (L - l)
    precision = {"attention": weights, "projection": weights, "ffn": weights, "kv": kv,
                 "embed": config.w_front, "lm_head": config.w_back if l < L else config.w_front,
                 "activation": config.effective_bits if l < L else float(instance.precision.activation)}
    return dataclasses.replace(placement, precision=precision)


def config_extras(instance: Instance, config: SplitConfig, error: float | None, max_context: float | None) -> dict:
    """``plan.extras["split"]`` of a configuration: devices, split layer, bits, compression, figures.

    Parameters
    ----------
    instance : Instance
    config : SplitConfig
    error : float or None
        The accuracy model's error of the configuration.
    max_context : float or None
        Largest context (tokens) both devices hold, None when the cache does not limit it.

    Returns
    -------
    dict
    """
    names = instance.cluster.names
    return {
        "device": names[config.device], "server": names[config.server], "split_layer": config.split,
        "layers": instance.model.layers,
        "weight_bits_front": config.w_front, "weight_bits_back": config.w_back,
        "kv_bits_front": config.kv_front, "kv_bits_back": config.kv_back,
        "activation": {"scheme": "TS+TAB-Q" if config.act_bits < 16 else "none", "bits": config.act_bits,
                       "outlier_fraction": config.outlier_fraction, "effective_bits": config.effective_bits},
        "distortion": error,
        "max_context_tokens": max_context,
    }


def error_figures(error: float | None) -> dict[str, float]:
    """``plan.extras["errors"]`` for an accuracy error (none when it is missing or not finite).

    Parameters
    ----------
    error : float or None

    Returns
    -------
    dict of str to float
    """
    return {} if error is None or not np.isfinite(error) else {"distortion": float(error)}


def endpoints(instance: Instance, device: str | None, server: str | None) -> tuple[int, int]:
    """The device and server indices: as named, else the device with least memory and the one with most.

    Parameters
    ----------
    instance : Instance
    device, server : str or None
        Device names.

    Returns
    -------
    (int, int)
    """
    cluster = instance.cluster
    memory = usable_bytes(instance)
    dev = cluster.index(device) if device is not None else int(np.argmin(memory))
    if server is not None:
        srv = cluster.index(server)
    elif instance.n_devices == 1:
        srv = dev
    else:
        others = np.where(np.arange(instance.n_devices) == dev, -np.inf, memory)
        srv = int(np.argmax(others))
    return dev, srv


def bit_options(values: Any, name: str) -> np.ndarray:
    """The distinct bit widths of option `name`, checked.

    Parameters
    ----------
    values : sequence of float
    name : str
        The option, for the message.

    Returns
    -------
    ndarray
        Sorted, each in (0, 64].

    Raises
    ------
    InputError
        On anything else.
    """
    try:
        array = np.unique(np.asarray(values, dtype=float).ravel())
    except (TypeError, ValueError):
        raise InputError(f"`{name}` must be a list of bit widths such as (4, 8, 16), got {values!r}") from None
    if array.size == 0 or not np.all((array > 0) & (array <= 64)):
        raise InputError(f"`{name}` must be a non-empty list of bit widths in (0, 64], got {values!r}")
    return array


def accuracy_model(accuracy: Any) -> AccuracyModel:
    """The accuracy model an option names: the distortion proxy (None), a CSV table (path), or a model.

    Parameters
    ----------
    accuracy : None, str, Path or AccuracyModel

    Returns
    -------
    AccuracyModel
    """
    if accuracy is None:
        return DistortionProxy()
    if isinstance(accuracy, (str, Path)):
        return TableAccuracy(accuracy)
    if hasattr(accuracy, "error"):
        return accuracy
    raise InputError(f"`accuracy` must be None (the distortion proxy), a CSV path, or an accuracy model "
                     f"(placement.cost.accuracy), got {accuracy!r}")


def activation_settings(bits: np.ndarray, fractions: np.ndarray, hidden: int) -> list[tuple[float, float, float]]:
    """The crossing's compression settings: (bits, outlier fraction, effective bits).

    At 16 bits only ``f = 0`` (nothing to split off).

    Parameters
    ----------
    bits, fractions : ndarray
        TAB-Q bits and outlier fractions to combine.
    hidden : int
        ``D``.

    Returns
    -------
    list of (float, float, float)
    """
    if not np.all((fractions >= 0) & (fractions < 1)):
        raise InputError(f"`outlier_fractions` must lie in [0, 1), got {fractions.tolist()}")
    out = []
    for b in bits:
        for f in (fractions if b < 16 else [0.0]):
            out.append((float(b), float(f), effective_activation_bits(b, f, hidden)))
    return out


def check_options(instance, device, server, weight_bits, kv_bits, activation_bits, outlier_fractions, accuracy,
             max_distortion, latency_budget_s, workspace_bytes):
    """Every option of the split back ends, checked and resolved.

    Parameters
    ----------
    instance : Instance
    device, server, weight_bits, kv_bits, activation_bits, outlier_fractions, accuracy, max_distortion,
    latency_budget_s, workspace_bytes
        As in `placement.solvers.split.solve_split`.

    Returns
    -------
    tuple
        ``(dev, srv, weights, kvs, acts, accuracy model, max_distortion, workspace bytes)``.

    Raises
    ------
    InputError
        Naming the option and the fix.
    """
    dev, srv = endpoints(instance, device, server)
    weights, kvs = bit_options(weight_bits, "weight_bits"), bit_options(kv_bits, "kv_bits")
    acts = activation_settings(bit_options(activation_bits, "activation_bits"),
                                np.unique(np.asarray(outlier_fractions, dtype=float).ravel()), instance.model.hidden)
    model = accuracy_model(accuracy)
    if max_distortion is None:
        if not isinstance(model, DistortionProxy):
            raise InputError("`max_distortion` is required with a measured accuracy table: give the largest error "
                             "(perplexity, or -accuracy) a configuration may have")
        max_distortion = reference_distortion(instance, model)
    elif not (isinstance(max_distortion, (int, float)) and not isinstance(max_distortion, bool)):
        raise InputError(f"`max_distortion` must be a number, got {max_distortion!r}")
    if latency_budget_s is not None and not (isinstance(latency_budget_s, (int, float)) and latency_budget_s > 0):
        raise InputError(f"`latency_budget_s` must be a positive number of seconds, got {latency_budget_s!r}")
    workspace = default_workspace_bytes(instance) if workspace_bytes is None else float(workspace_bytes)
    if not workspace >= 0:
        raise InputError(f"`workspace_bytes` must be zero or more, got {workspace_bytes!r}")
    return dev, srv, weights, kvs, acts, model, float(max_distortion), workspace


def reference_distortion(instance: Instance, accuracy: DistortionProxy) -> float:
    """The default accuracy budget: the proxy's error of 4-bit weights everywhere, 16-bit KV and activations (W4A16).

    Parameters
    ----------
    instance : Instance
    accuracy : DistortionProxy

    Returns
    -------
    float
    """
    L = instance.model.layers
    return float(accuracy.error(L, L, 4.0, 16.0, 4.0, 16.0, 16.0, 0.0))


def default_workspace_bytes(instance: Instance) -> float:
    """Transient activations the search keeps free on each device: ``2·B·P·(D + F)`` bytes.

    The prefill's hidden states and FFN intermediates for the whole prompt at 16 bits
    (the largest transient of a forward pass; attention scores are assumed streamed).

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    float
        Bytes.
    """
    model, workload = instance.model, instance.workload
    return 2.0 * workload.batch * workload.prompt_tokens * (model.hidden + model.ffn_hidden)
