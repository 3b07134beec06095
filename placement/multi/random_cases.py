"""Seeded random multi-model cases: 2–3 small models on 4–8 devices, shared or switched, tight or loose memory.

The joint methods are measured on these beside the shipped cases (docs/parallel.md,
"Measured off the shipped cases"; `benchmarks/bench_parallel.py --random`). A case is a
`MultiInstance` built through `placement.multi.multi_from_dict`, so every figure comes from
the same cost layer as a file would give. The models are small decoder-only transformers
(4–8 layers, 4 attention groups per layer) with short generations, so that each method
solves a case in seconds; the devices differ in speed (4×) and memory; ``tight`` memory
gives the cluster 1.3× the bytes every model needs at once, ``loose`` 4×.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placement.multi.instance import MultiInstance, multi_from_dict

__all__ = ["random_case", "compare_methods", "MEMORY_FACTORS"]

MEMORY_FACTORS = {"tight": 1.3, "loose": 4.0}  # the cluster's usable bytes over every model's bytes at once


def _model(rng: np.random.Generator, i: int) -> dict[str, Any]:
    hidden = int(rng.choice([128, 256]))
    return {"name": f"net{i}", "layers": int(rng.integers(4, 9)), "hidden": hidden, "heads": 8, "kv_heads": 4,
            "head_dim": hidden // 8, "ffn_hidden": 4 * hidden, "gated_ffn": True, "vocab": 1024,
            "tied_embeddings": bool(rng.integers(2))}


def _model_bytes(model: dict[str, Any], context: int) -> float:
    """Bytes of a model's weights (16-bit) and cache at `context`: sizes the cluster's memory, not judged."""
    h, f, L = model["hidden"], model["ffn_hidden"], model["layers"]
    kv = 2 * model["kv_heads"] * model["head_dim"]
    per_layer = 2 * (h * (h + kv) + h * h + 3 * h * f) + 2 * kv * context
    heads = 1 if model["tied_embeddings"] else 2
    return float(L * per_layer + 2 * heads * model["vocab"] * h)


def random_case(seed: int, *, network: str | None = None, memory: str | None = None,
                objective: str = "makespan") -> MultiInstance:
    """A seeded random multi-model case (module docstring).

    Parameters
    ----------
    seed : int
    network : {"shared", "switched"}, optional
        Drawn from the seed when omitted.
    memory : {"tight", "loose"}, optional
        Drawn from the seed when omitted.
    objective : {"makespan", "weighted"}
        ``weighted``: the same case (the same draws) with every model's weight drawn in [1, 4) after them.

    Returns
    -------
    MultiInstance
        Named ``random-<seed>-<network>-<memory>`` (``-weighted`` appended for that objective).
    """
    rng = np.random.default_rng(seed)
    n_models, n_devices = int(rng.integers(2, 4)), int(rng.integers(4, 9))
    network = network or str(rng.choice(["shared", "switched"]))
    memory = memory or str(rng.choice(list(MEMORY_FACTORS)))
    models = [_model(rng, i) for i in range(n_models)]
    workloads = [{"prompt_tokens": int(rng.integers(8, 33)), "generate_tokens": int(rng.integers(8, 25))} for _ in models]
    need = sum(_model_bytes(m, w["prompt_tokens"] + w["generate_tokens"]) for m, w in zip(models, workloads))
    shares = rng.uniform(0.5, 1.5, n_devices)
    device_bytes = MEMORY_FACTORS[memory] * need * shares / shares.sum()
    devices = [{"name": f"d{n}", "memory": f"{int(b)} B", "peak_flops": f"{rng.uniform(0.5, 2):.2f} GFLOPS",
                "memory_bandwidth": f"{rng.uniform(0.5, 2):.2f} GB/s"} for n, b in enumerate(device_bytes)]
    mesh = {"bandwidth": f"{int(rng.integers(50, 1000))} Mbit/s", "latency": "0.5 ms"}
    weights = rng.uniform(1, 4, n_models) if objective == "weighted" else np.ones(n_models)
    name = f"random-{seed}-{network}-{memory}" + ("-weighted" if objective == "weighted" else "")
    return multi_from_dict({"name": name, "objective": objective, "network": network,
                            "models": [{"name": m["name"], "model": m, "workload": w, "weight": float(x)}
                                       for m, w, x in zip(models, workloads, weights)],
                            "devices": devices, "mesh": mesh}, source=name)


def compare_methods(cases: list[MultiInstance], methods: tuple[str, ...], time_limit: float) -> dict[str, Any]:
    """Every method on every case, against the better baseline and against each other.

    Parameters
    ----------
    cases : list of MultiInstance
    methods : tuple of str
        Joint methods (`placement.multi.METHODS`); ``sequential`` and ``disjoint`` are always run.
    time_limit : float
        Seconds, for ``milp`` and ``milp-head`` (the best-response loops run to their rounds).

    Returns
    -------
    dict
        ``rows``: one per case and method (``case``, ``method``, ``objective_s`` (inf: no plan
        that fits), ``ratio`` to the better baseline, ``beaten``, ``bound_s``, ``solve_time_s``),
        cases where neither baseline fits left out; ``summary``: per method ``geomean_ratio``,
        ``worst_ratio``, ``beaten`` (cases where another method's plan is better by more than
        1e-9 relative) and ``cases``; ``bound_violations``: concurrent rows (every method but
        ``sequential``) whose objective is below ``milp-head``'s bound on the same case (must be empty).
    """
    from placement.multi.solve import solve

    methods = tuple(dict.fromkeys(("sequential", "disjoint", *methods)))
    rows = []
    for multi in cases:
        found = {}
        for method in methods:
            options = {"time_limit": time_limit} if method in ("milp", "milp-head") else {}
            found[method] = solve(multi, method, **options)
        objective = {m: r.objective if r.status in ("feasible", "optimal") else np.inf for m, r in found.items()}
        baseline = min(objective["sequential"], objective["disjoint"])
        if not np.isfinite(baseline):  # no baseline fits: nothing to compare against
            continue
        best = min(objective.values())
        for method, r in found.items():
            rows.append({"case": multi.name, "method": method, "objective_s": objective[method],
                         "ratio": objective[method] / baseline, "beaten": objective[method] > best * (1 + 1e-9),
                         "bound_s": r.bound, "solve_time_s": r.solve_time_s})
    summary = {}
    for method in methods if rows else ():
        mine = [r for r in rows if r["method"] == method]
        ratios = np.array([r["ratio"] for r in mine])
        summary[method] = {"geomean_ratio": float(np.exp(np.log(ratios).mean())), "worst_ratio": float(ratios.max()),
                           "beaten": sum(r["beaten"] for r in mine), "cases": len(mine)}
    bounds = {}  # milp-head's: valid for every plan (milp's holds for layer plans only)
    for r in rows:
        if r["method"] == "milp-head" and r["bound_s"] is not None:
            bounds[r["case"]] = max(bounds.get(r["case"], 0.0), r["bound_s"])
    violations = [r for r in rows if r["method"] != "sequential" and r["objective_s"] < bounds.get(r["case"], 0.0) * (1 - 1e-9)]
    return {"rows": rows, "summary": summary, "bound_violations": violations}
