"""Timing real execution: per block, per decode token at several contexts, and the prefill.

Every figure is the median of `repeats` timed runs after one untimed warm-up, with
`time.perf_counter` around a call under `torch.inference_mode` (CPU work is
synchronous, so the call's return is the work's end). Decode steps at context ``S``
write position ``S - 1`` of caches that already hold ``S - 1`` random positions
(what a cache holds after ``S - 1`` tokens, as far as time goes), so any context
can be timed without generating up to it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

from placement.cost.model import ModelSpec
from placement.measure import blocks
from placement.measure._torch import set_threads, torch_module

__all__ = ["median_time", "measure_decode", "measure_prefill", "measure_blocks", "measure_model"]


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` untimed ones, seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_decode(m: blocks.TorchModel, contexts, repeats: int = 5) -> dict[int, float]:
    """Per-token decode latency (embed → every layer → lm_head) at each context, seconds."""
    torch = torch_module()
    token = torch.zeros(m.batch, dtype=torch.long)
    with torch.inference_mode():
        return {int(S): median_time(lambda S=S: blocks.decode_step(m, token, int(S)), repeats) for S in contexts}


def measure_prefill(m: blocks.TorchModel, prompts, repeats: int = 3) -> dict[int, float]:
    """Time to first token of a `P`-token prompt (the whole prefill and the first token), seconds."""
    torch = torch_module()
    with torch.inference_mode():
        return {int(P): median_time(lambda P=P: blocks.prefill(m, torch.zeros(m.batch, int(P), dtype=torch.long)), repeats)
                for P in prompts}


def measure_blocks(m: blocks.TorchModel, contexts, repeats: int = 20) -> list[dict[str, Any]]:
    """Decode time of each block kind of layer 0 (and embed, lm_head) at each context, seconds.

    An attention group's figure is the time of all ``K`` groups of the layer (one call
    each, with the layer's norm) divided by ``K``: the model charges ``K`` group blocks
    per layer. Projection and FFN include their residual (and the FFN its norm).
    """
    torch = torch_module()
    spec = m.spec
    B, D = m.batch, spec.hidden
    x = torch.randn(B, 1, D, dtype=m.embed.dtype if m.embed is not None else torch.float32)
    heads = torch.randn(B, 1, spec.heads * spec.head_dim, dtype=x.dtype)
    token = torch.zeros(B, 1, dtype=torch.long)
    groups = range(spec.kv_heads)
    rows = []
    with torch.inference_mode():
        for S in contexts:
            t = median_time(lambda S=S: blocks.attention(m, 0, groups, x, int(S) - 1), repeats)
            rows.append({"block": "group", "context": int(S), "measured_s": t / spec.kv_heads})
        fixed = {"projection": lambda: blocks.projection(m, 0, heads, x), "ffn": lambda: blocks.ffn(m, 0, x),
                 "embed": lambda: blocks.embed(m, token), "lm_head": lambda: blocks.lm_head(m, x)}
        for name, fn in fixed.items():
            t = median_time(fn, repeats)
            rows += [{"block": name, "context": int(S), "measured_s": t} for S in contexts]
    return rows


def measure_model(spec: ModelSpec, *, precision: str = "fp32", contexts=(128, 512, 2048), prompts=(128,),
                  repeats: int = 5, prefill_repeats: int = 3, block_repeats: int = 20, threads: int | None = 1,
                  seed: int = 0) -> dict[str, Any]:
    """Build `spec` with random weights and time its blocks, its decode tokens and its prefill.

    Returns
    -------
    dict
        ``model``, ``precision``, ``bits``, ``threads``; ``decode`` {context: s},
        ``ttft`` {prompt: s}, ``blocks`` (rows of `measure_blocks`), ``kv_rss_bytes``
        (resident memory the caches took, for ``max_context`` positions) and
        ``max_context``.

    Raises
    ------
    InputError
        On an unknown precision, or a model this machine cannot hold.
    """
    used = set_threads(threads)
    max_context = max([*contexts, *prompts])
    m = blocks.build_model(spec, precision=precision, max_context=max_context, seed=seed)
    result = {
        "model": spec.name, "precision": precision, "bits": m.bits, "threads": used, "max_context": max_context,
        "kv_rss_bytes": m.kv_rss_bytes,
        "blocks": measure_blocks(m, contexts, block_repeats),
        "decode": measure_decode(m, contexts, repeats),
        "ttft": measure_prefill(m, prompts, prefill_repeats),
    }
    del m
    return result
