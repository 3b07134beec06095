"""``myopic+``'s compound moves: several blocks at once, scored by a full recount.

Families (listed once, in `compound_moves`): a contiguous range of layers whole to
one device (with ``embed`` / ``lm_head`` at its ends), two devices' loads swapped,
``embed`` with ``lm_head``. `compound_search` takes the best improving one; failing
that, the fastest few (whatever their memory) are each followed by local search, an
ejection chain when the move overflows memory, a plateau step when it ties.
"""

from __future__ import annotations

import numpy as np

from placement.solvers.interval_costs import IntervalModel, State
from placement.solvers.local_moves import local_search

__all__ = ["COMPOUND_LIMIT", "FIRST_COMPOUND_LIMIT", "compound_count", "compound_moves", "compound_search",
           "ends_to", "layers_to", "swap_devices"]

# Compound candidates a later decision may score (the first decision: up to FIRST_COMPOUND_LIMIT).
COMPOUND_LIMIT = 200
FIRST_COMPOUND_LIMIT = 1_000
# Beyond this many layers, the layer ranges are single layers, prefixes and suffixes only.
_ALL_RANGES_LAYERS = 8
# Compound moves that do not improve at once but are tried with a local search after them
# (ejection chains, plateaus): the fastest few by seconds, whatever their memory.
_CHAINS = 4


def layers_to(s: State, first: int, last: int, j: int, ends: bool) -> State:
    """Layers first..last whole (groups, projection, FFN) on device j; with `ends`, embed
    (when the range starts at layer 0) and lm_head (when it ends at the last) too."""
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
    """Every block on device a goes to b and every block on b to a."""
    s = s.copy()
    s.origin[:, :, [a, b]] = s.origin[:, :, [b, a]]
    swap = np.arange(s.origin.shape[1])
    swap[[a, b]] = [b, a]
    s.projection, s.ffn = swap[s.projection], swap[s.ffn]
    s.embed, s.lm_head = int(swap[s.embed]), int(swap[s.lm_head])
    return s


def compound_moves(s: State, L: int, N: int) -> list[State]:
    """Every compound move from `s`: contiguous layer ranges (a single layer included) to one
    device, with and without the embed / lm_head at their ends, two devices' loads swapped, and
    embed and lm_head moved together."""
    out = [layers_to(s, first, last, j, ends) for first, last in _ranges(L)
           for j in range(N) for ends in ((False, True) if first == 0 or last == L - 1 else (False,))]
    return out + [swap_devices(s, a, b) for a in range(N) for b in range(a + 1, N)] + [ends_to(s, j) for j in range(N)]


def ends_to(s: State, j: int) -> State:
    """embed and lm_head together on device j (a tied pair shares its memory only there)."""
    s = s.copy()
    s.embed = s.lm_head = j
    return s


def _ranges(L: int) -> list[tuple[int, int]]:
    """Layer ranges (first, last) of the compound moves: all of them up to `_ALL_RANGES_LAYERS`
    layers, else single layers, prefixes and suffixes."""
    if L <= _ALL_RANGES_LAYERS:
        return [(first, last) for first in range(L) for last in range(first, L)]
    return sorted({(l, l) for l in range(L)} | {(0, l) for l in range(L)} | {(l, L - 1) for l in range(L)})


def compound_count(L: int, N: int) -> int:
    ranges = _ranges(L)
    ends = sum(first == 0 or last == L - 1 for first, last in ranges)
    return N * (len(ranges) + ends) + N * (N - 1) // 2 + N


def _repair(iv: IntervalModel, s: State, max_moves: int) -> State:
    """Local search from `s`; when memory still overflows, the best compound move from there
    and local search again (a chain two compound moves deep)."""
    s, _ = local_search(iv, s, max_moves)
    if iv.cost(s)[0] > iv.tolerance:
        s = min(compound_moves(s, iv.L, iv.N), key=iv.cost)
        s, _ = local_search(iv, s, max_moves)
    return s


def compound_search(iv: IntervalModel, s: State, max_moves: int, limit: int) -> tuple[State, int]:
    """Local search, then compound moves while one improves: the best improving one is
    taken; failing that, the few fastest ones (those that overflow memory, or tie) are
    each followed by local search (an ejection chain: what the move pushes out goes where
    it costs least) and the first that ends better is taken; after each, local search again."""
    s, moves = local_search(iv, s, max_moves)
    if compound_count(iv.L, iv.N) > limit:
        return s, moves
    while moves < max_moves:
        cost = iv.cost(s)
        candidates = compound_moves(s, iv.L, iv.N)
        costs = [iv.cost(c) for c in candidates]
        best = min(range(len(costs)), key=lambda i: costs[i])
        taken = candidates[best] if iv.better(costs[best], cost) else None
        if taken is None:
            # The fastest candidates whatever their memory, each followed by local search:
            # one that overflows is repaired (an ejection chain), one that ties opens a plateau.
            fastest = sorted(range(len(costs)), key=lambda i: costs[i][1])
            for i in fastest[:_CHAINS]:
                repaired = _repair(iv, candidates[i], max_moves - moves)
                if iv.better(iv.cost(repaired), cost):
                    taken = repaired
                    break
        if taken is None:
            break
        s, more = local_search(iv, taken, max_moves - moves - 1)
        moves += 1 + more
    return s, moves
