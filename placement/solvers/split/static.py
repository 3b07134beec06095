"""Split computing: the `split` back end (one configuration for the whole generation).

The method: `placement.solvers.split`; the formulation: docs/split.md.
"""

from __future__ import annotations

import time


from placement.instance import Instance
from placement.result import Result
from placement.solvers.split.tables import mixed_layers_message
from placement.solvers.split.configuration import DEFAULT_ACTIVATION_BITS, DEFAULT_KV_BITS, DEFAULT_OUTLIER_FRACTIONS, DEFAULT_WEIGHT_BITS, check_options, config_extras, split_plan
from placement.solvers.split.search import finish, prune_activations, search
from placement.solvers.split.baselines import baseline_result

__all__ = ["solve_split"]


def solve_split(instance: Instance, *, device: str | None = None, server: str | None = None,
                weight_bits=DEFAULT_WEIGHT_BITS, kv_bits=DEFAULT_KV_BITS, activation_bits=DEFAULT_ACTIVATION_BITS,
                outlier_fractions=DEFAULT_OUTLIER_FRACTIONS, accuracy=None, max_distortion: float | None = None,
                latency_budget_s: float | None = None, workspace_bytes: float | None = None,
                baseline: str | None = None) -> Result:
    """Device/server split with one-point split compression: the exact optimum of the discrete problem.

    Chooses the split layer ``ℓ ∈ {0 … L}``, front and back weight bits, KV-cache
    bits per segment and the compression of the hidden state at the split (TS outlier
    fraction and TAB-Q bits) to minimise the evaluator's total latency (prefill +
    every decode step, seconds), subject to: both devices' memory at the final
    context (weights + KV cache + `workspace_bytes`), the error of the accuracy model
    at most `max_distortion`, and, if given, every decode step within
    `latency_budget_s`. Every configuration of the grid is evaluated (vectorised);
    the argmin is the proven optimum.

    Parameters
    ----------
    instance : Instance
    device, server : str, optional
        Device names; default the device with the least usable memory and the one
        with the most (another one).
    weight_bits, kv_bits, activation_bits : sequence of float
        The bit widths to choose from (16 = uncompressed).
    outlier_fractions : sequence of float
        Threshold-splitting fractions of elements kept at 16 bits (0 = none).
    accuracy : None, str or accuracy model
        None: `placement.cost.accuracy.DistortionProxy`; a CSV path: a measured
        `TableAccuracy`; or any object with its ``error`` method.
    max_distortion : float, optional
        Accuracy budget in the model's units; default (proxy only) the proxy's error
        of W4A16 (4-bit weights, 16-bit KV and activations) everywhere.
    latency_budget_s : float, optional
        Largest decode-step latency allowed, seconds.
    workspace_bytes : float, optional
        Memory kept free on each device for transient activations (default
        `default_workspace_bytes`).
    baseline : str, optional
        One of `BASELINES` instead of the search: ``device-only``, ``server-only``,
        uniform-precision splits ``w16a16``, ``w8a8``, ``w4a16``, ``w4a4`` (the best
        split for that precision; no accuracy budget, their error is reported), or
        ``neurosurgeon`` (16 bits, the latency-optimal split with memory judged at
        the prompt only, as profiles without a growing KV cache do).

    Returns
    -------
    Result
        ``optimal`` with the plan (``plan.extras["split"]``: split layer, bits,
        compression, distortion, largest context the memory allows), objective = the
        evaluator's total, seconds; ``infeasible`` with the reason and the smallest
        change that would help; baselines ``feasible`` or ``infeasible``.

    Raises
    ------
    InputError
        On an unknown device, baseline or a bad option value.
    """
    start = time.perf_counter()
    mixed = mixed_layers_message(instance, "split")
    if mixed is not None:
        return Result("error", mixed, None, None)
    dev, srv, weights, kvs, acts, model, budget, workspace = check_options(
        instance, device, server, weight_bits, kv_bits, activation_bits, outlier_fractions, accuracy,
        max_distortion, latency_budget_s, workspace_bytes)
    if baseline is not None:
        return baseline_result(instance, baseline, dev, srv, model, workspace, start)
    acts, pruned = prune_activations(model, acts)
    found = search(instance, dev, srv, weights, kvs, acts, model, budget, latency_budget_s, workspace)
    stats = {**found.stats, "pruned_activation_settings": pruned}
    if found.config is None:
        stats["decision_time_s"] = time.perf_counter() - start
        return Result("infeasible", found.message, None, None, stats=stats)
    cfg = found.config
    extras = config_extras(instance, cfg, found.error, found.max_context)
    return finish(instance, [split_plan(instance, cfg)], "split", extras, found.error, "optimal",
                   f"{cfg.describe(instance.model.layers)} (exact over {found.stats['configurations']} configurations)",
                   found.value_s, stats, start)
