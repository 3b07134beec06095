"""Generated benchmark suites: ``paper-small``, ``edge-real``, ``large`` and ``kafetzis-toy``.

``kafetzis-toy``: the authors' two toy settings as their simulator runs them
(`placement.experiments.suites.kafetzis_toy` says how its figures were obtained).

``paper-small``: the small-scale settings of the head-partitioning paper.
Kafetzis, Khalili and Koutsopoulos (arXiv 2505.02533) compare their myopic
re-partitioner with an exact solver on 3–5 devices. The paper's body was not
available to us; the settings below follow its abstract and its authors' public
simulator configs (``toy_comparison_3_devices_lowBW``,
``toy_comparison_5_devices_mediumBW``, ``toy_optimal_comparison``):

- models: the single-layer ``synthetic-h8-d512`` and ``synthetic-h16-d1024``, 32 bits;
- 3, 4 or 5 devices on a full mesh, each pair's bandwidth drawn uniformly, low
  (0.01–0.1 GiB/s) or medium (0.5–2 GiB/s), latency 0 s (the paper has none). The
  ranges are the simulator's configs' figures (labelled "Gbps"); its transfer time is
  ``bytes / 1024**3 / figure``, so they are GiB/s, and so they are read here (until
  issue 16 this suite read them as Gbit/s: links 8.59× slower than the authors');
- compute drawn log-normally, multiplied by the simulator's tier factor (60 % ×1,
  30 % ×2, 10 % ×4) and clipped to 5–50 GFLOPS. (The simulator draws
  ``lognormal(μ≈3.5–4, σ≈0.2–0.3)`` and clips it to floors of 5e9–1e10 FLOP/s, so
  in effect every device sits at the floor times its tier; we keep the shape and
  draw in GFLOPS with median 12 and σ 0.4.);
- memory: shares drawn log-normally (σ 0.5, as the simulator's memory draws) and a
  slack uniform in 20–60 %; device ``j`` gets ``(1 + slack) · share_j`` of the
  model's memory at the final context (`placement.cost.blocks.block_memory` on the
  built instance). A draw is kept only when no device holds the whole model, every
  block fits on some device, and a first-fit-decreasing packing of the blocks at
  the final context succeeds (so the exact solver has a feasible point; memory only
  grows with the context); otherwise memory is drawn again;
- prompt 16–32 tokens and 5–20 decode steps (uniform integers), interval 1: the
  placement is re-decided at every step and migration is charged;
- each setting twice, with the same devices, links and workload: under the paper's
  equations (``kafetzis2025``, where ``memory_bandwidth`` is unused and set to
  10 GB/s) and under ``roofline`` (``memory_bandwidth`` drawn 5–20 GB/s). The two
  profiles count the model's memory differently (``roofline`` has the embedding and
  the output head, 32000 × D each, and all weights), so memory keeps the same shares
  and slack but is scaled to each profile's model.

``edge-real`` and ``large``: real models on real device presets
(``placement/cost/devices.yaml``), in the board variants people buy (`DEVICE_KINDS`:
a Raspberry Pi 4 with 1, 2 or 4 GB, a phone with 8 or 12 GB, ...), each keeping a
fixed share of its memory for the OS and runtime (``reserved_memory``). Per setting
(`EDGE_REAL_SETTINGS`, `LARGE_SETTINGS`: model, device count, link class, weight
bits) the workload is drawn, then the devices, uniformly with replacement from a
pool of kinds, again and again until the draw is a real placement problem: no
device holds the whole model at the final context, yet every block fits somewhere,
the blocks pack first-fit decreasing, and the devices hold at most a few times the
model (`EDGE_REAL_MAX_RATIO`, `LARGE_MAX_RATIO`) so that memory decides the
placement. ``edge-real``'s pool is every kind whose memory lies below the model's
(and, on Ethernet, has a wired port); ``large`` names its small kinds per setting.
Links: ``wifi`` is one shared channel through an access point, each device's rate
to it drawn 50–400 Mbit/s and its latency 1–4 ms (2–8 ms device to device);
``eth`` is switched Ethernet at each device's port speed (1 or 2.5 Gbit/s), 0.05–
0.25 ms per hop (0.1–0.5 ms device to device), with 16-port leaf switches under a
10 Gbit/s core beyond 16 devices. Where 16-bit weights would leave every small
device set too weak, a setting uses 8- or 4-bit weights (``workload.precision``),
as llama.cpp deployments do; the KV cache stays at 16 bits.

Every setting has its own random stream, seeded from the suite seed and the
setting's name, so that adding a setting does not change the others. Run
``python -m placement.experiments.suites`` to rewrite ``instances/paper-small``,
``instances/edge-real``, ``instances/large`` and ``instances/kafetzis-toy``; tests/test_suites.py checks that
the shipped files are exactly what this writes.
"""

from __future__ import annotations

from placement.experiments.suites.common import COMMAND, GENERATED_MARK, memory_summary
from placement.experiments.suites.files import SUITES, main, render_instance, write_suite
from placement.experiments.suites.kafetzis_toy import kafetzis_toy_suite
from placement.experiments.suites.paper_small import PAPER_SMALL_SETTINGS, paper_small_suite
from placement.experiments.suites.real import (
    DEVICE_KINDS,
    EDGE_REAL_SETTINGS,
    LARGE_SETTINGS,
    DeviceKind,
    devices_needed,
    edge_real_suite,
    large_suite,
)

__all__ = [
    "COMMAND",
    "DEVICE_KINDS",
    "DeviceKind",
    "EDGE_REAL_SETTINGS",
    "GENERATED_MARK",
    "LARGE_SETTINGS",
    "PAPER_SMALL_SETTINGS",
    "SUITES",
    "devices_needed",
    "edge_real_suite",
    "kafetzis_toy_suite",
    "large_suite",
    "main",
    "memory_summary",
    "paper_small_suite",
    "render_instance",
    "write_suite",
]
