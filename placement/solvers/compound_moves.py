"""``myopic+``'s compound moves: several blocks at once, scored by a batched full recount.

Families (listed once, in `compound_moves`): a contiguous range of layers whole to
one device (with ``embed`` / ``lm_head`` at its ends), two devices' loads swapped,
``embed`` with ``lm_head``, layer splits (`layer_splits`: some of a layer's groups from
one device to another, its projection and FFN on any devices, a third included, and
``embed`` / ``lm_head`` too when that stays small) and block pairs (`block_pairs`: two
different blocks each to another device). `compound_search` takes the best improving
one; failing that, the fastest few (whatever their memory, and whose overflow one
block's move could clear) are each followed by local search: an ejection chain when
the move overflows memory, a plateau step when it ties. Every candidate is scored by
`placement.solvers.interval_costs.IntervalModel.costs`, all of a round's at once.
docs/online.md has the families, their counts and the limits.
"""

from __future__ import annotations

import numpy as np

from placement.options import Deadline
from placement.solvers.interval_costs import IntervalModel, State, States, concat, stack
from placement.solvers.local_moves import local_search

__all__ = ["COMPOUND_LIMIT", "FIRST_COMPOUND_LIMIT", "PAIR_LIMIT", "SPLIT_LIMIT", "block_pairs", "compound_count",
           "compound_moves", "compound_search", "ends_to", "layer_split_count", "layer_splits", "layers_to",
           "swap_devices", "whole_move_count"]

# Compound candidates a later decision may score (the first decision: up to FIRST_COMPOUND_LIMIT).
COMPOUND_LIMIT = 200
FIRST_COMPOUND_LIMIT = 1_000
# Layer splits are scored only when a round has at most this many of them (every tiny
# instance of the random suite: 2 layers, 8 groups, 5 devices make 1,650).
SPLIT_LIMIT = 5_000
# Pairs of one-block moves are scored only when a round has at most this many of them.
PAIR_LIMIT = 5_000
# Beyond this many layers, the layer ranges are single layers, prefixes and suffixes only.
_ALL_RANGES_LAYERS = 8
# Compound moves that do not improve at once but are tried with a local search after them
# (ejection chains, plateaus): the fastest few by seconds whatever their memory, and as
# many of those over memory by at most one block.
_CHAINS = 4


def layers_to(s: State, first: int, last: int, j: int, ends: bool) -> State:
    """Layers first..last whole (groups, projection, FFN) on device j; with `ends`, embed
    (when the range starts at layer 0) and lm_head (when it ends at the last) too.

    Parameters
    ----------
    s : State
    first, last : int
        The layer range, inclusive.
    j : int
        The device.
    ends : bool

    Returns
    -------
    State
        A new state (`s` is unchanged).
    """
    s = s.copy()
    came = s.origin[first:last + 1].sum(axis=2)  # (layers, from)
    s.origin[first:last + 1] = 0
    s.origin[first:last + 1, :, j] = came
    s.projection[first:last + 1] = j
    s.ffn[first:last + 1] = j
    if ends and first == 0:
        s.embed = j
    if ends and last == len(s.projection) - 1:
        s.lm_head = j
    return s


def swap_devices(s: State, a: int, b: int) -> State:
    """Every block on device a goes to b and every block on b to a.

    Parameters
    ----------
    s : State
    a, b : int
        Devices.

    Returns
    -------
    State
        A new state.
    """
    s = s.copy()
    s.origin[:, :, [a, b]] = s.origin[:, :, [b, a]]
    swap = np.arange(s.origin.shape[1])
    swap[[a, b]] = [b, a]
    s.projection, s.ffn = swap[s.projection], swap[s.ffn]
    s.embed, s.lm_head = int(swap[s.embed]), int(swap[s.lm_head])
    return s


def ends_to(s: State, j: int) -> State:
    """embed and lm_head together on device j (a tied pair shares its memory only there).

    Parameters
    ----------
    s : State
    j : int
        The device.

    Returns
    -------
    State
        A new state.
    """
    s = s.copy()
    s.embed = s.lm_head = j
    return s


def _ranges(L: int) -> list[tuple[int, int]]:
    """Layer ranges (first, last) of the compound moves: all of them up to `_ALL_RANGES_LAYERS`
    layers, else single layers, prefixes and suffixes."""
    if L <= _ALL_RANGES_LAYERS:
        return [(first, last) for first in range(L) for last in range(first, L)]
    return sorted({(l, l) for l in range(L)} | {(0, l) for l in range(L)} | {(l, L - 1) for l in range(L)})


def _whole_moves(s: State, L: int, N: int) -> list[State]:
    """Contiguous layer ranges (a single layer included) to one device, with and without
    the embed / lm_head at their ends, two devices' loads swapped, embed and lm_head together."""
    out = [layers_to(s, first, last, j, ends) for first, last in _ranges(L)
           for j in range(N) for ends in ((False, True) if first == 0 or last == L - 1 else (False,))]
    return out + [swap_devices(s, a, b) for a in range(N) for b in range(a + 1, N)] + [ends_to(s, j) for j in range(N)]


def _moved_groups(origin: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
    """One layer's `origin` (N, N) after `c` of its groups on device a go to b: those from b
    first (they go home), then those from elsewhere, those from a last (they leave home)."""
    origin = origin.copy()
    N = origin.shape[0]
    for u in [b] + [u for u in range(N) if u not in (a, b)] + [a]:
        take = min(c, int(origin[u, a]))
        origin[u, a] -= take
        origin[u, b] += take
        c -= take
    return origin


def layer_splits(s: State, N: int, ends: bool = False) -> States:
    """Every layer split from `s`: for each layer l, device a holding c0 of its groups, device
    b != a and 1 <= c <= c0, c groups of l from a to b; and for each of these, and for the
    groups left as they are, the layer's projection on any device p and its FFN on any f.

    Parameters
    ----------
    s : State
    N : int
        Devices.
    ends : bool
        Also every (embed, lm_head) pair of devices with each of them (N² times as many).

    Returns
    -------
    States
        ``layer_split_count(L, K, N, ends)`` candidates (L layers, K groups a layer).
    """
    L = len(s.projection)
    origins, layers = [], []
    for l in range(L):
        counts = s.origin[l].sum(axis=0)
        variants = [s.origin[l]] + [_moved_groups(s.origin[l], a, b, c) for a in range(N) for b in range(N)
                                    if b != a for c in range(1, int(counts[a]) + 1)]
        origins += variants
        layers += [l] * len(variants)
    layers = np.repeat(np.array(layers), N * N)
    J = len(layers)
    origin = np.repeat(s.origin[None], J, axis=0)
    origin[np.arange(J), layers] = np.repeat(np.array(origins), N * N, axis=0)
    projection, ffn = np.repeat(s.projection[None], J, axis=0), np.repeat(s.ffn[None], J, axis=0)
    projection[np.arange(J), layers] = np.tile(np.repeat(np.arange(N), N), J // (N * N))
    ffn[np.arange(J), layers] = np.tile(np.arange(N), J // N)
    if not ends:
        return States(origin, projection, ffn, np.full(J, s.embed), np.full(J, s.lm_head))
    pairs = N * N
    return States(np.repeat(origin, pairs, axis=0), np.repeat(projection, pairs, axis=0), np.repeat(ffn, pairs, axis=0),
                  np.tile(np.repeat(np.arange(N), N), J), np.tile(np.arange(N), J * N))


def layer_split_count(L: int, K: int, N: int, ends: bool = False) -> int:
    """Candidates of `layer_splits`: per layer, K (N - 1) group moves and none, times N² (projection,
    FFN), times N² again with `ends` (embed, lm_head).

    Parameters
    ----------
    L, K, N : int
        Layers, groups a layer, devices.
    ends : bool

    Returns
    -------
    int
    """
    return L * (K * (N - 1) + 1) * N**(4 if ends else 2)


def compound_count(s: State, N: int) -> int:
    """Candidates of `compound_moves` from `s`.

    Parameters
    ----------
    s : State
        The state the round starts from (the block pairs depend on where its groups are).
    N : int
        Devices.

    Returns
    -------
    int
        The batch's length.
    """
    L, K = len(s.projection), int(s.origin[0].sum())
    pairs = _pair_count(s, N)
    return whole_move_count(L, N) + _split_count(L, K, N)[0] + (pairs if pairs <= PAIR_LIMIT else 0)


def _split_count(L: int, K: int, N: int) -> tuple[int, bool]:
    """The layer splits a round scores and whether with the ends: with them when they fit in
    `SPLIT_LIMIT`, else without them when those fit, else none."""
    for ends in (True, False):
        if (count := layer_split_count(L, K, N, ends)) <= SPLIT_LIMIT:
            return count, ends
    return 0, False


def whole_move_count(L: int, N: int) -> int:
    """Candidates of the whole-block families (layer ranges, device swaps, ends together).

    Parameters
    ----------
    L, N : int
        Layers and devices.

    Returns
    -------
    int
        Compound moves are made only when this is within a decision's limit.
    """
    ranges = _ranges(L)
    ends = sum(first == 0 or last == L - 1 for first, last in ranges)
    return N * (len(ranges) + ends) + N * (N - 1) // 2 + N


def compound_moves(s: State, L: int, N: int) -> States:
    """Every compound move from `s`, one batch: the one place the families are listed.

    Parameters
    ----------
    s : State
    L, N : int
        Layers and devices.

    Returns
    -------
    States
        The whole-block moves (layer ranges, device swaps, embed with lm_head), then the
        layer splits (with every embed / lm_head pair when that makes at most
        `SPLIT_LIMIT` candidates, else without when that does, else none).
    """
    families = [stack(_whole_moves(s, L, N))]
    count, ends = _split_count(L, int(s.origin[0].sum()), N)
    if count:
        families.append(layer_splits(s, N, ends))
    if _pair_count(s, N) <= PAIR_LIMIT:
        families.append(block_pairs(s, N))
    return concat(families)


def _relocations(s: State, N: int) -> list[State]:
    """Every one-block move from `s`: a group of a layer from a device to another (by
    `_moved_groups`' rule), a projection, an FFN, embed or lm_head to another device."""
    L, out = len(s.projection), []
    counts = s.counts
    for l in range(L):
        for a in np.flatnonzero(counts[l]):
            for b in range(N):
                if b != a:
                    moved = s.copy()
                    moved.origin[l] = _moved_groups(s.origin[l], int(a), b, 1)
                    out.append(moved)
        for kind in ("projection", "ffn"):
            for b in range(N):
                if b != getattr(s, kind)[l]:
                    moved = s.copy()
                    getattr(moved, kind)[l] = b
                    out.append(moved)
    for kind in ("embed", "lm_head"):
        for b in range(N):
            if b != getattr(s, kind):
                moved = s.copy()
                setattr(moved, kind, b)
                out.append(moved)
    return out


def _pair_count(s: State, N: int) -> int:
    """Candidates of `block_pairs`: two of the B blocks (a layer's groups on one device count as
    one), each to one of the N - 1 other devices."""
    blocks = int((s.counts > 0).sum()) + 2 * len(s.projection) + 2
    return blocks * (blocks - 1) // 2 * (N - 1) ** 2


def block_pairs(s: State, N: int) -> States:
    """Every pair of one-block moves of different blocks from `s`, both made (an exchange when
    the two blocks trade devices, an ejection when one frees the memory the other needs).

    Parameters
    ----------
    s : State
    N : int
        Devices.

    Returns
    -------
    States
        Two different blocks moved, every pair of destinations (``_pair_count``); a
        layer's groups on one device count as one block (moving two of them is a layer split).
    """
    single = _relocations(s, N)
    diffs = [(m.origin - s.origin, m.projection - s.projection, m.ffn - s.ffn,
              m.embed - s.embed, m.lm_head - s.lm_head) for m in single]
    keys = [_block_key(s, m) for m in single]
    i, j = np.triu_indices(len(single), 1)
    keep = np.array([keys[x] != keys[y] for x, y in zip(i, j)], dtype=bool)
    i, j = i[keep], j[keep]
    stacked = [np.array([d[f] for d in diffs]) for f in range(5)]
    base = (s.origin, s.projection, s.ffn, s.embed, s.lm_head)
    return States(*(b + d[i] + d[j] for b, d in zip(base, stacked)))


def _block_key(s: State, m: State) -> tuple:
    """Which block a one-block move `m` of `s` moves: (kind, layer, device it leaves)."""
    if (m.origin != s.origin).any():
        l = int(np.flatnonzero((m.origin != s.origin).any(axis=(1, 2)))[0])
        return ("group", l, int(np.flatnonzero(m.counts[l] < s.counts[l])[0]))
    for kind in ("projection", "ffn"):
        changed = np.flatnonzero(getattr(m, kind) != getattr(s, kind))
        if changed.size:
            return (kind, int(changed[0]))
    return ("embed",) if m.embed != s.embed else ("lm_head",)


def _ranked(iv: IntervalModel, batch: States) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch's costs and its candidates in order of cost (overflow, then seconds; ties by index)."""
    over, seconds = iv.costs(batch)
    return over, seconds, np.lexsort((seconds, over))


def _chain_starts(iv: IntervalModel, over: np.ndarray, seconds: np.ndarray) -> list[int]:
    """The candidates ejection chains start from: the `_CHAINS` fastest, then the `_CHAINS`
    fastest of those over memory by at most one block's bytes."""
    fastest = np.argsort(seconds, kind="stable")
    near = fastest[over[fastest] <= iv.block_bytes + iv.tolerance]
    return list(dict.fromkeys(int(i) for i in np.concatenate([fastest[:_CHAINS], near[:_CHAINS]])))


def _repair(iv: IntervalModel, s: State, max_moves: int) -> State:
    """Local search from `s`; when memory still overflows, the best compound move from there
    and local search again (a chain two compound moves deep)."""
    s, _ = local_search(iv, s, max_moves)
    if iv.cost(s)[0] > iv.tolerance:
        batch = compound_moves(s, iv.L, iv.N)
        s, _ = local_search(iv, batch.state(int(_ranked(iv, batch)[2][0])), max_moves)
    return s


def compound_search(iv: IntervalModel, s: State, max_moves: int, limit: int,
                    deadline: Deadline = Deadline()) -> tuple[State, int]:
    """Local search, then compound moves while one improves.

    The best improving one is taken; failing that, the few fastest ones (those that
    overflow memory, or tie) are each followed by local search (an ejection chain: what
    the move pushes out goes where it costs least) and the first that ends better is
    taken; after each, local search again.

    Parameters
    ----------
    iv : IntervalModel
    s : State
        Where the search starts.
    max_moves : int
        Cap on the moves made (local and compound).
    limit : int
        No compound moves when the layer ranges, swaps and ends moves alone are more
        candidates than this; then `s` is returned as it is (it is a local search's result).
    deadline : Deadline, optional
        Checked before every round (and by the local searches): once it has passed, the
        best state found so far is returned (default: none).

    Returns
    -------
    State, int
        The best state found and the moves made.
    """
    if whole_move_count(iv.L, iv.N) > limit:
        return s, 0  # `s` is a local search's result: searching it again only re-scores its neighbourhood
    s, moves = local_search(iv, s, max_moves, deadline)
    while moves < max_moves and not deadline.expired:
        cost = iv.cost(s)
        batch = compound_moves(s, iv.L, iv.N)
        over, seconds, order = _ranked(iv, batch)
        best = int(order[0])
        taken = batch.state(best) if iv.better((over[best], seconds[best]), cost) else None
        if taken is None:
            # The fastest candidates whatever their memory, then the fastest whose overflow one
            # block's move could clear, each followed by local search: one that overflows is
            # repaired (an ejection chain), one that ties opens a plateau.
            for i in _chain_starts(iv, over, seconds):
                repaired = _repair(iv, batch.state(int(i)), max_moves - moves)
                if iv.better(iv.cost(repaired), cost):
                    taken = repaired
                    break
        if taken is None:
            break
        s, more = local_search(iv, taken, max_moves - moves - 1, deadline)
        moves += 1 + more
    return s, moves
