"""The ``paper-small`` suite: the small-scale settings of the head-partitioning paper (see `placement.experiments.suites`).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from placement.instance import instance_from_dict
from placement.experiments.suites.common import MAX_DRAWS, memory_ok, memory_summary

__all__ = ["MODELS", "BANDWIDTH_GIBS", "PROFILES", "PAPER_SMALL_SETTINGS", "PROMPT_TOKENS", "DECODE_STEPS", "COMPUTE_GFLOPS", "MEMORY_SHARE_SIGMA", "SLACK", "KAFETZIS_MEMORY_BANDWIDTH", "ROOFLINE_MEMORY_BANDWIDTH_GBS", "paper_small_suite"]


MODELS = {"h8": "synthetic-h8-d512", "h16": "synthetic-h16-d1024"}
# Link bandwidth ranges, GiB/s: the authors' configs' "Gbps" figures (lowBW 0.01-0.1, mediumBW
# 0.5-2), which their simulator divides bytes / 1024**3 by, so GiB/s (8.59x Gbit/s).
BANDWIDTH_GIBS = {"low": (0.01, 0.1), "medium": (0.5, 2.0)}
PROFILES = {"kafetzis": "kafetzis2025", "roofline": "roofline"}

# (model, devices, bandwidth): h8 on 3 and 4 devices, h16 on 4 and 5, each at low and medium bandwidth.
PAPER_SMALL_SETTINGS: tuple[tuple[str, int, str], ...] = (
    ("h8", 3, "low"), ("h8", 3, "medium"), ("h8", 4, "low"), ("h8", 4, "medium"),
    ("h16", 4, "low"), ("h16", 4, "medium"), ("h16", 5, "low"), ("h16", 5, "medium"),
)

PROMPT_TOKENS = (16, 32)
DECODE_STEPS = (5, 20)
COMPUTE_GFLOPS = {"median": 12.0, "sigma": 0.4, "tiers": (1, 2, 4), "tier_p": (0.6, 0.3, 0.1), "clip": (5.0, 50.0)}
MEMORY_SHARE_SIGMA = 0.5
SLACK = (0.2, 0.6)
KAFETZIS_MEMORY_BANDWIDTH = "10 GB/s"
ROOFLINE_MEMORY_BANDWIDTH_GBS = (5.0, 20.0)




def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.3f} MiB"


def _bandwidth(gibs: float) -> str:
    return f"{gibs * 1024:.2f} MiB/s" if gibs < 1 else f"{gibs:.4f} GiB/s"


def _base_name(model: str, n_devices: int, band: str, seed: int) -> str:
    return f"{model}-{n_devices}dev-{band}-s{seed}"


def _description(model_key: str, n: int, band: str, P: int, T: int, slack: float, profile: str) -> str:
    lo, hi = BANDWIDTH_GIBS[band]
    bw = f"{lo:g}-{hi:g} GiB/s"
    cost = ("the paper's cost equations (kafetzis2025)" if profile == "kafetzis2025"
            else "the roofline cost model (memory bandwidth 5-20 GB/s) with the same devices, links and workload")
    return (f"Kafetzis et al. (arXiv 2505.02533) small-scale setting: {MODELS[model_key]} (one layer, 32-bit) on {n} "
            f"devices (5-50 GFLOPS, log-normal) over a full mesh of {band}-bandwidth links ({bw} per pair: the "
            f"authors' 'Gbps' figures, which their simulator divides bytes / 1024^3 by; no latency); memory {1 + slack:.2f}x the model at the final context, no device holding it alone; prompt "
            f"{P}, {T} decode steps re-decided at every step (migration charged); {cost}.")


def _setting_instances(model_key: str, n: int, band: str, seed: int) -> list[dict[str, Any]]:
    """The two instances (kafetzis2025, roofline) of one setting."""
    base = _base_name(model_key, n, band, seed)
    rng = np.random.default_rng([seed, zlib.crc32(base.encode())])
    P = int(rng.integers(PROMPT_TOKENS[0], PROMPT_TOKENS[1] + 1))
    T = int(rng.integers(DECODE_STEPS[0], DECODE_STEPS[1] + 1))
    c = COMPUTE_GFLOPS
    gflops = rng.lognormal(np.log(c["median"]), c["sigma"], n) * rng.choice(c["tiers"], size=n, p=c["tier_p"])
    gflops = np.clip(gflops, *c["clip"])
    names = [f"d{j}" for j in range(n)]
    pairs = [(names[i], names[j]) for i in range(n) for j in range(i + 1, n)]
    gibs = rng.uniform(*BANDWIDTH_GIBS[band], len(pairs))
    roofline_bw = rng.uniform(*ROOFLINE_MEMORY_BANDWIDTH_GBS, n)
    links = [{"between": list(pair), "bandwidth": _bandwidth(b), "latency": "0 s"} for pair, b in zip(pairs, gibs)]

    def instance_dict(profile: str, memory: list[float] | None, slack: float) -> dict[str, Any]:
        devices = []
        for j, name in enumerate(names):
            mem_bw = KAFETZIS_MEMORY_BANDWIDTH if profile == "kafetzis2025" else f"{roofline_bw[j]:.1f} GB/s"
            devices.append({"name": name, "memory": _mib(memory[j]) if memory else "1024 GiB",
                            "peak_flops": f"{gflops[j]:.1f} GFLOPS", "memory_bandwidth": mem_bw})
        suffix = "kafetzis" if profile == "kafetzis2025" else "roofline"
        return {
            "name": f"{base}-{suffix}",
            "description": _description(model_key, n, band, P, T, slack, profile),
            "model": MODELS[model_key],
            "devices": devices,
            "links": links,
            "workload": {"prompt_tokens": P, "generate_tokens": T, "interval": 1, "profile": profile},
        }

    profiles = list(PROFILES.values())
    totals = {p: memory_summary(instance_from_dict(instance_dict(p, None, 0.0), check_capacity=False))["total"]
              for p in profiles}
    for _ in range(MAX_DRAWS):
        shares = rng.lognormal(0.0, MEMORY_SHARE_SIGMA, n)
        shares /= shares.sum()
        slack = float(rng.uniform(*SLACK))
        dicts = [instance_dict(p, list((1 + slack) * totals[p] * shares), slack) for p in profiles]
        if all(memory_ok(instance_from_dict(d, source=d["name"], check_capacity=False)) for d in dicts):
            return dicts
    raise RuntimeError(f"{base}: no memory draw met the suite's condition in {MAX_DRAWS} tries")


def paper_small_suite(seed: int = 1) -> list[dict[str, Any]]:
    """The ``paper-small`` suite: instance dicts (the fields of an instance file), two per setting.

    Parameters
    ----------
    seed : int
        Suite seed; it appears in the names as ``s{seed}``.

    Returns
    -------
    list of dict
        For every setting of `PAPER_SMALL_SETTINGS`, the ``kafetzis2025`` instance, then
        the ``roofline`` one. Deterministic: the same seed gives the same dicts.

    Examples
    --------
    >>> suite = paper_small_suite()
    >>> [d["name"] for d in suite[:2]]
    ['h8-3dev-low-s1-kafetzis', 'h8-3dev-low-s1-roofline']
    """
    out = []
    for model_key, n, band in PAPER_SMALL_SETTINGS:
        out += _setting_instances(model_key, n, band, seed)
    return out
