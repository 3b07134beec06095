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

The ``kafetzis2025`` profile replaces these with the equations of Kafetzis et al.
(arXiv 2505.02533); `placement.cost.profiles` maps each profile name to its functions,
and `placement.cost.tables` turns them into the tables every consumer reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.cost.model import ModelSpec
from placement.cost.precision import Precision

__all__ = ["StepCosts", "BlockMemory", "decode_costs", "prefill_costs", "roofline_block_memory"]


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
    """

    group_weights: np.ndarray
    group_kv: np.ndarray
    projection: np.ndarray
    ffn: np.ndarray
    embed: np.ndarray
    lm_head: np.ndarray
    total: np.ndarray
    groups_per_layer: int = 1

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
                           self.embed, self.lm_head, pick(self.total), self.groups_per_layer)


def decode_costs(model: ModelSpec, batch: int, precision: Precision, contexts: np.ndarray) -> StepCosts:
    """Costs of decode steps at the given contexts (profile ``roofline``).

    Parameters
    ----------
    model : ModelSpec
    batch : int
        ``B``.
    precision : Precision
        Bits of every block.
    contexts : ndarray of int, shape (steps,)
        Context length ``S`` of each step (the new token attends over ``S`` positions).

    Returns
    -------
    StepCosts
    """
    B, D, d, r = batch, model.hidden, model.head_dim, model.group_size
    S = np.asarray(contexts, dtype=float)[:, None]
    steps = len(S)
    ones = np.ones((steps, 1))
    w_att, w_proj, w_ffn, c = precision.attention, precision.projection, precision.ffn, precision.kv
    return StepCosts(
        group_flops=2 * B * model.group_params + 4 * B * r * d * S + 0 * w_att,
        group_read=model.group_params * w_att / 8 + 2 * B * d * S * c / 8,
        projection_flops=ones * (2 * B * model.projection_params) + 0 * w_proj,
        projection_read=ones * (model.projection_params * w_proj / 8),
        ffn_flops=ones * (2 * B * model.ffn_params) + 0 * w_ffn,
        ffn_read=ones * (model.ffn_params * w_ffn / 8),
        embed_read=np.full(steps, B * D * precision.embed / 8),
        lm_head_flops=np.full(steps, 2.0 * B * model.embed_params),
        lm_head_read=np.full(steps, model.embed_params * precision.lm_head / 8),
        hidden_bytes=B * D * precision.activation / 8,
        group_out_bytes=B * r * d * precision.activation / 8,
        lm_head_in_bytes=B * D * precision.activation / 8,
        token_bytes=4.0 * B,
    )


def prefill_costs(model: ModelSpec, batch: int, precision: Precision, prompt_tokens: int) -> StepCosts:
    """Costs of the prefill of a ``P``-token prompt, as one step (profile ``roofline``).

    Linear FLOPs are ×P; weights are read once; each group writes its KV cache once
    (``2B·d·P·c/8``); causal attention costs ``2B·r·d·P(P+1)`` FLOPs; activation
    transfers carry P positions; ``lm_head`` runs for the last position only.

    Parameters
    ----------
    model : ModelSpec
    batch : int
        ``B``.
    precision : Precision
    prompt_tokens : int
        ``P``.

    Returns
    -------
    StepCosts
        With one step.
    """
    B, D, d, r, P = batch, model.hidden, model.head_dim, model.group_size, prompt_tokens
    w_att, w_proj, w_ffn, c = (precision.attention[None], precision.projection[None], precision.ffn[None], precision.kv[None])
    return StepCosts(
        group_flops=P * 2 * B * model.group_params + 2 * B * r * d * P * (P + 1) + 0 * w_att,
        group_read=model.group_params * w_att / 8 + 2 * B * d * P * c / 8,
        projection_flops=P * 2.0 * B * model.projection_params + 0 * w_proj,
        projection_read=model.projection_params * w_proj / 8,
        ffn_flops=P * 2.0 * B * model.ffn_params + 0 * w_ffn,
        ffn_read=model.ffn_params * w_ffn / 8,
        embed_read=np.array([P * B * D * precision.embed / 8]),
        lm_head_flops=np.array([2.0 * B * model.embed_params]),
        lm_head_read=np.array([model.embed_params * precision.lm_head / 8]),
        hidden_bytes=P * B * D * precision.activation / 8,
        group_out_bytes=P * B * r * d * precision.activation / 8,
        lm_head_in_bytes=B * D * precision.activation / 8,
        token_bytes=4.0 * B,
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
        Group weights ``D·d·(r+2)·w/8`` and KV cache ``2B·d·S·c/8``; projection and FFN
        weights; embed and lm_head tables; the total with tied embeddings counted once.
    """
    B, d = batch, model.head_dim
    S = np.asarray(contexts, dtype=float)[:, None]
    group_weights = np.broadcast_to(model.group_params * precision.attention / 8, (len(S), model.layers))
    group_kv = 2 * B * d * S * precision.kv / 8
    projection = np.broadcast_to(model.projection_params * precision.projection / 8, group_kv.shape)
    ffn = np.broadcast_to(model.ffn_params * precision.ffn / 8, group_kv.shape)
    embed = np.array([model.embed_params * precision.embed / 8])
    lm_head = np.array([model.embed_params * precision.lm_head / 8])
    heads = embed if model.tied_embeddings and precision.embed == precision.lm_head else embed + lm_head
    total = (model.kv_heads * (group_weights + group_kv) + projection + ffn).sum(axis=1) + heads
    return BlockMemory(np.array(group_weights), group_kv, projection, ffn, embed, lm_head, total, model.kv_heads)
