"""The ``edge-real`` and ``large`` suites: real models on real device presets, in the board variants people buy
(``device_kinds.yaml``; see `placement.experiments.suites`).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from placement.cost.units import BYTES, parse_quantity
from placement.instance import device_presets, instance_from_dict
from collections.abc import Mapping
from types import MappingProxyType
from placement.experiments.suites.common import MAX_DRAWS, first_fit_decreasing, memory_ok, memory_summary

__all__ = ["DeviceKind", "DEVICE_KINDS", "MODEL_TITLES", "WIFI_MBIT", "WIFI_HOP_MS", "ETH_HOP_MS", "LEAF_PORTS", "UPLINK", "EDGE_REAL_SETTINGS", "EDGE_REAL_PROMPT", "EDGE_REAL_GENERATE", "EDGE_REAL_INTERVAL", "EDGE_REAL_MAX_RATIO", "LARGE_SETTINGS", "LARGE_PROMPT", "LARGE_GENERATE", "LARGE_INTERVAL", "LARGE_MAX_RATIO", "devices_needed", "edge_real_suite", "large_suite"]


class DeviceKind(NamedTuple):
    """A board as bought: a preset, its RAM if the variant differs, what the OS keeps, its wired port."""

    label: str
    preset: str
    memory: str | None
    reserved: str
    ethernet: str | None  # None: wireless only


def _device_kinds() -> dict[str, DeviceKind]:
    """The board variants of `device_kinds.yaml`, beside this module."""
    data = yaml.safe_load((Path(__file__).with_name("device_kinds.yaml")).read_text())
    return {name: DeviceKind(**fields) for name, fields in data.items()}


DEVICE_KINDS: Mapping[str, DeviceKind] = MappingProxyType(_device_kinds())

MODEL_TITLES = {"llama-3.2-1b": "Llama 3.2 1B", "llama-3.2-3b": "Llama 3.2 3B", "llama-3.1-8b": "Llama 3.1 8B",
                "qwen2.5-7b": "Qwen2.5 7B", "llama-2-13b": "Llama 2 13B", "llama-3-70b": "Llama 3 70B"}

# wifi: one shared channel through an access point; eth: switched, at each device's port speed.
WIFI_MBIT = (50.0, 400.0)
WIFI_HOP_MS = (1.0, 4.0)
ETH_HOP_MS = (0.05, 0.25)
LEAF_PORTS = 16
UPLINK = {"bandwidth": "10 Gbit/s", "latency": "0.05 ms"}

# (model, devices, link class, weight bits): every model on both link classes, 2-8 devices.
EDGE_REAL_SETTINGS: tuple[tuple[str, int, str, int], ...] = (
    ("llama-3.2-1b", 2, "wifi", 16), ("llama-3.2-1b", 2, "eth", 16),
    ("llama-3.2-1b", 3, "wifi", 16), ("llama-3.2-1b", 4, "eth", 16),
    ("llama-3.2-3b", 2, "wifi", 16), ("llama-3.2-3b", 3, "eth", 8),
    ("llama-3.2-3b", 4, "eth", 16), ("llama-3.2-3b", 5, "wifi", 16),
    ("llama-3.1-8b", 2, "wifi", 8), ("llama-3.1-8b", 3, "eth", 4),
    ("llama-3.1-8b", 6, "wifi", 16), ("llama-3.1-8b", 8, "eth", 16),
    ("qwen2.5-7b", 2, "eth", 8), ("qwen2.5-7b", 3, "wifi", 4),
    ("qwen2.5-7b", 5, "eth", 16), ("qwen2.5-7b", 8, "wifi", 16),
)
EDGE_REAL_PROMPT = (64, 128, 256, 512)
EDGE_REAL_GENERATE = (128, 256, 512, 1024)
EDGE_REAL_INTERVAL = (32, 64)
EDGE_REAL_MAX_RATIO = 3.0

# (model, devices, link class, weight bits, kinds): small boards, so that many are needed.
LARGE_SETTINGS: tuple[tuple[str, int, str, int, tuple[str, ...]], ...] = (
    ("llama-3.1-8b", 16, "eth", 16, ("pi4-1g", "pi4-2g", "pi5-2g", "pi5-4g")),
    ("qwen2.5-7b", 16, "wifi", 16, ("pi4-1g", "pi4-2g", "pi5-2g", "phone-8g")),
    ("llama-2-13b", 32, "wifi", 16, ("pi4-1g", "pi4-2g", "pi5-2g")),
    ("llama-3-70b", 32, "eth", 4, ("pi4-2g", "pi5-2g", "pi5-4g")),
    ("llama-2-13b", 48, "eth", 16, ("pi4-1g", "pi4-2g", "pi5-2g")),
)
LARGE_PROMPT = (128, 256, 512)
LARGE_GENERATE = 1000
LARGE_INTERVAL = 100
LARGE_MAX_RATIO = 2.5


def _usable_bytes(kind: str) -> float:
    k = DEVICE_KINDS[kind]
    memory = k.memory or device_presets()[k.preset]["memory"]
    return (parse_quantity(memory, BYTES, field=f"{kind}.memory")
            - parse_quantity(k.reserved, BYTES, field=f"{kind}.reserved_memory"))


def devices_needed(instance) -> int:
    """The fewest devices of `instance` whose memory (largest first) adds up to the model at the final context.

    Parameters
    ----------
    instance : Instance

    Returns
    -------
    int
    """
    m = memory_summary(instance)
    room = np.cumsum(sorted(m["devices"], reverse=True))
    return int(np.searchsorted(room, m["total"]) + 1)


def _device_entries(kinds: list[str]) -> list[dict[str, Any]]:
    """One device per drawn kind, ordered as `DEVICE_KINDS`, named ``{kind}-{i}``."""
    order = list(DEVICE_KINDS)
    entries = []
    for kind in sorted(set(kinds), key=order.index):
        k = DEVICE_KINDS[kind]
        for i in range(1, kinds.count(kind) + 1):
            entry = {"name": f"{kind}-{i}", "preset": k.preset}
            if k.memory:
                entry["memory"] = k.memory
            entries.append({**entry, "reserved_memory": k.reserved})
    return entries


def _network(rng: np.random.Generator, devices: list[dict[str, Any]], link: str) -> dict[str, Any]:
    """``switches``, ``links`` and ``network`` of a star (wifi) or of leaf switches under a core (eth)."""
    names = [d["name"] for d in devices]
    if link == "wifi":
        mbit = rng.uniform(*WIFI_MBIT, len(names))
        ms = rng.uniform(*WIFI_HOP_MS, len(names))
        links = [{"between": [name, "ap"], "bandwidth": f"{b:.0f} Mbit/s", "latency": f"{t:.1f} ms"}
                 for name, b, t in zip(names, mbit, ms)]
        return {"switches": ["ap"], "links": links, "network": "shared"}
    ms = rng.uniform(*ETH_HOP_MS, len(names))
    leaves = -(-len(names) // LEAF_PORTS)
    # beyond one switch, devices are spread over the leaves at random (not grouped by kind)
    leaf = ["switch"] * len(names) if leaves == 1 else [f"switch-{p // LEAF_PORTS + 1}" for p in rng.permutation(len(names))]
    links = [{"between": [name, sw], "bandwidth": DEVICE_KINDS[name.rsplit("-", 1)[0]].ethernet, "latency": f"{t:.2f} ms"}
             for name, sw, t in zip(names, leaf, ms)]
    if leaves == 1:
        return {"switches": ["switch"], "links": links, "network": "switched"}
    leaf_names = [f"switch-{i + 1}" for i in range(leaves)]
    links += [{"between": [sw, "core"], **UPLINK} for sw in leaf_names]
    return {"switches": [*leaf_names, "core"], "links": links, "network": "switched"}


def _real_description(data: dict[str, Any], instance, link: str, bits: int) -> str:
    model = instance.model.name
    counts: dict[str, int] = {}
    for d in data["devices"]:
        label = DEVICE_KINDS[d["name"].rsplit("-", 1)[0]].label
        counts[label] = counts.get(label, 0) + 1
    devices = ", ".join(f"{c}x {label}" if c > 1 else label for label, c in counts.items())
    weights = "16-bit weights and KV cache" if bits == 16 else f"{bits}-bit weights, 16-bit KV cache"
    if link == "wifi":
        net = (f"sharing one Wi-Fi channel through an access point ({WIFI_MBIT[0]:g}-{WIFI_MBIT[1]:g} Mbit/s and "
               f"{WIFI_HOP_MS[0]:g}-{WIFI_HOP_MS[1]:g} ms from each device to it)")
    else:
        leaves = len(data["switches"]) - 1
        where = "one switch" if leaves == 0 else f"{leaves} {LEAF_PORTS}-port switches under a 10 Gbit/s core"
        ports = sorted({DEVICE_KINDS[d["name"].rsplit("-", 1)[0]].ethernet for d in data["devices"]})
        speed = "its port's " + " or ".join(ports) if len(ports) > 1 else ports[0]
        net = (f"on switched Ethernet through {where} (each device at {speed}, "
               f"{ETH_HOP_MS[0]:g}-{ETH_HOP_MS[1]:g} ms per hop)")
    w = instance.workload
    m = memory_summary(instance)
    return (f"{MODEL_TITLES[model]} ({weights}) on {instance.n_devices} devices {net}: {devices}. Prompt "
            f"{w.prompt_tokens}, {w.generate_tokens} generated tokens re-decided every {w.tau} ({w.n_intervals} "
            f"intervals, migration charged). At the final context the model needs {m['total'] / 2**30:.2f} GiB; "
            f"the devices hold {m['capacity'] / m['total']:.2f}x that after the OS's share, no device alone, at "
            f"least {devices_needed(instance)} together.")


def _real_instance(name: str, model: str, n: int, link: str, bits: int, pool: tuple[str, ...] | None,
                   workload: dict[str, Any], max_ratio: float, rng: np.random.Generator) -> dict[str, Any]:
    """Draw devices until the memory condition holds, then the links; the instance dict."""
    if bits != 16:
        workload = {**workload, "precision": {"weights": bits}}
    probe = {"model": model, "devices": [{"name": "probe", "memory": "1 TiB", "peak_flops": "1 TFLOPS",
                                          "memory_bandwidth": "1 GB/s"}], "workload": workload}
    m = memory_summary(instance_from_dict(probe, check_capacity=False))
    if pool is None:  # every kind below the model that holds its largest block (with a wired port on eth)
        pool = tuple(k for k, kind in DEVICE_KINDS.items()
                     if max(m["blocks"]) <= _usable_bytes(k) < m["total"] and (link == "wifi" or kind.ethernet))
    elif link == "eth" and not all(DEVICE_KINDS[k].ethernet for k in pool):
        raise ValueError(f"{name}: Ethernet needs kinds with a wired port, not {', '.join(pool)}")
    usable = np.array([_usable_bytes(k) for k in pool])
    for _ in range(MAX_DRAWS):
        drawn = rng.integers(len(pool), size=n)
        room = usable[drawn]
        if not (room.max() < m["total"] < room.sum() <= max_ratio * m["total"]):
            continue
        if not first_fit_decreasing(m["blocks"], list(room)):
            continue
        devices = _device_entries([pool[i] for i in drawn])
        data = {"name": name, "description": "", "model": model, "devices": devices,
                **_network(rng, devices, link), "workload": workload}
        instance = instance_from_dict(data, source=name, check_capacity=False)
        if not memory_ok(instance):
            continue
        data["description"] = _real_description(data, instance, link, bits)
        return data
    raise RuntimeError(f"{name}: no device draw from {', '.join(pool)} met the suite's condition in {MAX_DRAWS} tries")


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def edge_real_suite(seed: int = 1) -> list[dict[str, Any]]:
    """The ``edge-real`` suite: four real models on 2-8 real devices over Wi-Fi or Ethernet.

    Parameters
    ----------
    seed : int
        Suite seed.

    Returns
    -------
    list of dict
        One instance dict per setting of `EDGE_REAL_SETTINGS`, named
        ``{model}-{n}dev-{wifi|eth}``. Prompt, generated tokens and interval are drawn
        from `EDGE_REAL_PROMPT`, `EDGE_REAL_GENERATE`, `EDGE_REAL_INTERVAL`.

    Examples
    --------
    >>> edge_real_suite()[0]["name"]
    'llama-3.2-1b-2dev-wifi'
    """
    out = []
    for model, n, link, bits in EDGE_REAL_SETTINGS:
        name = f"{model}-{n}dev-{link}"
        rng = _rng(seed, name)
        workload = {"prompt_tokens": int(rng.choice(EDGE_REAL_PROMPT)),
                    "generate_tokens": int(rng.choice(EDGE_REAL_GENERATE)),
                    "interval": int(rng.choice(EDGE_REAL_INTERVAL))}
        out.append(_real_instance(name, model, n, link, bits, None, workload, EDGE_REAL_MAX_RATIO, rng))
    return out


def large_suite(seed: int = 1) -> list[dict[str, Any]]:
    """The ``large`` suite: 16-48 small boards, 1,000 generated tokens, beyond proven optimality.

    Parameters
    ----------
    seed : int
        The suite seed.

    Returns
    -------
    list of dict
        One instance dict per setting of `LARGE_SETTINGS`, named ``{model}-{n}dev-{wifi|eth}``.

    Examples
    --------
    >>> [d["name"] for d in large_suite()][:2]
    ['llama-3.1-8b-16dev-eth', 'qwen2.5-7b-16dev-wifi']
    """
    out = []
    for model, n, link, bits, kinds in LARGE_SETTINGS:
        name = f"{model}-{n}dev-{link}"
        rng = _rng(seed, name)
        workload = {"prompt_tokens": int(rng.choice(LARGE_PROMPT)), "generate_tokens": LARGE_GENERATE,
                    "interval": LARGE_INTERVAL}
        out.append(_real_instance(name, model, n, link, bits, kinds, workload, LARGE_MAX_RATIO, rng))
    return out
