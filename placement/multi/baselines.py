"""Placing each model on its own, under a memory budget: the two baselines and the joint pipeline DP.

Every model's layer plan here comes from the single-model ``pipeline-dp``
(`placement.solvers.baselines.solve_pipeline_dp`, exact over contiguous layer ranges
and device orders) run on a copy of the cluster whose usable memory per device is a
*budget*: the device's whole usable memory, a share of it, or nothing (a device the
model may not use). The three joint starting points:

- `sequential`: each model on the whole cluster with its best layer pipeline, the
  models one after another (makespan = the sum; ``weighted``: shortest weighted time first);
- `disjoint`: one device subset per model, every model on its own subset at the same
  time; the best split by enumeration of every assignment of devices to models for up
  to ``max_exact_devices`` devices, greedily beyond;
- `budget_splits`: every model on every device with a share of each device's memory
  (proportional to the models' resident bytes, or equal), all at the same time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from placement.cost.hardware import Cluster
from placement.cost.tables import usable_bytes
from placement.instance import Instance
from placement.multi.chains import ChainTables, layer_devices, layer_plan
from placement.multi.evaluate import JointPlan
from placement.multi.instance import MultiInstance

__all__ = ["with_usable_bytes", "Budgeted", "sequential_plan", "disjoint_plan", "budget_split_plans"]

_NOTHING_BYTES = 1.0  # the usable memory of a device a model may not use: no block fits in one byte


def with_usable_bytes(instance: Instance, budget_bytes: np.ndarray) -> Instance:
    """`instance` with each device's usable memory lowered to `budget_bytes` where that is lower.

    Parameters
    ----------
    instance : Instance
    budget_bytes : ndarray, shape (N,)
        Bytes the model may use on each device.

    Returns
    -------
    Instance
        The same model, workload and links, the reservations grown to match (a budget
        below one byte counts as one: a `Device` needs a reservation below its memory,
        and one byte holds no block).
    """
    devices = tuple(
        d if b >= d.usable_bytes else replace(d, reserved_bytes=d.memory_bytes - max(b, _NOTHING_BYTES))
        for d, b in zip(instance.devices, budget_bytes)
    )
    c = instance.cluster
    return replace(instance, cluster=Cluster(devices=devices, links=c.links, network=c.network, switches=c.switches,
                                             routing=c.routing))


@dataclass
class Budgeted:
    """Best layer pipeline of each model under a memory budget, each budget solved once per joint solve.

    Attributes
    ----------
    multi : MultiInstance
    tables : tuple of ChainTables
    calls : int
        Single-model DPs run so far.
    """

    multi: MultiInstance
    tables: tuple[ChainTables, ...]
    calls: int = 0
    _seen: dict = field(default_factory=dict, repr=False)

    def best(self, m: int, budget_bytes: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Model `m`'s best layer devices (L,) and its total alone, seconds, within `budget_bytes` (N,).

        Returns ``(None, inf)`` when no layer pipeline fits the budget.
        """
        from placement.solvers.baselines import solve_pipeline_dp

        key = (m, np.asarray(budget_bytes, dtype=float).tobytes())
        if key not in self._seen:
            self.calls += 1
            instance = self.multi.instances[m]
            result = solve_pipeline_dp(with_usable_bytes(instance, budget_bytes))
            if result.status != "feasible":
                self._seen[key] = (None, np.inf)
            else:
                self._seen[key] = (layer_devices(instance, result.plan)[0], float(result.objective))
        return self._seen[key]

    def on_devices(self, m: int, mask: int) -> tuple[np.ndarray | None, float]:
        """`best` with the whole usable memory of the devices in bitmask `mask`, nothing elsewhere."""
        limits = usable_bytes(self.multi.instances[0])
        chosen = np.array([mask >> n & 1 for n in range(len(limits))], dtype=bool)
        return self.best(m, np.where(chosen, limits, 0.0))

    def joint(self, devices: list[np.ndarray], schedule: str, method: str, order: tuple[int, ...] = ()) -> JointPlan:
        """A joint plan of the layer devices of every model."""
        plans = tuple(layer_plan(inst, d, method) for inst, d in zip(self.multi.instances, devices))
        return JointPlan(plans, schedule, order, method)


def _proxy(multi: MultiInstance, alone: np.ndarray) -> float:
    """The objective the models would reach if none waited for another: for choosing among splits."""
    return float(alone.max() if multi.objective == "makespan" else multi.weights @ alone)


def sequential_plan(b: Budgeted) -> JointPlan | None:
    """Every model alone on the whole cluster, one after another; None when one fits nowhere.

    Parameters
    ----------
    b : Budgeted

    Returns
    -------
    JointPlan or None
        ``sequential``; ``weighted``: in order of total over weight (Smith's rule, optimal for a sequence).
    """
    limits = usable_bytes(b.multi.instances[0])
    best = [b.best(m, limits) for m in range(b.multi.n_models)]
    if any(d is None for d, _ in best):
        return None
    alone = np.array([t for _, t in best])
    order = tuple(range(b.multi.n_models)) if b.multi.objective == "makespan" else \
        tuple(int(i) for i in np.argsort(alone / b.multi.weights, kind="stable"))
    return b.joint([d for d, _ in best], "sequential", "sequential", order)


def _split_exact(b: Budgeted) -> list[int] | None:
    """The device → model assignment with the best proxy, by enumeration (every model at least one device)."""
    M, N = b.multi.n_models, b.multi.n_devices
    table = np.full((M, 1 << N), np.inf)
    for m in range(M):
        for mask in range(1, 1 << N):
            table[m, mask] = b.on_devices(m, mask)[1]
    best, chosen = np.inf, None
    for labels in itertools.product(range(M), repeat=N):
        masks = [0] * M
        for n, m in enumerate(labels):
            masks[m] |= 1 << n
        value = _proxy(b.multi, table[np.arange(M), masks])
        if value < best:
            best, chosen = value, masks
    return chosen


def _split_greedy(b: Budgeted) -> list[int] | None:
    """Devices fastest first (memory bandwidth), each to the model whose current figure is worst."""
    M = b.multi.n_models
    devices = b.multi.instances[0].devices
    masks, alone = [0] * M, np.full(M, np.inf)
    for n in sorted(range(len(devices)), key=lambda n: (-devices[n].bytes_per_s, n)):
        worst = int(np.argmax(alone * b.multi.weights))  # a model that fits nowhere yet (inf) comes first
        masks[worst] |= 1 << n
        alone[worst] = b.on_devices(worst, masks[worst])[1]
    return masks if np.isfinite(alone).all() else None


def disjoint_plan(b: Budgeted, max_exact_devices: int = 6) -> JointPlan | None:
    """One device subset per model, all models at once; None when no split lets every model fit.

    Parameters
    ----------
    b : Budgeted
    max_exact_devices : int
        Up to this many devices every assignment of devices to models is tried
        (``M^N`` assignments, ``M · (2^N - 1)`` single-model DPs); beyond, greedily.

    Returns
    -------
    JointPlan or None
        ``concurrent``, each model's layers only on its own devices.
    """
    if b.multi.n_models > b.multi.n_devices:
        return None
    exact = b.multi.n_devices <= max_exact_devices
    masks = _split_exact(b) if exact else _split_greedy(b)
    if masks is None:
        return None
    best = [b.on_devices(m, mask) for m, mask in enumerate(masks)]
    if any(d is None for d, _ in best):
        return None
    return b.joint([d for d, _ in best], "concurrent", "disjoint")


def budget_split_plans(b: Budgeted) -> list[JointPlan]:
    """All models on all devices at once, each device's memory split among them (by resident bytes, or equally).

    Parameters
    ----------
    b : Budgeted

    Returns
    -------
    list of JointPlan
        ``concurrent``, one per split under which every model fits.
    """
    M = b.multi.n_models
    limits = usable_bytes(b.multi.instances[0])
    size = np.array([t.layer_bytes.sum() + t.embed_bytes + t.lm_head_bytes for t in b.tables])
    plans = []
    for shares in (size / size.sum(), np.full(M, 1.0 / M)):
        best = [b.best(m, shares[m] * limits) for m in range(M)]
        if all(d is not None for d, _ in best):
            plans.append(b.joint([d for d, _ in best], "concurrent", "pipeline-dp"))
    return plans
