"""Runtime arguments for a layer plan: llama.cpp RPC, exo, prima.cpp and vLLM.

Each function takes the plan's layer runs (`placement.export.layers.layer_segments`)
and returns an `Export`: the command to run on each device, environment variables,
files to write, and notes where the runtime's own fixed rules differ from the plan.
The formats, with where each is documented, are in docs/export.md.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placement.errors import PlanError
from placement.instance import Instance
from placement.export.layers import Segment

__all__ = ["Export", "llama_cpp", "exo", "prima_cpp", "vllm", "RPC_PORT", "RAY_PORT"]

RPC_PORT = 50052  # rpc-server's default port (llama.cpp tools/rpc/README.md)
RAY_PORT = 6379  # `ray start --head` default port


@dataclass(frozen=True)
class Export:
    """What to run where to execute a plan on a runtime.

    Attributes
    ----------
    target : str
    commands : list of (device, argv)
        In start order: workers first, the device that takes requests last.
    environment : dict of str to str
        Variables to set for the commands.
    files : dict of str to object
        File name → JSON-ready contents to write beside the commands.
    notes : list of str
        Where the runtime's fixed rules differ from the plan, and what it assumes.
    """

    target: str
    commands: list[tuple[str, list[str]]]
    environment: dict[str, str] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: target, commands as ``{device, argv}``, environment, files, notes."""
        return {"target": self.target, "commands": [{"device": d, "argv": argv} for d, argv in self.commands],
                "environment": self.environment, "files": self.files, "notes": self.notes}

    def to_text(self) -> str:
        """A shell-like listing: one ``# on DEVICE`` block per command, files and notes as comments."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.environment.items())
        lines = [f"# {self.target}: run these in order"]
        for device, argv in self.commands:
            lines += [f"# on {device}", (env + " " if env else "") + shlex.join(argv)]
        for name, contents in self.files.items():
            lines += [f"# file {name}:"] + [f"#   {line}" for line in json.dumps(contents, indent=1).splitlines()]
        lines += [f"# note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _once_each(segments: list[Segment], target: str) -> None:
    seen: dict[str, Segment] = {}
    for s in segments:
        if s.device in seen:
            first = seen[s.device]
            raise PlanError(f"{target} gives each device one run of consecutive layers, but {s.device} has layers "
                            f"{first.first}–{first.last} and {s.first}–{s.last}; solve with pipeline or pipeline-dp")
        seen[s.device] = s


def _end_notes(instance: Instance, embed: str, lm_head: str, runtime_embed: str, runtime_head: str,
               target: str) -> list[str]:
    notes = []
    if embed != runtime_embed:
        notes.append(f"{target} runs the token embedding on {runtime_embed}; the plan has it on {embed} "
                     "(a lookup of one row per token)")
    if lm_head != runtime_head:
        notes.append(f"{target} runs the output head on {runtime_head}; the plan has it on {lm_head}, so memory "
                     "and latency differ from the plan's figures")
    return notes


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def _with_port(address: str, port: int) -> str:
    return address if address.count(":") == 1 else f"{address}:{port}"


def llama_cpp(instance: Instance, segments: list[Segment], hosts: dict[str, str], ends: tuple[str, str],
              model_path: str) -> Export:
    """llama.cpp over RPC: ``rpc-server`` on every device but the last run's, ``llama-server`` there.

    The model's device list is the RPC servers in ``--rpc`` order, then the main host's
    own device (src/llama.cpp: RPC servers go to the front). ``--tensor-split`` gives
    each its count of layers, the main host one more for the output layer, so that
    llama.cpp's split (layer ``il`` on the first device whose normalised cumulative
    share exceeds ``il / (L+1)``, src/llama-model.cpp) reproduces the plan.

    Returns
    -------
    Export
    """
    _once_each(segments, "llama.cpp")
    *remote, main = segments
    counts = [s.layers for s in remote] + [main.layers + 1]
    rpc = ",".join(_with_port(hosts[s.device], RPC_PORT) for s in remote)
    commands = [(s.device, ["rpc-server", "--host", "0.0.0.0", "--port",
                            _with_port(hosts[s.device], RPC_PORT).rsplit(":", 1)[1]]) for s in remote]
    server = ["llama-server", "-m", model_path, "--split-mode", "layer", "-ngl", str(instance.model.layers + 1)]
    if remote:
        server += ["--rpc", rpc, "--tensor-split", ",".join(map(str, counts))]
    commands.append((main.device, server))
    notes = _end_notes(instance, *ends, main.device, main.device, "llama.cpp")
    notes.append("each rpc-server exposes one device (start it with `--device NAME` where a host has several)")
    return Export("llama.cpp", commands, notes=notes)


def _exo_start(first: int, layers: int) -> float:
    """``first / layers`` nudged up until exo's ``int(start * n_layers)`` gives back `first`."""
    start = first / layers
    while int(start * layers) < first:
        start = float(np.nextafter(start, 1.0))
    return start


def exo(instance: Instance, segments: list[Segment], hosts: dict[str, str], ends: tuple[str, str],
        model_path: str) -> Export:
    """exo: one partition ``[start, end)`` of the layer range per node, in ring order.

    exo maps a partition to the shard ``start_layer = int(start·L)``,
    ``end_layer = int(end·L) - 1`` (inclusive; the last one ends at ``L - 1``,
    exo/topology/partitioning_strategy.py). The file holds both, for a partitioning
    strategy that returns these partitions.

    Returns
    -------
    Export
    """
    _once_each(segments, "exo")
    L = instance.model.layers
    partitions = [{"node_id": s.device, "start": _exo_start(s.first, L),
                   "end": 1.0 if s.last == L - 1 else _exo_start(s.last + 1, L)} for s in segments]
    shards = [{"node_id": s.device, "model_id": model_path, "start_layer": s.first, "end_layer": s.last,
               "n_layers": L} for s in segments]
    commands = [(s.device, ["exo", "--node-id", s.device, "--node-host", _host(hosts[s.device])]) for s in segments]
    notes = _end_notes(instance, *ends, segments[0].device, segments[-1].device, "exo")
    notes.append("exo's own strategy (RingMemoryWeightedPartitioningStrategy) orders nodes by memory; to run this "
                 "partition, give exo a PartitioningStrategy that returns exo-partition.json's `partitions`")
    return Export("exo", commands, files={"exo-partition.json": {"partitions": partitions, "shards": shards}},
                  notes=notes)


def _ring(segments: list[Segment], layers: int) -> tuple[list[str], list[int]]:
    """Ranks (ring order) and layer windows such that prima.cpp's piped ring reproduces `segments`."""
    ranks: list[str] = []
    windows: list[int] = []
    for s in segments:
        if s.device in ranks:
            break
        ranks.append(s.device)
        windows.append(s.layers)
    cycle = np.repeat(np.arange(len(ranks)), windows)
    expected = [ranks[r] for r in np.resize(cycle, layers)]
    actual = [s.device for s in segments for _ in range(s.layers)]
    if expected != actual:
        l = next(i for i, (a, b) in enumerate(zip(expected, actual)) if a != b)
        raise PlanError(f"prima.cpp's piped ring repeats the same layer window on every rank each round "
                        f"(-lw {','.join(map(str, windows))}), which would put layer {l} on {expected[l]}, "
                        f"but the plan has it on {actual[l]}; solve with pipeline or pipeline-dp")
    return ranks, windows


def prima_cpp(instance: Instance, segments: list[Segment], hosts: dict[str, str], ends: tuple[str, str],
              model_path: str) -> Export:
    """prima.cpp: ranks in ring order, ``-lw`` the layer window of each rank (README, FAQ 1).

    Rank ``r`` runs ``--world N --rank r --master HEAD --next NEXT``; rank 0 (the head,
    which takes requests) also gets ``-lw w0,w1,…``, one window per rank in rank
    order. A plan whose runs repeat the ranks' windows round after round is a piped
    ring of several rounds.

    Returns
    -------
    Export
    """
    ranks, windows = _ring(segments, instance.model.layers)
    world = len(ranks)
    master = _host(hosts[ranks[0]])
    commands = []
    for r, device in enumerate(ranks):
        argv = ["llama-cli", "-m", model_path, "--world", str(world), "--rank", str(r), "--master", master,
                "--next", _host(hosts[ranks[(r + 1) % world]])]
        if r == 0:
            argv += ["-lw", ",".join(map(str, windows))]
        commands.append((device, argv))
    commands = commands[1:] + commands[:1]  # workers first, the head last
    notes = _end_notes(instance, *ends, ranks[0], ranks[0], "prima.cpp")
    return Export("prima.cpp", commands, notes=notes)


def vllm(instance: Instance, segments: list[Segment], hosts: dict[str, str], ends: tuple[str, str],
         model_path: str) -> Export:
    """vLLM pipeline parallel: ``--pipeline-parallel-size N`` and ``VLLM_PP_LAYER_PARTITION``.

    vLLM's ``get_pp_indices`` (vllm/distributed/utils.py) reads the variable as one layer
    count per stage, in stage order, summing to the model's layers; stage ``i`` runs
    layers ``sum(counts[:i]) … sum(counts[:i+1]) - 1``. Stages run on a Ray cluster
    whose head is the stage-0 device.

    Returns
    -------
    Export
    """
    _once_each(segments, "vLLM")
    head = _host(hosts[segments[0].device])
    commands = [(s.device, ["ray", "start", f"--address={head}:{RAY_PORT}"]) for s in segments[1:]]
    commands.insert(0, (segments[0].device, ["ray", "start", "--head", f"--port={RAY_PORT}"]))
    commands.append((segments[0].device, ["vllm", "serve", model_path, "--pipeline-parallel-size", str(len(segments)),
                                          "--distributed-executor-backend", "ray"]))
    environment = {"VLLM_PP_LAYER_PARTITION": ",".join(str(s.layers) for s in segments)}
    notes = _end_notes(instance, *ends, segments[0].device, segments[-1].device, "vLLM")
    notes.append("vLLM gives stage 0 to the Ray head and orders the other workers by node address; check the "
                 f"stage order it logs against: {', '.join(s.device for s in segments)}")
    return Export("vllm", commands, environment=environment, notes=notes)
