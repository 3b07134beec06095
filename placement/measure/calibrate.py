"""Calibration: fit a device's efficiencies and per-block overhead to measured latencies.

Each observation is a measured per-token decode latency at a context ``S``, or a
time to first token for a ``P``-token prompt, of a model run whole on this machine.
Its prediction is the evaluator's own figure (`placement.evaluate.evaluate` of the
single-device plan on an instance whose one device carries the preset), never a side
formula. With ``θ = (η_c, η_m, o)`` (compute efficiency, memory efficiency, per-block
overhead in seconds) the fit minimises

    Σ_i ( log( predicted_i(θ) / measured_i ) )²

with `scipy.optimize.least_squares` (trust-region reflective, finite differences),
bounded by ``η_c, η_m ∈ [0.001, 1]`` and ``o ∈ [0, 1 ms]``. Log ratios weigh every
observation by its relative error, so a 20 ms decode step counts as much as a
2 s prefill. Decode steps of large models are memory-bound and pin ``η_m``, prefills
are compute-bound and pin ``η_c``, and models with many small blocks pin ``o``.

Needs SciPy only; the measurements may come from anywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from placement.cost.hardware import Cluster
from placement.cost.model import ModelSpec
from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import Instance, instance_from_dict
from placement.solvers.reference import single_plan

__all__ = ["Observation", "Calibration", "calibrate", "predict", "device_instance", "DEVICE_FIELDS"]

# The fields of a preset that describe the device (the rest is documentation).
DEVICE_FIELDS = ("memory", "peak_flops", "memory_bandwidth", "compute_efficiency", "memory_efficiency",
                 "reserved_memory", "disk_bandwidth", "block_overhead")
KINDS = ("decode", "ttft")


@dataclass(frozen=True)
class Observation:
    """One measured latency of a model run whole on one device.

    Attributes
    ----------
    model : ModelSpec
    kind : {"decode", "ttft"}
        A decode step at context `tokens`, or the prefill of a `tokens`-token prompt.
    tokens : int
    seconds : float
        Measured latency.
    bits : float
        Precision of weights, KV cache and activations in the run.
    batch : int
    """

    model: ModelSpec
    kind: str
    tokens: int
    seconds: float
    bits: float = 32.0
    batch: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"observation `kind` must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.seconds > 0 or self.tokens < 1:
            raise InputError(f"observation of {self.model.name}: `seconds` and `tokens` must be positive")


def device_instance(fields: dict[str, Any], model: ModelSpec, *, prompt_tokens: int, generate_tokens: int = 1,
                    bits: float = 32.0, batch: int = 1, name: str = "this-machine") -> Instance:
    """An instance of `model` on one device described by preset `fields` (catalog format).

    Only the fields in `DEVICE_FIELDS` are used; the precision of every block is `bits`.
    """
    device = {"name": name, **{k: v for k, v in fields.items() if k in DEVICE_FIELDS}}
    data = {
        "name": f"{model.name} on {name}",
        "model": {k: v for k, v in dataclasses.asdict(model).items()},
        "devices": [device],
        "workload": {"prompt_tokens": int(prompt_tokens), "generate_tokens": int(generate_tokens), "batch": int(batch),
                     "precision": {"weights": bits, "kv_cache": bits, "activations": bits}},
    }
    return instance_from_dict(data, source=f"device instance of {model.name}", check_capacity=False)


def _with_device(instance: Instance, **changes: Any) -> Instance:
    device = dataclasses.replace(instance.devices[0], **changes)
    cluster = Cluster(devices=(device,), links=(), network=instance.cluster.network)
    return Instance(instance.name, instance.model, cluster, instance.workload, instance.precision, instance.description)


class _Predictor:
    """The evaluator's figure for every observation, for any (η_c, η_m, o): instances built once."""

    def __init__(self, fields: dict[str, Any], observations: Sequence[Observation]):
        self.cases: list[tuple[Instance, str, np.ndarray, np.ndarray]] = []
        groups: dict[tuple, list[int]] = {}
        for i, o in enumerate(observations):
            key = (o.model.name, o.bits, o.batch, o.kind, o.tokens if o.kind == "ttft" else 0)
            groups.setdefault(key, []).append(i)
        for (_, bits, batch, kind, _), rows in groups.items():
            model = observations[rows[0]].model
            tokens = np.array([observations[i].tokens for i in rows])
            if kind == "ttft":
                inst = device_instance(fields, model, prompt_tokens=int(tokens[0]), bits=bits, batch=batch)
                index = np.zeros(len(rows), dtype=int)
            else:  # one evaluation gives every context: decode step i runs at context prompt + i
                first = int(tokens.min())
                inst = device_instance(fields, model, prompt_tokens=max(first - 1, 1),
                                       generate_tokens=int(tokens.max()) - max(first - 1, 1), bits=bits, batch=batch)
                index = tokens - max(first - 1, 1) - 1
            self.cases.append((inst, kind, np.array(rows), index))
        self.n = len(observations)

    def __call__(self, **device: Any) -> np.ndarray:
        out = np.empty(self.n)
        for inst, kind, rows, index in self.cases:
            inst = _with_device(inst, **device) if device else inst
            report = evaluate(inst, single_plan(inst, 0))
            out[rows] = report.ttft_s if kind == "ttft" else report.decode_s[index]
        return out


def predict(fields: dict[str, Any], observations: Sequence[Observation]) -> np.ndarray:
    """The evaluator's latency for every observation on a device with preset `fields`, seconds."""
    return _Predictor(fields, observations)()


@dataclass(frozen=True)
class Calibration:
    """The fitted factors and how well they fit.

    Attributes
    ----------
    compute_efficiency, memory_efficiency : float
    block_overhead_s : float
        Seconds added to every block run.
    residuals_before, residuals : ndarray
        ``log(predicted / measured)`` per observation with the preset as given and as fitted.
    success : bool
    message : str
        SciPy's message.
    """

    compute_efficiency: float
    memory_efficiency: float
    block_overhead_s: float
    residuals_before: np.ndarray
    residuals: np.ndarray
    success: bool
    message: str

    def fields(self, base: dict[str, Any]) -> dict[str, Any]:
        """`base` preset fields with the fitted factors written in."""
        return {**base, "compute_efficiency": round(self.compute_efficiency, 4),
                "memory_efficiency": round(self.memory_efficiency, 4),
                "block_overhead": f"{self.block_overhead_s * 1e6:.2f} us"}

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures: factors and median / worst absolute relative error before and after."""
        def errors(r: np.ndarray) -> dict[str, float]:
            rel = np.abs(np.expm1(r))
            return {"median": float(np.median(rel)), "worst": float(rel.max())}

        return {"compute_efficiency": self.compute_efficiency, "memory_efficiency": self.memory_efficiency,
                "block_overhead_s": self.block_overhead_s, "observations": len(self.residuals),
                "before": errors(self.residuals_before), "after": errors(self.residuals),
                "success": self.success, "message": self.message}


def calibrate(fields: dict[str, Any], observations: Sequence[Observation], *,
              x0: tuple[float, float, float] = (0.5, 0.5, 20e-6)) -> Calibration:
    """Fit compute efficiency, memory efficiency and per-block overhead of a preset to measurements.

    Parameters
    ----------
    fields : dict
        The preset (catalog format), e.g. what `placement.measure.profile.preset_fields`
        returns; its peak figures stay, its efficiencies and overhead are refitted.
    observations : sequence of Observation
        At least three, mixing decode steps and prefills.
    x0 : (η_c, η_m, o)
        Starting point.

    Returns
    -------
    Calibration

    Raises
    ------
    InputError
        With fewer than three observations.
    """
    from scipy.optimize import least_squares

    if len(observations) < 3:
        raise InputError(f"calibration needs at least 3 observations (decode steps and prefills), got {len(observations)}")
    base = {k: v for k, v in fields.items() if k not in ("compute_efficiency", "memory_efficiency", "block_overhead")}
    model = _Predictor(base, observations)
    measured = np.array([o.seconds for o in observations])
    before = np.log(_Predictor(fields, observations)() / measured)
    scale = np.array([1.0, 1.0, 1e-6])  # the overhead is fitted in microseconds

    def residuals(x: np.ndarray) -> np.ndarray:
        eta_c, eta_m, overhead = x * scale
        return np.log(model(compute_efficiency=eta_c, memory_efficiency=eta_m, block_overhead_s=overhead) / measured)

    start = np.clip(np.array(x0) / scale, [1e-3, 1e-3, 0.0], [1.0, 1.0, 1000.0])
    fit = least_squares(residuals, start, bounds=([1e-3, 1e-3, 0.0], [1.0, 1.0, 1000.0]), diff_step=1e-3,
                        x_scale=[0.1, 0.1, 10.0])
    eta_c, eta_m, overhead = fit.x * scale
    return Calibration(float(eta_c), float(eta_m), float(overhead), before, fit.fun, bool(fit.success), str(fit.message))
