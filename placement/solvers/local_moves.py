"""``myopic+``'s one-block neighbourhoods and the local search over them.

Every one-block neighbourhood is scored for all its candidates at once with NumPy, as
exact deltas of the evaluator's formulas (a test checks them against a full recount
by `placement.solvers.interval_costs.IntervalModel.cost`): a group move changes one
layer's attention stage, a relocation one or two stages and the migration. Moves:
one attention group to another device (the group that migrates least: one going
home, else one already away), a projection, an FFN, ``embed`` or ``lm_head``
relocated, and, when memory holds back a move that would gain time, two groups of
different layers swapped between two devices (their migration is an estimate, checked
exactly before the swap is taken).
"""

from __future__ import annotations

import numpy as np

from placement.options import Deadline
from placement.solvers.interval_costs import IMPROVEMENT, IntervalModel, State

__all__ = ["block_moves", "group_moves", "local_search", "move_group", "relocate"]


def _max_excluding(values: np.ndarray, a, b) -> np.ndarray:
    """Max of `values` (..., M) over its entries other than the indices `a` and `b`.

    `a` and `b` broadcast against each other; the leading axes of `values` line up
    with their leading axes. -inf when nothing is left.
    """
    top = min(3, values.shape[-1])
    order = np.argsort(-values, axis=-1)[..., :top]
    best = np.take_along_axis(values, order, axis=-1)
    extra = np.broadcast(a, b).ndim - (values.ndim - 1)
    out, chosen = np.float64(-np.inf), np.bool_(False)
    for t in range(top):
        index = order[..., t].reshape(order.shape[:-1] + (1,) * extra)
        value = best[..., t].reshape(best.shape[:-1] + (1,) * extra)
        take = ~chosen & (index != a) & (index != b)
        out = np.where(take, value, out)
        chosen = chosen | take
    return out


# ----------------------------------------------------------------------------- neighbourhoods
def _migration_delta(iv: IntervalModel, times, current, src, old, new, table, layer=None):
    """New migration time minus the current one when one block moves from being sent src → old
    to src → new (arrays broadcast; src == old or src == new mean no transfer).

    `table` gives the block's message seconds from u to v, (N, N), or (L, N, N) indexed by `layer`."""
    if not iv.migrates:
        return np.zeros(np.broadcast_shapes(np.shape(src), np.shape(old), np.shape(new)))
    src, old, new = np.broadcast_arrays(src, old, new)
    at = (lambda u, v: table[u, v]) if layer is None else (lambda u, v: table[layer, u, v])  # noqa: E731
    leave = (src != old) * at(src, old)
    enter = (src != new) * at(src, new)
    same = old == new
    t_old = times[src, old] - leave
    t_new = times[src, new] + enter - np.where(same, leave, 0.0)
    if iv.shared:
        return np.where(same, 0.0, t_old - times[src, old] + t_new - times[src, new])
    N = iv.N
    rest = _max_excluding(times.reshape(-1), src * N + old, src * N + new)
    moved = np.maximum(np.maximum(t_old, t_new), np.maximum(rest, 0.0))
    return np.where(same, 0.0, moved - current)


def group_moves(iv: IntervalModel, s: State, held, mig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every move of one group of layer l from device a to device j, as exact deltas.

    Parameters
    ----------
    iv : IntervalModel
    s : State
    held : numpy.ndarray
        ``iv.held(s)``, bytes (V, N).
    mig : float
        ``iv.migration_of(s)``, seconds.

    Returns
    -------
    d_overflow, d_seconds, origin
        Change of each memory view's overflow (V, L, N, N) bytes, change of seconds
        (L, N, N) (inf where there is no such move), and the origin of the group moved
        (L, N, N).
    """
    L, N = iv.L, iv.N
    counts = s.counts
    source = iv.sources(s)
    rows = np.arange(L)
    a = np.arange(N)[None, :, None]
    j = np.arange(N)[None, None, :]
    ca = counts[:, :, None]  # count on a
    cj = counts[:, None, :]  # count on j
    dlat = np.zeros((L, N, N))
    has = counts > 0
    left, added = ca - 1, cj + 1  # groups on a after the move, on j after it
    for c in iv.sets:
        receive = c.layer_in[source]  # (L, N): the layer input to each device
        proj_of = s.projection[:, None, None]  # head outputs go from each device to the projection
        send = np.where(has, c.out[counts, np.arange(N), s.projection[:, None]], 0.0)  # (L, N)
        work = counts * c.group
        send_a = np.where(left > 0, c.out[np.maximum(left, 0), a, proj_of], 0.0)  # (L, N, 1)
        send_j = c.out[added, j, proj_of]  # (L, 1, N)
        work_a, work_j = left * c.group[:, :, None], added * c.group[:, None, :]
        recv_a, recv_j = receive[:, :, None], receive[:, None, :]
        proj = c.projection[rows, s.projection][:, None, None]
        if c.gather_sum:
            compute = np.maximum(np.maximum(np.where(left > 0, work_a, -np.inf), work_j),
                                 _max_excluding(np.where(has, work, -np.inf), a, j))
            sends = send.sum(axis=1)[:, None, None] - send[:, :, None] - send[:, None, :] + send_a + send_j
            r = np.where(has, receive, 0.0)
            if c.shared:
                recvs = (r.sum(axis=1)[:, None, None] - np.where(left > 0, 0.0, recv_a)
                         + np.where(cj > 0, 0.0, recv_j))
            else:
                recvs = np.maximum(np.maximum(np.where(left > 0, recv_a, 0.0), recv_j),
                                   np.maximum(_max_excluding(r, a, j), 0.0))
            new = compute + recvs + sends + proj
        else:
            chain = np.where(has, receive + work + send, -np.inf)
            new_a = np.where(left > 0, recv_a + work_a + send_a, -np.inf)
            new = np.maximum(np.maximum(new_a, recv_j + work_j + send_j), _max_excluding(chain, a, j)) + proj
        dlat += c.weight * (new - iv.attention(c, counts, source, s.projection)[:, None, None])
    # memory
    doverflow = iv.shift_overflow(held, a, j, [view.group[:, None, None] for view in iv.views])
    # which group moves: one going home, else one already away, else one at home
    # (where every group is from: the interval's start, or the first placement's greedy packing)
    present = s.origin > 0  # (L, u, a)
    away = present & ~np.eye(N, dtype=bool)[None]
    first_away = np.where(away.any(axis=1), away.argmax(axis=1), -1)  # (L, a)
    last_away = np.where(away.any(axis=1), N - 1 - away[:, ::-1, :].argmax(axis=1), -1)
    alt = np.where(first_away[:, :, None] != j, first_away[:, :, None], last_away[:, :, None])
    origin = np.where(alt >= 0, alt, np.broadcast_to(a, (L, N, N)))  # none away: one at home on a
    origin = np.where(np.transpose(present, (0, 2, 1)), j, origin)  # a group on a came from j
    if iv.migrates:
        times = iv.pair_times(s)
        dlat += _migration_delta(iv, times, mig, origin, a, j, iv.move_group, np.arange(L)[:, None, None])
    valid = (counts[:, :, None] > 0) & (a != j)
    return np.where(valid, doverflow, np.inf), np.where(valid, dlat, np.inf), origin


def move_group(l: int, u: int, a: int, j: int):
    """The move of one group of layer `l` from device `u`, now on `a`, to `j`.

    Parameters
    ----------
    l, u, a, j : int

    Returns
    -------
    callable
        State → a new State with the move made.
    """
    def apply(s: State) -> State:
        s = s.copy()
        s.origin[l, u, a] -= 1
        s.origin[l, u, j] += 1
        return s
    return apply


def relocate(kind: str, l: int, j: int):
    """The relocation of a block to device `j`.

    Parameters
    ----------
    kind : {"projection", "ffn", "embed", "lm_head"}
    l : int
        The layer (ignored for embed and lm_head).
    j : int

    Returns
    -------
    callable
        State → a new State with the block on `j`.
    """
    def apply(s: State) -> State:
        s = s.copy()
        if kind in ("projection", "ffn"):
            getattr(s, kind)[l] = j
        else:
            setattr(s, kind, j)
        return s
    return apply


def _heads_memory(iv: IntervalModel, embed, lm_head) -> np.ndarray:
    """Bytes embed and lm_head put on each device, (J, N) for J (embed, lm_head) pairs."""
    embed, lm_head = np.broadcast_arrays(np.atleast_1d(embed), np.atleast_1d(lm_head))
    one_hot = np.eye(iv.N)
    shared = iv.tied & (embed == lm_head)
    return np.stack([one_hot[embed] * view.embed + one_hot[lm_head] * np.where(shared, 0.0, view.lm_head)[:, None]
                     for view in iv.views])


def block_moves(iv: IntervalModel, s: State, held, mig) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Relocations of a projection, an FFN, embed or lm_head to every device.

    Parameters
    ----------
    iv, s, held, mig
        As in `group_moves`.

    Returns
    -------
    list of (kind, d_overflow, d_seconds)
        Arrays (V, L, N) and (L, N), rows the layers (one row for embed and lm_head);
        inf seconds where the block stays.
    """
    L, N = iv.L, iv.N
    rows, every = np.arange(L), np.arange(N)
    counts, source = s.counts, iv.sources(s)
    d_proj, d_ffn, d_embed, d_lm = np.zeros((L, N)), np.zeros((L, N)), np.zeros(N), np.zeros(N)
    next_source = np.broadcast_to(every, (L, N)).copy()  # layer l+1 fed by an FFN of layer l on j
    next_source[0] = s.embed
    for c in iv.sets:
        now = iv.attention(c, counts, source, s.projection)
        ffn_now = c.hidden[s.projection, s.ffn] + c.ffn[rows, s.ffn]
        # projection of layer l on j: its attention stage and its FFN's input change
        att_p = iv.attention(c, counts, source[:, None], np.broadcast_to(every, (L, N)))
        ffn_p = c.hidden[every[None, :], s.ffn[:, None]] + c.ffn[rows, s.ffn][:, None]
        d_proj += c.weight * (att_p - now[:, None] + ffn_p - ffn_now[:, None])
        # FFN of layer l on j: its own stage and the next layer's input (lm_head's for the last)
        ffn_f = c.hidden[s.projection[:, None], every[None, :]] + c.ffn
        nxt = np.empty((L, N))
        nxt[:-1] = (iv.attention(c, counts, next_source, s.projection[:, None]) - now[:, None])[1:]
        nxt[-1] = c.lm_in[every, s.lm_head] - c.lm_in[s.ffn[-1], s.lm_head]
        d_ffn += c.weight * (ffn_f - ffn_now[:, None] + nxt)
        # embed on j: layer 0's input and the token back; lm_head on j: its input and the token back
        first = iv.attention(c, counts, np.where(rows[:, None] == 0, every, source[:, None]), s.projection[:, None])[0]
        d_embed += c.weight * (c.embed - c.embed[s.embed] + first - now[0]
                               + c.token[s.lm_head, every] - c.token[s.lm_head, s.embed])
        d_lm += c.weight * (c.lm_head - c.lm_head[s.lm_head] + c.lm_in[s.ffn[-1], every]
                            - c.lm_in[s.ffn[-1], s.lm_head] + c.token[every, s.embed] - c.token[s.lm_head, s.embed])
    if iv.migrates:
        times = iv.pair_times(s)
        layers = np.arange(L)[:, None]
        d_proj += _migration_delta(iv, times, mig, iv.was_projection[:, None], s.projection[:, None], every,
                                   iv.move_projection, layers)
        d_ffn += _migration_delta(iv, times, mig, iv.was_ffn[:, None], s.ffn[:, None], every, iv.move_ffn, layers)
        d_embed += _migration_delta(iv, times, mig, iv.was_embed, s.embed, every, iv.move_embed)
        d_lm += _migration_delta(iv, times, mig, iv.was_lm_head, s.lm_head, every, iv.move_lm_head)
    out = []
    for kind, delta, cur in (("projection", d_proj, s.projection), ("ffn", d_ffn, s.ffn)):
        stay = every == cur[:, None]
        dov = iv.shift_overflow(held, cur[:, None], every, [getattr(view, kind)[:, None] for view in iv.views])
        out.append((kind, np.where(stay, 0.0, dov), np.where(stay, np.inf, delta)))
    heads_now = _heads_memory(iv, s.embed, s.lm_head)  # (V, 1, N)
    for kind, delta, pairs in (("embed", d_embed, (every, s.lm_head)), ("lm_head", d_lm, (s.embed, every))):
        dov = iv.overflow(held[:, None, :] - heads_now + _heads_memory(iv, *pairs)) - iv.overflow(held)[:, None]
        out.append((kind, dov[:, None, :], np.where(every == getattr(s, kind), np.inf, delta)[None, :]))
    return out


def _best(iv: IntervalModel, dov: np.ndarray, dcost: np.ndarray) -> tuple[tuple, tuple] | None:
    """The best improving candidate: (its index, its rank), or None.

    `dov` (V, ...) is the change of each memory view's overflow, `dcost` (...) the
    change of seconds. While the interval's memory overflows, the candidates that
    lower it compete on seconds per byte removed (a repair moves what is cheapest to
    move); otherwise the candidates that do not raise it compete on seconds gained,
    the horizon's overflow priced in. Ranks order candidates of different
    neighbourhoods the same way.
    """
    dcost = dcost + iv.price * dov[1:].sum(axis=0)
    repairs = dov[0] < -iv.tolerance
    if repairs.any():
        key = np.where(repairs, dcost / np.where(repairs, -dov[0], 1.0), np.inf)
        idx = np.unravel_index(int(np.argmin(key)), key.shape)
        return idx, (0, float(key[idx]))
    key = np.where((dov[0] <= iv.tolerance) & (dcost < -IMPROVEMENT * iv.scale), dcost, np.inf)
    idx = np.unravel_index(int(np.argmin(key)), key.shape)
    return (idx, (1, float(key[idx]))) if np.isfinite(key[idx]) else None


# Swaps are scored over (L, N, N, L) candidates: skipped beyond this many.
_MAX_SWAP_CANDIDATES = 4_000_000


def _swaps(iv: IntervalModel, s: State, held: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swap a group of layer l on a with a group of layer m on b (l != m): (ΔOverflow, Δseconds) (L, N, N, L).

    The layers' stages are independent, so the latency change is the sum of the two
    one-group moves `d` (L, from, to); so is the migration change, an estimate the
    search checks exactly before it accepts a swap.
    """
    L, N = iv.L, iv.N
    counts = s.counts
    total = d[:, :, :, None] + np.transpose(d, (2, 1, 0))[None]  # [l, a, b, m] = d[l, a, b] + d[m, b, a]
    a, b = np.arange(N)[None, :, None, None], np.arange(N)[None, None, :, None]
    # device a gives up group(l) - group(m) bytes to device b
    dov = iv.shift_overflow(held, a, b, [(v.group[:, None] - v.group[None, :])[:, None, None, :] for v in iv.views])
    layers, devices = np.arange(L), np.arange(N)
    valid = ((counts[:, :, None, None] > 0) & (counts.T[None, None, :, :] > 0)
             & (layers[:, None, None, None] != layers[None, None, None, :])
             & (devices[None, :, None, None] != devices[None, None, :, None]))
    return np.where(valid, dov, np.inf), np.where(valid, total, np.inf)


# ----------------------------------------------------------------------------- one decision
def local_search(iv: IntervalModel, s: State, max_moves: int, deadline: Deadline = Deadline()) -> tuple[State, int]:
    """Local search from `s`: the best candidate of every neighbourhood, the best rank first, until none improves.

    Parameters
    ----------
    iv : IntervalModel
    s : State
    max_moves : int
        Cap on the moves made.
    deadline : Deadline, optional
        Checked before every round of moves: once it has passed, the state reached so far
        is returned (default: none).

    Returns
    -------
    State, int
        The state reached and the moves made.
    """
    cost = iv.cost(s)
    iv.scale = max(cost[1], 1e-12)
    moves = 0
    while moves < max_moves and not deadline.expired:
        held = iv.held(s)
        mig = iv.migration_of(s)
        dov, dlat, origin = group_moves(iv, s, held, mig)
        options = []
        if hit := _best(iv, dov, dlat):
            (l, a, j), rank = hit
            options.append((rank, move_group(int(l), int(origin[l, a, j]), int(a), int(j))))
        for kind, kdov, kd in block_moves(iv, s, held, mig):
            if hit := _best(iv, kdov, kd):
                (l, j), rank = hit
                options.append((rank, relocate(kind, int(l), int(j))))
        # Swaps, when no move helps but a move that would gain time is held back by memory.
        blocked = (dlat < -IMPROVEMENT * iv.scale) & (dov[0] > iv.tolerance)
        if not options and blocked.any() and 1 < iv.L and iv.L**2 * iv.N**2 <= _MAX_SWAP_CANDIDATES:
            sdov, sd = _swaps(iv, s, held, np.where(np.isfinite(dlat), dlat, 0.0))
            if hit := _best(iv, sdov, sd):
                (l, a, b, m), rank = hit
                first = move_group(int(l), int(origin[l, a, b]), int(a), int(b))
                second = move_group(int(m), int(origin[m, b, a]), int(b), int(a))
                options.append((rank, lambda st, f=first, g=second: g(f(st))))
        for _, apply in sorted(options, key=lambda option: option[0]):
            trial = apply(s)
            trial_cost = iv.cost(trial)
            if iv.better(trial_cost, cost):  # exact: swaps' migration was an estimate
                s, cost = trial, trial_cost
                moves += 1
                break
        else:
            break
    return s, moves
