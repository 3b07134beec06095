"""The plan in words: which blocks run on each device, what moves at each boundary, bound and gap.

Used by ``placement solve`` (human output) and by the HTML report.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from placement.cost.units import format_seconds
from placement.instance import Instance
from placement.plan import Plan
from placement.report.steps import device_arrays

__all__ = ["device_blocks", "migrations", "bound_line"]


def _span(first: int, last: int) -> str:
    return f"layer {first}" if first == last else f"layers {first}–{last}"


def _layer_text(groups: list[int], K: int, projection: float, ffn: float, experts: str = "") -> str:
    parts = []
    if len(groups) == K:
        parts.append(f"all {K} groups")
    elif groups:
        parts.append(f"group{'s' if len(groups) > 1 else ''} {','.join(map(str, groups))}")
    for name, share in (("projection", projection), ("FFN", ffn)):
        if share > 0:
            parts.append(name if share == 1 else f"{name} {share:.0%}")
    return " + ".join(parts + ([experts] if experts else []))


def _expert_texts(instance: Instance, plan: Plan, interval: int) -> np.ndarray:
    """(L, N) words for the routed experts a device holds apart from the rule "all with the FFN" ("" elsewhere)."""
    L, N, E = instance.model.layers, instance.n_devices, instance.model.experts
    experts = plan.placement(interval).experts
    out = np.full((L, N), "", dtype=object)
    if experts is None:
        return out
    remap = np.array([instance.cluster.index(name) for name in plan.devices])
    ffn = device_arrays(instance, plan.placement(interval), plan.devices)["ffn"]
    for l in np.flatnonzero(instance.model.moe_layers):
        held = np.bincount(remap[experts[l]], minlength=N)
        for n in np.flatnonzero(held):
            if held[n] < E or ffn[l, n] == 0:
                out[l, n] = f"{held[n]}/{E} experts"
    return out


def device_blocks(instance: Instance, plan: Plan, interval: int = 0) -> dict[str, str]:
    """What each device runs in `interval`, in words; consecutive layers with the same blocks are merged.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    interval : int

    Returns
    -------
    dict of str to str
        Device name → e.g. ``"embed; layers 0–7: all 8 groups + projection + FFN"``,
        or ``"nothing"``; in the instance's device order.

    Examples
    --------
    >>> import placement
    >>> from placement.solvers.reference import pipeline_plan
    >>> inst = placement.load_instance("edge/llama-3.2-1b-2dev")
    >>> device_blocks(inst, pipeline_plan(inst))["pi5"]
    'embed; layers 0–7: all 8 groups + projection + FFN'
    """
    arrays = device_arrays(instance, plan.placement(interval), plan.devices)
    K, L = instance.model.kv_heads, instance.model.layers
    out = {}
    experts = _expert_texts(instance, plan, interval)
    for n, name in enumerate(instance.cluster.names):
        texts = [_layer_text([g for g in range(K) if arrays["attention"][l, g] == n], K,
                             float(arrays["projection"][l, n]), float(arrays["ffn"][l, n]), experts[l, n])
                 for l in range(L)]
        parts = [kind for kind in ("embed", "lm_head") if int(arrays[kind]) == n]
        start = 0
        for l in range(1, L + 1):
            if l == L or texts[l] != texts[start]:
                if texts[start]:
                    parts.append(f"{_span(start, l - 1)}: {texts[start]}")
                start = l
        out[name] = "; ".join(parts) or "nothing"
    return out


def migrations(instance: Instance, plan: Plan, migration_s: np.ndarray) -> list[dict]:
    """What moves at every interval boundary where something moves.

    Parameters
    ----------
    instance : Instance
    plan : Plan
    migration_s : ndarray, shape (n_intervals,)
        The report's migration time per interval, seconds.

    Returns
    -------
    list of dict
        One per boundary with moves: ``interval`` (the one that starts), ``step`` (its
        first decode step, 1-based), ``time_s``, and ``moves``: text such as
        ``"3 groups pi-a → pi-b"``.
    """
    if plan.static:
        return []
    names, tau = instance.cluster.names, instance.workload.tau
    out = []
    previous = device_arrays(instance, plan.placement(0), plan.devices)
    for k in range(1, len(plan.intervals)):
        current = device_arrays(instance, plan.placement(k), plan.devices)
        moved = Counter(zip(previous["attention"][current["attention"] != previous["attention"]].tolist(),
                            current["attention"][current["attention"] != previous["attention"]].tolist()))
        moves = [f"{c} group{'s' if c > 1 else ''} {names[a]} → {names[b]}" for (a, b), c in sorted(moved.items())]
        for kind in ("projection", "ffn"):
            changed = np.flatnonzero(np.abs(current[kind] - previous[kind]).max(axis=1) > 1e-9)
            if len(changed):
                moves.append(f"{kind} of {len(changed)} layer{'s' if len(changed) > 1 else ''} re-placed")
        for kind in ("embed", "lm_head"):
            if int(current[kind]) != int(previous[kind]):
                moves.append(f"{kind} {names[int(previous[kind])]} → {names[int(current[kind])]}")
        if moves:
            out.append({"interval": k, "step": k * tau + 1, "time_s": float(migration_s[k]), "moves": moves})
        previous = current
    return out


def bound_line(objective: float | None, bound: float | None, gap: float | None) -> str:
    """The bound and gap of a result in words.

    Parameters
    ----------
    objective, bound : float or None
        Seconds.
    gap : float or None
        Relative, ``(objective - bound) / objective``.

    Returns
    -------
    str

    Examples
    --------
    >>> bound_line(2.0, 1.5, 0.25)
    'objective 2.000 s, bound 1.500 s, gap 25.00 %'
    >>> bound_line(2.0, None, None)
    'objective 2.000 s, no bound (this back end proves none)'
    """
    head = "no objective" if objective is None else f"objective {format_seconds(objective)}"
    if bound is None:
        return f"{head}, no bound (this back end proves none)"
    return f"{head}, bound {format_seconds(bound)}, gap {'n/a' if gap is None else f'{gap:.2%}'.replace('%', ' %')}"
