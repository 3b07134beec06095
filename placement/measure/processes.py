"""Separate OS processes joined by torch.distributed (gloo on 127.0.0.1), and loopback figures.

`spawn` starts ``n`` processes with the ``spawn`` start method, each running
``target(rank, world_size, init_method, out_path, *args)``; every rank may write a
JSON result to ``out_path`` and `spawn` returns them in rank order.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from placement.errors import PlacementError
from placement.measure._torch import torch_module

__all__ = ["spawn", "loopback"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(target: Callable[..., None], world_size: int, args: tuple = (), timeout_s: float = 600.0) -> list[Any]:
    """Run `target` in `world_size` fresh processes joined by a gloo process group on loopback.

    Returns
    -------
    list
        What each rank wrote to its ``out_path`` (JSON), None where it wrote nothing.

    Raises
    ------
    PlacementError
        When a process fails or the run exceeds `timeout_s`.
    """
    torch = torch_module()
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory(prefix="placement-measure-") as folder:
        outs = [str(Path(folder) / f"rank{rank}.json") for rank in range(world_size)]
        context = torch.multiprocessing.start_processes(
            _entry, args=(target, world_size, init_method, outs, args), nprocs=world_size, join=False,
            start_method="spawn")
        deadline = time.monotonic() + timeout_s
        try:
            while not context.join(timeout=1.0):
                if time.monotonic() > deadline:
                    raise PlacementError(f"the {world_size}-process run took more than {timeout_s:.0f} s; stopped")
        except torch.multiprocessing.ProcessRaisedException as exc:
            raise PlacementError(f"a process of the distributed run failed: {str(exc).strip().splitlines()[-1]}") from None
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
        return [json.loads(Path(p).read_text()) if Path(p).is_file() else None for p in outs]


def _entry(rank: int, target, world_size: int, init_method: str, outs: list[str], args: tuple) -> None:
    torch = torch_module()
    torch.set_num_threads(1)
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        result = target(rank, world_size, *args)
        if result is not None:
            Path(outs[rank]).write_text(json.dumps(result))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _loopback_worker(rank: int, world_size: int, nbytes: int, repeats: int) -> dict[str, float] | None:
    torch = torch_module()
    dist = torch.distributed
    small, big = torch.zeros(1), torch.zeros(nbytes // 4)
    peer = 1 - rank
    one_way = []
    for i in range(repeats + 3):
        if rank == 0:
            start = time.perf_counter()
            dist.send(small, peer)
            dist.recv(small, peer)
            if i >= 3:
                one_way.append((time.perf_counter() - start) / 2)
        else:
            dist.recv(small, peer)
            dist.send(small, peer)
    latency = statistics.median(one_way) if rank == 0 else 0.0
    transfer = []
    for i in range(max(3, repeats // 10) + 1):
        if rank == 0:
            start = time.perf_counter()
            dist.send(big, peer)
            dist.recv(small, peer)
            if i:
                transfer.append(time.perf_counter() - start - latency)
        else:
            dist.recv(big, peer)
            dist.send(small, peer)
    if rank:
        return None
    seconds = statistics.median(transfer)
    return {"latency_s": latency, "bandwidth_bytes_per_s": nbytes / max(seconds - latency, 1e-9)}


def loopback(nbytes: int = 64 * 2**20, repeats: int = 200) -> dict[str, float]:
    """One-way latency (half the round trip of a 4-byte message) and bandwidth of gloo on 127.0.0.1.

    Two processes with one thread each; bandwidth from an `nbytes` message acknowledged
    by a 4-byte one, less one latency.
    """
    return spawn(_loopback_worker, 2, (int(nbytes), int(repeats)), timeout_s=120)[0]
