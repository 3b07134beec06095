"""The serving evaluator: a discrete-event simulation of a placement serving many requests.

Policies (docs/serving.md gives the schedules with worked examples):

- ``sequential``: one request at a time in arrival order: its prefill, then its ``T``
  decode passes at batch 1.
- ``static-batch`` (FasterTransformer): when the server is free it waits up to
  ``batch_wait_s`` after the oldest waiting request for ``max_batch`` requests, pads their
  prompts to the longest, runs one prefill pass for the batch and then decode passes
  at the batch's size until its longest request is done; every request of the batch
  is returned when the batch ends.
- ``fused`` (Flover): at every pass boundary the requests that arrived are admitted (in
  order, while memory allows); each one's prefill is a pass of its own, run between
  decode passes; then one decode pass serves every live request; a request leaves,
  and its KV cache is freed, with its last token.
- ``instances``: one whole copy of the model on every device that can hold it (the
  plan is not used), each copy serving one request at a time; a request goes to the
  copy that is free first.

Events are whole passes, processed with NumPy over runs of passes in which the set
of live requests does not change. Pass times come from `placement.serving.costs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.cost.units import format_bytes
from placement.errors import InputError
from placement.instance import Instance
from placement.plan import Plan
from placement.serving.costs import PassCosts, pass_costs
from placement.serving.metrics import ServingReport
from placement.serving.workload import POLICIES, Requests

__all__ = ["simulate", "round_s"]

_STATIC_BATCH = 8  # static-batch's default batch size


@dataclass
class _Log:
    """Per-request times and memory events, filled as the simulation runs."""

    first: np.ndarray
    finish: np.ndarray
    refused: np.ndarray
    queued: np.ndarray
    events: list  # (time, positions allocated (+) or freed (-), requests in service +1/-1, copy)

    @classmethod
    def empty(cls, n: int) -> "_Log":
        return cls(np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, bool), [])

    def report(self, policy: str, requests: Requests, copies: list[PassCosts]) -> ServingReport:
        """The report; memory per device sums every copy's weights and the KV of the positions it allocated."""
        ev = np.array(sorted(self.events, key=lambda e: (e[0], e[1]))) if self.events else np.zeros((0, 4))
        kv_per_position = np.array([c.kv_bytes_per_token for c in copies])  # (copies, N)
        kv_bytes = np.cumsum(ev[:, 1:2] * kv_per_position[ev[:, 3].astype(np.int64)], axis=0)
        return ServingReport(policy, requests.arrival_s, self.first, self.finish, requests.prompt_tokens,
                             requests.generate_tokens, self.refused, self.queued, ev[:, 0],
                             np.cumsum(ev[:, 2]).astype(np.int64), np.cumsum(ev[:, 1]),
                             sum(c.weights_bytes for c in copies), kv_bytes, copies[0].instance.cluster.names)


def _capacity_positions(costs: PassCosts) -> float:
    """KV positions the placement can hold next to its weights (the tightest device decides)."""
    over = np.flatnonzero(costs.weights_bytes > costs.limit_bytes * (1 + 1e-12))
    if len(over):
        n = over[0]
        raise InputError(f"the plan's weights on device {costs.instance.cluster.names[n]!r} need "
                         f"{format_bytes(costs.weights_bytes[n])}, it has {format_bytes(costs.limit_bytes[n])}: no "
                         "request can be served; choose a plan that fits (`placement evaluate` names the violations)")
    holds = costs.kv_bytes_per_token > 0
    if not holds.any():
        return np.inf
    return float(np.min((costs.limit_bytes[holds] - costs.weights_bytes[holds]) / costs.kv_bytes_per_token[holds]))


def round_s(costs: PassCosts, batch: int, mean_context: np.ndarray) -> np.ndarray:
    """Time for every one of `batch` live requests to get its next token, at each mean context, seconds.

    One pass over the whole batch takes the evaluator's latency ``L(B)``. A placement
    whose blocks occupy ``m`` devices can instead run ``k = min(m, B)`` micro-batches of
    ``b = ceil(B/k)`` requests in flight: each needs ``L(b)`` end to end, and the busiest
    device works ``k·U(b)`` per round. The scheduler takes the shorter:
    ``min(L(B), max(L(b), k·U(b)))``. One request (``k = 1``) gives exactly ``L(1)``.

    Parameters
    ----------
    costs : PassCosts
    batch : int
    mean_context : ndarray (n,)
        Mean context of the live requests in each round.

    Returns
    -------
    ndarray (n,)
    """
    whole = costs.decode_s(batch, mean_context)
    k = min(costs.stages, batch)
    if k <= 1:
        return whole
    b = -(-batch // k)
    piped = np.maximum(costs.decode_s(b, mean_context), k * costs.busy_s(b, mean_context))
    return np.minimum(whole, piped)


def _decode_prefix(costs: PassCosts, max_context: int) -> np.ndarray:
    """Cumulative batch-1 decode time: ``out[S]`` = Σ of the passes at contexts 2 … S (out[0] = out[1] = 0)."""
    contexts = np.arange(2, max_context + 1)
    return np.concatenate([[0.0, 0.0], np.cumsum(round_s(costs, 1, contexts))])


def _sequential(costs: list[PassCosts], requests: Requests, log: _Log) -> None:
    """One request at a time per copy; each request to the copy free first (one copy: plain FIFO)."""
    P, T = requests.prompt_tokens, requests.generate_tokens
    prefixes = [_decode_prefix(c, int((P + T).max())) for c in costs]
    capacity = np.array([_capacity_positions(c) for c in costs])
    free_at = np.zeros(len(costs))
    for i in range(requests.n):
        fits = capacity >= P[i] + T[i]
        if not fits.any():
            log.refused[i] = True
            continue
        copy = int(np.argmin(np.where(fits, np.maximum(free_at, requests.arrival_s[i]), np.inf)))
        start = max(free_at[copy], requests.arrival_s[i])
        log.first[i] = start + costs[copy].prefill_s(int(P[i]))
        log.finish[i] = log.first[i] + prefixes[copy][P[i] + T[i]] - prefixes[copy][P[i]]
        free_at[copy] = log.finish[i]
        log.events += [(start, P[i] + T[i], 1, copy), (log.finish[i], -(P[i] + T[i]), -1, copy)]


def _take_batch(requests: Requests, start: int, t: float, max_batch: int, wait_s: float) -> tuple[int, float]:
    """How many waiting requests from index `start` form the next static batch, and when it starts."""
    arrival = requests.arrival_s
    t = max(t, arrival[start])
    deadline = max(t, arrival[start] + wait_s)
    last = min(start + max_batch, requests.n) - 1
    if arrival[last] <= deadline:  # full before the deadline: start when the last of them arrives
        return last - start + 1, max(t, arrival[last])
    return int(np.searchsorted(arrival, deadline, side="right")) - start, deadline


def _static_batch(costs: PassCosts, requests: Requests, log: _Log, max_batch: int, wait_s: float) -> None:
    """FasterTransformer-style batches: padded prompts, run to the longest request, returned together."""
    P, T = requests.prompt_tokens, requests.generate_tokens
    capacity = _capacity_positions(costs)
    log.refused[:] = P + T > capacity
    order = np.flatnonzero(~log.refused)
    served = Requests(requests.arrival_s[order], P[order], T[order]) if len(order) else None
    t, i = 0.0, 0
    while served is not None and i < served.n:
        size, t = _take_batch(served, i, t, max_batch, wait_s)
        wanted = size
        while size > 1 and size * (served.prompt_tokens[i:i + size].max() + served.generate_tokens[i:i + size].max()) > capacity:
            size -= 1  # padded caches must fit together: the rest wait for the next batch
        members = order[i:i + size]
        p_max, t_max = int(P[members].max()), int(T[members].max())
        log.queued[order[i + size:i + wanted]] = True
        first = t + costs.prefill_s(p_max, size)
        end = first + float(round_s(costs, size, np.arange(p_max + 1, p_max + t_max + 1)).sum())
        log.first[members], log.finish[members] = first, end
        log.events += [(t, size * (p_max + t_max), size, 0), (end, -size * (p_max + t_max), -size, 0)]
        t, i = end, i + size


@dataclass
class _Live:
    """The fused batch: request ids, cached positions and decode steps left, one entry per live request."""

    ids: np.ndarray
    context: np.ndarray
    left: np.ndarray
    reserved: float = 0.0

    def add(self, i: int, prompt: int, steps: int) -> None:
        self.ids = np.append(self.ids, i)
        self.context = np.append(self.context, prompt)
        self.left = np.append(self.left, steps)
        self.reserved += prompt + steps


def _admit(costs: PassCosts, requests: Requests, log: _Log, live: _Live, nxt: int, t: float,
           capacity: float, max_batch: float) -> tuple[int, float]:
    """Admit arrived requests in order while memory and the batch limit allow; run each prefill. Returns (next, t)."""
    P, T = requests.prompt_tokens, requests.generate_tokens
    while nxt < requests.n and requests.arrival_s[nxt] <= t:
        need = P[nxt] + T[nxt]
        if need > capacity:
            log.refused[nxt] = True
            nxt += 1
            continue
        if live.reserved + need > capacity or len(live.ids) >= max_batch:
            log.queued[nxt] = True
            break
        log.events.append((t, need, 1, 0))
        t += costs.prefill_s(int(P[nxt]))
        log.first[nxt] = t
        live.add(nxt, int(P[nxt]), int(T[nxt]))
        nxt += 1
    return nxt, t


def _fused(costs: PassCosts, requests: Requests, log: _Log, max_batch: float) -> None:
    """Flover's temporal fusion: prefill on admission, one decode pass for every live request, eviction at once."""
    P, T = requests.prompt_tokens, requests.generate_tokens
    capacity = _capacity_positions(costs)
    live = _Live(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    nxt, t = 0, 0.0
    while True:
        nxt, t = _admit(costs, requests, log, live, nxt, t, capacity, max_batch)
        if not len(live.ids):
            if nxt >= requests.n:
                return
            t = max(t, requests.arrival_s[nxt])
            continue
        B = len(live.ids)
        rounds = int(live.left.min())
        ends = t + np.cumsum(round_s(costs, B, live.context.mean() + 1 + np.arange(rounds)))
        blocked = nxt < requests.n and (live.reserved + P[nxt] + T[nxt] > capacity or B >= max_batch) \
            and P[nxt] + T[nxt] <= capacity
        if nxt < requests.n and not blocked:  # stop at the first pass boundary after the next arrival
            rounds = min(rounds, int(np.searchsorted(ends, requests.arrival_s[nxt], side="left")) + 1)
        t = float(ends[rounds - 1])
        live.context += rounds
        live.left -= rounds
        done = live.left == 0
        for i in live.ids[done]:
            log.finish[i] = t
            log.events.append((t, -(P[i] + T[i]), -1, 0))
            live.reserved -= P[i] + T[i]
        live.ids, live.context, live.left = live.ids[~done], live.context[~done], live.left[~done]


def _instance_copies(instance: Instance) -> list[PassCosts]:
    from placement.solvers.reference import single_plan

    copies = []
    for n in range(instance.n_devices):
        costs = pass_costs(instance, single_plan(instance, n))
        if np.all(costs.weights_bytes <= costs.limit_bytes * (1 + 1e-12)):
            copies.append(costs)
    if not copies:
        raise InputError("policy `instances` needs devices that each hold the whole model's weights; none of "
                         f"{', '.join(instance.cluster.names)} does; use `fused`, `static-batch` or `sequential`")
    return copies


def simulate(instance: Instance, plan: Plan | None, requests: Requests, policy: str = "fused", *,
             max_batch: int | None = None, batch_wait_s: float = 0.0) -> ServingReport:
    """Serve `requests` with `plan` on `instance` under `policy`.

    Parameters
    ----------
    instance : Instance
        Its cost model and devices (profile ``roofline``).
    plan : Plan or None
        The placement (its first interval serves every request); ignored, and may be
        None, for policy ``instances``.
    requests : Requests
    policy : {"sequential", "static-batch", "fused", "instances"}
    max_batch : int, optional
        Most requests decoded together (``static-batch``: default 8; ``fused``: no limit but memory).
    batch_wait_s : float
        ``static-batch``: longest wait for a batch to fill after its oldest request arrived, seconds.

    Returns
    -------
    ServingReport

    Raises
    ------
    InputError
        On an unknown policy, a bad option, the ``kafetzis2025`` profile, or weights that do not fit.

    Examples
    --------
    >>> from placement import load_instance
    >>> from placement.solvers.reference import pipeline_plan
    >>> inst = load_instance("edge/llama-3.2-1b-4dev")
    >>> report = simulate(inst, pipeline_plan(inst), Requests.single(64, 16), "fused")
    >>> report.summary()["served"]
    1
    """
    if policy not in POLICIES:
        raise InputError(f"unknown serving policy {policy!r}; policies are {', '.join(POLICIES)}")
    if max_batch is not None and (isinstance(max_batch, bool) or int(max_batch) != max_batch or max_batch < 1):
        raise InputError(f"`max_batch` must be a whole number of at least 1, got {max_batch!r}")
    if not batch_wait_s >= 0:
        raise InputError(f"`batch_wait_s` must be zero or more seconds, got {batch_wait_s!r}")
    if plan is None and policy != "instances":
        raise InputError(f"policy {policy!r} needs a plan; give one (or use policy `instances`)")
    log = _Log.empty(requests.n)
    copies = _instance_copies(instance) if policy == "instances" else [pass_costs(instance, plan)]
    if policy in ("instances", "sequential"):
        _sequential(copies, requests, log)
    elif policy == "static-batch":
        _static_batch(copies[0], requests, log, max_batch or _STATIC_BATCH, batch_wait_s)
    else:
        _fused(copies[0], requests, log, max_batch or np.inf)
    return log.report(policy, requests, copies)
