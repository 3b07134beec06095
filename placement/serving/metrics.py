"""What a serving simulation reports: per-request times, percentiles, throughput, memory over time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ServingReport", "PERCENTILES"]

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, eq=False)
class ServingReport:
    """One policy serving one workload on one placement.

    Attributes
    ----------
    policy : str
    arrival_s, first_token_s, finish_s : ndarray (n,)
        Arrival, first token (end of its prefill) and last token of every request,
        seconds; NaN for a refused request.
    prompt_tokens, generate_tokens : ndarray of int (n,)
    refused : ndarray of bool (n,)
        Requests whose KV cache can never fit next to the weights.
    queued : ndarray of bool (n,)
        Requests that waited for memory (or a batch slot) after arriving at a free server.
    event_s : ndarray (m,)
        Times at which allocated memory or the number of requests in service changes, sorted.
    in_service : ndarray of int (m,)
        Requests holding memory from ``event_s[i]`` until the next event.
    kv_positions : ndarray (m,)
        KV-cache positions allocated from ``event_s[i]`` on (each request is allocated its
        final context ``P + T`` when admitted, and freed when its last token is out).
    weights_bytes : ndarray (N,)
        Resident weights on each device (of every copy, for ``instances``).
    kv_bytes : ndarray (m, N)
        KV-cache bytes allocated on each device from ``event_s[i]`` on.
    devices : tuple of str
    """

    policy: str
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_tokens: np.ndarray
    generate_tokens: np.ndarray
    refused: np.ndarray
    queued: np.ndarray
    event_s: np.ndarray
    in_service: np.ndarray
    kv_positions: np.ndarray
    weights_bytes: np.ndarray
    kv_bytes: np.ndarray
    devices: tuple[str, ...]

    @property
    def ttft_s(self) -> np.ndarray:
        """Time to first token of every served request (arrival to end of prefill), seconds."""
        return (self.first_token_s - self.arrival_s)[~self.refused]

    @property
    def e2e_s(self) -> np.ndarray:
        """End-to-end latency of every served request (arrival to last token), seconds."""
        return (self.finish_s - self.arrival_s)[~self.refused]

    @property
    def tpot_s(self) -> np.ndarray:
        """Time per output token after the first, ``(finish - first token) / T``, seconds."""
        served = ~self.refused
        return (self.finish_s - self.first_token_s)[served] / self.generate_tokens[served]

    @property
    def throughput_tokens_s(self) -> float:
        """Output tokens (``T + 1`` per served request) per second from the first arrival to the last token."""
        served = ~self.refused
        if not served.any():
            return 0.0
        span = np.nanmax(self.finish_s) - self.arrival_s.min()
        return float((self.generate_tokens[served] + 1).sum() / span)

    @property
    def memory_bytes(self) -> np.ndarray:
        """Allocated bytes per device after each event, shape (m, N): weights + KV of the allocated positions."""
        return self.weights_bytes + self.kv_bytes

    def in_system(self, times: np.ndarray) -> np.ndarray:
        """Requests arrived and not yet finished (refused ones excluded) at each of `times`."""
        served = ~self.refused
        arrived = np.searchsorted(np.sort(self.arrival_s[served]), times, side="right")
        done = np.searchsorted(np.sort(self.finish_s[served]), times, side="right")
        return arrived - done

    def summary(self) -> dict[str, Any]:
        """Percentiles (p50/p90/p99) of TTFT, time per token and end-to-end latency, throughput, counts, peak memory."""
        out: dict[str, Any] = {"policy": self.policy, "requests": int(len(self.arrival_s)),
                               "served": int((~self.refused).sum()), "refused": int(self.refused.sum()),
                               "queued": int(self.queued.sum())}
        for name, values in (("ttft", self.ttft_s), ("tpot", self.tpot_s), ("e2e", self.e2e_s)):
            out[f"mean_{name}_s"] = float(values.mean()) if len(values) else float("nan")
            for q in PERCENTILES:
                out[f"p{q}_{name}_s"] = float(np.percentile(values, q)) if len(values) else float("nan")
        out["throughput_tokens_s"] = self.throughput_tokens_s
        out["makespan_s"] = float(np.nanmax(self.finish_s) - self.arrival_s.min()) if (~self.refused).any() else 0.0
        out["peak_memory_bytes"] = dict(zip(self.devices, self.memory_bytes.max(axis=0).tolist()))
        out["max_in_service"] = int(self.in_service.max()) if len(self.in_service) else 0
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary and every request's times."""
        nan_to_none = lambda a: [None if np.isnan(x) else float(x) for x in a]  # noqa: E731
        return {**self.summary(), "per_request": {
            "arrival_s": self.arrival_s.tolist(), "first_token_s": nan_to_none(self.first_token_s),
            "finish_s": nan_to_none(self.finish_s), "prompt_tokens": self.prompt_tokens.tolist(),
            "generate_tokens": self.generate_tokens.tolist(), "refused": self.refused.tolist(),
        }}
