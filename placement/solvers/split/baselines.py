"""Split computing: the baselines (`BASELINES`: device-only, server-only, uniform precisions, Neurosurgeon).

The method: `placement.solvers.split`; the formulation: docs/split.md.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from placement.cost.accuracy import AccuracyModel, DistortionProxy
from placement.errors import InputError
from placement.instance import Instance
from placement.plan import Placement
from placement.result import Result
from placement.solvers.split.configuration import BASELINES, SplitConfig, config_extras, effective_activation_bits, split_plan
from placement.solvers.split.tables import split_tables
from placement.solvers.split.search import finish, grid, limits, search

__all__ = ["baseline_result"]


def baseline_result(instance: Instance, name: Any, dev: int, srv: int, model: AccuracyModel, workspace: float,
              start: float) -> Result:
    """The result of one of `BASELINES` instead of the search.

    Parameters
    ----------
    instance : Instance
    name : str
        A key of `BASELINES`.
    dev, srv : int
    model : AccuracyModel
    workspace : float
        Bytes kept free on each device.
    start : float
        ``time.perf_counter()`` at the start of the decision.

    Returns
    -------
    Result

    Raises
    ------
    InputError
        On an unknown baseline.
    """
    key = str(name).lower()
    if key not in BASELINES:
        raise InputError(f"unknown `baseline` {name!r}; baselines are {', '.join(BASELINES)}")
    L, K, N = instance.model.layers, instance.model.kv_heads, instance.n_devices
    spec = BASELINES[key]
    method = f"split:{key}"
    sixteen = np.array([16.0])
    if spec in ("device", "server"):
        where = dev if spec == "device" else srv
        placement = Placement.by_layer(np.full(L, where), K, N)
        bits = {"attention": 16.0, "projection": 16.0, "ffn": 16.0, "kv": 16.0, "embed": 16.0, "lm_head": 16.0}
        placement = dataclasses.replace(placement, precision=bits)
        err = float(model.error(L, L, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0))
        cfg = SplitConfig(where, where, L, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0, 16.0)
        extras = {**config_extras(instance, cfg, err if np.isfinite(err) else None, None), "baseline": key}
        note = f"every block on {instance.cluster.names[where]!r} at 16 bits"
        if spec == "server":
            note += f", serving {instance.cluster.names[dev]!r} (prompt uploaded, tokens streamed back)"
        return finish(instance, [placement], method, extras, err if np.isfinite(err) else None, "feasible",
                       note, float("nan"), {}, start, client=instance.cluster.names[dev])
    if spec == "neurosurgeon":
        acts = [(16.0, 0.0, 16.0)]
        t = split_tables(instance, dev, srv, sixteen, sixteen, acts)
        total, _, _, _ = grid(instance, t, 1, 1, 1, None, 0.0)
        prompt = t.layer_prompt_bytes.reshape(1, 1)
        l = np.arange(L + 1)
        dev_limit, srv_limit = limits(instance, dev, srv)
        dev_need = t.embed_bytes[0] + l * prompt[0, 0] + np.where(l == L, 0.0 if instance.model.tied_embeddings else t.head_bytes[0], 0.0)
        srv_need = np.where(l == L, 0.0, (L - l) * prompt[0, 0] + t.head_bytes[0])
        fits = (dev_need <= dev_limit) & (srv_need <= srv_limit) & ((l == L) | t.reachable)
        value = np.where(fits, total.reshape(L + 1), np.inf)
        if not np.isfinite(value).any():
            return Result("infeasible", "no 16-bit split fits even at the prompt", None, None,
                          stats={"decision_time_s": time.perf_counter() - start})
        best = int(np.argmin(value))
        cfg = SplitConfig(dev, srv, best, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0, 16.0)
        err = float(model.error(L, best, 16.0, 16.0, 16.0, 16.0, 16.0, 0.0))
        extras = {**config_extras(instance, cfg, err if np.isfinite(err) else None, None), "baseline": key}
        return finish(instance, [split_plan(instance, cfg)], method, extras, err if np.isfinite(err) else None,
                       "feasible", f"Neurosurgeon-style: {cfg.describe(L)} (memory judged at the prompt)",
                       float(value[best]), {}, start)
    w, c, a, f = spec
    if f == "share":
        f = model.outlier_share if isinstance(model, DistortionProxy) else 0.005
    acts = [(float(a), float(f) if a < 16 else 0.0, effective_activation_bits(a, f, instance.model.hidden))]
    found = search(instance, dev, srv, np.array([float(w)]), np.array([float(c)]), acts, model, None, None, workspace)
    if found.config is None:
        return Result("infeasible", f"{key}: {found.message}", None, None,
                      stats={**found.stats, "decision_time_s": time.perf_counter() - start})
    extras = {**config_extras(instance, found.config, found.error, found.max_context), "baseline": key}
    return finish(instance, [split_plan(instance, found.config)], method, extras, found.error, "feasible",
                   f"{key}: {found.config.describe(L)}", found.value_s, found.stats, start)
