"""Benchmark of the over-the-air back end `ota` (figures in docs/ota.md).

    python benchmarks/bench_ota.py [--repeats 7]

1. One SDR receive-beamformer solve (`sdr_beamformer`, SCS, 20 Gaussian draws) with
   N = 8 devices, N_r = 20 server antennas, N_t = 2, one stream, on Rayleigh channels:
   median wall-clock time over `--repeats` fresh channel draws (target: under 1 s).
2. SSCA to convergence (`ssca_assignment`, at most 300 iterations, one SDR per
   iteration) for Llama-2-7B on the 8-device instance of `placement reproduce ota-table`
   (`ota_instance`): wall-clock time, iterations, and the expected MSE before and after
   on 32 fixed channels (target: under 60 s).
The machine is printed first.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import numpy as np

from placement.experiments.ota_table import ota_instance
from placement.ota.assignment import expected_mse, share_caps, ssca_assignment
from placement.ota.beamforming import sdr_beamformer
from placement.ota.channel import sample_channels
from placement.solvers.ota import layer_constants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{platform.platform()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    rng = np.random.default_rng(0)
    sdr_beamformer((rng.standard_normal((8, 20, 2)) + 0j), np.ones(8), 1e-3)  # compile the cvxpy problem once
    times, gaps = [], []
    for _ in range(args.repeats):
        H = (rng.standard_normal((8, 20, 2)) + 1j * rng.standard_normal((8, 20, 2))) / math.sqrt(2)
        power = rng.uniform(0.5, 2.0, 8)
        began = time.perf_counter()
        design = sdr_beamformer(H, power, 1e-3)
        times.append(time.perf_counter() - began)
        gaps.append(design.mse / design.bound - 1)
    print(f"SDR, N = 8, N_r = 20: median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}) "
          f"over {args.repeats} runs; achieved/bound - 1: median {statistics.median(gaps):.2e}, max {max(gaps):.2e}")

    inst = ota_instance("llama-2-7b", 8)
    w, const = inst.wireless, layer_constants(inst)
    usable = np.array([d.usable_bytes for d in inst.devices])
    extra = np.where(np.arange(8) == int(np.argmax(usable)), const["head_flops"], 0.0)
    memory_caps = (usable - const["ends_bytes"] * (extra > 0)) / const["layer_bytes"]
    caps = share_caps(w, const["flops"], memory_caps, extra)
    uses = 2 * inst.model.layers * math.ceil(inst.model.hidden / w.streams)
    began = time.perf_counter()
    result = ssca_assignment(w, const["flops"], caps, uses, iterations=300, seed=1, extra_flops=extra)
    seconds = time.perf_counter() - began
    channels = sample_channels(w, 32, seed=123)
    equal = np.full(8, 1 / 8)
    before = expected_mse(w, equal, const["flops"], uses, channels, extra_flops=extra)
    after = expected_mse(w, result.shares, const["flops"], uses, channels, extra_flops=extra)
    print(f"SSCA, Llama-2-7B, 8 devices: {seconds:.1f} s, {result.iterations} iterations, converged {result.converged}; "
          f"expected MSE (32 channels) equal split {before:.3e} -> SSCA {after:.3e}; shares {np.round(result.shares, 3).tolist()}")


if __name__ == "__main__":
    main()
