"""Run a plan: the arguments a runtime needs to execute a layer plan (docs/export.md).

>>> import placement
>>> from placement.export import export_plan
>>> inst = placement.load_instance("edge/llama-3.1-8b-4dev")
>>> plan = placement.solve(inst, method="pipeline").plan
>>> export_plan(inst, plan, "vllm").environment
{'VLLM_PP_LAYER_PARTITION': '13,6,7,6'}
"""

from __future__ import annotations

from placement.errors import InputError
from placement.export import targets
from placement.export.layers import layer_segments, parse_hosts
from placement.export.targets import Export
from placement.instance import Instance
from placement.plan import Plan

__all__ = ["export_plan", "TARGETS", "Export", "parse_hosts"]

# target name -> (function, default model argument); listed once.
TARGETS = {
    "llama.cpp": (targets.llama_cpp, "{model}.gguf"),
    "exo": (targets.exo, "{model}"),
    "prima.cpp": (targets.prima_cpp, "{model}.gguf"),
    "vllm": (targets.vllm, "{model}"),
}


def export_plan(instance: Instance, plan: Plan, target: str, *, hosts: dict[str, str] | None = None,
                model_path: str | None = None, interval: int | None = None) -> Export:
    """The commands, environment and files that run `plan` on the runtime `target`.

    Parameters
    ----------
    instance : Instance
        For layer counts and device names.
    plan : Plan
        A layer plan: every layer's blocks on one device.
    target : {"llama.cpp", "exo", "prima.cpp", "vllm"}
    hosts : dict of str to str, optional
        Device → address (``host`` or ``host:port``); default each device's name.
    model_path : str, optional
        The model file or id the runtime loads; default from the model's name.
    interval : int, optional
        Which interval of a plan that re-places blocks.

    Returns
    -------
    Export

    Raises
    ------
    InputError
        On an unknown target.
    PlanError
        When the runtime cannot express the plan (a head-level or tensor-parallel
        layer, a device with two runs of layers), naming the layer and what to do.
    """
    if target not in TARGETS:
        raise InputError(f"unknown export target {target!r}; targets are {', '.join(TARGETS)}")
    function, default_model = TARGETS[target]
    segments = layer_segments(instance, plan, target, interval)
    placement = plan.placement(interval or 0)
    ends = (plan.devices[placement.embed], plan.devices[placement.lm_head])
    addresses = {name: name for name in instance.cluster.names} | (hosts or {})
    return function(instance, segments, addresses, ends, model_path or default_model.format(model=instance.model.name))
