"""Profiling this machine: micro-benchmarks → a device preset file instances can use.

What is measured (every figure the median of several timed runs after a warm-up, at
a fixed number of torch threads):

- matrix-multiply throughput ``2n³ / t`` of square ``n×n`` matrices at each precision
  (fp32, bf16, fp16), FLOP/s;
- matrix-vector throughput, ``weight bytes / t`` of ``F.linear`` of one vector
  with a matrix far larger than the caches, at each precision, bytes/s;
- memory read bandwidth, ``bytes / t`` of a sum over a large fp32 array;
- disk read bandwidth: a file written, flushed, dropped from the page cache
  (``posix_fadvise(DONTNEED)``), read back in 8 MiB chunks;
- loopback transfer: one-way latency (half a round trip) and bandwidth of
  torch.distributed's gloo between two processes on 127.0.0.1.

The preset (catalog format, placement/cost/devices.yaml) takes ``peak_flops`` from
the matrix multiply at the chosen precision and ``memory_bandwidth`` as the best
read rate seen (the sum, or the matrix-vector product at that precision), so that
every matrix-vector time is at least its bytes over the preset's bandwidth; the
efficiencies are left at 1 and the per-block overhead at 0 until `calibrate` fits
them. Every figure is also written into the preset's ``notes``.
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from placement.errors import InputError
from placement.files import write_text_atomic
from placement.measure._torch import set_threads, torch_module
from placement.measure.blocks import PRECISIONS, precision_bits
from placement.measure.timing import median_time

__all__ = ["profile_device", "preset_fields", "write_preset", "read_preset"]


def _matmul(precision: str, n: int, repeats: int, budget_s: float = 0.05) -> float:
    """FLOP/s of an ``n×n`` matrix multiply; `n` shrinks (to 256 at least) where one would take over `budget_s`."""
    torch = torch_module()
    dtype = getattr(torch, PRECISIONS[precision][0])
    probe = torch.randn(256, 256).to(dtype)
    rate = 2.0 * 256**3 / median_time(lambda: probe @ probe, 1)
    n = max(256, min(n, int((rate * budget_s / 2) ** (1 / 3)) // 64 * 64))
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2.0 * n**3 / median_time(lambda: a @ b, repeats)


def _matvec(precision: str, rows: int, cols: int, repeats: int) -> float:
    torch = torch_module()
    dtype = getattr(torch, PRECISIONS[precision][0])
    w = torch.empty(rows, cols, dtype=dtype).uniform_(-1, 1)
    x = torch.randn(1, cols).to(dtype)
    return w.numel() * w.element_size() / median_time(lambda: torch.nn.functional.linear(x, w), repeats)


def _read_bandwidth(nbytes: int, repeats: int) -> float:
    torch = torch_module()
    a = torch.ones(nbytes // 4)
    return a.numel() * 4 / median_time(lambda: a.sum(), repeats)


def _disk_read(nbytes: int, folder: str | None) -> float:
    chunk = 8 * 2**20
    block = os.urandom(chunk)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="placement-profile-", delete=False) as fh:
        path = fh.name
        for _ in range(max(1, nbytes // chunk)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            buffer = bytearray(chunk)
            total, start = 0, time.perf_counter()
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
                while (n := f.readinto(buffer)):
                    total += n
            return total / (time.perf_counter() - start)
        finally:
            os.close(fd)
    finally:
        os.unlink(path)


def profile_device(*, quick: bool = False, threads: int | None = None, disk_dir: str | None = None,
                   loopback: bool = True) -> dict[str, Any]:
    """Measure this machine with micro-benchmarks.

    Parameters
    ----------
    quick : bool
        Smaller problems and fewer repeats (under 30 s in all).
    threads : int, optional
        Torch threads for the compute and memory figures (default: every core).
    disk_dir : str, optional
        Folder for the disk test file (default: the system's temporary folder).
    loopback : bool
        Measure gloo on loopback (starts two processes).

    Returns
    -------
    dict
        ``threads``, ``matmul_flops_per_s`` and ``matvec_bytes_per_s`` (per precision),
        ``read_bytes_per_s``, ``disk_read_bytes_per_s``, ``loopback_latency_s``,
        ``loopback_bytes_per_s``, ``memory_bytes``, ``seconds`` (the time profiling took).
    """
    start = time.perf_counter()
    used = set_threads(threads)
    n, rows, repeats = (1024, 4096, 5) if quick else (2048, 8192, 9)
    result: dict[str, Any] = {"threads": used}
    result["matmul_flops_per_s"] = {p: _matmul(p, n, repeats) for p in PRECISIONS}
    result["matvec_bytes_per_s"] = {p: _matvec(p, rows, 8192, repeats) for p in PRECISIONS}
    result["read_bytes_per_s"] = _read_bandwidth((256 if quick else 1024) * 2**20, repeats)
    result["disk_read_bytes_per_s"] = _disk_read((128 if quick else 1024) * 2**20, disk_dir)
    if loopback:
        from placement.measure.processes import loopback as run_loopback

        link = run_loopback(nbytes=(16 if quick else 64) * 2**20, repeats=100 if quick else 400)
        result["loopback_latency_s"] = link["latency_s"]
        result["loopback_bytes_per_s"] = link["bandwidth_bytes_per_s"]
    result["memory_bytes"] = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    result["seconds"] = time.perf_counter() - start
    return result


def _si(value: float, unit: str) -> str:
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def preset_fields(profile: dict[str, Any], *, precision: str = "fp32") -> dict[str, Any]:
    """A preset in the catalog's format from `profile_device`'s figures, at `precision`.

    Raises
    ------
    InputError
        On an unknown precision.
    """
    precision_bits(precision)
    peak = profile["matmul_flops_per_s"][precision]
    bandwidth = max(profile["read_bytes_per_s"], *profile["matvec_bytes_per_s"].values())
    parts = [f"matrix multiply {p} {_si(v, 'FLOPS')}" for p, v in profile["matmul_flops_per_s"].items()]
    parts += [f"matrix-vector {p} {_si(v, 'B/s')}" for p, v in profile["matvec_bytes_per_s"].items()]
    parts.append(f"memory read {_si(profile['read_bytes_per_s'], 'B/s')}")
    if "loopback_latency_s" in profile:
        parts.append(f"loopback (gloo) latency {profile['loopback_latency_s'] * 1e6:.0f} us, "
                     f"bandwidth {_si(profile['loopback_bytes_per_s'], 'B/s')}")
    measured = "; ".join(parts)
    fields: dict[str, Any] = {
        "description": f"this machine as `placement profile` measured it: {platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} cores, {profile['threads']} torch thread(s), {precision}",
        "memory": f"{profile['memory_bytes'] / 2**30:.2f} GiB",
        "peak_flops": _si(peak, "FLOPS"),
        "memory_bandwidth": _si(bandwidth, "B/s"),
        "disk_bandwidth": _si(profile["disk_read_bytes_per_s"], "B/s"),
        "source": f"placement profile, {datetime.date.today().isoformat()}",
        "notes": (f"Measured with PyTorch at {profile['threads']} thread(s): peak_flops is the {precision} matrix "
                  "multiply, memory_bandwidth the best read rate (array sum or matrix-vector product). "
                  "Efficiencies 1 and no per-block overhead until calibrated (docs/fidelity.md). "
                  f"All figures: {measured}."),
    }
    return fields


def read_preset(path: str | Path) -> dict[str, dict[str, Any]]:
    """The presets of a preset file (name → fields); `InputError` if it does not parse."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"preset file {str(path)!r} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"preset file {str(path)!r} does not parse as YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"preset file {str(path)!r} must map preset names to their fields, as "
                         "placement/cost/devices.yaml does")
    return data


def write_preset(path: str | Path, name: str, fields: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write preset `name` into the preset file `path` (created, or added to; other presets are kept).

    Instances use it as ``preset: path.yaml#name`` (or ``preset: path.yaml`` when the
    file holds one preset).

    Raises
    ------
    InputError
        When `path` already has a preset `name` and not `overwrite`, when the existing
        file does not parse, or when `name` is empty.
    """
    path = Path(path)
    if not isinstance(name, str) or not name.strip() or "#" in name:
        raise InputError(f"preset name must be a non-empty name without '#', got {name!r}")
    entries = read_preset(path) if path.exists() else {}
    if name in entries and not overwrite:
        raise InputError(f"{str(path)!r} already has a preset {name!r}; pass --overwrite (overwrite=True) to replace "
                         "it, or choose another --name / --out")
    entries[name] = fields
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Device presets written by `placement profile` (catalog format, see docs/fidelity.md).\n"
    write_text_atomic(path, header + yaml.safe_dump(entries, sort_keys=False, allow_unicode=True))
    return path
