"""Costs of the placeable blocks: parameters, FLOPs, bytes read, resident memory, bytes sent.

The blocks of layer ``l`` are its ``K`` attention groups (one key/value head with
its ``r = H/K`` query heads), its output projection and its FFN; ``embed`` and
``lm_head`` stand outside the layers. Every function here is pure and vectorized
over the context length ``S``. Formulas (profile ``roofline``, docs/cost-model.md):

========================  ==================  ==============================  ==========================
block                     parameters          FLOPs, one token at context S   bytes read per token
========================  ==================  ==============================  ==========================
attention group           ``D·d·(r+2)``       ``2B·D·d·(r+2) + 4B·r·d·S``     ``params·w/8 + 2B·d·S·c/8``
output projection         ``H·d·D``           ``2B·H·d·D``                    ``params·w/8``
FFN                       ``(3|2)·D·F``       ``2B·params``                   ``params·w/8``
embed                     ``V·D``             0                               ``B·D·w/8``
lm_head                   ``V·D``             ``2B·V·D``                      ``V·D·w/8``
========================  ==================  ==============================  ==========================

An instance's ``attention:`` option (DeltaLLM's temporal sparsity, `DeltaSparsity`)
charges ``1 − s`` of the attention terms for positions outside a local window
(`attended_positions`, `attended_pairs`; docs/sparsity.md).

The ``kafetzis2025`` profile replaces these with the equations of Kafetzis et al.
(arXiv 2505.02533); `placement.cost.profiles` maps each profile name to its functions,
and `placement.cost.tables` turns them into the tables every consumer reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.cost.model import ModelSpec
from placement.cost.precision import Precision
from placement.cost.sparsity import DeltaSparsity

__all__ = ["StepCosts", "BlockMemory", "decode_costs", "prefill_costs", "roofline_block_memory", "cached_positions",
           "causal_pairs", "attended_positions", "attended_pairs", "attend_flops_per_position", "ffn_read_params"]


@dataclass(frozen=True, eq=False)
class StepCosts:
    """Costs of forward steps, one row per step (a decode token, or the whole prefill).

    Per-layer arrays have shape (steps, L); FLOPs in FLOP, sizes in bytes.

    Attributes
    ----------
    group_flops, group_read : ndarray (steps, L)
        One attention group's FLOPs and bytes read from memory.
    projection_flops, projection_read, ffn_flops, ffn_read : ndarray (steps, L)
        The whole block's FLOPs and bytes read (a device with share x does x of each).
    embed_read : ndarray (steps,)
        Bytes the embedding lookup reads.
    lm_head_flops, lm_head_read : ndarray (steps,)
    hidden_bytes : float
        The hidden state sent into and between blocks.
    group_out_bytes : float
        One group's head outputs sent to the projection.
    lm_head_in_bytes : float
        The hidden state sent to ``lm_head`` (one position, also in prefill).
    token_bytes : float
        The sampled token id sent back to the embedding device: ``4B``.
    roofline : bool
        True: a block's time is ``max(FLOPs/peak, bytes/bandwidth)``; False: ``FLOPs/peak``.
    layer_in_bytes : float or ndarray or None
        The hidden state sent to a layer's attention groups; None means `hidden_bytes`.
    sum_gather : bool
        True: head outputs reach the projection one after another whatever the
        network (the three-phase model of ``kafetzis2025``).

    expert_flops, expert_read : ndarray (steps, L) or None
        MoE layers: one routed expert's FLOPs for one token and its weight bytes (0 in dense layers).
    ffn_fixed_flops, ffn_fixed_read : ndarray (steps, L) or None
        The part of an MoE layer's FFN that stays on the FFN device when experts are placed
        elsewhere: the router and the shared experts (the whole FFN in dense layers).
    routed_tokens : float
        Tokens each step sends through the router: ``B`` in decode, ``B·P`` in prefill.

    Transfer sizes are floats, or arrays of shape (steps,) when they change with the context.
    """

    group_flops: np.ndarray
    group_read: np.ndarray
    projection_flops: np.ndarray
    projection_read: np.ndarray
    ffn_flops: np.ndarray
    ffn_read: np.ndarray
    embed_read: np.ndarray
    lm_head_flops: np.ndarray
    lm_head_read: np.ndarray
    hidden_bytes: float | np.ndarray
    group_out_bytes: float | np.ndarray
    lm_head_in_bytes: float | np.ndarray
    token_bytes: float
    roofline: bool = True
    layer_in_bytes: float | np.ndarray | None = None
    sum_gather: bool = False
    expert_flops: np.ndarray | None = None
    expert_read: np.ndarray | None = None
    ffn_fixed_flops: np.ndarray | None = None
    ffn_fixed_read: np.ndarray | None = None
    routed_tokens: float = 1.0

    @property
    def layer_input_bytes(self) -> float | np.ndarray:
        """Bytes sent to a layer's attention groups: `layer_in_bytes`, or `hidden_bytes` when None."""
        return self.hidden_bytes if self.layer_in_bytes is None else self.layer_in_bytes


@dataclass(frozen=True, eq=False)
class BlockMemory:
    """Resident bytes of every block at ``n`` contexts.

    Per-layer arrays have shape (n, L), so that layers of different types can carry
    different figures; bytes throughout.

    Attributes
    ----------
    group_weights, group_kv : ndarray (n, L)
        One attention group's weights, and its KV cache at each context.
    projection, ffn : ndarray (n, L)
        The whole block (a device with share x holds x of it).
    embed, lm_head : ndarray (1,)
        The embedding table and the output head.
    total : ndarray (n,)
        The whole model (tied embeddings counted once).
    groups_per_layer : int
        ``K``: attention groups in a layer.
    expert : ndarray (n, L) or None
        One routed expert's weights in MoE layers (0 in dense ones); `ffn` holds all of them.
    """

    group_weights: np.ndarray
    group_kv: np.ndarray
    projection: np.ndarray
    ffn: np.ndarray
    embed: np.ndarray
    lm_head: np.ndarray
    total: np.ndarray
    groups_per_layer: int = 1
    expert: np.ndarray | None = None

    @property
    def group(self) -> np.ndarray:
        """One attention group's weights plus its KV cache, bytes (n, L)."""
        return self.group_weights + self.group_kv

    @property
    def layer(self) -> np.ndarray:
        """A whole layer (its ``K`` groups, projection and FFN) needs ``layer[:, l]`` bytes: (n, L)."""
        return self.groups_per_layer * self.group + self.projection + self.ffn

    def at(self, index: int) -> "BlockMemory":
        """The figures at context ``index`` only (per-context arrays keep a length-1 first axis)."""
        pick = lambda a: a[index:index + 1] if a.shape[0] > 1 else a  # noqa: E731
        return BlockMemory(pick(self.group_weights), pick(self.group_kv), pick(self.projection), pick(self.ffn),
                           self.embed, self.lm_head, pick(self.total), self.groups_per_layer,
                           None if self.expert is None else pick(self.expert))


def cached_positions(model: ModelSpec, contexts: np.ndarray) -> np.ndarray:
    """Positions each layer's cache holds and a new token attends to at each context: ``min(S, W_l)``, (n, L).

    Parameters
    ----------
    model : ModelSpec
    contexts : ndarray, shape (n,)
        Context lengths ``S``.

    Returns
    -------
    ndarray, shape (n, L)
        Positions (a full-attention layer has ``W = inf``).
    """
    return np.minimum(np.asarray(contexts, dtype=float)[:, None], model.windows[None, :])


def causal_pairs(prompt_tokens: int, windows: np.ndarray) -> np.ndarray:
    """(query, key) pairs causal attention scores over a ``P``-token prompt, per layer (L,).

    Position ``i`` (1-based) attends to ``min(i, W)`` positions, so the sum is
    ``P(P+1)/2`` when ``P ≤ W`` and ``W(W+1)/2 + (P − W)·W`` otherwise.

    Parameters
    ----------
    prompt_tokens : int
        ``P``.
    windows : ndarray, shape (L,)
        ``W`` of each layer (``inf``: full attention).

    Returns
    -------
    ndarray, shape (L,)
    """
    P = float(prompt_tokens)
    W = np.minimum(np.asarray(windows, dtype=float), P)
    return W * (W + 1) / 2 + (P - W) * W


def attended_positions(positions: np.ndarray, sparsity: DeltaSparsity | None) -> np.ndarray:
    """Positions a decode query pays for under DeltaLLM's sparsity: ``min(n, W) + (1 − s)·max(n − W, 0)``.

    The ``W`` most recent of the ``n`` positions a query sees are attended in full; the
    delta approximation skips a fraction ``s`` of the work on the older ones.

    Parameters
    ----------
    positions : ndarray
        ``n``: positions the query sees (`cached_positions`, already within a sliding window).
    sparsity : DeltaSparsity or None
        None, or an option whose `stages` leave out decode: every position counts in full.

    Returns
    -------
    ndarray
        Effective positions, the shape of `positions`; FLOPs and KV bytes read scale with them.
    """
    n = np.asarray(positions, dtype=float)
    if sparsity is None or not sparsity.applies_to("decode"):
        return n
    inside = np.minimum(n, sparsity.local_window_tokens)
    return inside + (1 - sparsity.delta_sparsity) * (n - inside)


def attended_pairs(prompt_tokens: int, windows: np.ndarray, sparsity: DeltaSparsity | None) -> np.ndarray:
    """Causal (query, key) pairs of the prefill a layer pays for under DeltaLLM's sparsity, (L,).

    Query ``i`` sees ``min(i, W_l)`` positions and attends the ``min(i, W_l, w)`` most
    recent of them in full (``w`` the local window), so the pairs inside the window are
    ``causal_pairs(P, min(W_l, w))`` and the rest are outside; with full attention and
    ``P > w`` those number ``(P − w)(P − w + 1)/2``. Pairs outside count ``1 − s``.

    Parameters
    ----------
    prompt_tokens : int
        ``P``.
    windows : ndarray, shape (L,)
        Each layer's sliding window ``W_l`` (``inf``: full attention).
    sparsity : DeltaSparsity or None
        None, or an option whose `stages` leave out prefill: `causal_pairs`.

    Returns
    -------
    ndarray, shape (L,)
    """
    every = causal_pairs(prompt_tokens, windows)
    if sparsity is None or not sparsity.applies_to("prefill"):
        return every
    inside = causal_pairs(prompt_tokens, np.minimum(np.asarray(windows, dtype=float), sparsity.local_window_tokens))
    return inside + (1 - sparsity.delta_sparsity) * (every - inside)


def attend_flops_per_position(model: ModelSpec, phase: str) -> float:
    """FLOPs one query spends on one cached position in one attention group.

    GQA: ``4·r·d`` (scores ``2rd``, weighted values ``2rd``). MLA decode reads the
    latent directly (the up-projections absorbed into the query and the output):
    ``2H·(kv_rank + rope)`` for scores plus ``2H·kv_rank`` for values. MLA prefill
    decompresses keys and values (their up-projection is part of the linear FLOPs):
    ``2H·d`` for scores plus ``2H·v_head_dim`` for values.

    Parameters
    ----------
    model : ModelSpec
    phase : {"decode", "prefill"}

    Returns
    -------
    float
        FLOP per (query, position) pair, batch 1.
    """
    if model.attention != "mla":
        return 4.0 * model.group_size * model.head_dim
    H = model.heads
    if phase == "decode":
        return 2.0 * H * (2 * model.kv_lora_rank + model.qk_rope_head_dim)
    return 2.0 * H * (model.head_dim + model.v_head_dim)


def ffn_read_params(model: ModelSpec, tokens: float) -> np.ndarray:
    """Expected FFN parameters read from memory when ``tokens`` tokens pass each layer, (L,).

    A dense FFN reads all its weights. An MoE layer reads its router and shared
    experts, and every routed expert at least one token chose: under uniform top-k
    routing of independent tokens an expert is missed by one token with probability
    ``1 − k/E``, so ``E·(1 − (1 − k/E)^tokens)`` experts are read on average (``k`` at one token).

    Parameters
    ----------
    model : ModelSpec
    tokens : float
        Tokens through the layer in the step (``B`` in decode, ``B·P`` in prefill).

    Returns
    -------
    ndarray, shape (L,)
        Parameters.
    """
    if not model.is_moe:
        return model.ffn_params_per_layer.astype(float)
    E, k = model.experts, model.experts_per_token
    touched = E * (1 - (1 - k / E) ** tokens)
    moe = model.moe_fixed_params + touched * model.expert_params
    return np.where(model.moe_layers, moe, model.ffn_params)


def _expert_terms(model: ModelSpec, tokens: float, w_ffn: np.ndarray, steps: int) -> dict[str, np.ndarray | float]:
    """The StepCosts fields of routed experts for steps routing ``tokens`` tokens each (zeros in dense layers)."""
    moe = model.moe_layers
    expert = np.where(moe, model.expert_params, 0)
    fixed_flops = np.where(moe, 2.0 * tokens * model.moe_fixed_params, 2.0 * tokens * model.ffn_params)
    fixed_read = np.where(moe, model.moe_fixed_params, model.ffn_params) * w_ffn / 8
    ones = np.ones((steps, 1))
    return {"expert_flops": ones * (2.0 * expert), "expert_read": ones * (expert * w_ffn / 8),
            "ffn_fixed_flops": ones * fixed_flops, "ffn_fixed_read": ones * fixed_read, "routed_tokens": float(tokens)}


def decode_costs(model: ModelSpec, batch: int, precision: Precision, contexts: np.ndarray,
                 sparsity: DeltaSparsity | None = None) -> StepCosts:
    """Costs of decode steps at the given contexts (profile ``roofline``).

    A new token attends to ``min(S, W_l)`` positions in layer ``l`` and reads that
    many cached positions (`cached_positions`), or DeltaLLM's share of them
    (`attended_positions`); an MoE layer computes its top-k experts and reads the
    experts its tokens chose (`ffn_read_params`).

    Parameters
    ----------
    model : ModelSpec
    batch : int
        ``B``.
    precision : Precision
        Bits of every block.
    contexts : ndarray of int, shape (steps,)
        Context length ``S`` of each step (the new token attends over ``S`` positions).
    sparsity : DeltaSparsity, optional
        The instance's ``attention:`` option (docs/sparsity.md); the cache held is unchanged.

    Returns
    -------
    StepCosts
    """
    B, D = batch, model.hidden
    S = attended_positions(cached_positions(model, contexts), sparsity)
    steps = len(S)
    ones = np.ones((steps, 1))
    w_att, w_proj, w_ffn, c = precision.attention, precision.projection, precision.ffn, precision.kv
    ffn_active = model.ffn_active_params_per_layer
    return StepCosts(
        group_flops=2 * B * model.group_params + B * attend_flops_per_position(model, "decode") * S + 0 * w_att,
        group_read=model.group_params * w_att / 8 + B * model.cache_values_per_token * S * c / 8,
        projection_flops=ones * (2 * B * model.projection_params) + 0 * w_proj,
        projection_read=ones * (model.projection_params * w_proj / 8),
        ffn_flops=ones * (2 * B * ffn_active) + 0 * w_ffn,
        ffn_read=ones * (ffn_read_params(model, B) * w_ffn / 8),
        embed_read=np.full(steps, B * D * precision.embed / 8),
        lm_head_flops=np.full(steps, 2.0 * B * model.lm_head_params),
        lm_head_read=np.full(steps, model.lm_head_params * precision.lm_head / 8),
        hidden_bytes=B * D * precision.activation / 8,
        group_out_bytes=B * model.group_size * model.value_dim * precision.activation / 8,
        lm_head_in_bytes=B * D * precision.activation / 8,
        token_bytes=4.0 * B,
        **_expert_terms(model, B, w_ffn, steps),
    )


def prefill_costs(model: ModelSpec, batch: int, precision: Precision, prompt_tokens: int,
                  sparsity: DeltaSparsity | None = None) -> StepCosts:
    """Costs of the prefill of a ``P``-token prompt, as one step (profile ``roofline``).

    Linear FLOPs are ×P; weights are read once; each group writes the positions its
    cache keeps once (``B·min(P, W)·v·c/8``, ``v`` values per position); causal
    attention costs ``B·f·pairs`` FLOPs with ``f`` from `attend_flops_per_position`
    and ``pairs`` from `causal_pairs` (``2B·r·d·P(P+1)`` for full GQA attention), or
    DeltaLLM's share of them (`attended_pairs`; the cache written is unchanged);
    activation transfers carry P positions; ``lm_head`` runs for the last position only.

    Parameters
    ----------
    model : ModelSpec
    batch : int
        ``B``.
    precision : Precision
    prompt_tokens : int
        ``P``.
    sparsity : DeltaSparsity, optional
        The instance's ``attention:`` option (docs/sparsity.md).

    Returns
    -------
    StepCosts
        With one step.
    """
    B, D, P = batch, model.hidden, prompt_tokens
    w_att, w_proj, w_ffn, c = (precision.attention[None], precision.projection[None], precision.ffn[None], precision.kv[None])
    pairs = attended_pairs(P, model.windows, sparsity)[None]
    kept = cached_positions(model, np.array([P]))
    ffn_active = model.ffn_active_params_per_layer[None]
    return StepCosts(
        group_flops=P * 2 * B * model.group_params + B * attend_flops_per_position(model, "prefill") * pairs + 0 * w_att,
        group_read=model.group_params * w_att / 8 + B * model.cache_values_per_token * kept * c / 8,
        projection_flops=P * 2.0 * B * model.projection_params + 0 * w_proj,
        projection_read=model.projection_params * w_proj / 8,
        ffn_flops=P * 2.0 * B * ffn_active + 0 * w_ffn,
        ffn_read=ffn_read_params(model, B * P)[None] * w_ffn / 8,
        embed_read=np.array([P * B * D * precision.embed / 8]),
        lm_head_flops=np.array([2.0 * B * model.lm_head_params]),
        lm_head_read=np.array([model.lm_head_params * precision.lm_head / 8]),
        hidden_bytes=P * B * D * precision.activation / 8,
        group_out_bytes=P * B * model.group_size * model.value_dim * precision.activation / 8,
        lm_head_in_bytes=B * D * precision.activation / 8,
        token_bytes=4.0 * B,
        **_expert_terms(model, B * P, precision.ffn, 1),
    )


def roofline_block_memory(model: ModelSpec, batch: int, precision: Precision, contexts: np.ndarray,
                          prompt_tokens: int = 0) -> BlockMemory:
    """Resident bytes of every block at the given contexts (profile ``roofline``).

    Parameters
    ----------
    model : ModelSpec
    batch : int
        ``B``.
    precision : Precision
    contexts : ndarray of int, shape (n,)
        Cached positions ``S``.
    prompt_tokens : int
        Not used by this profile (its cache holds every position); the profiles share one signature.

    Returns
    -------
    BlockMemory
        Group weights ``group_params·w/8`` and KV cache ``B·min(S, W_l)·v·c/8`` (``v = 2d``,
        or MLA's ``kv_rank + rope``); projection and FFN weights (every expert of an MoE
        layer); embed and lm_head tables; the total with tied embeddings counted once.
    """
    S = cached_positions(model, contexts)
    group_weights = np.broadcast_to(model.group_params * precision.attention / 8, S.shape)
    group_kv = batch * model.cache_values_per_token * S * precision.kv / 8
    projection = np.broadcast_to(model.projection_params * precision.projection / 8, S.shape)
    ffn = np.broadcast_to(model.ffn_params_per_layer * precision.ffn / 8, S.shape)
    embed = np.array([model.embed_params * precision.embed / 8])
    lm_head = np.array([model.lm_head_params * precision.lm_head / 8])
    heads = embed if model.tied_embeddings and precision.embed == precision.lm_head else embed + lm_head
    total = (model.kv_heads * (group_weights + group_kv) + projection + ffn).sum(axis=1) + heads
    expert = np.broadcast_to(np.where(model.moe_layers, model.expert_params, 0) * precision.ffn / 8, S.shape)
    return BlockMemory(np.array(group_weights), group_kv, projection, ffn, embed, lm_head, total, model.kv_heads,
                       np.array(expert))
