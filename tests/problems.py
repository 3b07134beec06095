"""Small instances with known optima, defined once (as cvxpy's ``solver_test_helpers``).

Every problem is a function returning an `Instance` built with `instance_from_dict`
from an inline tiny model, small enough that `tests/brute_force.py` finds its true
optimum by enumeration through the evaluator: at most 4 devices and about 8
placeable blocks (attention groups, projections, FFNs, embed, lm_head). Blocks are
KiB-sized and every device's memory is at least 1 KiB away from what any placement
needs of it (`MEMORY_MARGIN_BYTES`, checked by a test), so that no placement sits
within a solver's tolerance of a memory limit.

Together they cover:

- memory that forces the model across devices (`FORCED_SPLIT`) and memory that
  lets one device hold it all;
- switched networks (a mesh, explicit links, a switch) and shared ones, and a
  triangle whose fastest route depends on the message size (`triangle_size_routes`);
- both cost profiles, ``roofline`` and ``kafetzis2025``, and fixed per-block overheads;
- one to three re-decision intervals, with KV caches that grow until the
  placement of interval 0 no longer fits later (`MIGRATION_FORCED`), so that
  migration matters.

`PROBLEMS` maps each name to its function, in a fixed order, for parametrized tests.
"""

from __future__ import annotations

from typing import Any, Callable

from placement.instance import Instance, instance_from_dict

__all__ = ["PROBLEMS", "FORCED_SPLIT", "MIGRATION_FORCED", "MULTI_INTERVAL", "MEMORY_MARGIN_BYTES", "problem"]


def _model(name: str, *, layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, ffn_hidden: int,
           vocab: int, gated: bool = True, tied: bool = False) -> dict[str, Any]:
    return {"name": name, "layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads,
            "head_dim": head_dim, "ffn_hidden": ffn_hidden, "gated_ffn": gated, "vocab": vocab,
            "tied_embeddings": tied}


def _device(name: str, memory: str, flops: str, bandwidth: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "memory": memory, "peak_flops": flops, "memory_bandwidth": bandwidth, **extra}


def _link(u: str, v: str, bandwidth: str, latency: str) -> dict[str, Any]:
    return {"between": [u, v], "bandwidth": bandwidth, "latency": latency}


# ----------------------------------------------------------------------------- one interval
def fits_one_two_dev() -> Instance:
    """Two devices that each hold the whole model (about 550 KiB); switched, one link.

    L=1, K=2 (r=2), 7 blocks. A computes slower, B reads memory slower, so the
    question is only whether splitting the heads pays for the link.
    """
    return instance_from_dict({
        "name": "fits-one-two-dev",
        "model": _model("tiny-a", layers=1, hidden=128, heads=4, kv_heads=2, head_dim=32, ffn_hidden=256, vocab=512),
        "devices": [_device("A", "1 MiB", "2 GFLOPS", "2 GB/s"), _device("B", "1 MiB", "4 GFLOPS", "1 GB/s")],
        "links": [_link("A", "B", "1 Gbit/s", "0.2 ms")],
        "workload": {"prompt_tokens": 4, "generate_tokens": 3},
    }, source="fits-one-two-dev")


def overhead_two_dev() -> Instance:
    """`fits_one_two_dev` with fixed per-block overheads (`block_overhead`) that differ by device.

    A computes slower but dispatches a block in 20 us; B pays 150 us per block, so the
    overhead, not the roofline, decides where the many small blocks go.
    """
    return instance_from_dict({
        "name": "overhead-two-dev",
        "model": _model("tiny-a", layers=1, hidden=128, heads=4, kv_heads=2, head_dim=32, ffn_hidden=256, vocab=512),
        "devices": [_device("A", "1 MiB", "2 GFLOPS", "2 GB/s", block_overhead="20 us"),
                    _device("B", "1 MiB", "4 GFLOPS", "1 GB/s", block_overhead="150 us")],
        "links": [_link("A", "B", "1 Gbit/s", "0.2 ms")],
        "workload": {"prompt_tokens": 4, "generate_tokens": 3},
    }, source="overhead-two-dev")


def split_three_dev() -> Instance:
    """Three devices, none of which holds the model (about 312 KiB): it must be split.

    L=1, K=3 (r=1), 7 blocks; a full mesh, switched. The FFN (144 KiB) is the
    largest block; only B and C can take it.
    """
    model = _model("tiny-b", layers=1, hidden=96, heads=3, kv_heads=3, head_dim=32, ffn_hidden=256, vocab=256)
    return instance_from_dict({
        "name": "split-three-dev",
        "model": model,
        "devices": [_device("A", "120.5 KiB", "3 GFLOPS", "2 GB/s"),
                    _device("B", "203.375 KiB", "1.5 GFLOPS", "1.5 GB/s"),
                    _device("C", "233.375 KiB", "0.8 GFLOPS", "0.6 GB/s")],
        "mesh": {"bandwidth": "400 Mbit/s", "latency": "0.1 ms"},
        "workload": {"prompt_tokens": 3, "generate_tokens": 4},
    }, source="split-three-dev")


def two_layers_switch() -> Instance:
    """Two layers on two devices behind a switch; tied embeddings; memory forces a split.

    L=2, K=2 (r=1): 4 groups, 2 projections, 2 FFNs, embed and lm_head (tied: they
    share memory only when on the same device).
    """
    model = _model("tiny-c", layers=2, hidden=64, heads=2, kv_heads=2, head_dim=32, ffn_hidden=128, vocab=256,
                   tied=True)
    return instance_from_dict({
        "name": "two-layers-switch",
        "model": model,
        "devices": [_device("A", "110.5 KiB", "2 GFLOPS", "1.5 GB/s"),
                    _device("B", "122.3125 KiB", "1.2 GFLOPS", "0.9 GB/s", reserved_memory="12 KiB")],
        "switches": ["sw"],
        "links": [_link("A", "sw", "300 Mbit/s", "0.1 ms"), _link("B", "sw", "200 Mbit/s", "0.2 ms")],
        "workload": {"prompt_tokens": 2, "generate_tokens": 3},
    }, source="two-layers-switch")


def shared_wireless() -> Instance:
    """Three devices on a shared medium (transfers serialize); the model fits only on the slow C.

    L=1, K=2 (r=2), 7 blocks; untied, plain (non-gated) FFN.
    """
    model = _model("tiny-d", layers=1, hidden=128, heads=4, kv_heads=2, head_dim=32, ffn_hidden=192, vocab=256,
                   gated=False)
    return instance_from_dict({
        "name": "shared-wireless",
        "model": model,
        "network": "shared",
        "devices": [_device("A", "180.5 KiB", "4 GFLOPS", "3 GB/s"), _device("B", "180.5 KiB", "3 GFLOPS", "2.5 GB/s"),
                    _device("C", "600.5 KiB", "0.6 GFLOPS", "0.4 GB/s", compute_efficiency=0.8)],
        "mesh": {"bandwidth": "200 Mbit/s", "latency": "0.3 ms"},
        "workload": {"prompt_tokens": 2, "generate_tokens": 3},
    }, source="shared-wireless")


def kafetzis_three_dev() -> Instance:
    """The ``kafetzis2025`` profile on three devices with different links; one interval.

    L=1, K=3 (r=1): the paper's three-phase layer. No device holds the three heads,
    the projection and the FFN together (about 109 KiB).
    """
    model = _model("tiny-k", layers=1, hidden=128, heads=3, kv_heads=3, head_dim=32, ffn_hidden=256, vocab=64)
    return instance_from_dict({
        "name": "kafetzis-three-dev",
        "model": model,
        "devices": [_device("d0", "40.5 KiB", "0.4 GFLOPS", "10 GB/s"),
                    _device("d1", "50.5 KiB", "0.6 GFLOPS", "10 GB/s"),
                    _device("d2", "64.5 KiB", "0.8 GFLOPS", "10 GB/s")],
        "links": [_link("d0", "d1", "10 Mbit/s", "0 s"), _link("d0", "d2", "40 Mbit/s", "0 s"),
                  _link("d1", "d2", "25 Mbit/s", "0 s")],
        "workload": {"prompt_tokens": 16, "generate_tokens": 3, "profile": "kafetzis2025"},
    }, source="kafetzis-three-dev")


def four_dev_star() -> Instance:
    """Four devices on a star (a switch in the middle), a direct link between the two fast ones.

    L=1, K=2 (r=1), 7 blocks; the fast devices are small, only the slowest holds everything.
    """
    model = _model("tiny-e", layers=1, hidden=96, heads=2, kv_heads=2, head_dim=48, ffn_hidden=192, vocab=256)
    return instance_from_dict({
        "name": "four-dev-star",
        "model": model,
        "devices": [_device("A", "100.5 KiB", "5 GFLOPS", "4 GB/s"), _device("B", "100.5 KiB", "4 GFLOPS", "4 GB/s"),
                    _device("C", "200.5 KiB", "1 GFLOPS", "0.8 GB/s"),
                    _device("D", "300.5 KiB", "0.6 GFLOPS", "0.5 GB/s")],
        "switches": ["hub"],
        "links": [_link("A", "hub", "500 Mbit/s", "0.1 ms"), _link("B", "hub", "500 Mbit/s", "0.1 ms"),
                  _link("C", "hub", "300 Mbit/s", "0.2 ms"), _link("D", "hub", "300 Mbit/s", "0.2 ms"),
                  _link("A", "B", "2 Gbit/s", "0.05 ms")],
        "workload": {"prompt_tokens": 2, "generate_tokens": 2},
    }, source="four-dev-star")


def triangle_size_routes() -> Instance:
    """Three devices on a triangle whose best route depends on the message size.

    A–B direct: 800 Mbit/s, 0.2 ms; A–C and C–B: 8 Mbit/s, 0.05 ms each. One group's
    decode head outputs (64 B) go A → C → B (0.164 ms, not 0.2006 ms direct), two
    groups' (128 B) and every prefill message go direct. L=1, K=2 (r=1), 7 blocks;
    no device holds the model.
    """
    model = _model("tiny-t", layers=1, hidden=64, heads=2, kv_heads=2, head_dim=32, ffn_hidden=128, vocab=256)
    return instance_from_dict({
        "name": "triangle-size-routes",
        "model": model,
        "devices": [_device("A", "95 KiB", "2 GFLOPS", "2 GB/s"), _device("B", "87 KiB", "3 GFLOPS", "1.5 GB/s"),
                    _device("C", "63 KiB", "1 GFLOPS", "1 GB/s")],
        "links": [_link("A", "B", "800 Mbit/s", "0.2 ms"), _link("A", "C", "8 Mbit/s", "0.05 ms"),
                  _link("C", "B", "8 Mbit/s", "0.05 ms")],
        "workload": {"prompt_tokens": 4, "generate_tokens": 3},
    }, source="triangle-size-routes")


# ----------------------------------------------------------------------------- several intervals
def kv_growth_two_intervals() -> Instance:
    """Two intervals; the KV cache grows until A, which holds everything in interval 0, cannot.

    L=1, K=2 (r=1, head_dim 64: 256 B of cache per token and group), 7 blocks, two
    devices and one link; 64 decode steps re-decided after 32.
    """
    model = _model("tiny-f", layers=1, hidden=64, heads=2, kv_heads=2, head_dim=64, ffn_hidden=64, vocab=128)
    return instance_from_dict({
        "name": "kv-growth-two-intervals",
        "model": model,
        "devices": [_device("A", "176.5 KiB", "3 GFLOPS", "3 GB/s"),
                    _device("B", "400.5 KiB", "0.7 GFLOPS", "0.6 GB/s")],
        "links": [_link("A", "B", "100 Mbit/s", "0.2 ms")],
        "workload": {"prompt_tokens": 64, "generate_tokens": 64, "interval": 32},
    }, source="kv-growth-two-intervals")


def kafetzis_three_intervals() -> Instance:
    """The paper's setting in miniature: re-decide at every decode step (3 intervals).

    ``kafetzis2025`` profile, L=1, K=2 (r=2), three devices; the heads' memory grows
    with the sequence so that later steps force moves.
    """
    model = _model("tiny-g", layers=1, hidden=128, heads=4, kv_heads=2, head_dim=32, ffn_hidden=256, vocab=64)
    return instance_from_dict({
        "name": "kafetzis-three-intervals",
        "model": model,
        "devices": [_device("d0", "63.375 KiB", "0.4 GFLOPS", "10 GB/s"),
                    _device("d1", "70.5 KiB", "0.5 GFLOPS", "10 GB/s"),
                    _device("d2", "79.3125 KiB", "0.9 GFLOPS", "10 GB/s")],
        "links": [_link("d0", "d1", "30 Mbit/s", "0 s"), _link("d0", "d2", "60 Mbit/s", "0 s"),
                  _link("d1", "d2", "40 Mbit/s", "0 s")],
        "workload": {"prompt_tokens": 16, "generate_tokens": 3, "interval": 1, "profile": "kafetzis2025"},
    }, source="kafetzis-three-intervals")


def shared_three_intervals() -> Instance:
    """A shared network with three intervals and growing caches on three devices.

    L=1, K=2 (r=1, head_dim 64), 7 blocks; tied embeddings; 48 steps re-decided every 16.
    """
    model = _model("tiny-h", layers=1, hidden=64, heads=2, kv_heads=2, head_dim=64, ffn_hidden=64, vocab=128, tied=True)
    return instance_from_dict({
        "name": "shared-three-intervals",
        "model": model,
        "network": "shared",
        "devices": [_device("A", "132.5 KiB", "3 GFLOPS", "2.5 GB/s"), _device("B", "102 KiB", "2 GFLOPS", "2 GB/s"),
                    _device("C", "300.5 KiB", "0.5 GFLOPS", "0.4 GB/s")],
        "mesh": {"bandwidth": "150 Mbit/s", "latency": "0.1 ms"},
        "workload": {"prompt_tokens": 32, "generate_tokens": 48, "interval": 16},
    }, source="shared-three-intervals")


PROBLEMS: dict[str, Callable[[], Instance]] = {
    "fits-one-two-dev": fits_one_two_dev,
    "overhead-two-dev": overhead_two_dev,
    "split-three-dev": split_three_dev,
    "two-layers-switch": two_layers_switch,
    "shared-wireless": shared_wireless,
    "kafetzis-three-dev": kafetzis_three_dev,
    "four-dev-star": four_dev_star,
    "triangle-size-routes": triangle_size_routes,
    "kv-growth-two-intervals": kv_growth_two_intervals,
    "kafetzis-three-intervals": kafetzis_three_intervals,
    "shared-three-intervals": shared_three_intervals,
}

# Least distance between a device's memory and what any placement needs of it, in any interval.
MEMORY_MARGIN_BYTES = 1024

# No single device holds the whole model at the end of the generation.
FORCED_SPLIT = frozenset({"split-three-dev", "two-layers-switch", "kafetzis-three-dev", "kafetzis-three-intervals",
                          "triangle-size-routes"})
# Problems with more than one interval.
MULTI_INTERVAL = frozenset({"kv-growth-two-intervals", "kafetzis-three-intervals", "shared-three-intervals"})
# The optimal placement of interval 0 alone no longer fits in a later interval.
MIGRATION_FORCED = frozenset({"kv-growth-two-intervals", "kafetzis-three-intervals", "shared-three-intervals"})


def problem(name: str) -> Instance:
    """The instance of the problem called `name`."""
    return PROBLEMS[name]()
