"""A plan as the runtimes see it: contiguous runs of whole layers on devices, and the devices' addresses.

Every runtime target (llama.cpp RPC, exo, prima.cpp, vLLM) places whole layers: a
layer's attention groups, projection and FFN on one device. `layer_segments` turns a
plan into runs of consecutive layers per device, or says in one line which layer it
cannot express and what to do instead (docs/export.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.errors import InputError, PlanError
from placement.instance import Instance
from placement.plan import Plan
from placement.report.steps import device_arrays

__all__ = ["Segment", "layer_segments", "parse_hosts", "HEAD_LEVEL_HINT"]

HEAD_LEVEL_HINT = ("run head-level plans with placement's own multi-process runner (placement.measure, "
                   "docs/export.md), or solve with a layer-based method such as pipeline or pipeline-dp")


@dataclass(frozen=True)
class Segment:
    """Consecutive whole layers on one device.

    Attributes
    ----------
    device : str
    first, last : int
        Layer indices, inclusive.
    """

    device: str
    first: int
    last: int

    @property
    def layers(self) -> int:
        """How many layers, ``last - first + 1``."""
        return self.last - self.first + 1


def _placement_index(plan: Plan, interval: int | None) -> int:
    if interval is not None:
        if not 0 <= interval < len(plan.intervals):
            raise InputError(f"`--interval` {interval} is out of range; the plan has {len(plan.intervals)} interval(s)")
        return interval
    first = plan.intervals[0]
    for k, p in enumerate(plan.intervals[1:], start=1):
        same = (np.array_equal(p.attention, first.attention) and np.array_equal(p.projection, first.projection)
                and np.array_equal(p.ffn, first.ffn) and p.embed == first.embed and p.lm_head == first.lm_head)
        if not same:
            raise PlanError(f"the plan re-places blocks at interval {k}; runtimes take one placement for the whole "
                            "generation: export one interval with `--interval K`, or solve a static plan")
    return 0


def layer_segments(instance: Instance, plan: Plan, target: str, interval: int | None = None) -> list[Segment]:
    """The plan's layers as runs of whole layers per device, in layer order.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    target : str
        The runtime's name, for messages.
    interval : int, optional
        Which interval's placement; default the only one (an error when intervals differ).

    Returns
    -------
    list of Segment
        Covering layers ``0 … L-1`` in order; a device may appear more than once.

    Raises
    ------
    PlanError
        When a layer's groups, projection or FFN are not all on one device (a
        head-level or tensor-parallel plan), naming the layer and the devices.
    """
    arrays = device_arrays(instance, plan.placement(_placement_index(plan, interval)), plan.devices)
    names = instance.cluster.names
    owners = []
    for l in range(instance.model.layers):
        groups = sorted({names[n] for n in arrays["attention"][l]})
        shares = {kind: [names[n] for n in np.flatnonzero(arrays[kind][l])] for kind in ("projection", "ffn")}
        holders = sorted(set(groups) | set(shares["projection"]) | set(shares["ffn"]))
        if len(holders) > 1:
            what = "attention groups" if len(groups) > 1 else "blocks" if len(shares["ffn"]) == 1 else "FFN"
            raise PlanError(f"{target} places whole layers, but layer {l} splits its {what} over "
                            f"{', '.join(holders)} (a head-level or tensor-parallel plan); {HEAD_LEVEL_HINT}")
        owners.append(holders[0])
    segments: list[Segment] = []
    for l, owner in enumerate(owners):
        if segments and segments[-1].device == owner:
            segments[-1] = Segment(owner, segments[-1].first, l)
        else:
            segments.append(Segment(owner, l, l))
    return segments


def parse_hosts(text: str | None, devices: tuple[str, ...]) -> dict[str, str]:
    """Device addresses from ``"pi-a=192.168.1.10,pi-b=192.168.1.11:50053"``; unnamed devices keep their name.

    Parameters
    ----------
    text : str or None
        Comma-separated ``device=host`` or ``device=host:port`` pairs.
    devices : tuple of str
        The instance's device names.

    Returns
    -------
    dict of str to str
        Device → host (with ``:port`` where given), for every device.

    Raises
    ------
    InputError
        On a pair without ``=`` or a device the instance lacks.

    Examples
    --------
    >>> parse_hosts("a=10.0.0.2:7000", ("a", "b"))
    {'a': '10.0.0.2:7000', 'b': 'b'}
    """
    hosts = {name: name for name in devices}
    for pair in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, host = pair.partition("=")
        if not sep or not host:
            raise InputError(f"`--hosts`: {pair!r} is not DEVICE=HOST[:PORT]; write e.g. pi-a=192.168.1.10")
        if name not in hosts:
            raise InputError(f"`--hosts`: {name!r} is not a device of the instance ({', '.join(devices)})")
        hosts[name] = host
    return hosts
