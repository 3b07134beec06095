"""`placement reproduce sparsity-table`: DeltaLLM's temporal attention sparsity on an edge cluster.

Llama-3.2-1B (16-bit) and BitNet-b1.58-2B-4T (1.58-bit weights, 16-bit KV cache) on
four edge devices (`DEVICES`, presets of the device catalog) on a switched 1 Gbit/s,
0.5 ms mesh, each device given `MEMORY_SHARE` of the model's resident bytes at the
largest context of the grid, so that no device holds the model alone and every
context runs on the same cluster. For every model, prompt length ``P`` (`CONTEXTS`)
and sparsity ``s`` (`SPARSITIES`, local window `LOCAL_WINDOW`, both stages) the
instance is solved by ``milp`` (head-level, exact up to its time limit), ``myopic+``
(head-level heuristic) and ``pipeline-dp`` (the exact layer pipeline); the best
plan is the one of least total latency (the time to first token plus
`GENERATE_TOKENS` decode steps). The MILP is warm-started from the best plan of the
previous sparsity, which stays feasible and gets no slower as ``s`` grows (sparsity
only removes work), so the best total is non-increasing in ``s``.

Whether sparsity moves the optimal placement is read three ways: ``dense_plan_total_s``
is the best plan at ``s = 0`` evaluated with sparsity ``s`` (``moved``: each of the two
plans beats the other on its own instance by more than `MOVED_RTOL`), ``head_speedup``
(layer-based total over head-level total) says whether head-level placement still
beats the layer pipeline, and ``crossover_tokens`` how many decode steps the layer
pipeline would need to overtake it when it is faster per token. ``--quick`` runs
`QUICK`'s smaller grid without ``myopic+``. Outputs: ``sparsity-table.csv``, ``sparsity-table.md``, ``config.json``.
docs/sparsity.md explains the cost model and shows the table.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from placement.experiments.output import versions, write_json, write_rows_csv
from placement.files import write_text_atomic

__all__ = ["reproduce_sparsity_table", "sparsity_instance", "MODELS", "CONTEXTS", "SPARSITIES", "DEVICES",
           "METHODS"]

MODELS = ("llama-3.2-1b", "bitnet-b1.58-2b-4t")
CONTEXTS = (512, 1024, 2048, 4096, 8192)
SPARSITIES = (0.0, 0.3, 0.57, 0.6)  # 0.57: DeltaLLM over both stages, 0.6: its prefill figure
LOCAL_WINDOW = 256
DEVICES = ("jetson-orin-nano", "raspberry-pi-5", "phone-snapdragon-8-gen-3", "mini-pc-intel-n100")
MEMORY_SHARE = 0.4  # each device's memory / the model's resident bytes at the grid's largest context
MESH = {"bandwidth": "1 Gbit/s", "latency": "0.5 ms"}
GENERATE_TOKENS = 64
METHODS = ("milp", "myopic+", "pipeline-dp")
HEAD_METHODS = ("milp", "myopic+")
MILP_TIME_LIMIT_S = 30.0
QUICK = {"contexts": (512, 8192), "generate_tokens": 16, "milp_time_limit": 1.0, "methods": ("milp", "pipeline-dp")}
MOVED_RTOL = 1e-3  # re-optimising must save more than 0.1 % for the placement to count as moved


@functools.cache
def _memory_mib(model: str, largest_context: int, generate_tokens: int) -> int:
    """Whole MiB each device gets: `MEMORY_SHARE` of the model's resident bytes at the largest context."""
    from placement.cost.tables import block_memory
    from placement.instance import instance_from_dict

    probe = instance_from_dict({"model": model, "devices": [{"name": "probe", "preset": DEVICES[0]}],
                                "workload": {"prompt_tokens": largest_context, "generate_tokens": generate_tokens}},
                               source=f"model {model!r}", check_capacity=False)
    need = float(block_memory(probe, probe.precision, probe.workload.interval_max_context()).total.max())
    return int(MEMORY_SHARE * need / 2**20)


def sparsity_instance(model: str, context: int, sparsity: float, *, largest_context: int = CONTEXTS[-1],
                      generate_tokens: int = GENERATE_TOKENS):
    """The instance of `model` with a `context`-token prompt and delta sparsity `sparsity`, built in memory.

    Parameters
    ----------
    model : str
        A shipped model name.
    context : int
        Prompt tokens ``P``.
    sparsity : float
        ``s``; 0 gives no ``attention:`` section at all (dense attention).
    largest_context : int
        The prompt length the devices' memory is sized for.
    generate_tokens : int
        Decode steps ``T``.

    Returns
    -------
    Instance
    """
    from placement.instance import instance_from_dict

    memory = f"{_memory_mib(model, largest_context, generate_tokens)} MiB"
    data = {"name": f"{model}-P{context}-s{sparsity:g}", "model": model,
            "devices": [{"name": f"d{i}-{preset}", "preset": preset, "memory": memory} for i, preset in enumerate(DEVICES)],
            "mesh": MESH, "workload": {"prompt_tokens": context, "generate_tokens": generate_tokens}}
    if sparsity:
        data["attention"] = {"local_window": LOCAL_WINDOW, "delta_sparsity": sparsity, "stages": "both"}
    return instance_from_dict(data, source=data["name"])


def _solve_all(instance, methods, warm_start, milp_time_limit: float) -> dict[str, Any]:
    """The result of each of `methods` on `instance`, by name (the MILP warm-started from `warm_start` when given)."""
    import placement

    results = {}
    for method in methods:
        options = {"time_limit": milp_time_limit, "warm_start": warm_start or "auto"} if method == "milp" else {}
        results[method] = placement.solve(instance, method=method, **options)
    return results


def _best(results: dict[str, Any], methods) -> tuple[str | None, Any]:
    """The method (of `methods`) whose feasible plan has the least total latency, and its result."""
    feasible = [(results[m].report.total_s, m) for m in methods
                if m in results and results[m].report is not None and results[m].report.feasible]
    if not feasible:
        return None, None
    _, method = min(feasible)
    return method, results[method]


def _row(case: dict[str, Any], results: dict[str, Any], dense, instance) -> dict[str, Any]:
    """One row: the best plan's figures, head-level against layer-based, and whether the optimum moved.

    `dense` is (the dense instance, its best result) for ``s > 0``, or None at ``s = 0``.
    """
    from placement import evaluate

    method, best = _best(results, METHODS)
    _, head = _best(results, HEAD_METHODS)
    _, layer = _best(results, ("pipeline-dp",))
    layer = None if layer is None else layer.report
    milp = results["milp"]
    row = {**case, "method": method, "milp_status": milp.status, "milp_gap": milp.gap}
    if best is None:
        return row
    report = best.report
    row |= {"ttft_s": report.ttft_s, "mean_token_ms": report.mean_token_s * 1e3, "total_s": report.total_s,
            "head_token_ms": None if head is None else head.report.mean_token_s * 1e3,
            "layer_token_ms": None if layer is None else layer.mean_token_s * 1e3,
            "head_speedup": None if head is None or layer is None else layer.total_s / head.report.total_s,
            "crossover_tokens": None if head is None or layer is None else _crossover_tokens(head.report, layer),
            "dense_plan_total_s": report.total_s, "moved": False}
    if dense is not None:
        dense_instance, dense_best = dense
        old_here = evaluate(instance, dense_best.plan).total_s  # the dense optimum, run with sparsity
        new_dense = evaluate(dense_instance, best.plan).total_s  # this optimum, run without it
        # moved: each plan wins on its own instance, so the choice changed with s (not only a better search)
        row |= {"dense_plan_total_s": old_here,
                "moved": bool(old_here > report.total_s * (1 + MOVED_RTOL)
                              and new_dense > dense_best.report.total_s * (1 + MOVED_RTOL))}
    return row


def _crossover_tokens(head, layer) -> float | None:
    """Decode steps after which the layer plan's total would drop below the head-level plan's.

    Both plans' mean per-token latencies are extrapolated as constants (they grow slowly
    with the context); None when the layer plan is not faster per token.
    """
    per_token = head.mean_token_s - layer.mean_token_s
    if per_token <= 0:
        return None
    return max(0.0, (layer.ttft_s - head.ttft_s) / per_token)


def _markdown(rows: list[dict[str, Any]], milp_time_limit: float, generate_tokens: int) -> str:
    def fig(row, key, fmt):
        return "—" if row.get(key) is None else format(row[key], fmt)

    lines = ["# sparsity-table: DeltaLLM temporal attention sparsity on four edge devices", "",
             f"Local window {LOCAL_WINDOW} tokens, sparsity in both stages; P prompt tokens then {generate_tokens} "
             f"decode steps; best of {', '.join(METHODS)} (MILP limit {milp_time_limit:g} s) by total latency. "
             "Head speedup: pipeline-dp total / best head-level total. Crossover: decode steps after which the "
             "layer plan, faster per token, would win (per-token latencies held constant). Dense plan: the best plan at s = 0 "
             f"evaluated with sparsity s; moved: re-optimising saves more than {MOVED_RTOL:.1%}.", "",
             "| model | P | s | TTFT (s) | mean token (ms) | total (s) | method | MILP | head-level token (ms) "
             "| layer token (ms) | head speedup | crossover (tokens) | dense plan total (s) | moved |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['context']} | {r['sparsity']:g} | {fig(r, 'ttft_s', '.3f')} "
                     f"| {fig(r, 'mean_token_ms', '.2f')} | {fig(r, 'total_s', '.3f')} | {r['method'] or 'infeasible'} "
                     f"| {r['milp_status']} | {fig(r, 'head_token_ms', '.2f')} | {fig(r, 'layer_token_ms', '.2f')} "
                     f"| {fig(r, 'head_speedup', '.2f')} | {fig(r, 'crossover_tokens', ',.0f')} "
                     f"| {fig(r, 'dense_plan_total_s', '.3f')} "
                     f"| {'yes' if r.get('moved') else 'no'} |")
    return "\n".join(lines) + "\n"


def reproduce_sparsity_table(*, quick: bool = False, out_dir: Path | str = "results/sparsity-table",
                             models: list[str] | None = None, milp_time_limit: float | None = None,
                             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Solve every (model, context, sparsity) and write the table.

    Parameters
    ----------
    quick : bool
        Contexts 512 and 8192 only, 16 decode steps, ``milp`` (1-second limit) and ``pipeline-dp``
        only (well under a minute).
    out_dir : Path or str
    models : list of str, optional
        Shipped model names; default `MODELS`.
    milp_time_limit : float, optional
        Seconds per MILP; default `MILP_TIME_LIMIT_S` (1 s with `quick`).
    progress : callable, optional
        Called with (done, total) after each instance.

    Returns
    -------
    dict
        ``rows`` (one per model, context and sparsity) and the output ``paths``.

    Raises
    ------
    InputError
        On an unknown model.
    """
    import placement
    from placement.cost.model import model_names

    models = list(models or MODELS)
    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise placement.InputError(f"sparsity-table: unknown model(s) {', '.join(map(repr, unknown))}; "
                                   f"models are {', '.join(model_names())}")
    contexts = QUICK["contexts"] if quick else CONTEXTS
    tokens = QUICK["generate_tokens"] if quick else GENERATE_TOKENS
    limit = milp_time_limit or (QUICK["milp_time_limit"] if quick else MILP_TIME_LIMIT_S)
    methods = QUICK["methods"] if quick else METHODS
    total, rows = len(models) * len(contexts) * len(SPARSITIES), []
    for model in models:
        for context in contexts:
            dense = previous = None
            for s in SPARSITIES:
                began = time.perf_counter()
                instance = sparsity_instance(model, context, s, largest_context=contexts[-1], generate_tokens=tokens)
                results = _solve_all(instance, methods, previous, limit)
                case = {"model": model, "context": context, "sparsity": s}
                rows.append(_row(case, results, dense, instance) | {"wall_s": time.perf_counter() - began})
                best = _best(results, methods)[1]
                previous = None if best is None else best.plan
                if s == 0 and best is not None:
                    dense = (instance, best)
                if progress is not None:
                    progress(len(rows), total)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "sparsity-table.csv", "markdown": out / "sparsity-table.md", "config": out / "config.json"}
    write_rows_csv(paths["csv"], rows)
    write_text_atomic(paths["markdown"], _markdown(rows, limit, tokens))
    write_json(paths["config"], {"quick": quick, "models": models, "contexts": list(contexts),
                                 "sparsities": list(SPARSITIES), "local_window": LOCAL_WINDOW, "devices": list(DEVICES),
                                 "memory_share": MEMORY_SHARE, "mesh": MESH, "generate_tokens": tokens,
                                 "methods": list(methods), "milp_time_limit_s": limit, "versions": versions()})
    return {"rows": rows, "paths": {k: str(v) for k, v in paths.items()}}
