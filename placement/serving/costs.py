"""The one door from the serving simulation into the cost layer and the evaluator.

Every figure the simulation uses comes from here, and every figure here comes from
`placement.evaluate` or `placement.cost` (no formula of its own):

- a decode pass over ``B`` live requests with contexts ``S_1 … S_B`` costs what the
  evaluator gives for batch ``B`` at the mean context ``S̄ = ΣS_i / B``: in the
  ``roofline`` profile linear layers read their weights once for the batch, attention
  FLOPs ``4·r·d·ΣS_i`` and KV reads ``2·d·ΣS_i·c/8`` are linear in the contexts, and
  hidden-state transfers carry ``B·D·a/8`` bytes. The evaluator is called at whole
  contexts; between two whole contexts the pass time is interpolated linearly, which
  is exact unless a roofline corner (compute-bound ↔ memory-bound) falls between them.
- a prefill of ``P`` tokens for ``B`` requests padded to ``P`` is the evaluator's time to first token;
- memory per device is ``weights + kv_per_token · (positions cached)``, both read off
  the evaluator's peak memory at two contexts (it is affine in the context);
- a device's busy time in a pass (for pipelining) is the sum of its blocks' roofline
  times (`placement.cost.tables.phase_tables` on `step_costs`).

The ``kafetzis2025`` profile is not linear in the context (its FLOPs have ``S²·d``), so
serving refuses it. When the cost layer is refactored, only this module changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from placement.cost.tables import phase_tables, step_costs
from placement.errors import InputError
from placement.evaluate import evaluate
from placement.instance import Instance, Workload
from placement.plan import Plan

__all__ = ["PassCosts", "pass_costs"]

_CHUNK = 128  # whole contexts evaluated per call; tables grow a chunk at a time


@dataclass(frozen=True, eq=False)
class PassCosts:
    """Pass times and memory of one static placement, with lazily filled tables.

    Attributes
    ----------
    instance : Instance
    plan : Plan
        One interval.
    weights_bytes : ndarray (N,)
        Resident weights on each device.
    kv_bytes_per_token : ndarray (N,)
        KV-cache bytes each device holds per cached position of one request.
    limit_bytes : ndarray (N,)
        Memory each device has for blocks.
    stages : int
        Devices that run any block: the most micro-batches a pipeline can overlap.
    """

    instance: Instance
    plan: Plan
    weights_bytes: np.ndarray
    kv_bytes_per_token: np.ndarray
    limit_bytes: np.ndarray
    stages: int
    _decode: dict = field(default_factory=dict, repr=False)  # (batch, chunk) -> latency at its contexts
    _prefill: dict = field(default_factory=dict, repr=False)  # (prompt, batch) -> seconds

    def _evaluate(self, prompt_tokens: int, generate_tokens: int, batch: int):
        workload = Workload(prompt_tokens, generate_tokens, batch, None, "roofline")
        return evaluate(dataclasses.replace(self.instance, workload=workload), self.plan)

    def _chunk(self, batch: int, chunk: int) -> np.ndarray:
        """Pass latencies at whole contexts ``chunk·_CHUNK … (chunk+1)·_CHUNK - 1`` (contexts below 2 are 0)."""
        key = (batch, chunk)
        if key not in self._decode:
            first = max(chunk * _CHUNK, 2)  # decode step i of a (first-1)-token prompt runs at context first-1+i
            fresh = self._evaluate(first - 1, (chunk + 1) * _CHUNK - first, batch).decode_s
            self._decode[key] = np.concatenate([np.zeros(_CHUNK - len(fresh)), fresh])
        return self._decode[key]

    def _at(self, batch: int, contexts: np.ndarray) -> np.ndarray:
        chunks = contexts // _CHUNK
        out = np.empty(len(contexts))
        for c in np.unique(chunks):
            here = chunks == c
            out[here] = self._chunk(batch, int(c))[contexts[here] - c * _CHUNK]
        return out

    def decode_s(self, batch: int, mean_context: np.ndarray) -> np.ndarray:
        """Latency of decode passes over `batch` requests at mean contexts (≥ 2), seconds.

        Parameters
        ----------
        batch : int
        mean_context : ndarray of float, shape (n,)
            ``ΣS_i / B`` of each pass.

        Returns
        -------
        ndarray, shape (n,)
            Seconds per pass.
        """
        s = np.asarray(mean_context, dtype=float)
        low = np.floor(s).astype(np.int64)
        frac = s - low
        at_low = self._at(int(batch), low)
        if not frac.any():
            return at_low
        return at_low + frac * (self._at(int(batch), low + 1) - at_low)

    def busy_s(self, batch: int, mean_context: np.ndarray) -> np.ndarray:
        """The busiest device's compute time in each decode pass (its blocks' roofline times summed), seconds."""
        s = np.asarray(mean_context, dtype=float)
        placement = self.plan.intervals[0]
        inst = self.instance
        remap = np.array([inst.cluster.index(name) for name in self.plan.devices])
        precision = inst.precision.with_overrides(placement.precision, where="interval 0 precision")
        batched = dataclasses.replace(inst, workload=dataclasses.replace(inst.workload, batch=int(batch)))
        tables = phase_tables(batched, step_costs(batched, precision, s))
        N, L = inst.n_devices, inst.model.layers
        counts = np.zeros((L, N))
        np.add.at(counts, (np.arange(L)[:, None], remap[placement.attention]), 1.0)
        proj, ffn = np.zeros((L, N)), np.zeros((L, N))
        proj[:, remap], ffn[:, remap] = placement.projection, placement.ffn
        busy = (tables.group_s * counts + tables.projection_s * proj + tables.ffn_s * ffn).sum(axis=1)
        busy[:, remap[placement.embed]] += tables.embed_s[:, remap[placement.embed]]
        busy[:, remap[placement.lm_head]] += tables.lm_head_s[:, remap[placement.lm_head]]
        return busy.max(axis=1)

    def prefill_s(self, prompt_tokens: int, batch: int = 1) -> float:
        """The time to first token of `batch` prompts of `prompt_tokens` tokens run as one pass, seconds."""
        key = (int(prompt_tokens), int(batch))
        if key not in self._prefill:
            self._prefill[key] = self._evaluate(key[0], 1, key[1]).ttft_s
        return self._prefill[key]


def pass_costs(instance: Instance, plan: Plan) -> PassCosts:
    """The serving cost tables of `plan` on `instance`.

    Parameters
    ----------
    instance : Instance
    plan : Plan
        Its first interval serves every request (serving judges one static placement).

    Returns
    -------
    PassCosts

    Raises
    ------
    InputError
        For the ``kafetzis2025`` profile (not linear in the context).
    """
    if instance.workload.profile != "roofline":
        raise InputError(f"serving needs the `roofline` profile (the batch's cost is taken at its mean context, which "
                         f"holds only for costs linear in the context); set `workload.profile: roofline` "
                         f"(got {instance.workload.profile!r})")
    static = plan.replace(intervals=plan.intervals[:1])
    probe = PassCosts(instance, static, np.zeros(0), np.zeros(0), np.zeros(0), 1)
    at_two = probe._evaluate(1, 1, 1)  # memory judged at context 2
    at_three = probe._evaluate(1, 2, 1)  # ... and at context 3
    kv = at_three.peak_memory_bytes[-1] - at_two.peak_memory_bytes[-1]
    weights = at_two.peak_memory_bytes[-1] - 2 * kv
    busy_devices = weights > 0
    return PassCosts(instance, static, weights, kv, at_two.memory_limit_bytes, int(busy_devices.sum()))
