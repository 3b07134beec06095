"""Cost profiles as data: each profile name maps to the functions that give its costs.

A profile supplies three functions with one signature each:

- ``decode(model, batch, precision, contexts) -> StepCosts``: decode steps at the contexts;
- ``prefill(model, batch, precision, prompt_tokens) -> StepCosts``: the prefill as one step;
- ``memory(model, batch, precision, contexts, prompt_tokens) -> BlockMemory``: resident bytes.

The ``roofline`` decode and prefill also take ``sparsity=``, the instance's DeltaLLM
``attention:`` option, which `placement.cost.tables` passes only when one is set (and
refuses for other profiles; docs/sparsity.md).

The mapping is a literal: adding a profile is one entry here, and no formula module
imports another to dispatch (docs/cost-model.md describes both profiles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from placement.cost.blocks import BlockMemory, StepCosts, decode_costs, prefill_costs, roofline_block_memory
from placement.cost.kafetzis import kafetzis_block_memory, kafetzis_prefill_costs, kafetzis_step_costs

__all__ = ["Profile", "PROFILES"]


@dataclass(frozen=True)
class Profile:
    """The cost functions of one profile (see the module docstring for their signatures)."""

    decode: Callable[..., StepCosts]
    prefill: Callable[..., StepCosts]
    memory: Callable[..., BlockMemory]


PROFILES: dict[str, Profile] = {
    "roofline": Profile(decode=decode_costs, prefill=prefill_costs, memory=roofline_block_memory),
    "kafetzis2025": Profile(decode=kafetzis_step_costs, prefill=kafetzis_prefill_costs, memory=kafetzis_block_memory),
}
