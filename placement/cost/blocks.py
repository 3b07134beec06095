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
(arXiv 2505.02533); see `kafetzis_step_costs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.cost.model import ModelSpec
from placement.cost.precision import Precision

__all__ = ["StepCosts", "decode_costs", "prefill_costs", "block_memory"]


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


def block_memory(instance, precision: Precision, contexts: np.ndarray) -> dict[str, np.ndarray]:
    """Resident bytes of every block at the given contexts.

    Parameters
    ----------
    instance : Instance
        Supplies the model, batch and cost profile.
    precision : Precision
    contexts : ndarray of int, shape (n,)
        Cached positions ``S``.

    Returns
    -------
    dict of str to ndarray
        ``group`` (n, L): one attention group's weights plus its KV cache
        ``2B·d·S·c/8``; ``group_weights`` and ``group_kv`` (n, L) separately;
        ``projection`` and ``ffn`` (n, L): weights; ``embed`` and ``lm_head`` (scalars as
        shape (1,)); ``total`` (n,): the whole model (tied embeddings counted once).
    """
    model = instance.model
    if instance.workload.profile == "kafetzis2025":
        from placement.cost.kafetzis import kafetzis_block_memory

        return kafetzis_block_memory(model, instance.workload.batch, precision, contexts, instance.workload.prompt_tokens)
    B, d = instance.workload.batch, model.head_dim
    S = np.asarray(contexts, dtype=float)[:, None]
    group_weights = np.broadcast_to(model.group_params * precision.attention / 8, (len(S), model.layers))
    group_kv = 2 * B * d * S * precision.kv / 8
    projection = np.broadcast_to(model.projection_params * precision.projection / 8, group_kv.shape)
    ffn = np.broadcast_to(model.ffn_params * precision.ffn / 8, group_kv.shape)
    embed = np.array([model.embed_params * precision.embed / 8])
    lm_head = np.array([model.embed_params * precision.lm_head / 8])
    heads = embed if model.tied_embeddings and precision.embed == precision.lm_head else embed + lm_head
    total = (model.kv_heads * (group_weights + group_kv) + projection + ffn).sum(axis=1) + heads
    return {
        "group": group_weights + group_kv,
        "group_weights": np.array(group_weights),
        "group_kv": group_kv,
        "projection": projection,
        "ffn": ffn,
        "embed": embed,
        "lm_head": lm_head,
        "total": total,
    }
