"""Workloads of many requests: the ``serving:`` section of an instance file, and trace files.

A request arrives at ``arrival_s``, brings a ``prompt_tokens``-token prompt (its
prefill gives the first token) and then needs ``generate_tokens`` decode steps, the
same meaning as the single-request `placement.instance.Workload`. Arrivals are either a
Poisson process at a rate (``rate: 2 req/s``), drawn by `generate_trace` from a seed,
or read from a trace file (CSV with the header ``arrival_s,prompt_tokens,generate_tokens``).
Format and options: docs/serving.md.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from placement.cost.units import parse_quantity
from placement.errors import InputError

__all__ = ["Requests", "ServingSpec", "POLICIES", "serving_from_mapping", "generate_trace", "read_trace",
           "write_trace", "trace_text", "parse_rate", "TRACE_HEADER"]

POLICIES = ("sequential", "static-batch", "fused", "instances")
TRACE_HEADER = "arrival_s,prompt_tokens,generate_tokens"
_PER_SECOND = ("1 / second", "an arrival rate", "2 req/s")
_REQUEST_WORD = re.compile(r"\b(requests|request|reqs|req)\b")

Length = StrictInt | tuple[StrictInt, StrictInt]


@dataclass(frozen=True, eq=False)
class Requests:
    """A workload of requests, sorted by arrival.

    Attributes
    ----------
    arrival_s : ndarray of float, shape (n,)
        Arrival times, seconds from the start, non-decreasing.
    prompt_tokens : ndarray of int, shape (n,)
        Prompt length ``P`` of each request.
    generate_tokens : ndarray of int, shape (n,)
        Decode steps ``T`` of each request after its prefill (its output is ``T + 1`` tokens).
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    generate_tokens: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if n == 0:
            raise InputError("a serving workload needs at least one request")
        if len(self.prompt_tokens) != n or len(self.generate_tokens) != n:
            raise InputError("requests: `arrival_s`, `prompt_tokens` and `generate_tokens` must have one entry per request")
        if not np.all(np.isfinite(self.arrival_s)) or np.any(self.arrival_s < 0):
            raise InputError("requests: every `arrival_s` must be a finite time of zero or more seconds")
        if np.any(np.diff(self.arrival_s) < 0):
            raise InputError("requests: `arrival_s` must be sorted (non-decreasing); sort the trace by arrival")
        for name in ("prompt_tokens", "generate_tokens"):
            if np.any(getattr(self, name) < 1):
                raise InputError(f"requests: every `{name}` must be at least 1")

    @property
    def n(self) -> int:
        """Number of requests."""
        return len(self.arrival_s)

    @classmethod
    def single(cls, prompt_tokens: int, generate_tokens: int, arrival_s: float = 0.0) -> "Requests":
        """One request, as the single-request evaluator sees it."""
        return cls(np.array([float(arrival_s)]), np.array([prompt_tokens]), np.array([generate_tokens]))


@dataclass(frozen=True)
class ServingSpec:
    """The ``serving:`` section of an instance, parsed.

    Attributes
    ----------
    requests : Requests
    policy : str
        Default policy, one of `POLICIES`.
    max_batch : int or None
        Most requests decoded together (``static-batch`` default 8; ``fused``: no limit but memory).
    batch_wait_s : float
        ``static-batch``: how long the server waits for a batch to fill after the first waiting request, seconds.
    rate_per_s : float or None
        The Poisson rate the trace was drawn at (None for a trace file).
    """

    requests: Requests
    policy: str = "fused"
    max_batch: int | None = None
    batch_wait_s: float = 0.0
    rate_per_s: float | None = None


class _ServingEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arrivals: Literal["poisson", "trace"] = Field("poisson", description="Poisson arrivals at `rate`, or a `trace` file.")
    rate: StrictStr | StrictFloat | StrictInt | None = Field(None, description="Arrival rate, e.g. '2 req/s'.")
    requests: StrictInt = Field(100, ge=1, description="Requests to draw (Poisson).")
    prompt_tokens: Length = Field(128, description="Prompt length, or [low, high] drawn uniformly (Poisson).")
    generate_tokens: Length = Field(128, description="Decode steps, or [low, high] drawn uniformly (Poisson).")
    seed: StrictInt = Field(0, description="Seed of the trace generator.")
    trace: StrictStr | None = Field(None, description="CSV trace file (arrivals: trace).")
    policy: Literal["sequential", "static-batch", "fused", "instances"] = "fused"
    max_batch: StrictInt | None = Field(None, ge=1, description="Most requests decoded together.")
    batch_wait: StrictStr | StrictFloat | StrictInt = Field(0, description="static-batch: wait for a batch, e.g. '50 ms'.")


def parse_rate(value: str | float, *, field: str = "serving.rate") -> float:
    """An arrival rate in requests per second, from ``'2 req/s'``, ``'120 req/min'`` or a bare number.

    Parameters
    ----------
    value : str or float
    field : str
        Named in error messages.

    Returns
    -------
    float
        Requests per second.
    """
    if isinstance(value, str):
        value = _REQUEST_WORD.sub("1", value)  # a request is a count: "2 req/s" reads as "2 1/s"
    return parse_quantity(value, _PER_SECOND, field=field)


def _length(value: Any, name: str) -> tuple[int, int]:
    low, high = (value, value) if isinstance(value, int) else value
    if low < 1 or high < low:
        raise InputError(f"`serving.{name}`: give a whole number of at least 1, or [low, high] with 1 <= low <= high; "
                         f"got {value!r}")
    return int(low), int(high)


def generate_trace(n: int, rate_per_s: float, prompt_tokens: int | tuple[int, int], generate_tokens: int | tuple[int, int],
                   seed: int = 0) -> Requests:
    """Draw a Poisson workload: exponential gaps at `rate_per_s`, lengths uniform on their ranges.

    The same arguments give the same requests on every machine (NumPy's PCG64 generator).

    Parameters
    ----------
    n : int
        Requests.
    rate_per_s : float
        Arrivals per second.
    prompt_tokens, generate_tokens : int or (low, high)
        A fixed length, or an inclusive range drawn uniformly.
    seed : int

    Returns
    -------
    Requests
        The first arrives after one exponential gap (not at 0).
    """
    if n < 1 or not rate_per_s > 0:
        raise InputError(f"a Poisson trace needs at least one request and a positive rate, got n={n}, rate={rate_per_s}")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))
    p_lo, p_hi = _length(prompt_tokens, "prompt_tokens")
    g_lo, g_hi = _length(generate_tokens, "generate_tokens")
    prompts = rng.integers(p_lo, p_hi + 1, size=n)
    generated = rng.integers(g_lo, g_hi + 1, size=n)
    return Requests(arrivals, prompts, generated)


def trace_text(requests: Requests) -> str:
    """The CSV text of a trace: `TRACE_HEADER`, then one line per request (times to the nanosecond)."""
    lines = [TRACE_HEADER] + [f"{a:.9f},{p:d},{g:d}" for a, p, g in
                              zip(requests.arrival_s, requests.prompt_tokens, requests.generate_tokens)]
    return "\n".join(lines) + "\n"


def write_trace(requests: Requests, path: str | Path) -> None:
    """Write `requests` as a CSV trace file (see `trace_text`), all at once."""
    Path(path).write_text(trace_text(requests))


def read_trace(path: str | Path) -> Requests:
    """Read a CSV trace file with the header ``arrival_s,prompt_tokens,generate_tokens``.

    Raises
    ------
    InputError
        If the file is missing, the header differs, or a line is not numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"`serving.trace`: {str(path)!r} does not exist; give a CSV with the header {TRACE_HEADER}")
    text = path.read_text()
    header = text.splitlines()[0].strip() if text.strip() else ""
    if header.replace(" ", "") != TRACE_HEADER:
        raise InputError(f"`serving.trace`: {str(path)!r} must start with the header {TRACE_HEADER!r}, got {header!r}")
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2)
    except ValueError as exc:
        raise InputError(f"`serving.trace`: {str(path)!r} has a line that is not three numbers ({exc})") from None
    if table.shape[0] == 0:
        raise InputError(f"`serving.trace`: {str(path)!r} has no requests")
    lengths = table[:, 1:]
    if np.any(lengths != np.round(lengths)):
        raise InputError(f"`serving.trace`: {str(path)!r}: token counts must be whole numbers")
    return Requests(table[:, 0].copy(), lengths[:, 0].astype(np.int64), lengths[:, 1].astype(np.int64))


def serving_from_mapping(data: Any, base: Path | None = None) -> ServingSpec:
    """Parse and validate the ``serving:`` section of an instance file.

    Parameters
    ----------
    data : dict
        The section (docs/serving.md, "The serving section").
    base : Path, optional
        Folder against which a relative ``trace`` path is resolved.

    Returns
    -------
    ServingSpec

    Raises
    ------
    InputError
        Naming the field and the fix.
    """
    if not isinstance(data, dict):
        raise InputError("`serving`: expected a mapping such as {rate: 2 req/s, requests: 100}")
    try:
        entry = _ServingEntry.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).isdigit() or len(first["loc"]) == 1)
        if first["type"] == "extra_forbidden":
            raise InputError(f"`serving.{where}`: unknown field; known fields are {', '.join(_ServingEntry.model_fields)}") from None
        raise InputError(f"`serving.{where}`: {first['msg']} (got {first.get('input')!r})") from None
    wait = parse_quantity(entry.batch_wait, ("second", "a duration", "50 ms"), field="serving.batch_wait", positive=False)
    common = {"policy": entry.policy, "max_batch": entry.max_batch, "batch_wait_s": wait}
    if entry.arrivals == "trace":
        if entry.trace is None:
            raise InputError("`serving.trace`: `arrivals: trace` needs a trace file path (CSV, see docs/serving.md)")
        path = Path(entry.trace)
        if base is not None and not path.is_absolute():
            path = base / path
        return ServingSpec(read_trace(path), **common)
    if entry.rate is None:
        raise InputError("`serving.rate`: Poisson arrivals need a rate such as '2 req/s' (or use `arrivals: trace`)")
    if entry.trace is not None:
        raise InputError("`serving.trace`: give `arrivals: trace` to read a trace file, or drop `trace`")
    rate = parse_rate(entry.rate)
    requests = generate_trace(entry.requests, rate, entry.prompt_tokens, entry.generate_tokens, entry.seed)
    return ServingSpec(requests, rate_per_s=rate, **common)
