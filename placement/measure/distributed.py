"""A plan run for real: one OS process per device, torch.distributed (gloo) on loopback, emulated links.

Each process builds only the blocks the plan gives its device (same seeded weights as
a single process would have) and follows the evaluator's data path for every decode
step (docs/cost-model.md, "One decode step"): the embedding device embeds the token;
per layer the hidden state goes from its holder to every device running a group of
the layer (and to the projection device, which adds the residual), each runs its
groups and sends its heads' outputs to the projection device, which projects and
passes the result to the FFN device; after the last layer the ``lm_head`` device picks
the token and sends its id (4 bytes) back to the embedding device.

**Emulated links.** Every message carries the sender's send time (the monotonic
clock is shared by the processes of one machine). The receiver holds the message
until ``send time + latency + bytes / bandwidth`` of the instance's route between the
two devices, so a message never arrives before the emulated link would deliver it,
transfers between different pairs overlap (the ``switched`` network) and the sender
is not held up. Loopback's own cost (gloo; `placement.measure.processes.loopback`)
hides under the emulated delay when that is longer.

**Threads.** One torch thread per process, so that processes running at once (the
groups of a head-level split) do not fight over the cores; the instance's devices
should carry a preset profiled and calibrated at one thread.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import numpy as np

from placement.errors import PlanError
from placement.evaluate import evaluate
from placement.instance import Instance
from placement.measure import blocks
from placement.measure._torch import torch_module
from placement.measure.processes import spawn
from placement.plan import Plan

__all__ = ["run_plan", "plan_schedule"]


def plan_schedule(instance: Instance, plan: Plan) -> dict[str, Any]:
    """The first interval's placement as device indices of the instance (what the processes follow).

    Raises
    ------
    PlanError
        For a split projection or FFN (tensor parallel is not run here), or a layer whose
        projection device neither holds nor receives the layer input (its residual).
    """
    names = instance.cluster.names
    remap = np.array([names.index(n) for n in plan.devices])
    p = plan.placement(0)
    if ((np.asarray(p.projection) > 0).sum(axis=1) > 1).any() or ((np.asarray(p.ffn) > 0).sum(axis=1) > 1).any():
        raise PlanError("the distributed run executes whole projections and FFNs; this plan splits one (tensor parallel)")
    attention = remap[np.asarray(p.attention)]
    projection = remap[np.asarray(p.projection).argmax(axis=1)]
    ffn = remap[np.asarray(p.ffn).argmax(axis=1)]
    embed, lm_head = int(remap[p.embed]), int(remap[p.lm_head])
    holder = embed
    for l in range(instance.model.layers):
        if projection[l] != holder and projection[l] not in attention[l]:
            raise PlanError(f"layer {l}: the projection device {names[projection[l]]!r} neither holds the layer input "
                            "nor runs a group of the layer, so it lacks the residual; place a group there")
        holder = ffn[l]
    return {"attention": attention.tolist(), "projection": projection.tolist(), "ffn": ffn.tolist(),
            "embed": embed, "lm_head": lm_head}


class _Link:
    """Send and receive with the emulated delay of the instance's routes."""

    def __init__(self, rank: int, latency: np.ndarray, bandwidth: np.ndarray):
        self.torch = torch_module()
        self.rank, self.latency, self.bandwidth = rank, latency, bandwidth
        self.held_s = 0.0

    def send(self, dst: int, payload) -> None:
        torch = self.torch
        stamp = torch.tensor([time.perf_counter()], dtype=torch.float64).view(torch.float32)
        torch.distributed.send(torch.cat((stamp, payload.reshape(-1).float())), dst)

    def recv(self, src: int, shape: tuple[int, ...]):
        torch = self.torch
        buffer = torch.empty(2 + int(np.prod(shape)), dtype=torch.float32)
        torch.distributed.recv(buffer, src)
        stamp = float(buffer[:2].view(torch.float64).item())
        payload = buffer[2:]
        deadline = stamp + self.latency[src, self.rank] + payload.numel() * 4 / self.bandwidth[src, self.rank]
        wait = deadline - time.perf_counter()
        if wait > 0:
            self.held_s += wait
            time.sleep(wait)
        return payload.reshape(shape)


def _worker(rank: int, world: int, spec_fields: dict, schedule: dict, latency: list, bandwidth: list,
            prompt_tokens: int, tokens: int, warmup: int, precision: str, seed: int) -> dict | None:
    from placement.cost.model import spec_from_mapping

    torch = torch_module()
    spec = spec_from_mapping(spec_fields)
    att = np.array(schedule["attention"])
    proj, ffn, embed_dev, lm_dev = schedule["projection"], schedule["ffn"], schedule["embed"], schedule["lm_head"]
    L, K, D = spec.layers, spec.kv_heads, spec.hidden
    rd = spec.group_size * spec.head_dim
    holds = blocks.Holdings(
        groups=frozenset((l, g) for l in range(L) for g in range(K) if att[l, g] == rank),
        projection=frozenset(l for l in range(L) if proj[l] == rank),
        ffn=frozenset(l for l in range(L) if ffn[l] == rank),
        embed=embed_dev == rank, lm_head=lm_dev == rank)
    m = blocks.build_model(spec, precision=precision, max_context=prompt_tokens + tokens + 1, seed=seed, holds=holds)
    link = _Link(rank, np.array(latency), np.array(bandwidth))
    dtype = m.cos.dtype

    def step(token, pos: int):
        x = blocks.embed(m, token[:, None]) if rank == embed_dev else None
        holder = embed_dev
        for l in range(L):
            devices = sorted(set(att[l].tolist()))
            for d in sorted((set(devices) | {proj[l]}) - {holder}):
                if rank == holder:
                    link.send(d, x)
                elif rank == d:
                    x = link.recv(holder, (1, 1, D)).to(dtype)
            if rank in devices:
                mine = [g for g in range(K) if att[l, g] == rank]
                out = blocks.attention(m, l, mine, x, pos)
                if rank != proj[l]:
                    link.send(proj[l], out)
            if rank == proj[l]:
                parts = [None] * K
                for d in devices:
                    gs = [g for g in range(K) if att[l, g] == d]
                    got = out if d == rank else link.recv(d, (1, 1, len(gs) * rd)).to(dtype)
                    for i, g in enumerate(gs):
                        parts[g] = got[..., i * rd:(i + 1) * rd]
                x = blocks.projection(m, l, torch.cat(parts, dim=-1), x)
            if ffn[l] != proj[l]:
                if rank == proj[l]:
                    link.send(ffn[l], x)
                elif rank == ffn[l]:
                    x = link.recv(proj[l], (1, 1, D)).to(dtype)
            if rank == ffn[l]:
                x = blocks.ffn(m, l, x)
            holder = ffn[l]
        if lm_dev != holder:
            if rank == holder:
                link.send(lm_dev, x)
            elif rank == lm_dev:
                x = link.recv(holder, (1, 1, D)).to(dtype)
        if rank == lm_dev:
            token = blocks.lm_head(m, x)
            if lm_dev != embed_dev:
                link.send(embed_dev, token)
        if rank == embed_dev and lm_dev != embed_dev:
            token = link.recv(lm_dev, (1,)).long()
        return token

    token = torch.zeros(1, dtype=torch.long)
    times = []
    with torch.inference_mode():
        for i in range(warmup):
            token = step(token, prompt_tokens + i)
        torch.distributed.barrier()
        link.held_s = 0.0
        last = time.perf_counter()
        for i in range(tokens):
            token = step(token, prompt_tokens + i)
            now = time.perf_counter()
            times.append(now - last)
            last = now
    if rank != embed_dev:
        return None
    return {"per_token_s": times, "held_s": link.held_s}


def run_plan(instance: Instance, plan: Plan, *, tokens: int | None = None, warmup: int = 3, precision: str = "fp32",
             seed: int = 0, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run `plan` on `instance` in one process per device and compare with the evaluator.

    The decode steps start at the instance's prompt length (caches hold random values
    for the prompt's positions); links are the instance's routes, emulated.

    Parameters
    ----------
    instance : Instance
        Its devices should describe one torch thread of this machine (a calibrated preset).
    plan : Plan
        Whole blocks (no tensor-parallel split); the first interval's placement is run.
    tokens : int, optional
        Decode steps timed (default: the instance's ``generate_tokens``).
    warmup : int
        Untimed steps first.

    Returns
    -------
    dict
        ``measured_s`` (median per-token latency), ``predicted_s`` (the evaluator's
        mean decode step over the same contexts), ``error`` (predicted / measured - 1),
        ``per_token_s`` (every measured step), ``processes``.
    """
    blocks.precision_bits(precision)
    schedule = plan_schedule(instance, plan)
    tokens = tokens or instance.workload.generate_tokens
    workload = dataclasses.replace(instance.workload, generate_tokens=tokens, interval_tokens=None)
    timed = Instance(instance.name, instance.model, instance.cluster, workload, instance.precision, instance.description)
    predicted = float(evaluate(timed, plan).decode_s.mean())
    cluster = instance.cluster
    args = (dataclasses.asdict(instance.model), schedule, cluster.route_latency_s.tolist(),
            np.where(np.isinf(cluster.route_bandwidth_bytes_per_s), 1e30, cluster.route_bandwidth_bytes_per_s).tolist(),
            instance.workload.prompt_tokens, tokens, warmup, precision, seed)
    results = spawn(_worker, instance.n_devices, args, timeout_s=timeout_s)
    got = results[schedule["embed"]]
    measured = statistics.median(got["per_token_s"])
    return {"measured_s": measured, "predicted_s": predicted, "error": predicted / measured - 1,
            "per_token_s": got["per_token_s"], "processes": instance.n_devices}
