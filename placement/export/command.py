"""What ``placement export`` does, kept out of the CLI module."""

from __future__ import annotations

from pathlib import Path

from placement.export import export_plan, parse_hosts
from placement.export.targets import Export
from placement.instance import load_instance
from placement.plan import Plan

__all__ = ["export_command"]


def export_command(instance: str, plan: Path, target: str, *, hosts: str | None = None, model_path: str | None = None,
                   interval: int | None = None) -> Export:
    """Load an instance and a plan file and export the plan to `target`.

    Parameters
    ----------
    instance : str
        Instance file or shipped name.
    plan : Path
        Plan JSON.
    target : str
        See `placement.export.TARGETS`.
    hosts : str, optional
        ``DEVICE=HOST[:PORT],...``.
    model_path : str, optional
    interval : int, optional

    Returns
    -------
    Export
    """
    inst = load_instance(instance, check_capacity=False)
    the_plan = Plan.from_json(plan, kv_heads=inst.model.kv_heads)
    return export_plan(inst, the_plan, target, hosts=parse_hosts(hosts, inst.cluster.names), model_path=model_path,
                       interval=interval)
