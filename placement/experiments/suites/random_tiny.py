"""Seeded random tiny instances: the space an online method must hold up on, off any benchmark.

`random_tiny_instance(seed)` draws one instance small enough that the MILP proves its
optimum in seconds, from the space of issue 16:

- model: 1 or 2 layers, 2–8 query heads with GQA (the KV heads a divisor of the
  query heads), head dimension 16, 32 or 64, FFN 2–4× the hidden size, gated or
  not, vocabulary 256–2048, 16-bit;
- 2–5 devices: peak 2–40 GFLOP/s and memory bandwidth 1–10 GB/s, both log-uniform;
- a full mesh of links, each pair 1–100 MB/s (log-uniform) and 0.1–5 ms;
  ``switched`` or ``shared`` with equal odds;
- memory: "loose" (one in four: every device holds the model twice over) or every
  device at 35–90 % of the model's memory at the final context (uniform, per
  device), drawn again until first-fit decreasing packs the blocks (so a feasible
  placement exists);
- prompt 4–64 tokens, 1–3 re-decision intervals of 4–32 tokens each.

The draw depends on the seed alone (NumPy's ``default_rng(seed)``), so seed ranges
are reproducible and disjoint ranges are independent samples: the benchmark tunes on
one (`TUNING_SEEDS`) and reports on another it never looked at (`REPORT_SEEDS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placement.experiments.suites.common import MAX_DRAWS, first_fit_decreasing, memory_summary
from placement.instance import Instance, instance_from_dict

__all__ = ["REPORT_SEEDS", "TUNING_SEEDS", "random_tiny_dict", "random_tiny_instance"]

# Seeds the online methods were tuned on, and the disjoint ones their figures are reported on.
TUNING_SEEDS = range(0, 200)
REPORT_SEEDS = range(10_000, 10_200)

_LOOSE_P = 0.25
_MEMORY_SHARE = (0.35, 0.90)


def _log_uniform(rng: np.random.Generator, low: float, high: float, size=None):
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _model(rng: np.random.Generator, seed: int) -> dict[str, Any]:
    heads = int(rng.integers(2, 9))
    kv_heads = int(rng.choice([k for k in range(1, heads + 1) if heads % k == 0]))
    head_dim = int(rng.choice([16, 32, 64]))
    hidden = heads * head_dim
    return {"name": f"random-tiny-{seed}", "layers": int(rng.integers(1, 3)), "hidden": hidden, "heads": heads,
            "kv_heads": kv_heads, "head_dim": head_dim, "ffn_hidden": int(hidden * rng.uniform(2, 4)) // 8 * 8,
            "gated_ffn": bool(rng.random() < 0.5), "vocab": int(rng.integers(256, 2049)), "tied_embeddings": False}


def _cluster(rng: np.random.Generator, n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    flops = _log_uniform(rng, 2.0, 40.0, n)
    bandwidth = _log_uniform(rng, 1.0, 10.0, n)
    devices = [{"name": f"d{j}", "peak_flops": f"{flops[j]:.3f} GFLOPS", "memory_bandwidth": f"{bandwidth[j]:.3f} GB/s"}
               for j in range(n)]
    links = []
    for u in range(n):
        for v in range(u + 1, n):
            links.append({"between": [f"d{u}", f"d{v}"], "bandwidth": f"{_log_uniform(rng, 1.0, 100.0):.3f} MB/s",
                          "latency": f"{rng.uniform(0.1, 5.0):.3f} ms"})
    return devices, links, ("shared" if rng.random() < 0.5 else "switched")


def random_tiny_dict(seed: int) -> dict[str, Any]:
    """One random tiny instance as an instance dict (the fields of an instance file).

    Parameters
    ----------
    seed : int
        Any whole number at least 0; the same seed gives the same dict.

    Returns
    -------
    dict
        Named ``random-tiny-{seed}``; memory in KiB, every figure written with its unit.

    Raises
    ------
    RuntimeError
        When no memory draw packs in `MAX_DRAWS` tries (not seen in practice).

    Examples
    --------
    >>> random_tiny_dict(3) == random_tiny_dict(3)
    True
    """
    rng = np.random.default_rng(seed)
    model = _model(rng, seed)
    n = int(rng.integers(2, 6))
    devices, links, network = _cluster(rng, n)
    tau = int(rng.integers(4, 33))
    workload = {"prompt_tokens": int(rng.integers(4, 65)), "generate_tokens": tau * int(rng.integers(1, 4)),
                "interval": tau}
    data = {"name": f"random-tiny-{seed}", "description": "random tiny instance (placement.experiments.suites.random_tiny)",
            "model": model, "devices": [{**d, "memory": "1 GiB"} for d in devices], "links": links,
            "network": network, "workload": workload}
    summary = memory_summary(instance_from_dict(data, check_capacity=False))
    loose = rng.random() < _LOOSE_P
    for _ in range(MAX_DRAWS):
        share = np.full(n, 2.0) if loose else rng.uniform(*_MEMORY_SHARE, n)
        memory = share * summary["total"]
        if loose or first_fit_decreasing(summary["blocks"], list(memory)):
            data["devices"] = [{**d, "memory": f"{m / 1024:.3f} KiB"} for d, m in zip(devices, memory)]
            return data
    raise RuntimeError(f"random-tiny-{seed}: no memory draw packs the blocks in {MAX_DRAWS} tries")


def random_tiny_instance(seed: int) -> Instance:
    """`random_tiny_dict` built into an `Instance`.

    Parameters
    ----------
    seed : int

    Returns
    -------
    Instance
    """
    data = random_tiny_dict(seed)
    return instance_from_dict(data, source=data["name"])
