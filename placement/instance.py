"""Instances: a model, a cluster of devices and links, and a workload.

Instance files are YAML (JSON accepted), validated with pydantic; quantities are
written with units (``6 GiB``, ``100 Mbit/s``, ``2 ms``, ``1.2 TFLOPS``) and parsed by
pint. Every mistake becomes one `InputError` naming the field and the fix. The file
format is documented in ``docs/instances.md``; `instance_json_schema` exports a JSON
Schema for editors.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from placement.cost.hardware import Cluster, Device, Link
from placement.cost.model import ModelSpec, load_model, spec_from_mapping
from placement.cost.precision import Precision
from placement.cost.sparsity import DeltaSparsity, check_sparsity_profile
from placement.cost.units import BYTES, BYTES_PER_S, FLOP_PER_S, SECONDS, parse_quantity
from placement.errors import InfeasibleError, InputError, InputWarning
from placement.files import load_data_file, short
from placement.plan import MAX_EXPERTS_PER_LAYER, MAX_GROUPS_PER_LAYER

__all__ = [
    "Workload",
    "Instance",
    "load_instance",
    "instance_from_dict",
    "instance_json_schema",
    "device_presets",
    "instances_dir",
    "instance_names",
    "PROFILES",
]

PROFILES = ("roofline", "kafetzis2025")

# Strict: a YAML `true` must not become a 1-byte memory or a 1-token prompt, nor a
# quoted '16' a number (pydantic's lax mode would read both).
Quantity = StrictStr | Annotated[float, Field(strict=True, allow_inf_nan=False)] | StrictInt
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Count = StrictInt

# Sizes beyond these cannot be evaluated in memory or time on any machine this library
# targets; each is named in the message that rejects it.
LIMITS = {
    "context tokens (prompt_tokens + generate_tokens)": 10_000_000,
    "intervals (generate_tokens / interval)": 10_000,
    "decode steps x intervals": 100_000_000,
    "layers": 1_024,
    "heads": 8_192,
    "kv_heads (attention groups per layer)": MAX_GROUPS_PER_LAYER,
    "experts (routed experts per MoE layer)": MAX_EXPERTS_PER_LAYER,
    "devices": 1_024,
    "wireless.server_antennas": 1_024,
    "wireless.device_antennas": 64,
    "wireless.streams": 64,
}
# A figure (one generation's time on one device or link, in seconds) above this is a
# unit mistake, and sums of such figures would overflow to infinity.
MAX_FIGURE_S = 1e15


# ----------------------------------------------------------------------------- file schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceEntry(_Strict):
    """One device: a preset from the catalog, fields of its own, or a preset with overrides."""

    name: str = Field(description="Unique device name.")
    preset: str | None = Field(None, description="A preset from the catalog (`placement devices`), or a preset file "
                                 "`path.yaml` / `path.yaml#name` (as `placement profile` writes).")
    memory: Quantity | None = Field(None, description="Memory for the model, e.g. '8 GiB'.")
    peak_flops: Quantity | None = Field(None, description="Peak compute, e.g. '1.2 TFLOPS'.")
    memory_bandwidth: Quantity | None = Field(None, description="Memory bandwidth, e.g. '68 GB/s'.")
    compute_efficiency: Number | None = Field(None, description="Achievable fraction of peak compute, (0, 1].")
    memory_efficiency: Number | None = Field(None, description="Achievable fraction of memory bandwidth, (0, 1].")
    reserved_memory: Quantity | None = Field(None, description="Memory kept for the OS and runtime, e.g. '1 GiB'.")
    disk_bandwidth: Quantity | None = Field(None, description="Sequential storage read bandwidth, e.g. '90 MB/s'.")
    block_overhead: Quantity | None = Field(None, description="Fixed time per block run on top of the roofline, "
                                            "e.g. '30 us' (default 0; see `placement profile`).")


class LinkEntry(_Strict):
    between: tuple[str, str] = Field(description="The two endpoints (devices or switches).")
    bandwidth: Quantity = Field(description="Bandwidth, e.g. '100 Mbit/s'.")
    latency: Quantity = Field(description="One-way latency, e.g. '2 ms'.")


class MeshEntry(_Strict):
    bandwidth: Quantity
    latency: Quantity


class PrecisionEntry(_Strict):
    weights: Number | None = Field(None, gt=0, le=64, description="Weight bits (default: the model's).")
    kv_cache: Number | None = Field(None, gt=0, le=64, description="KV-cache bits (default: the model's).")
    activations: Number | None = Field(None, gt=0, le=64, description="Bits of activations on the wire (default: the model's).")


class WorkloadEntry(_Strict):
    prompt_tokens: Count = Field(description="Prompt length P.")
    generate_tokens: Count = Field(description="Decode steps T after the prefill.")
    batch: Count = Field(1, description="Sequences decoded together, B.")
    interval: Count | None = Field(None, description="Re-decision interval tau in tokens (default: the whole generation).")
    profile: Literal["roofline", "kafetzis2025"] = "roofline"
    precision: PrecisionEntry = PrecisionEntry()


PerDevice = Quantity | list[Quantity]


class AttentionEntry(_Strict):
    """DeltaLLM's temporal attention sparsity (docs/sparsity.md)."""

    local_window: Count = Field(ge=0, description="Recent positions attended in full, W (tokens).")
    delta_sparsity: Number = Field(ge=0, lt=1, description="Fraction s of the attention work outside the window "
                                   "that the delta approximation skips, [0, 1).")
    stages: Literal["both", "prefill", "decode"] = Field("both", description="Where it applies.")


class WirelessEntry(_Strict):
    """The wireless uplink to an edge server, for over-the-air all-reduce (method `ota`, docs/ota.md)."""

    server_antennas: Count = Field(description="Antennas of the edge server, N_r.")
    device_antennas: Count = Field(description="Antennas of every device, N_t.")
    bandwidth: Quantity = Field(description="Channel bandwidth, e.g. '10 MHz' (one channel use per 1/bandwidth).")
    noise_power: Quantity = Field(description="Receiver noise power over the band, e.g. '-90 dBm' (bare numbers: W).")
    streams: Count = Field(1, description="Symbols (elements) per channel use, d <= min(N_r, N_t).")
    fading: Literal["rayleigh", "rician"] = Field("rayleigh", description="Small-scale fading.")
    rician_k: Quantity | None = Field(None, description="Rician K-factor, linear (2.0) or in dB ('3 dB').")
    path_loss: PerDevice | None = Field(None, description="Path loss, one or one per device, e.g. '70 dB' (bare numbers: dB).")
    distance: PerDevice | None = Field(None, description="Distance to the server instead of `path_loss`, e.g. '20 m'.")
    path_loss_exponent: Number | None = Field(None, description="With `distance`: loss = reference_loss + 10·exponent·log10(d/1 m); default 3.")
    reference_loss: Quantity | None = Field(None, description="With `distance`: the loss at 1 m, default '30 dB'.")
    max_power: PerDevice = Field(description="Peak transmit power, one or one per device, e.g. '23 dBm' (bare numbers: W).")
    energy_per_token: PerDevice | None = Field(None, description="Energy budget per decode token for compute and "
                                               "transmission, e.g. '50 mJ' (default: none).")
    compute_energy: PerDevice | None = Field(None, description="Compute energy per FLOP, e.g. '5 pJ' (default 0).")
    downlink_rate: Quantity = Field(description="Rate of the server's broadcast of the sum, e.g. '1 Gbit/s'.")
    overhead: Quantity | None = Field(None, description="Fixed time per all-reduce (synchronisation), e.g. '0.1 ms'.")


class InstanceFile(_Strict):
    """The instance file format (see docs/instances.md)."""

    name: str | None = None
    description: str = ""
    model: str | dict[str, Any] = Field(description="A shipped model name, an inline spec, or {hf_config: path}.")
    devices: list[DeviceEntry]
    switches: list[str] = []
    links: list[LinkEntry] = []
    mesh: MeshEntry | None = Field(None, description="Default link between every pair of devices without one.")
    network: Literal["switched", "shared"] = "switched"
    routing: Literal["fastest", "direct"] = Field("fastest", description="'direct': linked devices use their own "
                                                  "link, never a faster relay (docs/instances.md).")
    workload: WorkloadEntry
    wireless: WirelessEntry | None = Field(None, description="Wireless uplink to an edge server, for the `ota` "
                                           "collective (docs/ota.md).")
    serving: dict[str, Any] | None = Field(None, description="Many requests: arrivals and a policy (docs/serving.md).")
    expert_routing: str | list[Any] | None = Field(None, description="MoE models: per-layer expert selection counts, "
                                             "a JSON/YAML file or inline (docs/moe.md).")
    attention: AttentionEntry | None = Field(None, description="DeltaLLM temporal attention sparsity: full attention "
                                             "in a local window, a fraction skipped outside it (docs/sparsity.md).")


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Workload:
    """What is generated.

    Attributes
    ----------
    prompt_tokens : int
        Prompt length ``P`` (prefill).
    generate_tokens : int
        Decode steps ``T``; step ``i`` runs at context ``S = P + i``.
    batch : int
        ``B``.
    interval_tokens : int
        Re-decision interval ``tau``: interval ``k`` covers steps ``k·tau+1 … (k+1)·tau``.
    profile : str
        Cost profile, one of `PROFILES`.
    """

    prompt_tokens: int
    generate_tokens: int
    batch: Count = 1
    interval_tokens: int | None = None
    profile: str = "roofline"

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "generate_tokens", "batch"):
            if getattr(self, name) < 1:
                raise InputError(f"`workload.{name}` must be at least 1, got {getattr(self, name)}")
        if self.interval_tokens is not None and self.interval_tokens < 1:
            raise InputError(f"`workload.interval` must be at least 1 token, got {self.interval_tokens}")
        if self.profile not in PROFILES:
            raise InputError(f"`workload.profile` must be one of {', '.join(PROFILES)}, got {self.profile!r}")

    @property
    def tau(self) -> int:
        """The interval length in tokens (the whole generation when none is set)."""
        return min(self.interval_tokens or self.generate_tokens, self.generate_tokens)

    @property
    def n_intervals(self) -> int:
        """``ceil(T / tau)``."""
        return math.ceil(self.generate_tokens / self.tau)

    def contexts(self) -> np.ndarray:
        """Context length of every decode step, ``P+1 … P+T``, shape (T,)."""
        return np.arange(self.prompt_tokens + 1, self.prompt_tokens + self.generate_tokens + 1)

    def interval_of_step(self) -> np.ndarray:
        """Interval index of every decode step, shape (T,)."""
        return np.arange(self.generate_tokens) // self.tau

    def interval_max_context(self) -> np.ndarray:
        """Largest context of each interval (its memory is judged there), shape (n_intervals,)."""
        ends = np.minimum((np.arange(self.n_intervals) + 1) * self.tau, self.generate_tokens)
        return self.prompt_tokens + ends


@dataclass(frozen=True, eq=False)
class Instance:
    """A model, a cluster and a workload.

    Attributes
    ----------
    name : str
    model : ModelSpec
    cluster : Cluster
    workload : Workload
    precision : Precision
        Default precision of every block (the model's, or the file's overrides).
    description : str
    wireless : Wireless or None
        The wireless uplink to an edge server (`placement.ota.channel.Wireless`), for
        the ``ota`` collective; None when the file has no ``wireless`` section.
    """

    name: str
    model: ModelSpec
    cluster: Cluster
    workload: Workload
    precision: Precision
    description: str = ""
    wireless: Any = None
    serving: Any = None  # placement.serving.ServingSpec, from the file's `serving:` section (docs/serving.md)
    expert_routing: Any = None  # (L, E) fitted weights from the file's `expert_routing:` (docs/moe.md); None: uniform
    attention: DeltaSparsity | None = None  # the file's `attention:` sparsity (docs/sparsity.md); None: dense attention

    @property
    def devices(self) -> tuple[Device, ...]:
        return self.cluster.devices

    @property
    def n_devices(self) -> int:
        return len(self.cluster.devices)

    # The builder and the YAML writer live in placement/builder.py (docs/api.md).
    @classmethod
    def build(cls, model: Any, devices: Any, **options: Any) -> "Instance":
        """An instance from Python objects, validated as a file is: see `placement.builder.build_instance`."""
        from placement.builder import build_instance

        return build_instance(model, devices, **options)

    def to_yaml(self) -> str:
        """The instance as instance-file YAML: see `placement.builder.instance_to_yaml`."""
        from placement.builder import instance_to_yaml

        return instance_to_yaml(self)

    def save(self, path: str | Path) -> Path:
        """Write the instance as a YAML file that loads back equal: see `placement.builder.save_instance`."""
        from placement.builder import save_instance

        return save_instance(self, path)


# ----------------------------------------------------------------------------- loading
def _data_dir() -> Path:
    return Path(__file__).resolve().parent


def instances_dir() -> Path:
    """The folder of shipped instance suites (top-level ``instances/``, or the wheel's copy)."""
    packaged = _data_dir() / "_data" / "instances"
    return packaged if packaged.is_dir() else _data_dir().parent / "instances"


def instance_names() -> list[str]:
    """Shipped instances as ``suite/name``, sorted."""
    root = instances_dir()
    # instances/parallel holds multi-model files (placement.multi, docs/parallel.md), not single instances
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml") if p.parent.name != "parallel")


@functools.cache
def device_presets() -> dict[str, dict[str, Any]]:
    """The catalog of device presets (``placement/cost/devices.yaml``), name → fields."""
    with (_data_dir() / "cost" / "devices.yaml").open() as fh:
        return yaml.safe_load(fh)


_UNION_BRANCHES = {"str", "float", "int", "bool", "dict[str,any]"}


def _pydantic_message(exc: pydantic.ValidationError, source: str) -> str:
    lines: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        union = bool(loc) and loc[-1] in _UNION_BRANCHES
        parts = loc[:-1] if union else loc
        # devices[0].memory, as the unit checks write it
        where = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".") or "(top level)"
        if where in lines:
            continue  # one message per field, not one per branch of a union
        if error["type"] == "extra_forbidden":
            lines[where] = f"`{where}`: unknown field; remove it or check its spelling (see docs/instances.md)"
        elif error["type"] == "missing":
            lines[where] = f"`{where}`: required field is missing"
        elif union and loc[-2] == "model":
            lines[where] = (f"`{where}`: expected a shipped model name, an inline spec, or {{hf_config: path}} "
                            f"(got {short(error.get('input'))})")
        elif union:
            lines[where] = (f"`{where}`: expected a quantity with a unit such as '6 GiB', '100 Mbit/s', '2 ms' "
                            f"or '1.2 TFLOPS' (got {short(error.get('input'))})")
        else:
            lines[where] = f"`{where}`: {error['msg']} (got {short(error.get('input'))})"
    return f"{source}: " + "; ".join(lines.values())


_PRESET_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def _preset_from_file(reference: str, base: Path | None, where: str) -> dict[str, Any]:
    """The preset a ``preset: path.yaml`` or ``preset: path.yaml#name`` reference names.

    The file has the catalog's format (name → fields), as ``placement profile`` writes it;
    ``#name`` picks one entry, and may be left out when the file holds only one.
    """
    file_part, _, name = reference.partition("#")
    path = Path(file_part).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise InputError(f"`{where}.preset`: preset file {str(path)!r} does not exist; give a catalog name "
                         "(`placement devices`) or the path of a file `placement profile` wrote")
    try:
        entries = load_data_file(path, "preset file")
    except InputError as exc:
        raise InputError(f"`{where}.preset`: {exc}") from None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise InputError(f"`{where}.preset`: {str(path)!r} must map preset names to their fields, "
                         "as the catalog (placement/cost/devices.yaml) does")
    if not name and len(entries) == 1:
        name = next(iter(entries))
    if name not in entries:
        raise InputError(f"`{where}.preset`: name one of the presets in {str(path)!r} as `{file_part}#NAME`; "
                         f"it holds {', '.join(sorted(entries))}")
    known = set(DeviceEntry.model_fields) - {"name", "preset"} | {"description", "source", "notes"}
    unknown = sorted(set(entries[name]) - known)
    if unknown:
        raise InputError(f"`{where}.preset`: preset {name!r} in {str(path)!r} has unknown field(s) "
                         f"{', '.join(unknown)}; known fields are {', '.join(sorted(known))}")
    return entries[name]


def _build_device(entry: DeviceEntry, where: str, base: Path | None = None) -> Device:
    fields: dict[str, Any] = {}
    if entry.preset is not None:
        if entry.preset.partition("#")[0].endswith(_PRESET_FILE_SUFFIXES):
            preset = _preset_from_file(entry.preset, base, where)
        else:
            presets = device_presets()
            if entry.preset not in presets:
                raise InputError(
                    f"`{where}.preset`: unknown preset {entry.preset!r}; known presets are {', '.join(sorted(presets))}"
                )
            preset = presets[entry.preset]
        fields.update({k: v for k, v in preset.items() if k not in ("description", "source", "notes")})
    fields.update({k: v for k, v in entry.model_dump(exclude={"name", "preset"}).items() if v is not None})
    for required in ("memory", "peak_flops", "memory_bandwidth"):
        if required not in fields:
            raise InputError(f"`{where}.{required}` is missing: give it, or a `preset` that has it")
    disk = fields.get("disk_bandwidth")
    return Device(
        name=entry.name,
        memory_bytes=parse_quantity(fields["memory"], BYTES, field=f"{where}.memory"),
        peak_flops_per_s=parse_quantity(fields["peak_flops"], FLOP_PER_S, field=f"{where}.peak_flops"),
        memory_bandwidth_bytes_per_s=parse_quantity(fields["memory_bandwidth"], BYTES_PER_S, field=f"{where}.memory_bandwidth"),
        compute_efficiency=float(fields.get("compute_efficiency", 1.0)),
        memory_efficiency=float(fields.get("memory_efficiency", 1.0)),
        reserved_bytes=parse_quantity(fields.get("reserved_memory", 0), BYTES, field=f"{where}.reserved_memory", positive=False),
        disk_bandwidth_bytes_per_s=None if disk is None else parse_quantity(disk, BYTES_PER_S, field=f"{where}.disk_bandwidth"),
        block_overhead_s=parse_quantity(fields.get("block_overhead", 0), SECONDS, field=f"{where}.block_overhead", positive=False),
    )


def _build_model(value: str | dict[str, Any], base: Path | None) -> ModelSpec:
    if isinstance(value, str):
        return load_model(value)
    if "hf_config" in value:
        from placement.cost.hf import spec_from_hf_config

        extra = sorted(set(value) - {"hf_config", "name"})
        if extra:
            raise InputError(
                f"`model`: with `hf_config` only `name` may be given, not {', '.join(map(repr, extra))}; "
                "to change the architecture, give the model inline instead"
            )
        if not isinstance(value["hf_config"], str) or not value["hf_config"]:
            raise InputError(f"`model.hf_config`: expected the path of a config.json, got {short(value['hf_config'])}")
        path = Path(value["hf_config"])
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.exists():
            raise InputError(f"`model.hf_config`: {str(path)!r} does not exist; give a config.json or the folder holding it")
        return spec_from_hf_config(path, name=value.get("name"))
    _check_model_types(value)
    return spec_from_mapping(value, where="`model`")


_MODEL_TYPES = {
    **dict.fromkeys(("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn_hidden", "vocab"), (int, "a whole number")),
    **dict.fromkeys(("gated_ffn", "tied_embeddings"), (bool, "true or false (unquoted)")),
    **dict.fromkeys(("weight_bits", "kv_bits", "activation_bits", "published_params"), (float, "a number")),
    **dict.fromkeys(("name", "source", "family"), (str, "text")),
}


def _check_model_types(value: dict[str, Any]) -> None:
    """Types of an inline model's fields, strictly: a quoted 'false' is not false, a quoted '16' not 16."""
    for key, (kind, what) in _MODEL_TYPES.items():
        if key not in value or (key == "published_params" and value[key] is None):
            continue
        given = value[key]
        if kind is float:
            ok = isinstance(given, (int, float)) and not isinstance(given, bool) and math.isfinite(given)
        else:
            ok = isinstance(given, kind) and (kind is bool or not isinstance(given, bool))
        if not ok:
            raise InputError(f"`model.{key}`: expected {what}, got {short(given)}")


def instance_from_dict(data: dict[str, Any], *, source: str = "instance", base: Path | None = None,
                       check_capacity: bool = True) -> Instance:
    """Build and validate an `Instance` from parsed YAML/JSON.

    Parameters
    ----------
    data : dict
        The file's contents (see docs/instances.md).
    source : str
        Where the data came from, for messages.
    base : Path, optional
        Folder against which relative paths (``hf_config``) are resolved.
    check_capacity : bool
        Raise `InfeasibleError` when the model cannot fit on the devices at all
        (see `capacity_problems`).

    Returns
    -------
    Instance

    Raises
    ------
    InputError
        On any field that is missing, unknown, of the wrong unit or out of range.
    InfeasibleError
        If `check_capacity` and no placement can hold the model.
    """
    if "models" in data and "model" not in data:  # a multi-model file (placement.multi)
        raise InputError(f"{source}: a multi-model file (`models:`); solve it with `placement multi-solve FILE` "
                         "or `placement.multi.solve` (docs/parallel.md)")
    try:
        spec = InstanceFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise InputError(_pydantic_message(exc, source)) from None
    model = _build_model(spec.model, base)
    devices = tuple(_build_device(d, f"devices[{i}] ({d.name})", base) for i, d in enumerate(spec.devices))
    links = [
        Link(
            u=link.between[0],
            v=link.between[1],
            bandwidth_bytes_per_s=parse_quantity(link.bandwidth, BYTES_PER_S, field=f"links[{i}].bandwidth"),
            latency_s=parse_quantity(link.latency, SECONDS, field=f"links[{i}].latency", positive=False),
        )
        for i, link in enumerate(spec.links)
    ]
    if spec.mesh is not None:
        bandwidth = parse_quantity(spec.mesh.bandwidth, BYTES_PER_S, field="mesh.bandwidth")
        latency = parse_quantity(spec.mesh.latency, SECONDS, field="mesh.latency", positive=False)
        given = {frozenset((link.u, link.v)) for link in links}
        names = [d.name for d in devices]
        links += [
            Link(u, v, bandwidth, latency)
            for i, u in enumerate(names) for v in names[i + 1:]
            if frozenset((u, v)) not in given
        ]
    cluster = Cluster(devices=devices, links=tuple(links), network=spec.network, switches=tuple(spec.switches),
                      routing=spec.routing)
    w = spec.workload
    workload = Workload(w.prompt_tokens, w.generate_tokens, w.batch, w.interval, w.profile)
    _check_sizes(model, workload, spec)
    bits = w.precision
    precision = Precision.uniform(
        model.layers,
        bits.weights if bits.weights is not None else model.weight_bits,
        bits.kv_cache if bits.kv_cache is not None else model.kv_bits,
        bits.activations if bits.activations is not None else model.activation_bits,
        model.embed_bits if bits.weights is None else None,
    )
    wireless = None
    if spec.wireless is not None:
        from placement.ota.channel import wireless_from_mapping

        wireless = wireless_from_mapping(spec.wireless.model_dump(exclude_none=True), cluster.names)
    serving = None
    if spec.serving is not None:
        from placement.serving.workload import serving_from_mapping

        serving = serving_from_mapping(spec.serving, base)
    expert_routing = None
    if spec.expert_routing is not None:
        from placement.cost.routing import routing_weights

        expert_routing = routing_weights(spec.expert_routing, model, base)
    instance = Instance(spec.name or source, model, cluster, workload, precision, spec.description, wireless, serving,
                        expert_routing, _attention(spec.attention, workload))
    _check_figures(instance, spec)
    _warn_implausible(instance, spec)
    if check_capacity:
        problems = capacity_problems(instance)
        if problems:
            raise InfeasibleError(f"{source}: no placement can fit: " + "; ".join(problems))
    return instance


def _attention(entry: AttentionEntry | None, workload: Workload) -> DeltaSparsity | None:
    """The file's `attention:` section, refused under a profile whose attention terms it cannot scale."""
    if entry is None:
        return None
    check_sparsity_profile(workload.profile)
    return DeltaSparsity(entry.local_window, entry.delta_sparsity, entry.stages)


def load_instance(path: str | Path, *, check_capacity: bool = True) -> Instance:
    """Load an instance from a YAML or JSON file, or a shipped one by ``suite/name``.

    Parameters
    ----------
    path : str or Path
        A file path, or a shipped instance name such as ``"edge/llama-3.2-1b-4dev"``.
    check_capacity : bool
        See `instance_from_dict`.

    Returns
    -------
    Instance

    Raises
    ------
    InputError, InfeasibleError
        See `instance_from_dict`; also when the file is missing or not YAML.

    Examples
    --------
    >>> inst = load_instance("edge/llama-3.2-1b-4dev")
    >>> inst.model.name
    'llama-3.2-1b'
    """
    path = Path(path)
    if not path.is_file():
        shipped = instances_dir() / f"{path}.yaml"
        if not shipped.is_file():
            raise InputError(
                f"instance {str(path)!r} is neither a file nor a shipped instance; "
                f"shipped instances: {', '.join(instance_names())}"
            )
        path = shipped
    data = load_data_file(path, "instance")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of instance fields at the top level")
    return instance_from_dict(data, source=str(path), base=path.parent, check_capacity=check_capacity)


def _check_sizes(model: ModelSpec, workload: Workload, spec: InstanceFile) -> None:
    """Reject sizes that cannot be evaluated (see `LIMITS`), naming the limit."""
    sizes = {
        "context tokens (prompt_tokens + generate_tokens)": workload.prompt_tokens + workload.generate_tokens,
        "intervals (generate_tokens / interval)": workload.n_intervals,
        "decode steps x intervals": workload.generate_tokens * workload.n_intervals,
        "layers": model.layers, "heads": model.heads, "kv_heads (attention groups per layer)": model.kv_heads,
        "experts (routed experts per MoE layer)": model.experts, "devices": len(spec.devices),
    }
    if spec.wireless is not None:
        sizes.update({"wireless.server_antennas": spec.wireless.server_antennas,
                      "wireless.device_antennas": spec.wireless.device_antennas, "wireless.streams": spec.wireless.streams})
    for what, size in sizes.items():
        if size > LIMITS[what]:
            raise InputError(f"{what} is {size:,}; the limit is {LIMITS[what]:,} (placement.instance.LIMITS): "
                             "give a smaller workload or model")


def _generation_figures(instance: Instance, spec: InstanceFile) -> dict[str, float]:
    """Seconds one generation would take on each device and link if it ran everything there.

    Not a latency estimate: an upper bound of the sizes the evaluator multiplies, so that
    a figure that overflows (``peak_flops: 1e-300 FLOP/s``, ``latency: 1e308 s``) is
    found here, named, instead of becoming an infinite or NaN total.
    """
    model, w = instance.model, instance.workload
    tokens = w.prompt_tokens + w.generate_tokens  # also the largest context
    weight_bytes = model.params * model.weight_bits / 8
    cache_bytes = model.kv_bytes_per_token(w.batch) * tokens
    flops = 2.0 * w.batch * model.params + 4.0 * w.batch * model.layers * model.heads * model.head_dim * tokens
    blocks = model.layers * (model.kv_heads + 2) + 2
    figures = {}
    for i, d in enumerate(instance.devices):
        where = f"devices[{i}] ({d.name})"
        figures[f"`{where}.peak_flops` / compute_efficiency"] = tokens * flops / (d.peak_flops_per_s * d.compute_efficiency)
        figures[f"`{where}.memory_bandwidth` / memory_efficiency"] = (
            tokens * (weight_bytes + cache_bytes) / (d.memory_bandwidth_bytes_per_s * d.memory_efficiency))
        figures[f"`{where}.block_overhead`"] = tokens * blocks * d.block_overhead_s
        if d.disk_bandwidth_bytes_per_s is not None:
            figures[f"`{where}.disk_bandwidth`"] = tokens * weight_bytes / d.disk_bandwidth_bytes_per_s
    hops = 2 * model.layers + 2
    for i, link in enumerate(instance.cluster.links):
        where = _link_field(i, spec)
        figures[f"`{where}.latency`"] = tokens * hops * link.latency_s
        figures[f"`{where}.bandwidth`"] = (weight_bytes + cache_bytes) * hops / link.bandwidth_bytes_per_s
    return figures


def _link_field(i: int, spec: InstanceFile) -> str:
    """The file field of cluster link `i`: the file's own links come first, then the mesh's."""
    return f"links[{i}]" if i < len(spec.links) else "mesh"


def _check_figures(instance: Instance, spec: InstanceFile) -> None:
    """Reject values whose figures overflow (see `_generation_figures`), naming the field."""
    for where, seconds in _generation_figures(instance, spec).items():
        if not (math.isfinite(seconds) and seconds <= MAX_FIGURE_S):
            raise InputError(f"{where}: one generation would take {seconds:.3g} s through it, beyond what can be "
                             f"computed (limit {MAX_FIGURE_S:.0e} s); check the value and its unit")


def _warn_implausible(instance: Instance, spec: InstanceFile) -> None:
    """One `InputWarning` per value that is valid but probably a unit mistake."""
    weights = instance.model.params * instance.model.weight_bits / 8
    for i, d in enumerate(instance.devices):
        # The kafetzis2025 profile counts no embedding: its paper-small devices hold KiB on purpose.
        if d.memory_bytes < 2**20 and weights > 100 * 2**20 and instance.workload.profile == "roofline":
            warnings.warn(f"`devices[{i}].memory` is {d.memory_bytes:.0f} bytes, under 1 MiB for a model of "
                          f"{weights / 2**20:,.0f} MiB; "
                          "is the unit right ('8 GiB')?", InputWarning, stacklevel=3)
    warned = set()
    for i, link in enumerate(instance.cluster.links):
        where = _link_field(i, spec)
        if where in warned:
            continue  # one line for the mesh, not one per pair
        warned.add(where)
        bits = link.bandwidth_bytes_per_s * 8
        if not 1e3 <= bits <= 1e13:
            warnings.warn(f"`{where}.bandwidth` is {bits:.3g} bit/s, {'under 1 kbit/s' if bits < 1e3 else 'over 10 Tbit/s'}; "
                          "is the unit right ('100 Mbit/s', '1 GB/s')?", InputWarning, stacklevel=3)
        if link.latency_s > 10:
            warnings.warn(f"`{where}.latency` is {link.latency_s:.3g} s, over 10 s; is the unit right ('2 ms')? "
                          "(a bare number is seconds)", InputWarning, stacklevel=3)


def capacity_problems(instance: Instance, *, splittable: bool = True) -> list[str]:
    """Reasons why no placement of `instance` can fit in memory, found without a solver.

    Checks that every indivisible block (one attention group with its KV cache at the
    largest context, the embedding, the output head, and, unless `splittable`, each
    whole projection and FFN) fits on some device, and that the whole model fits in all
    devices' memory together at the end of every interval (where memory is judged).

    Parameters
    ----------
    instance : Instance
    splittable : bool
        True when projections and FFNs may be split across devices (tensor
        parallel), so they only count toward the total.

    Returns
    -------
    list of str
        Empty when nothing rules the instance out; each entry names the block or
        the moment, the bytes needed and the bytes available.
    """
    from placement.cost.tables import block_memory  # local: the cost layer imports nothing from here
    from placement.cost.units import format_bytes

    workload = instance.workload
    ends = workload.interval_max_context()
    memory = block_memory(instance, instance.precision, ends)
    largest = max(d.usable_bytes for d in instance.devices)
    total_free = sum(d.usable_bytes for d in instance.devices)
    problems = []
    group = memory.group[-1]
    if group.max() > largest:
        layer = int(group.argmax())
        problems.append(
            f"one attention group of layer {layer} with its KV cache needs {format_bytes(group.max())} at the final "
            f"context ({int(ends[-1])} tokens); the largest device has {format_bytes(largest)}"
        )
    kinds = ("embed", "lm_head") if splittable else ("embed", "lm_head", "projection", "ffn")
    for kind in kinds:
        need = getattr(memory, kind)[-1]
        if need.max() > largest:
            where = f"layer {int(need.argmax())}'s {kind}" if need.size > 1 else f"the {kind}"
            problems.append(f"{where} ({format_bytes(need.max())}) fits on no device (largest: {format_bytes(largest)})")
    over = np.flatnonzero(memory.total > total_free)
    if len(over):
        k = int(over[0])
        step = int(ends[k] - workload.prompt_tokens)
        problems.append(
            f"at decode step {step} (context {int(ends[k])}, the end of interval {k}) the model needs "
            f"{format_bytes(memory.total[k])}, the devices have {format_bytes(total_free)} in all"
        )
    return problems


def instance_json_schema() -> dict[str, Any]:
    """JSON Schema of the instance file format, for editors."""
    return InstanceFile.model_json_schema()
