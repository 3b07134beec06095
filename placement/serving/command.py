"""The ``placement serve`` command: judge a plan under load (registered in `placement.cli`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["serve", "workload_for"]


def workload_for(instance, *, rate: str | None = None, trace: Path | None = None, requests: int | None = None,
                 seed: int | None = None, policy: str | None = None):
    """The serving workload of `instance`: a trace file, a Poisson draw at `rate`, or its ``serving:`` section.

    Requests drawn at `rate` have the instance's ``workload.prompt_tokens`` and
    ``generate_tokens``; `requests` (default 100) and `seed` (default 0) apply to that draw.

    Returns
    -------
    ServingSpec

    Raises
    ------
    InputError
        When there is neither a section nor `rate` / `trace`, or `requests` / `seed` come without `rate`.
    """
    from placement.errors import InputError
    from placement.serving.workload import serving_from_mapping

    if trace is not None:
        spec = serving_from_mapping({"arrivals": "trace", "trace": str(trace)})
    elif rate is not None:
        spec = serving_from_mapping({"rate": rate, "prompt_tokens": instance.workload.prompt_tokens,
                                     "generate_tokens": instance.workload.generate_tokens,
                                     **({"requests": requests} if requests is not None else {}),
                                     **({"seed": seed} if seed is not None else {})})
    elif requests is not None or seed is not None:
        raise InputError("--requests and --seed draw a Poisson trace: give --rate with them")
    elif instance.serving is None:
        raise InputError(f"instance {instance.name!r} has no `serving:` section; give --rate (e.g. '0.5 req/s') "
                         "or --trace FILE, or add the section (docs/serving.md)")
    else:
        spec = instance.serving
    if instance.serving is not None and spec is not instance.serving:  # keep the section's policy options
        spec = dataclasses.replace(spec, policy=instance.serving.policy, max_batch=instance.serving.max_batch,
                                   batch_wait_s=instance.serving.batch_wait_s)
    return spec if policy is None else dataclasses.replace(spec, policy=policy)


def _table(instance, plan_name: str, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from placement.cost.units import format_bytes, format_seconds

    table = Table(title=f"{instance.name}: {plan_name} serving {summary['requests']} requests ({summary['policy']})",
                  title_justify="left")
    for column in ("metric", "p50", "p90", "p99", "mean"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, label in (("ttft", "time to first token"), ("tpot", "time per output token"), ("e2e", "end to end")):
        table.add_row(label, *(format_seconds(summary[f"{q}_{key}_s"]) for q in ("p50", "p90", "p99", "mean")))
    out = Console()
    out.print(table)
    out.print(f"throughput {summary['throughput_tokens_s']:.2f} tokens/s over {format_seconds(summary['makespan_s'])}; "
              f"served {summary['served']}, refused {summary['refused']}, queued for memory {summary['queued']}; "
              f"at most {summary['max_in_service']} in service")
    peaks = ", ".join(f"{name} {format_bytes(b)}" for name, b in summary["peak_memory_bytes"].items() if b > 0)
    out.print(f"peak memory: {peaks}")


def serve(
    instance: Annotated[str, typer.Argument(help="Instance file, or a shipped instance name.")],
    plan: Annotated[Optional[Path], typer.Argument(help="Plan JSON (from `solve --out`); default: the `pipeline` reference plan.")] = None,
    policy: Annotated[Optional[str], typer.Option("--policy", help="sequential, static-batch, fused or instances "
                                                  "(default: the section's, else fused).")] = None,
    rate: Annotated[Optional[str], typer.Option("--rate", help="Poisson arrival rate, e.g. '0.5 req/s'.")] = None,
    trace: Annotated[Optional[Path], typer.Option("--trace", help="CSV trace: arrival_s,prompt_tokens,generate_tokens.")] = None,
    requests: Annotated[Optional[int], typer.Option("--requests", help="Requests to draw with --rate.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the drawn trace.")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="Most requests decoded together.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Judge a plan serving many requests (docs/serving.md): TTFT, time per token, latency percentiles, throughput."""
    from placement import load_instance
    from placement.plan import Plan
    from placement.serving.simulate import simulate
    from placement.solvers.reference import pipeline_plan

    inst = load_instance(instance, check_capacity=False)
    spec = workload_for(inst, rate=rate, trace=trace, requests=requests, seed=seed, policy=policy)
    the_plan = pipeline_plan(inst) if plan is None else Plan.from_json(plan, kv_heads=inst.model.kv_heads)
    report = simulate(inst, the_plan, spec.requests, spec.policy, max_batch=max_batch or spec.max_batch,
                      batch_wait_s=spec.batch_wait_s)
    name = the_plan.method or str(plan)
    if as_json:
        sys.stdout.write(json.dumps({"instance": inst.name, "plan": name, **report.to_dict()}, indent=1) + "\n")
    else:
        _table(inst, name, report.summary())
