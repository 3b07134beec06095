"""The multi-model evaluator: memory shared per device, a simulated concurrent schedule, its lower bound.

A `JointPlan` gives every model of a `MultiInstance` a plan — any plan the
single-model evaluator accepts but sliding windows and a client: a static layer plan
(`placement.multi.chains`, each step a chain), or any other (`placement.multi.dags`:
several intervals with migration, head-level groups, split blocks, placed experts,
each step a DAG) — and says how the models run:

- ``concurrent``: all models start at time 0 and run together. Every device serves one
  task at a time, so work of different models on one device serializes, and so do all
  transfers on a ``shared`` network (one medium); on a ``switched`` network a directed
  link carries one model's transfers at a time. The makespan is the event
  simulation's (`placement.multi.schedule.simulate_dags`): an achievable schedule with
  a fixed priority (the order of the models). Memory: every model's blocks stay
  resident together, so a device must hold the sum of every model's bytes at its
  largest context.
- ``sequential``: the models run one after another in ``order``, each alone on the
  whole cluster; each model's memory is judged alone, and the makespan is the sum of
  the models' totals.

Beside the makespan the report gives the resource lower bound of a concurrent plan,
``max(each model alone, each device's busy time, the shared medium's busy time)``,
which no schedule of that plan can beat (docs/parallel.md, "Lower bounds").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placement.cost.tables import over_memory, usable_bytes
from placement.evaluate import evaluate
from placement.cost.units import format_bytes
from placement.errors import PlanError
from placement.multi.chains import NETWORK, ChainTables, chain_links, chain_tables, layer_devices, needed_bytes
from placement.multi.dags import Dag, chain_dags, model_dags
from placement.multi.instance import MultiInstance
from placement.multi.schedule import simulate_dags
from placement.plan import Plan

__all__ = ["JointPlan", "JointReport", "SharedViolation", "evaluate_joint", "model_tables", "SCHEDULES",
           "JOINT_PLAN_FORMAT"]

SCHEDULES = ("concurrent", "sequential")
JOINT_PLAN_FORMAT = "placement-joint-plan/1"


@dataclass(frozen=True, eq=False)
class JointPlan:
    """One plan per model (any the joint evaluator accepts) and how the models run together.

    Attributes
    ----------
    plans : tuple of Plan
        One per model of the `MultiInstance`, in its order.
    schedule : {"concurrent", "sequential"}
    order : tuple of int
        ``sequential``: the order in which the models run (indices); ignored otherwise.
    method : str
        The joint method that made the plan.
    """

    plans: tuple[Plan, ...]
    schedule: str = "concurrent"
    order: tuple[int, ...] = ()
    method: str = ""

    def to_dict(self, names: tuple[str, ...]) -> dict[str, Any]:
        """JSON-ready: the format, schedule, order (by name) and every model's plan (docs/parallel.md)."""
        order = self.order or tuple(range(len(self.plans)))
        return {"format": JOINT_PLAN_FORMAT, "method": self.method, "schedule": self.schedule,
                "order": [names[i] for i in order], "plans": {n: p.to_dict() for n, p in zip(names, self.plans)}}

    @classmethod
    def from_dict(cls, data: Any, multi: MultiInstance) -> "JointPlan":
        """Read a joint plan (as `to_dict` writes it) for the models of `multi`.

        Parameters
        ----------
        data : dict
            Parsed JSON.
        multi : MultiInstance

        Returns
        -------
        JointPlan

        Raises
        ------
        PlanError
            On a wrong format, a model missing or unknown, an order that is not a permutation of the names.
        """
        if not isinstance(data, dict) or data.get("format") != JOINT_PLAN_FORMAT:
            raise PlanError(f"a joint plan is a mapping with `format: {JOINT_PLAN_FORMAT}` (as `placement multi-solve "
                            "--out` writes it)")
        plans = data.get("plans")
        if not isinstance(plans, dict) or set(plans) != set(multi.names):
            given = sorted(plans) if isinstance(plans, dict) else plans
            raise PlanError(f"joint plan `plans` must give one plan for each of {', '.join(multi.names)}, got {given}")
        order = data.get("order") or list(multi.names)
        if not isinstance(order, list) or sorted(map(str, order)) != sorted(multi.names):
            raise PlanError(f"joint plan `order` must list every model once ({', '.join(multi.names)}), got {order}")
        return cls(
            plans=tuple(Plan.from_dict(plans[n], kv_heads=inst.model.kv_heads) for n, inst in zip(multi.names, multi.instances)),
            schedule=str(data.get("schedule", "concurrent")), order=tuple(multi.names.index(n) for n in order),
            method=str(data.get("method", "")),
        )


@dataclass(frozen=True)
class SharedViolation:
    """A device whose memory the models together exceed."""

    device: str
    needed_bytes: float
    available_bytes: float
    by_model: dict[str, float]

    def __str__(self) -> str:
        parts = ", ".join(f"{name}: {format_bytes(b)}" for name, b in self.by_model.items() if b > 0)
        return (f"device {self.device!r} needs {format_bytes(self.needed_bytes)} ({parts}), has "
                f"{format_bytes(self.available_bytes)} ({format_bytes(self.needed_bytes - self.available_bytes)} over)")


@dataclass(frozen=True, eq=False)
class JointReport:
    """What the multi-model evaluator found for a joint plan.

    Attributes
    ----------
    schedule : str
    makespan_s : float
        When the last model finishes, seconds (simulated, or the sequential sum).
    finish_s : ndarray, shape (M,)
        When each model finishes, seconds.
    alone_s : ndarray, shape (M,)
        Each model's total with the cluster to itself (the single-model evaluator's figure), seconds.
    weighted_s : float
        ``Σ weight_m · finish_m``, seconds.
    lower_bound_s : float
        ``concurrent``: ``max(alone, device busy, medium busy)``; ``sequential``: the makespan itself.
    busy_s : ndarray, shape (N,)
        Seconds each device computes, over every model.
    medium_busy_s : float
        Seconds of transfers on the shared medium (0 on a switched network).
    needed_bytes : ndarray, shape (M, N)
        Bytes each model keeps on each device at its largest context.
    limit_bytes : ndarray, shape (N,)
    violations : list of SharedViolation
    devices, names : tuple of str
    """

    schedule: str
    makespan_s: float
    finish_s: np.ndarray
    alone_s: np.ndarray
    weighted_s: float
    lower_bound_s: float
    busy_s: np.ndarray
    medium_busy_s: float
    needed_bytes: np.ndarray
    limit_bytes: np.ndarray
    violations: list[SharedViolation] = field(default_factory=list)
    devices: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def feasible(self) -> bool:
        """True when no device runs out of memory."""
        return not self.violations

    def objective(self, name: str) -> float:
        """The figure an objective minimises: ``makespan`` → `makespan_s`, ``weighted`` → `weighted_s`."""
        return self.makespan_s if name == "makespan" else self.weighted_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "schedule": self.schedule, "feasible": self.feasible, "makespan_s": self.makespan_s,
            "weighted_s": self.weighted_s, "lower_bound_s": self.lower_bound_s,
            "finish_s": dict(zip(self.names, self.finish_s.tolist())),
            "alone_s": dict(zip(self.names, self.alone_s.tolist())),
            "busy_s": dict(zip(self.devices, self.busy_s.tolist())), "medium_busy_s": self.medium_busy_s,
            "needed_bytes": {n: dict(zip(self.devices, row.tolist())) for n, row in zip(self.names, self.needed_bytes)},
            "limit_bytes": dict(zip(self.devices, self.limit_bytes.tolist())),
            "violations": [str(v) for v in self.violations],
        }


def model_tables(multi: MultiInstance) -> tuple[ChainTables, ...]:
    """`chain_tables` of every model: build once and pass to `evaluate_joint` when judging many plans.

    Parameters
    ----------
    multi : MultiInstance

    Returns
    -------
    tuple of ChainTables
    """
    return tuple(chain_tables(inst) for inst in multi.instances)


def _order(joint: JointPlan, n: int) -> tuple[int, ...]:
    order = joint.order or tuple(range(n))
    if sorted(order) != list(range(n)):
        raise PlanError(f"joint plan `order` must list every model once (0 … {n - 1}), got {list(order)}")
    return tuple(order)


def _violations(multi: MultiInstance, needed: np.ndarray, limits: np.ndarray, joint: bool) -> list[SharedViolation]:
    """Devices over memory: the models' sum (concurrent) or any model alone (sequential)."""
    names, devices = multi.names, multi.cluster.names
    if joint:
        total = needed.sum(axis=0)
        return [SharedViolation(devices[n], float(total[n]), float(limits[n]), dict(zip(names, needed[:, n].tolist())))
                for n in np.flatnonzero(over_memory(total, limits))]
    return [SharedViolation(devices[n], float(needed[m, n]), float(limits[n]), {names[m]: float(needed[m, n])})
            for m, n in zip(*np.nonzero(over_memory(needed, limits[None, :])))]


def _model_tasks(inst, plan: Plan, tables: ChainTables) -> tuple[tuple[Dag, ...], np.ndarray, float]:
    """A model's DAG segments, its bytes per device (N,) and its time alone, seconds.

    A layer plan's memory and time alone come from its chain (`placement.multi.chains`);
    any other plan's from the single-model evaluator (one call): its peak over the
    intervals, and its total, which the DAG alone reproduces exactly (tested).
    """
    try:
        devices, embed, lm_head = layer_devices(inst, plan)
    except PlanError:  # not a static layer plan
        report = evaluate(inst, plan)
        return model_dags(inst, plan), report.peak_memory_bytes.max(axis=0), report.total_s
    c, links = chain_links(tables, devices, embed, lm_head)
    dags = chain_dags(c, links, tables.layer_s.shape[0], inst.cluster.network == "shared")
    return dags, needed_bytes(tables, devices, embed, lm_head, inst.n_devices), float(c.duration_s.sum())


def evaluate_joint(multi: MultiInstance, joint: JointPlan, tables: tuple[ChainTables, ...] | None = None) -> JointReport:
    """Judge a joint plan: shared memory, each model's finish time, makespan, weighted sum, lower bound.

    Parameters
    ----------
    multi : MultiInstance
    joint : JointPlan
    tables : tuple of ChainTables, optional
        `model_tables` of `multi`, when already built.

    Returns
    -------
    JointReport

    Raises
    ------
    PlanError
        When the plan count, a schedule or order is wrong, or a model's plan is not a
        plan of its instance the joint evaluator takes (naming the model).
    """
    M, N = multi.n_models, multi.n_devices
    if len(joint.plans) != M:
        raise PlanError(f"joint plan has {len(joint.plans)} plans, the instance has {M} models ({', '.join(multi.names)})")
    if joint.schedule not in SCHEDULES:
        raise PlanError(f"joint plan `schedule` {joint.schedule!r} is unknown; use one of {', '.join(SCHEDULES)}")
    tables = tables or model_tables(multi)
    tasks, needed = [], np.zeros((M, N))
    for m, (inst, plan) in enumerate(zip(multi.instances, joint.plans)):
        try:
            tasks.append(_model_tasks(inst, plan, tables[m]))
        except PlanError as exc:
            raise PlanError(f"model {multi.names[m]!r}: {exc}") from None
        needed[m] = tasks[-1][1]
    busy, medium, alone = np.zeros(N), 0.0, np.array([a for *_, a in tasks])
    for dags, *_ in tasks:
        for d in dags:
            seconds = d.duration_s.sum(axis=0)
            on = d.resource >= 0
            busy += np.bincount(d.resource[on], weights=seconds[on], minlength=N)
            medium += float(seconds[d.resource == NETWORK].sum())
    if joint.schedule == "concurrent":
        finish = simulate_dags([dags for dags, *_ in tasks], N)
        bound = float(max(alone.max(), busy.max(), medium))
    else:
        order = _order(joint, M)
        finish = np.empty(M)
        finish[list(order)] = np.cumsum(alone[list(order)])
        bound = float(alone.sum())
    limits = usable_bytes(multi.instances[0])
    return JointReport(
        schedule=joint.schedule, makespan_s=float(finish.max()), finish_s=finish, alone_s=alone,
        weighted_s=float(multi.weights @ finish), lower_bound_s=bound, busy_s=busy, medium_busy_s=medium,
        needed_bytes=needed, limit_bytes=limits,
        violations=_violations(multi, needed, limits, joint.schedule == "concurrent"),
        devices=multi.cluster.names, names=multi.names,
    )
