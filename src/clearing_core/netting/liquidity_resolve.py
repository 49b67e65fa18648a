"""Numba kernels: the chained admission move and the whole gridlock resolution.

A cycle of obligations between capped participants may fit only when all
of it settles at once (A pays B, B pays A, neither can pay first), which no
single-obligation move finds. ``chain`` admits a deferred obligation and
then, depth first, deferred inflows of whoever is short, keeping all or
nothing.
"""

from __future__ import annotations

import numpy as np

from clearing_core.jit import I64, IntArray, Mask, kernel
from clearing_core.netting.liquidity_kernels import (
    ABOUT_EQUAL,
    CHAIN_BRANCH,
    CHAIN_DEPTH,
    CHAIN_SCAN,
    IMPROVE_ROUNDS,
    MOVE_LOG,
    MOVE_TRIES,
    ROUND_GAIN_STOP,
    Graph,
    State,
    _build_graph,
    _defer,
    _find_last,
    _lower_bound,
    _new_state,
    _push,
    _settle,
    _settled_value,
    _violates,
)
from clearing_core.netting.liquidity_search import (
    _drain,
    _drop_round,
    _insert_round,
    _readmit_all,
    _start_cascade,
    _start_fill,
)


@kernel
def _chain_candidates(g: Graph, st: State, v: int, row: I64) -> int:
    """Deferred inflows of v to try: the smallest that cover its shortfall, or
    failing that the largest one (a bounded scan either way)."""
    cap, in_start, in_items, in_amt = g[3], g[7], g[8], g[9]
    settled = st[1]
    t0, t1 = in_start[v], in_start[v + 1]
    n = 0
    j = _lower_bound(in_amt, t0, t1, -cap[v] - st[0][v])
    stop = min(t1, j + CHAIN_SCAN)
    while j < stop and n < CHAIN_BRANCH:
        if not settled[in_items[j]]:
            row[n] = in_items[j]
            n += 1
        j += 1
    j = t1 - 1
    while n == 0 and j >= max(t0, t1 - CHAIN_SCAN):
        if not settled[in_items[j]]:
            row[0] = in_items[j]
            n = 1
        j -= 1
    return n


@kernel
def _first_violator(g: Graph, st: State, added: I64, level: int) -> int:
    for t in range(level + 1):
        d = g[0][added[t]]
        if _violates(g, st, d):
            return int(d)
    return -1


@kernel
def _try_chain(g: Graph, st: State, i: int, added: I64, cand: I64, ncand: I64) -> int:
    """Admit deferred obligation i with deferred inflows that cover the
    shortfalls it causes; all or nothing. Returns the search nodes spent,
    negated on success."""
    next_cand = np.zeros(CHAIN_DEPTH + 1, np.int64)
    _settle(g, st, i)
    added[0] = i
    level = 0
    expand = True
    nodes = 0
    while True:
        if expand:
            nodes += 1
            v = _first_violator(g, st, added, level)
            if v < 0:
                for t in range(level + 1):
                    if g[3][g[1][added[t]]] >= 0:
                        _push(st, g[1][added[t]])
                return -nodes
            ncand[level] = 0 if level == CHAIN_DEPTH else _chain_candidates(g, st, v, cand[level])
            next_cand[level] = 0
        if next_cand[level] < ncand[level]:
            k = cand[level, next_cand[level]]
            next_cand[level] += 1
            _settle(g, st, k)
            level += 1
            added[level] = k
            expand = True
        else:
            _defer(g, st, added[level])
            if level == 0:
                return nodes
            level -= 1
            expand = False


@kernel
def _chain_round(g: Graph, st: State, budget: int) -> None:
    """Try a chained admission for the largest deferred obligations of each
    participant, within a budget of search nodes."""
    cap, out_start, out_items, in_start, tree = g[3], g[4], g[5], g[7], st[6]
    added = np.empty(CHAIN_DEPTH + 1, np.int64)
    cand = np.empty((CHAIN_DEPTH + 1, CHAIN_BRANCH), np.int64)
    ncand = np.zeros(CHAIN_DEPTH + 1, np.int64)
    spent = 0
    for p in range(cap.shape[0]):
        if cap[p] < 0 or st[2][p] == 0 or in_start[p + 1] == in_start[p]:
            continue
        j = _find_last(tree, out_start[p], out_start[p + 1], True)
        tries = 0
        while j >= 0 and tries < MOVE_TRIES:
            tries += 1
            spent += abs(_try_chain(g, st, out_items[j], added, cand, ncand))
            if spent > budget:
                return
            j = _find_last(tree, out_start[p], j, True)


@kernel
def _improve(g: Graph, st: State) -> int:
    """Local search until a round gains less than 1/ROUND_GAIN_STOP of the
    settled value; returns the settled value.
    Each round's chain and insert moves get a work budget linear in the
    number of decisions, so a cycle's time stays bounded on any input."""
    chain_budget = 2 * g[5].shape[0] + 1024
    insert_budget = g[5].shape[0] + 1024
    value = _settled_value(g, st)
    log = np.empty(MOVE_LOG, np.int64)
    none = np.empty(0, np.int64)
    for _ in range(IMPROVE_ROUNDS):
        _drop_round(g, st, log)
        _drain(g, st, -1, none, 0)
        _chain_round(g, st, chain_budget)
        _drain(g, st, -1, none, 0)
        _insert_round(g, st, log, insert_budget)
        _drain(g, st, -1, none, 0)
        new_value = _settled_value(g, st)
        gain = new_value - value
        value = new_value
        if gain <= value // ROUND_GAIN_STOP:
            break
    return value


@kernel
def _resolve_gridlock(
    debtor: IntArray, creditor: IntArray, amount: I64, priority: I64, cap: I64, starts: int
) -> tuple[Mask, I64]:
    """Settled mask and final positions of one currency. ``starts`` 1 runs the
    cascade start only, 2 also the fill start. The caller has checked that
    the gross fits in int64 and that caps are -1 (none) or >= 0."""
    n = cap.shape[0]
    pos0 = np.zeros(n, np.int64)
    for i in range(amount.shape[0]):
        pos0[debtor[i]] -= amount[i]
        pos0[creditor[i]] += amount[i]
    gridlocked = False
    for p in range(n):
        if cap[p] >= 0 and pos0[p] < -cap[p]:
            gridlocked = True
    if not gridlocked:
        return np.ones(amount.shape[0], np.bool_), pos0
    g = _build_graph(debtor, creditor, amount, priority, cap)
    best = _new_state(g, pos0)
    _start_cascade(g, best)
    _readmit_all(g, best)
    best_value = _improve(g, best)
    if starts > 1:
        other = _new_state(g, pos0)
        _start_fill(g, other)
        _readmit_all(g, other)
        other_value = _improve(g, other)
        # values within 1/ABOUT_EQUAL of the gross are "about equal" (DESIGN
        # §6): then the start that defers fewer obligations wins
        tolerance = _decision_gross(g) // ABOUT_EQUAL
        if abs(other_value - best_value) <= tolerance:
            if other[2].sum() < best[2].sum():
                best = other
        elif other_value > best_value:
            best = other
    return best[1], best[0]


@kernel
def _decision_gross(g: Graph) -> int:
    total = 0
    for j in range(g[6].shape[0]):
        total += g[6][j]
    return total
