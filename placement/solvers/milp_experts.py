"""Routed experts in the MILP: one holding pattern per MoE layer and interval, with its exact expected cost.

The expected expert stage of a layer is nonlinear in how many of its experts each
device holds (the expectation of a maximum, or of a sum of link terms, under the
multivariate hypergeometric law of `placement.cost.routing`). Under uniform routing
it depends only on the FFN device ``f`` (the *home*: router, shared experts, combine)
and the holdings ``h = (e_1 … e_N)``, so the MILP chooses, per MoE layer and interval,
one pair ``(f, h)`` from an enumerated set with a binary ``z``, and charges the
evaluator's own figure for that pair (`placement.experts.layer_expert_stage`):

- ``f[k, l, m] = Σ_{j: home_j = m} z[k, l, j]`` (so one pattern per layer and interval);
- the objective of a phase gains ``z[k, l, j] · (tokens · (router_f + stage_j) − ffn[l, f])``,
  the placed stage in place of the FFN block the formulation charges for ``f``;
- device ``m``'s memory gains ``z[k, l, j] · (h_j[m] − E·[m = f]) · expert_bytes[l]``;
- at an interval boundary a transport ``g[l, u, v]`` of expert counts (out of ``u`` what it
  held, into ``v`` what it holds) pays one message per moved expert, and the FFN block
  moves without its experts, as the evaluator charges them.

The set (`ExpertSpace`) is every holding in multiples of ``q = E / U`` experts
(``U = E`` when ``E ≤ 8``, else the largest divisor of ``E`` up to 8) on at most ``s``
devices, with every home: ``s`` is the largest for which a layer has at most
`PATTERNS_PER_LAYER` pairs; the warm start's holdings are added, so the MILP can keep
it. The MILP is exact over that set. It applies to the ``counts`` formulation under
uniform routing and the ``roofline`` profile; otherwise experts stay with their FFN block.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from placement.cost.tables import phase_tables, prefill_step_costs, step_costs
from placement.experts import layer_expert_stage
from placement.instance import Instance
from placement.plan import Placement

__all__ = ["ExpertSpace", "ExpertChoice", "PATTERNS_PER_LAYER", "expert_space", "places_experts", "expert_choice",
           "expert_memory_terms", "expert_phase_terms", "expert_migration", "read_experts", "expert_start",
           "warm_holdings"]

# Most (home, holding) pairs per MoE layer: 32 layers of 8 devices then give about 52,000 binaries.
PATTERNS_PER_LAYER = 2048
MAX_UNITS = 8


@dataclass(frozen=True, eq=False)
class ExpertSpace:
    """The holdings a MoE layer may take in the MILP.

    Attributes
    ----------
    unit : int
        ``q``: every device holds a multiple of this many of a layer's experts.
    max_devices : int
        ``s``: the most devices that hold a layer's experts.
    holdings : ndarray of int, shape (P, N)
        Every holding: experts per device, rows summing to ``E``.
    added : int
        Holdings beyond those, taken from the warm start (so that the MILP can keep it).
    """

    unit: int
    max_devices: int
    holdings: np.ndarray
    added: int = 0

    def describe(self) -> str:
        """The space in words, for results and docs."""
        n = self.holdings.shape[1]
        extra = f" (with {self.added} from the warm start)" if self.added else ""
        return (f"experts in multiples of {self.unit} on at most {self.max_devices} of {n} devices, "
                f"{len(self.holdings)} holdings{extra} x {n} homes per MoE layer")


def _holdings(units: int, n_devices: int, max_devices: int) -> np.ndarray:
    """Every split of `units` over `n_devices` with at most `max_devices` non-zero parts, (P, N)."""
    rows = []
    for size in range(1, max_devices + 1):
        for support in itertools.combinations(range(n_devices), size):
            for bars in itertools.combinations(range(1, units), size - 1):  # positive parts on the support
                parts = np.diff((0,) + bars + (units,))
                row = np.zeros(n_devices, dtype=np.int64)
                row[list(support)] = parts
                rows.append(row)
    return np.array(rows, dtype=np.int64).reshape(-1, n_devices)


def expert_space(instance: Instance, cap: int = PATTERNS_PER_LAYER, extra: np.ndarray | None = None) -> ExpertSpace:
    """The MILP's holdings for `instance`: multiples of ``q`` on at most ``s`` devices (module docstring).

    Parameters
    ----------
    instance : Instance
        An MoE model.
    cap : int
        Most (home, holding) pairs per layer.
    extra : ndarray of int, shape (M, N), optional
        Holdings to add (a warm start's, `warm_holdings`).

    Returns
    -------
    ExpertSpace
    """
    E, N = instance.model.experts, instance.n_devices
    units = E if E <= MAX_UNITS else max(u for u in range(1, MAX_UNITS + 1) if E % u == 0)
    best = None
    for s in range(1, N + 1):
        holdings = _holdings(units, N, s)
        if best is not None and N * len(holdings) > cap:
            break
        best = ExpertSpace(E // units, s, holdings * (E // units))
    if extra is None or not len(extra):
        return best
    known = {tuple(h) for h in best.holdings}
    new = [h for h in {tuple(h) for h in np.asarray(extra, dtype=np.int64)} if h not in known]
    return ExpertSpace(best.unit, best.max_devices, np.concatenate([best.holdings, np.array(sorted(new), dtype=np.int64)
                                                                    .reshape(-1, N)]), len(new))


def warm_holdings(placements: list[Placement] | None, n_devices: int) -> np.ndarray | None:
    """The holdings of every MoE layer of warm-start placements that place experts, (M, N); None when none do.

    Parameters
    ----------
    placements : list of Placement or None
    n_devices : int

    Returns
    -------
    ndarray of int or None
    """
    rows = [np.bincount(row, minlength=n_devices) for p in placements or [] if p.experts is not None
            for row in p.experts if (row >= 0).all()]
    return np.array(rows, dtype=np.int64) if rows else None


def places_experts(instance: Instance, formulation: str) -> bool:
    """Whether the MILP chooses expert holdings: an MoE model, ``roofline``, uniform routing, ``counts``.

    Parameters
    ----------
    instance : Instance
    formulation : str

    Returns
    -------
    bool
    """
    return (instance.model.is_moe and instance.workload.profile == "roofline" and instance.expert_routing is None
            and formulation == "counts")


@dataclass(frozen=True, eq=False)
class ExpertChoice:
    """The pattern binaries of a formulation and what each stands for (one entry per column).

    Attributes
    ----------
    space : ExpertSpace
    z : ndarray of int, shape (I, C)
        Column indices, per interval of the formulation.
    layer, home, holding : ndarray of int, shape (C,)
        The MoE layer, the FFN device and the row of ``space.holdings`` of each column.
    slot : ndarray of int, shape (M, W)
        Each MoE layer's columns (positions in ``C``), padded with -1.
    decode_s, prefill_s : ndarray, shape (C,)
        One decode token's and the prefill's seconds of the layer's FFN stage beyond the
        hidden state's arrival (router and shared experts, then the expected expert stage).
    """

    space: ExpertSpace
    z: np.ndarray
    layer: np.ndarray
    home: np.ndarray
    holding: np.ndarray
    slot: np.ndarray
    decode_s: np.ndarray
    prefill_s: np.ndarray


def _stage_seconds(instance: Instance, costs, layer: np.ndarray, home: np.ndarray, owners: list[np.ndarray],
                   holding: np.ndarray) -> np.ndarray:
    """Router and shared experts plus the expected expert stage of every column, for step 0 of `costs`, (C,)."""
    tables = phase_tables(instance, costs, np.array([0]))
    flops, read = costs.expert_flops[0], costs.expert_read[0]
    fixed_flops, fixed_read = costs.ffn_fixed_flops[0], costs.ffn_fixed_read[0]
    done: dict[tuple, float] = {}  # layers with the same expert and router costs share every figure
    out = np.zeros(len(layer))
    for c, (l, f, j) in enumerate(zip(layer, home, holding)):
        key = (flops[l], read[l], fixed_flops[l], fixed_read[l], f, j)
        if key not in done:
            total = layer_expert_stage(instance, costs, tables, 0, 0, int(l), int(f), owners[j])[0]
            done[key] = float(tables.ffn_fixed_s[0, l, f]) + total
        out[c] = done[key]
    return out


def expert_choice(builder, instance: Instance, ffn: np.ndarray, allowed_ffn: np.ndarray | None = None,
                  extra: np.ndarray | None = None) -> ExpertChoice:
    """Add the pattern binaries and their rows (one pattern per MoE layer, the FFN device its home).

    Parameters
    ----------
    builder : ProblemBuilder
    instance : Instance
    ffn : ndarray of int, shape (I, L, N)
        The FFN placement columns of every interval.
    allowed_ffn : ndarray of bool, shape (L, N), optional
        Devices the FFN may use (pins); patterns elsewhere are left out.
    extra : ndarray of int, shape (M, N), optional
        Holdings added to the space (`expert_space`).

    Returns
    -------
    ExpertChoice
    """
    model, N = instance.model, instance.n_devices
    space = expert_space(instance, extra=extra)
    P = len(space.holdings)
    ok = np.ones((model.layers, N), bool) if allowed_ffn is None else np.asarray(allowed_ffn, bool)
    moe = np.flatnonzero(model.moe_layers)
    layer, home, holding = (a.ravel() for a in np.meshgrid(moe, np.arange(N), np.arange(P), indexing="ij"))
    keep = ok[layer, home]
    layer, home, holding = layer[keep], home[keep], holding[keep]
    z = builder.variables("z_experts", (len(ffn), len(layer)), upper=1.0, integer=True)
    position = np.searchsorted(moe, layer)
    slot = np.full((len(moe), N * P), -1, dtype=np.int64)
    slot[position, np.arange(len(layer)) - np.searchsorted(position, position)] = np.arange(len(layer))
    # the pattern's home is the FFN device: f[l, m] − Σ_{j: home_j = m} z_j = 0 (so one pattern per layer)
    coef = np.full((len(moe) * N, 1 + P), -1.0)
    coef[:, 0] = 1.0
    for kk in range(len(ffn)):
        link = np.full((len(moe) * N, 1 + P), -1, dtype=np.int64)
        link[:, 0] = ffn[kk, moe].ravel()
        link[position * N + home, 1 + holding] = z[kk]
        builder.constraints("experts_home", link, coef, lower=0, upper=0)
    owners = [np.repeat(np.arange(N), h) for h in space.holdings]
    precision = instance.precision
    decode = step_costs(instance, precision, instance.workload.contexts()[:1])
    return ExpertChoice(space, z, layer, home, holding, slot,
                        _stage_seconds(instance, decode, layer, home, owners, holding),
                        _stage_seconds(instance, prefill_step_costs(instance, precision), layer, home, owners, holding))


def expert_memory_terms(choice: ExpertChoice, instance: Instance, expert_bytes: np.ndarray,
                        kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Each device's memory row gains, per pattern: its experts there, less all ``E`` on its home.

    Parameters
    ----------
    choice : ExpertChoice
    instance : Instance
    expert_bytes : ndarray, shape (L,)
        One routed expert's weights in each layer, bytes.
    kk : int
        The interval (position in the formulation).

    Returns
    -------
    cols, coefs : ndarray, shape (N, C)
        Columns and byte coefficients to append to the N memory rows.
    """
    N, E = instance.n_devices, instance.model.experts
    held = choice.space.holdings[choice.holding].T - E * (np.arange(N)[:, None] == choice.home[None])  # (N, C)
    return np.broadcast_to(choice.z[kk], (N, len(choice.layer))), held * np.asarray(expert_bytes)[choice.layer][None]


def expert_phase_terms(choice: ExpertChoice, instance: Instance, kk: int, steps: np.ndarray | None,
                       seconds_per_unit: float) -> tuple[np.ndarray, np.ndarray]:
    """The objective terms of a phase: each pattern's FFN stage in place of the FFN block charged for its home.

    Parameters
    ----------
    choice : ExpertChoice
    instance : Instance
    kk : int
        The phase's interval (position in the formulation).
    steps : ndarray of int or None
        The phase's decode steps; None for the prefill.
    seconds_per_unit : float
        The formulation's time unit.

    Returns
    -------
    cols, coefs : ndarray, shape (C,)
    """
    precision = instance.precision
    if steps is None:
        costs, tokens, stage = prefill_step_costs(instance, precision), 1, choice.prefill_s
    else:
        costs, tokens, stage = step_costs(instance, precision, instance.workload.contexts()[steps[:1]]), len(steps), choice.decode_s
    block = phase_tables(instance, costs, np.array([0])).ffn_s[0][choice.layer, choice.home]
    delta = tokens * (stage - block) / seconds_per_unit
    # experts all on the home cost what the block costs up to rounding: no 1e-16 coefficients for the solver
    return choice.z[kk], np.where(np.abs(delta) > 1e-12 * np.abs(tokens * block / seconds_per_unit), delta, 0.0)


def _held_before(choice: ExpertChoice, current: Placement, n_devices: int) -> np.ndarray:
    """Experts of each MoE layer on each device in `current` (M, N): its experts, or all on its FFN device."""
    layers = np.unique(choice.layer)
    if current.experts is not None:
        return np.stack([np.bincount(current.experts[l], minlength=n_devices) for l in layers])
    E = int(choice.space.holdings[0].sum())
    return E * np.eye(n_devices, dtype=np.int64)[np.asarray(current.ffn).argmax(axis=1)[layers]]


def expert_migration(builder, choice: ExpertChoice, instance: Instance, kk: int, current: Placement | None,
                     move_s: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Experts moving into interval `kk`: a transport of counts between devices, one message per expert.

    ``g[l, u, v]`` experts of layer ``l`` go from ``u`` to ``v``: out of ``u`` as many as it
    held before (the previous interval's pattern, or `current`), into ``v`` as many as it
    holds now. The MILP chooses the cheapest transport; `read_experts` moves exactly those.

    Parameters
    ----------
    builder : ProblemBuilder
    choice : ExpertChoice
    instance : Instance
    kk : int
        The interval (position in the formulation); 0 only with `current`.
    current : Placement or None
        The placement before the formulation's first interval.
    move_s : ndarray, shape (pairs, L)
        One expert's message between each pair of devices, in the formulation's unit.
    pairs : tuple of ndarray
        The sources and destinations of the pairs.

    Returns
    -------
    cols, coefs : ndarray, shape (pairs, M)
        The migration terms of each pair of devices.
    """
    N, E = instance.n_devices, int(choice.space.holdings[0].sum())
    layers = np.unique(choice.layer)
    M = len(layers)
    g = builder.variables(f"move{kk}.experts", (M, N, N), upper=E, integer=True)
    held = np.where(choice.slot[..., None] >= 0, choice.space.holdings[choice.holding[choice.slot]], 0)  # (M, W, N)
    ones = np.ones((M * N, N))
    for side, flows, kz in (("leave", g, kk - 1), ("arrive", g.transpose(0, 2, 1), kk)):
        rows = flows.reshape(M * N, N)  # (layer, device) × the other device
        if kz < 0:
            prev = _held_before(choice, current, N).ravel()
            builder.constraints(f"move{kk}.experts_{side}", rows, ones, lower=prev, upper=prev)
            continue
        zc = np.where(choice.slot >= 0, choice.z[kz][np.maximum(choice.slot, 0)], -1)  # (M, W)
        cols = np.concatenate([rows, np.repeat(zc, N, axis=0)], axis=1)
        coefs = np.concatenate([ones, -held.transpose(0, 2, 1).reshape(M * N, -1)], axis=1)
        builder.constraints(f"move{kk}.experts_{side}", cols, coefs, lower=0, upper=0)
    uu, vv = pairs
    return g[:, uu, vv].T, move_s[:, layers]


def read_experts(choice: ExpertChoice, x: np.ndarray, n_layers: int, kk: int, previous: Placement | None,
                 flows: np.ndarray | None) -> np.ndarray:
    """The device of every routed expert (L, E) in interval `kk` of a solution `x`: -1 in dense layers.

    Without a previous placement the experts are listed in device order; else experts
    follow the transport ``g`` of `expert_migration`, those that stay first.

    Parameters
    ----------
    choice : ExpertChoice
    x : ndarray
        A point of the problem.
    n_layers : int
    kk : int
        The interval (position in the formulation).
    previous : Placement or None
        The placement before the interval (None at the start of the generation).
    flows : ndarray of int, shape (M, N, N) or None
        The rounded transport into the interval (None with `previous`).

    Returns
    -------
    ndarray of int, shape (L, E)
    """
    holdings = choice.space.holdings
    N, E = holdings.shape[1], int(holdings[0].sum())
    out = np.full((n_layers, E), -1, dtype=np.int64)
    if previous is None:
        for c in np.flatnonzero(np.rint(x[choice.z[kk]]) == 1):
            out[choice.layer[c]] = np.repeat(np.arange(N), holdings[choice.holding[c]])
        return out
    layers = np.unique(choice.layer)
    before = previous.experts if previous.experts is not None else \
        np.asarray(previous.ffn).argmax(axis=1)[:, None] * np.ones((1, E), dtype=np.int64)
    for i, l in enumerate(layers):
        out[l] = before[l]
        for u in range(N):
            on_u = np.flatnonzero(before[l] == u)
            destinations = np.repeat(np.arange(N), flows[i, u])
            out[l, on_u] = destinations[np.argsort(destinations != u, kind="stable")]  # those that stay keep their place
    return out


def expert_start(choice: ExpertChoice, placement: Placement, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """The pattern columns of a warm start: its holdings when the space has them, else all experts on the FFN device.

    Parameters
    ----------
    choice : ExpertChoice
    placement : Placement
        Whole FFN blocks; `experts` optional.
    kk : int
        Its interval (position in the formulation).

    Returns
    -------
    cols, values : ndarray, shape (C,)
    """
    holdings = choice.space.holdings
    N, E = holdings.shape[1], int(holdings[0].sum())
    home = np.asarray(placement.ffn).argmax(axis=1)
    values = np.zeros(len(choice.layer))
    for l in np.unique(choice.layer):
        here = np.eye(N, dtype=np.int64)[home[l]] * E
        wanted = here if placement.experts is None else np.bincount(placement.experts[l], minlength=N)
        for target in (wanted, here):
            match = np.flatnonzero((choice.layer == l) & (choice.home == home[l])
                                   & (holdings[choice.holding] == target).all(axis=1))
            if len(match):
                values[match[0]] = 1.0
                break
    return choice.z[kk], values
