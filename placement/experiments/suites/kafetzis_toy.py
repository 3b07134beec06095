"""The ``kafetzis-toy`` suite: the head-partitioning authors' toy settings, as their code runs them.

Kafetzis, Khalili and Koutsopoulos (arXiv 2505.02533) publish a simulator
(github.com/Dimitrios-Kafetzis/DistributedTransformerInferenceSimulator) whose
``ToyOptimalComparisonScenario`` compares their resource-aware algorithm with an
exact search. Two of its configs, run on 3 devices, are shipped here:
``toy_optimal_comparison`` and ``toy_example``. What their code does, and so what
the files hold:

- **devices**: `ResourceDistributor.generate_capabilities` with the config's
  log-normal memory and compute distributions and its seed (123): device 0 is the
  "cloud" tier (×4), device 1 "regional" (×2), device 2 "edge" (×1); memory is clipped
  to 2–16 and read as GiB, compute clipped to 1e10–1e11 FLOP/s. Device 0 is their
  "source" (`myopic`'s ``forbid_source`` rule);
- **links**: a full mesh, ``random.seed(123)`` then ``random.uniform(min, max)`` for
  the pairs (0, 1), (0, 2), (1, 2) in that order; their transfer time is
  ``bytes / 1024**3 / bandwidth``, so the figure is GiB/s (labelled "Gbps" in their
  configs); no latency; each pair sends over its own link (``routing: direct``), never
  relayed through the third device, as their network model does;
- **model**: their ``SMALL`` workload, one decoder layer of 8 heads, D = 512, 4 bytes
  per value (``synthetic-h8-d512`` under the ``kafetzis2025`` profile); their
  scenario evaluates every step at S = 512 whatever the config's sequence length and
  precision say, so the workload is a 511-token prompt and one decode step at S = 512
  (their per-step latency is our ``decode_s[0]``).

The figures were obtained by running their `ResourceDistributor` and the scenario's
link loop (cloned read-only, not shipped) and are written here to full precision.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KAFETZIS_TOY_FIGURES", "kafetzis_toy_suite"]

# name: (memory GiB per device, compute FLOP/s per device, GiB/s of the links (0,1), (0,2), (1,2))
KAFETZIS_TOY_FIGURES: dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = {
    "toy_optimal_comparison": ((6.427625465843381, 4.84545295421778, 2.0), (4.0e10, 2.0e10, 1.0e10),
                               (0.12094543954037773, 0.13487467100905293, 0.26289670546815935)),
    "toy_example": ((8.0, 6.262856742043659, 2.035415294541636), (1.0e10, 1.0e10, 1.0e10),
                    (0.01471272389658499, 0.01784680097703691, 0.046651758730335856)),
}


def _instance(name: str) -> dict[str, Any]:
    memory, flops, bandwidth = KAFETZIS_TOY_FIGURES[name]
    devices = [{"name": f"device_{j}", "memory": f"{m!r} GiB", "peak_flops": f"{f!r} FLOPS",
                "memory_bandwidth": "10 GB/s"} for j, (m, f) in enumerate(zip(memory, flops))]
    pairs = ((0, 1), (0, 2), (1, 2))
    links = [{"between": [f"device_{u}", f"device_{v}"], "bandwidth": f"{b!r} GiB/s", "latency": "0 s"}
             for (u, v), b in zip(pairs, bandwidth)]
    return {
        "name": name.replace("_", "-"),
        "description": (f"The authors' simulator's {name} setting (Kafetzis et al., arXiv 2505.02533) as its "
                        "ToyOptimalComparisonScenario runs it on 3 devices: one layer of 8 heads, D = 512, 4-byte "
                        "values, every step at S = 512 (here a 511-token prompt and one decode step), memory in "
                        "GiB, links in GiB/s with no latency, each pair over its own link; device_0 is the "
                        "source."),
        "model": "synthetic-h8-d512",
        "devices": devices,
        "links": links,
        "routing": "direct",
        "workload": {"prompt_tokens": 511, "generate_tokens": 1, "profile": "kafetzis2025",
                     "precision": {"weights": 32, "kv_cache": 32, "activations": 32}},
    }


def kafetzis_toy_suite(seed: int = 1) -> list[dict[str, Any]]:
    """The ``kafetzis-toy`` suite: instance dicts of the authors' two toy settings.

    Parameters
    ----------
    seed : int
        Ignored (the authors' configs fix their seeds); kept so that every suite is
        called the same way.

    Returns
    -------
    list of dict
        ``toy-optimal-comparison`` and ``toy-example``.

    Examples
    --------
    >>> [d["name"] for d in kafetzis_toy_suite()]
    ['toy-optimal-comparison', 'toy-example']
    """
    return [_instance(name) for name in KAFETZIS_TOY_FIGURES]
