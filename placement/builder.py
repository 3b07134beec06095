"""Build an instance from Python objects, and write any instance back as YAML.

`build_instance` (also ``placement.Instance.build``) assembles the same mapping an
instance file holds and hands it to the file loader (`instance_from_dict`), so a
built instance passes the same validation and a mistake gives the same message as
in a file. Quantities are strings with units (``"1.5 GiB"``), bare numbers in the base
unit (bytes, bytes/s, seconds, FLOP/s), or pint quantities from any registry.

`instance_to_dict` / `instance_to_yaml` / `save_instance` (also ``Instance.to_yaml``
and ``Instance.save``) write an instance so that loading the file gives an equal
instance: every figure is written exactly, in a readable unit when one is exact.

Docs: docs/api.md, "Building an instance".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from placement.cost.model import ModelSpec, load_model, model_names
from placement.cost.sparsity import sparsity_to_mapping
from placement.cost.units import BYTES, BYTES_PER_S, FLOP_PER_S, SECONDS, parse_quantity
from placement.errors import InputError
from placement.files import write_text_atomic
from placement.instance import Instance, Workload, instance_from_dict

__all__ = ["device", "link", "build_instance", "instance_to_dict", "instance_to_yaml", "save_instance",
           "instances_equal"]


def _quantity(value: Any) -> Any:
    """A pint quantity (any registry) as text the loader parses; strings and numbers unchanged."""
    if hasattr(value, "magnitude") and hasattr(value, "units"):
        return f"{float(value.magnitude)!r} {value.units}"
    return value


def _fields(**values: Any) -> dict[str, Any]:
    return {key: _quantity(value) for key, value in values.items() if value is not None}


def device(preset: str | None = None, name: str | None = None, *, memory: Any = None, peak_flops: Any = None,
           memory_bandwidth: Any = None, reserved: Any = None, compute_efficiency: float | None = None,
           memory_efficiency: float | None = None, disk_bandwidth: Any = None,
           block_overhead: Any = None) -> dict[str, Any]:
    """One device entry: a catalog preset by name, fields of its own, or a preset with overrides.

    Parameters
    ----------
    preset : str, optional
        A catalog preset (``placement devices``) or a preset file ``path.yaml#name``.
    name : str, optional
        The device's name; default the preset's (``build_instance`` numbers repeats).
    memory, peak_flops, memory_bandwidth, reserved, disk_bandwidth, block_overhead : str, float or pint quantity
        As in an instance file (``reserved`` is the file's ``reserved_memory``).
    compute_efficiency, memory_efficiency : float, optional
        Achievable fractions, (0, 1].

    Returns
    -------
    dict
        The entry as an instance file's ``devices`` list holds it.

    Examples
    --------
    >>> device("jetson-orin-nano", reserved="1.5 GiB")
    {'name': 'jetson-orin-nano', 'preset': 'jetson-orin-nano', 'reserved_memory': '1.5 GiB'}
    """
    if preset is None and name is None:
        raise InputError("device(): give a `preset` (see `placement devices`) or a `name` with its own fields")
    return {"name": name if name is not None else preset, **_fields(
        preset=preset, memory=memory, peak_flops=peak_flops, memory_bandwidth=memory_bandwidth,
        compute_efficiency=compute_efficiency, memory_efficiency=memory_efficiency, reserved_memory=reserved,
        disk_bandwidth=disk_bandwidth, block_overhead=block_overhead)}


def link(u: str, v: str, *, bandwidth: Any, latency: Any) -> dict[str, Any]:
    """One link between two devices or switches.

    Parameters
    ----------
    u, v : str
        Endpoint names.
    bandwidth, latency : str, float or pint quantity
        E.g. ``"1 Gbit/s"`` and ``"0.1 ms"``.

    Returns
    -------
    dict
        The entry as an instance file's ``links`` list holds it.

    Examples
    --------
    >>> link("pi-a", "switch", bandwidth="1 Gbit/s", latency="0.1 ms")
    {'between': ['pi-a', 'switch'], 'bandwidth': '1 Gbit/s', 'latency': '0.1 ms'}
    """
    return {"between": [u, v], **_fields(bandwidth=bandwidth, latency=latency)}


def _numbered(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Devices named after a repeated preset without a name of their own become ``preset-1``, ``preset-2``, …."""
    repeats = Counter(e["name"] for e in entries if e.get("preset") == e["name"])
    seen: Counter = Counter()
    out = []
    for entry in entries:
        if entry.get("preset") == entry["name"] and repeats[entry["name"]] > 1:
            seen[entry["name"]] += 1
            entry = {**entry, "name": f"{entry['name']}-{seen[entry['name']]}"}
        out.append(entry)
    return out


def _workload_entry(workload: Workload | Mapping[str, Any], precision: Mapping[str, Any] | None) -> dict[str, Any]:
    if isinstance(workload, Workload):
        entry = {"prompt_tokens": workload.prompt_tokens, "generate_tokens": workload.generate_tokens,
                 "batch": workload.batch, "profile": workload.profile}
        if workload.interval_tokens is not None:
            entry["interval"] = workload.interval_tokens
    elif isinstance(workload, Mapping):
        entry = dict(workload)
    else:
        raise InputError(f"`workload`: expected a placement.Workload or a mapping of workload fields, got {workload!r}")
    if precision is not None:
        entry["precision"] = dict(precision)
    return entry


def _model_entry(model: str | ModelSpec | Mapping[str, Any]) -> str | dict[str, Any]:
    if isinstance(model, ModelSpec):
        if model.name in model_names() and load_model(model.name) == model:
            return model.name
        return {k: v for k, v in asdict(model).items() if v is not None and v != ""}
    return model if isinstance(model, str) else dict(model)


def build_instance(model: str | ModelSpec | Mapping[str, Any], devices: Sequence[Mapping[str, Any]], *,
                   workload: Workload | Mapping[str, Any], links: Sequence[Mapping[str, Any]] = (),
                   mesh: Mapping[str, Any] | None = None, switches: Sequence[str] = (), network: str = "switched",
                   precision: Mapping[str, Any] | None = None, name: str | None = None, description: str = "",
                   wireless: Mapping[str, Any] | None = None, attention: Mapping[str, Any] | None = None,
                   check_capacity: bool = True) -> Instance:
    """An instance from Python objects, validated exactly as an instance file is.

    Parameters
    ----------
    model : str, ModelSpec or mapping
        A shipped model name (``placement models``), a spec, or an inline mapping.
    devices : sequence of dict
        Entries from `device` (or mappings with an instance file's device fields).
    workload : Workload or mapping
        E.g. ``Workload(prompt_tokens=256, generate_tokens=512, interval_tokens=64)``
        or ``{"prompt_tokens": 256, "generate_tokens": 512, "interval": 64}``.
    links : sequence of dict
        Entries from `link`.
    mesh : mapping, optional
        ``{"bandwidth": ..., "latency": ...}``: the link between every pair of devices without one.
    switches : sequence of str
        Nodes that forward traffic but run nothing.
    network : {"switched", "shared"}
    precision : mapping, optional
        ``{"weights": 4, "kv_cache": 8, "activations": 16}`` bits (default: the model's).
    name, description : str
    wireless : mapping, optional
        A ``wireless:`` section as in a file (docs/ota.md).
    attention : mapping, optional
        An ``attention:`` section as in a file: ``{"local_window": 256, "delta_sparsity": 0.57}`` (docs/sparsity.md).
    check_capacity : bool
        Raise `InfeasibleError` when the model cannot fit at all.

    Returns
    -------
    Instance

    Raises
    ------
    InputError, InfeasibleError
        With the same messages an instance file with these fields gives.

    Examples
    --------
    >>> import placement
    >>> inst = placement.Instance.build(
    ...     model="llama-3.2-1b",
    ...     devices=[placement.device("raspberry-pi-5", reserved="1 GiB")] * 2,
    ...     mesh={"bandwidth": "1 Gbit/s", "latency": "0.2 ms"},
    ...     workload=placement.Workload(prompt_tokens=128, generate_tokens=64))
    >>> inst.cluster.names
    ('raspberry-pi-5-1', 'raspberry-pi-5-2')
    """
    data: dict[str, Any] = {
        "model": _model_entry(model),
        "devices": _numbered([dict(d) for d in devices]),
        "links": [dict(entry) for entry in links],
        "switches": list(switches),
        "network": network,
        "workload": _workload_entry(workload, precision),
        "description": description,
    }
    if name is not None:
        data["name"] = name
    if mesh is not None:
        data["mesh"] = {key: _quantity(value) for key, value in dict(mesh).items()}
    if wireless is not None:
        data["wireless"] = {key: _quantity(value) for key, value in dict(wireless).items()}
    if attention is not None:
        data["attention"] = dict(attention)
    return instance_from_dict(data, source=name or "built instance", check_capacity=check_capacity)


# ----------------------------------------------------------------------------- writing
# Readable units for each kind; a value is written in the one that reads back exactly in the fewest characters.
_UNITS = {
    "bytes": (BYTES, [("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("GB", 1e9), ("MB", 1e6), ("B", 1)]),
    "rate": (BYTES_PER_S, [("GB/s", 1e9), ("Gbit/s", 1.25e8), ("MB/s", 1e6), ("Mbit/s", 1.25e5), ("kbit/s", 125), ("B/s", 1)]),
    "seconds": (SECONDS, [("s", 1), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)]),
    "flops": (FLOP_PER_S, [("TFLOPS", 1e12), ("GFLOPS", 1e9), ("MFLOPS", 1e6), ("FLOPS", 1)]),
}


def _written(value: float, kind: str) -> str | float:
    """`value` (base unit) as the shortest text in a readable unit that reads back exactly, else the bare number."""
    unit_kind, candidates = _UNITS[kind]
    exact = []
    for unit, scale in candidates:
        text = f"{value / scale:.12g} {unit}"
        if parse_quantity(text, unit_kind, field="value", positive=False) == value:
            exact.append(text)
    return min(exact, key=len) if exact else float(value)


def _device_entry(d) -> dict[str, Any]:
    entry = {"name": d.name, "memory": _written(d.memory_bytes, "bytes"),
             "peak_flops": _written(d.peak_flops_per_s, "flops"),
             "memory_bandwidth": _written(d.memory_bandwidth_bytes_per_s, "rate")}
    if d.compute_efficiency != 1.0:
        entry["compute_efficiency"] = d.compute_efficiency
    if d.memory_efficiency != 1.0:
        entry["memory_efficiency"] = d.memory_efficiency
    if d.reserved_bytes:
        entry["reserved_memory"] = _written(d.reserved_bytes, "bytes")
    if d.disk_bandwidth_bytes_per_s is not None:
        entry["disk_bandwidth"] = _written(d.disk_bandwidth_bytes_per_s, "rate")
    if d.block_overhead_s:
        entry["block_overhead"] = _written(d.block_overhead_s, "seconds")
    return entry


def _precision_entry(instance: Instance) -> dict[str, float]:
    p, model = instance.precision, instance.model
    weights = {float(x) for x in np.concatenate([p.attention, p.projection, p.ffn])} | {p.embed, p.lm_head}
    kv = {float(x) for x in p.kv}
    if len(weights) > 1 or len(kv) > 1:
        raise InputError(f"instance {instance.name!r}: per-block precision cannot be written to an instance file "
                         "(files hold one weight, cache and activation precision); put per-block bits in the plan")
    out = {}
    for key, value, default in (("weights", weights.pop(), model.weight_bits), ("kv_cache", kv.pop(), model.kv_bits),
                                ("activations", p.activation, model.activation_bits)):
        if value != default:
            out[key] = int(value) if float(value).is_integer() else value
    return out


def instance_to_dict(instance: Instance) -> dict[str, Any]:
    """An instance as the mapping an instance file holds (devices written out in full, no presets).

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    dict
        Loading it (`instance_from_dict`) gives an equal instance.

    Raises
    ------
    InputError
        For an instance with a ``wireless``, ``serving`` or ``expert_routing`` section
        (not written yet: keep its source file) or with per-block precision.
    """
    for section, value in (("wireless", instance.wireless), ("serving", instance.serving),
                           ("expert_routing", instance.expert_routing)):
        if value is not None:  # never a file that silently loses a section
            raise InputError(f"instance {instance.name!r}: writing the `{section}` section is not supported; "
                             "keep the file it was loaded from")
    w = instance.workload
    workload = {"prompt_tokens": w.prompt_tokens, "generate_tokens": w.generate_tokens}
    if w.batch != 1:
        workload["batch"] = w.batch
    if w.interval_tokens is not None:
        workload["interval"] = w.interval_tokens
    if w.profile != "roofline":
        workload["profile"] = w.profile
    precision = _precision_entry(instance)
    if precision:
        workload["precision"] = precision
    data: dict[str, Any] = {"name": instance.name}
    if instance.description:
        data["description"] = instance.description
    data["model"] = _model_entry(instance.model)
    data["devices"] = [_device_entry(d) for d in instance.devices]
    if instance.cluster.switches:
        data["switches"] = list(instance.cluster.switches)
    data["links"] = [{"between": [k.u, k.v], "bandwidth": _written(k.bandwidth_bytes_per_s, "rate"),
                      "latency": _written(k.latency_s, "seconds")} for k in instance.cluster.links]
    if instance.cluster.network != "switched":
        data["network"] = instance.cluster.network
    if instance.cluster.routing != "fastest":
        data["routing"] = instance.cluster.routing
    data["workload"] = workload
    if instance.attention is not None:
        data["attention"] = sparsity_to_mapping(instance.attention)
    return data


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of plain values (``between: [pi-a, switch]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, (list, dict)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def instance_to_yaml(instance: Instance) -> str:
    """The instance as YAML text (see `instance_to_dict`).

    Returns
    -------
    str
    """
    return yaml.dump(instance_to_dict(instance), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def save_instance(instance: Instance, path: str | Path) -> Path:
    """Write the instance as a YAML file, atomically (a half-written file never appears).

    Parameters
    ----------
    instance : Instance
    path : str or Path

    Returns
    -------
    Path
        `path`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"save: folder {str(path.parent)!r} does not exist; create it or save elsewhere")
    write_text_atomic(path, instance_to_yaml(instance))
    return path


def instances_equal(a: Instance, b: Instance) -> bool:
    """True when two instances hold the same model, devices, links, workload and precision.

    Parameters
    ----------
    a, b : Instance

    Returns
    -------
    bool
    """
    precision_same = all(np.array_equal(getattr(a.precision, f.name), getattr(b.precision, f.name))
                         for f in fields(a.precision))
    return (a.name == b.name and a.description == b.description and a.model == b.model
            and a.devices == b.devices and a.cluster.links == b.cluster.links
            and a.cluster.switches == b.cluster.switches and a.cluster.network == b.cluster.network
            and a.workload == b.workload and precision_same and (a.wireless is None) == (b.wireless is None)
            and a.attention == b.attention)
