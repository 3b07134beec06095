"""The blocks of a `ModelSpec` as real PyTorch computations, with random weights.

One function per block kind of the cost model (docs/cost-model.md), so that what
is timed is what the model prices:

==================  ==========================================================================
block               what runs (``x`` the hidden state, ``B×T×D``)
==================  ==========================================================================
``embed``           one row of the ``V×D`` table per position
attention group     RMS norm of ``x``; one fused ``D → (r+2)·d`` matrix (its ``r`` query heads,
                    its key and value head); rotary on q and k; the new k, v written into the
                    group's own cache; scaled-dot-product attention of the ``r`` heads over the
                    ``S`` cached positions (causal in the prefill)
output projection   ``H·d → D`` matrix over the groups' outputs, plus the residual
FFN                 RMS norm; ``D → 2F`` (gate and up, fused) with SiLU·up, or ``D → F`` with GELU;
                    ``F → D``; plus the residual
``lm_head``         final RMS norm of the last position, ``D → V`` matrix, arg-max (greedy token)
==================  ==========================================================================

Every attention group is its own call with its own weights and its own KV cache:
the unit the model places, moves and prices (and what a head-level split runs on
each device). Norms, rotary, residuals and activations run for real; the cost model
ignores them, so their time is part of what the fitted per-block overhead absorbs.
GPT-2's learned positions are replaced by rotary (a cost of the same order, also
ignored by the model); biases are left out, as the model leaves them out.

Weights are drawn uniformly with unit-variance activations in mind, from a generator
seeded per block (``seed``, kind, layer, group), so separate processes that build
different blocks of the same model get the same weights as one process would.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from placement.cost.model import ModelSpec
from placement.cost.units import format_bytes
from placement.errors import InputError
from placement.measure._torch import torch_module

__all__ = ["PRECISIONS", "TorchModel", "Holdings", "build_model", "model_bytes", "available_memory_bytes",
           "check_fits", "precision_bits", "embed", "attention", "projection", "ffn", "lm_head", "forward", "decode_step",
           "prefill"]

# precision name → (torch dtype name, bits)
PRECISIONS = {"fp32": ("float32", 32), "bf16": ("bfloat16", 16), "fp16": ("float16", 16)}


def precision_bits(precision: str) -> int:
    """Bits of a precision name; `InputError` listing the known names otherwise."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision][1]


@dataclass(frozen=True)
class Holdings:
    """Which blocks a process builds (None: all of them).

    Attributes
    ----------
    groups : set of (layer, group) or None
    projection, ffn : set of int or None
        Layers.
    embed, lm_head : bool
    """

    groups: frozenset | None = None
    projection: frozenset | None = None
    ffn: frozenset | None = None
    embed: bool = True
    lm_head: bool = True


@dataclass(eq=False)
class TorchModel:
    """The tensors of the blocks one process holds; caches sized for `max_context` positions."""

    spec: ModelSpec
    precision: str
    batch: int
    max_context: int
    groups: dict[tuple[int, int], Any] = field(default_factory=dict)
    k_cache: dict[tuple[int, int], Any] = field(default_factory=dict)
    v_cache: dict[tuple[int, int], Any] = field(default_factory=dict)
    attention_norm: dict[int, Any] = field(default_factory=dict)
    projection: dict[int, Any] = field(default_factory=dict)
    ffn_norm: dict[int, Any] = field(default_factory=dict)
    ffn_in: dict[int, Any] = field(default_factory=dict)
    ffn_out: dict[int, Any] = field(default_factory=dict)
    embed: Any = None
    lm_head: Any = None
    final_norm: Any = None
    cos: Any = None
    sin: Any = None
    kv_rss_bytes: float = 0.0

    @property
    def bits(self) -> int:
        return PRECISIONS[self.precision][1]


def model_bytes(spec: ModelSpec, precision: str = "fp32", *, batch: int = 1, max_context: int = 2048) -> float:
    """Bytes the whole model takes here: every weight (tied embeddings once) and the KV cache at `max_context`."""
    bits = precision_bits(precision)
    heads = 1 if spec.tied_embeddings else 2
    weights = (spec.layers * spec.layer_params + heads * spec.embed_params) * bits / 8
    return weights + spec.kv_bytes_per_token(batch, bits) * max_context


def available_memory_bytes() -> float:
    """``MemAvailable`` of /proc/meminfo (Linux), else physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_fits(spec: ModelSpec, precision: str = "fp32", *, batch: int = 1, max_context: int = 2048,
               headroom: float = 0.7) -> None:
    """`InputError` when the model needs more than `headroom` of the memory available now."""
    need = model_bytes(spec, precision, batch=batch, max_context=max_context)
    have = available_memory_bytes()
    if need > headroom * have:
        raise InputError(
            f"model {spec.name!r} needs {format_bytes(need)} at {precision} (weights and a {max_context}-token "
            f"KV cache); this machine has {format_bytes(have)} available and measurements keep "
            f"{1 - headroom:.0%} free; choose a smaller model or a shorter context"
        )


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as fh:
            import os

            return float(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0.0


def _generator(seed: int, *key: Any):
    torch = torch_module()
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _weight(shape: tuple[int, ...], fan_in: int, dtype, seed: int, *key: Any):
    torch = torch_module()
    bound = math.sqrt(3.0 / fan_in)  # uniform with variance 1/fan_in
    w = torch.empty(shape, dtype=torch.float32).uniform_(-bound, bound, generator=_generator(seed, *key))
    return w if dtype == torch.float32 else w.to(dtype)


def _matrix(out: int, inp: int, dtype, seed: int, *key: Any):
    """A weight matrix ``inp → out`` in the layout that streams fastest for one vector on a CPU.

    Stored ``out×inp`` (rows dotted with the input, `F.linear`) when ``out <= inp``,
    ``inp×out`` (the input's elements scale rows that accumulate, ``x @ W``) when the
    output is wider: on the machine of docs/fidelity.md this is up to twice as fast
    for the wide matrices (``lm_head``, FFN up) and slower for the narrow ones.
    """
    w = _weight((out, inp), inp, dtype, seed, *key)
    return w.t().contiguous() if out > inp else w


def _apply(x, w):
    """``x`` (…, inp) times a matrix stored by `_matrix`."""
    if w.shape[1] > w.shape[0] and w.shape[0] == x.shape[-1]:
        return x @ w
    return torch_module().nn.functional.linear(x, w)


def build_model(spec: ModelSpec, *, precision: str = "fp32", batch: int = 1, max_context: int = 2048, seed: int = 0,
                holds: Holdings | None = None) -> TorchModel:
    """Build the blocks of `spec` that `holds` names (default: all) with random weights.

    Parameters
    ----------
    spec : ModelSpec
    precision : {"fp32", "bf16", "fp16"}
        Weights, caches and activations.
    batch : int
        Sequences decoded together.
    max_context : int
        Positions each KV cache holds.
    seed : int
    holds : Holdings, optional

    Returns
    -------
    TorchModel

    Raises
    ------
    InputError
        On an unknown precision, a model that does not fit in this machine's memory, or layers
        other than dense full-attention GQA ones.
    SolverNotInstalledError
        Without PyTorch.
    """
    if spec.is_moe or spec.attention != "gqa" or spec.layer_types:
        raise InputError(f"model {spec.name!r}: measuring builds dense full-attention GQA layers only; "
                         "MoE, MLA and sliding-window models are not measured (the cost model prices them)")
    torch = torch_module()
    precision_bits(precision)
    holds = holds or Holdings()
    if holds == Holdings():
        check_fits(spec, precision, batch=batch, max_context=max_context)
    dtype = getattr(torch, PRECISIONS[precision][0])
    L, K, D, d, r = spec.layers, spec.kv_heads, spec.hidden, spec.head_dim, spec.group_size
    F, V = spec.ffn_hidden, spec.vocab
    m = TorchModel(spec, precision, batch, max_context)
    groups = holds.groups if holds.groups is not None else {(l, g) for l in range(L) for g in range(K)}
    projections = holds.projection if holds.projection is not None else set(range(L))
    ffns = holds.ffn if holds.ffn is not None else set(range(L))
    ones = torch.ones(D, dtype=dtype)
    for l, g in sorted(groups):
        m.groups[l, g] = _matrix((r + 2) * d, D, dtype, seed, "group", l, g)
        m.attention_norm[l] = ones
    before = _rss_bytes()
    for l, g in sorted(groups):
        cache = _weight((2, batch, max_context, d), 1, dtype, seed, "cache", l, g)
        m.k_cache[l, g], m.v_cache[l, g] = cache[0], cache[1]
    m.kv_rss_bytes = _rss_bytes() - before
    for l in sorted(projections):
        m.projection[l] = _matrix(D, spec.heads * d, dtype, seed, "projection", l)
    for l in sorted(ffns):
        width = 2 * F if spec.gated_ffn else F
        m.ffn_in[l] = _matrix(width, D, dtype, seed, "ffn_in", l)
        m.ffn_out[l] = _matrix(D, F, dtype, seed, "ffn_out", l)
        m.ffn_norm[l] = ones
    # The output head is stored D×V (see `_matrix`); a tied embedding shares that tensor and
    # looks up columns, an untied one is its own V×D table.
    if holds.lm_head:
        m.lm_head = _matrix(V, D, dtype, seed, "embed" if spec.tied_embeddings else "lm_head")
        m.final_norm = ones
    if holds.embed:
        m.embed = m.lm_head if spec.tied_embeddings and holds.lm_head else (
            _matrix(V, D, dtype, seed, "embed") if spec.tied_embeddings else _weight((V, D), 1, dtype, seed, "embed"))
    position = torch.arange(max_context, dtype=torch.float32)[:, None]
    inverse = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.cat([position * inverse] * 2, dim=-1)
    m.cos, m.sin = angles.cos().to(dtype), angles.sin().to(dtype)
    return m


# ----------------------------------------------------------------------------- the blocks
def embed(m: TorchModel, tokens):
    """Hidden states of token ids (B, T) → (B, T, D)."""
    if m.embed.shape[0] == m.spec.hidden and m.spec.tied_embeddings:  # the D×V output head's columns
        return m.embed[:, tokens].permute(1, 2, 0)
    return torch_module().nn.functional.embedding(tokens, m.embed)


def _rotary(x, cos, sin):
    half = x.shape[-1] // 2
    torch = torch_module()
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _group(m: TorchModel, l: int, g: int, h, pos: int):
    torch = torch_module()
    F = torch.nn.functional
    spec = m.spec
    B, T, _ = h.shape
    r, d = spec.group_size, spec.head_dim
    qkv = _apply(h, m.groups[l, g])
    q, k, v = qkv.split((r * d, d, d), dim=-1)
    cos, sin = m.cos[pos:pos + T], m.sin[pos:pos + T]
    q = _rotary(q.view(B, T, r, d), cos[:, None], sin[:, None])
    k = _rotary(k, cos, sin)
    kc, vc = m.k_cache[l, g], m.v_cache[l, g]
    kc[:, pos:pos + T] = k
    vc[:, pos:pos + T] = v
    S = pos + T
    if T == 1:  # the r query heads of one new token attend over S cached positions
        out = F.scaled_dot_product_attention(q.view(B, 1, r, d), kc[:, None, :S], vc[:, None, :S])
        return out.reshape(B, 1, r * d)
    if pos:
        raise ValueError("a prefill of several positions starts at position 0")
    keys, values = kc[:, None, :S].expand(B, r, S, d), vc[:, None, :S].expand(B, r, S, d)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, is_causal=True)
    return out.transpose(1, 2).reshape(B, T, r * d)


def attention(m: TorchModel, l: int, groups, x, pos: int):
    """The given attention groups of layer `l` on hidden states `x` at position `pos`.

    Returns their heads' outputs side by side, (B, T, len(groups)·r·d), in the order given.
    """
    torch = torch_module()
    h = torch.nn.functional.rms_norm(x, (m.spec.hidden,), m.attention_norm[l])
    outs = [_group(m, l, g, h, pos) for g in groups]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


def projection(m: TorchModel, l: int, heads, x):
    """Output projection of layer `l` on the heads' outputs (B, T, H·d), plus the residual `x`."""
    return x + _apply(heads, m.projection[l])


def ffn(m: TorchModel, l: int, x):
    """FFN of layer `l`, with its norm and residual."""
    F = torch_module().nn.functional
    h = F.rms_norm(x, (m.spec.hidden,), m.ffn_norm[l])
    up = _apply(h, m.ffn_in[l])
    if m.spec.gated_ffn:
        gate, up = up.chunk(2, dim=-1)
        up = F.silu(gate) * up
    else:
        up = F.gelu(up)
    return x + _apply(up, m.ffn_out[l])


def lm_head(m: TorchModel, x):
    """Greedy next token (B,) from the last position of `x`."""
    F = torch_module().nn.functional
    h = F.rms_norm(x[:, -1], (m.spec.hidden,), m.final_norm)
    return _apply(h, m.lm_head).argmax(dim=-1)


def forward(m: TorchModel, tokens, pos: int):
    """Every block of a whole model on one device: tokens (B, T) at position `pos` → next tokens (B,)."""
    spec = m.spec
    groups = range(spec.kv_heads)
    x = embed(m, tokens)
    for l in range(spec.layers):
        x = projection(m, l, attention(m, l, groups, x, pos), x)
        x = ffn(m, l, x)
    return lm_head(m, x)


def decode_step(m: TorchModel, tokens, context: int):
    """One decode step at context `context`: the new token at position ``context - 1`` attends over `context` positions."""
    return forward(m, tokens[:, None], context - 1)


def prefill(m: TorchModel, prompt):
    """The prefill of a prompt (B, P): writes P positions of every cache, returns the first token."""
    return forward(m, prompt, 0)
