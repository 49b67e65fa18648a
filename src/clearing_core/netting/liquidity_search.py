"""Numba kernels of the gridlock-resolution heuristic (see ``liquidity_kernels``).

* Two starts, each deferring obligations until no cap is broken:
  ``cascade`` defers, at a participant over its cap, the smallest outflow
  that clears the excess and whose payee can lose it without breaking its
  own cap (else the smallest that clears it, else the largest, and repeat);
  ``fill`` keeps a participant's outflows largest first while they fit its
  inflows plus cap (first-fit decreasing on a subset-sum).
* Re-admission: deferred obligations that fit again settle, largest first;
  a participant whose position rose is looked at again.
* Local search, a few rounds while it gains: ``drop`` defers one settled
  outflow when more value then re-admits around it; ``chain`` admits a
  deferred obligation together with up to three deferred inflows covering
  the shortfall it causes (this unlocks cycles that only fit together);
  ``insert`` settles a deferred obligation and repairs the caps it breaks
  by deferring cheaper ones (an ejection chain). Each move is kept only if
  the settled value strictly grows, so the search terminates.
* The start with the larger settled value wins (ties: ``cascade``).
"""

from __future__ import annotations

import numpy as np

from clearing_core.jit import I64, kernel
from clearing_core.netting.liquidity_kernels import (
    CASCADE_SCAN,
    MOVE_TRIES,
    Graph,
    State,
    _clear_queue,
    _defer,
    _find_first,
    _find_last,
    _fit_bound,
    _fits,
    _lower_bound,
    _pop,
    _push,
    _settle,
    _violates,
)


@kernel
def _pick_defer(g: Graph, st: State, v: int, skip: int) -> int:
    """CSR position of the outflow of v (over its cap) to defer next, never
    ``skip``; -1 if only ``skip`` could be deferred."""
    cap, out_start, out_items, out_amt, tree = g[3], g[4], g[5], g[6], st[6]
    s0, s1 = out_start[v], out_start[v + 1]
    k = _lower_bound(out_amt, s0, s1, -cap[v] - st[0][v])
    cover = -1
    j = _find_first(tree, k, s1, False)
    tries = 0
    while j >= 0 and tries < CASCADE_SCAN:
        i = out_items[j]
        if i != skip:
            if _fits(g, st, g[1][i], out_amt[j]):
                return j
            if cover < 0:
                cover = j
        tries += 1
        j = _find_first(tree, j + 1, s1, False)
    if cover >= 0:
        return cover
    if j >= 0:
        return j
    top = _find_last(tree, s0, k, False)
    if top >= 0 and out_items[top] == skip:
        top = _find_last(tree, s0, top, False)
    if top < 0:
        return -1
    j = _find_first(tree, _lower_bound(out_amt, s0, s1, out_amt[top]), s1, False)
    if out_items[j] == skip:
        j = _find_first(tree, j + 1, s1, False)
    return j


@kernel
def _seed_violators(g: Graph, st: State) -> None:
    for p in range(g[3].shape[0]):
        if _violates(g, st, p):
            _push(st, p)


@kernel
def _cure(g: Graph, st: State, p: int) -> None:
    while _violates(g, st, p):
        i = g[5][_pick_defer(g, st, p, -1)]
        _defer(g, st, i)
        if _violates(g, st, g[1][i]):
            _push(st, g[1][i])


@kernel
def _start_cascade(g: Graph, st: State) -> None:
    """Defer outflows of participants over their cap, cheapest cure first."""
    _seed_violators(g, st)
    while st[5][1] > 0:
        _cure(g, st, _pop(st))


@kernel
def _start_fill(g: Graph, st: State) -> None:
    """Keep an over-cap participant's outflows largest first while they fit;
    a participant that breaks its cap again later is cured as in cascade."""
    cap, out_start, out_items, out_amt = g[3], g[4], g[5], g[6]
    filled = np.zeros(cap.shape[0], np.bool_)
    _seed_violators(g, st)
    while st[5][1] > 0:
        p = _pop(st)
        if not _violates(g, st, p):
            continue
        if filled[p]:
            _cure(g, st, p)
            continue
        filled[p] = True
        s0, s1 = out_start[p], out_start[p + 1]
        inflow_only = st[0][p]
        for j in range(s0, s1):
            inflow_only += out_amt[j]
        cur = inflow_only
        for j in range(s1 - 1, s0 - 1, -1):
            if out_amt[j] - cap[p] <= cur:
                cur -= out_amt[j]
            else:
                i = out_items[j]
                _defer(g, st, i)
                if _violates(g, st, g[1][i]):
                    _push(st, g[1][i])


@kernel
def _admit_at(g: Graph, st: State, p: int, skip: int, log: I64, k: int) -> int:
    """Settle p's deferred outflows that fit, largest first (never ``skip``),
    recording them in ``log`` from entry k when it is not empty; stops when
    the log is full. Returns the new end of the log."""
    cap, out_start, out_items, tree = g[3], g[4], g[5], st[6]
    s0 = out_start[p]
    hi = _fit_bound(g, st, p)
    while True:
        j = _find_last(tree, s0, hi, True)
        if j < 0:
            return k
        i = out_items[j]
        hi = j
        if i == skip:
            continue
        _settle(g, st, i)
        if cap[g[1][i]] >= 0:
            _push(st, g[1][i])
        if log.shape[0] > 0:
            log[k] = i
            k += 1
            if k == log.shape[0]:
                return k
        hi = min(hi, _fit_bound(g, st, p))


@kernel
def _drain(g: Graph, st: State, skip: int, log: I64, k: int) -> int:
    """Re-admit around every queued participant (see ``_admit_at``)."""
    while st[5][1] > 0 and (log.shape[0] == 0 or k < log.shape[0]):
        k = _admit_at(g, st, _pop(st), skip, log, k)
    return k


@kernel
def _readmit_all(g: Graph, st: State) -> None:
    for p in range(g[3].shape[0]):
        if st[2][p] > 0:
            _push(st, p)
    _drain(g, st, -1, np.empty(0, np.int64), 0)


@kernel
def _try_drop(g: Graph, st: State, i: int, log: I64) -> bool:
    """Defer settled obligation i and re-admit around its debtor; keep the
    result only if the settled value grows."""
    _defer(g, st, i)
    _push(st, g[0][i])
    k = _drain(g, st, i, log, 0)
    gain = -g[2][i]
    for t in range(k):
        gain += g[2][log[t]]
    if gain > 0:
        return True
    _clear_queue(st)
    for t in range(k - 1, -1, -1):
        _defer(g, st, log[t])
    _settle(g, st, i)
    return False


@kernel
def _drop_round(g: Graph, st: State, log: I64) -> None:
    """For each participant with deferred outflows, try deferring one of its
    settled outflows (smallest first) so that more value can settle around it."""
    cap, out_start, out_items, out_amt, tree = g[3], g[4], g[5], g[6], st[6]
    for p in range(cap.shape[0]):
        if cap[p] < 0 or st[2][p] == 0:
            continue
        s0, s1 = out_start[p], out_start[p + 1]
        smallest = out_amt[_find_first(tree, s0, s1, True)]
        j = _find_first(tree, s0, s1, False)
        visits = 0
        tries = 0
        while j >= 0 and visits < 4 * MOVE_TRIES and tries < MOVE_TRIES:
            visits += 1
            i = out_items[j]
            freed = out_amt[j]
            # after freeing `freed`, can p pay its smallest deferred outflow?
            room = smallest <= freed or smallest - freed - cap[p] <= st[0][p]
            if room and _fits(g, st, g[1][i], freed):
                tries += 1
                if _try_drop(g, st, i, log):
                    break
            j = _find_first(tree, j + 1, s1, False)


@kernel
def _pick_inflow(g: Graph, st: State, v: int) -> int:
    """A deferred inflow of v (over its cap) whose payer can now afford it:
    the smallest that covers the excess, else the largest; -1 if none
    (bounded scans)."""
    cap, in_start, in_items, in_amt = g[3], g[7], g[8], g[9]
    t0, t1 = in_start[v], in_start[v + 1]
    k = _lower_bound(in_amt, t0, t1, -cap[v] - st[0][v])
    for j in range(k, min(t1, k + CASCADE_SCAN)):
        i = in_items[j]
        if not st[1][i] and _fits(g, st, g[0][i], in_amt[j]):
            return int(i)
    for j in range(k - 1, max(t0, k - CASCADE_SCAN) - 1, -1):
        i = in_items[j]
        if not st[1][i] and _fits(g, st, g[0][i], in_amt[j]):
            return int(i)
    return -1


@kernel
def _repair(g: Graph, st: State, skip: int, log: I64, k: int) -> tuple[int, bool]:
    """Cure queued participants over their cap: first by admitting deferred
    inflows their payers can afford (logged as -(i + 1)), then by deferring
    outflows other than ``skip`` (logged as i). Returns the new end of the
    log and whether all caps hold (false when the log fills or no cure exists)."""
    while st[5][1] > 0:
        v = _pop(st)
        while _violates(g, st, v):
            if k >= log.shape[0]:
                return k, False
            i = _pick_inflow(g, st, v)
            if i >= 0:
                _settle(g, st, i)
                log[k] = -(i + 1)
                k += 1
                continue
            j = _pick_defer(g, st, v, skip)
            if j < 0:
                return k, False
            i = g[5][j]
            _defer(g, st, i)
            log[k] = i
            k += 1
            if _violates(g, st, g[1][i]):
                _push(st, g[1][i])
    return k, True


@kernel
def _undo(g: Graph, st: State, log: I64, start: int, end: int, plain_from: int) -> None:
    """Reverse log entries [start, end): entries before ``plain_from`` use the
    repair encoding, later ones are plain settlements."""
    for t in range(end - 1, start - 1, -1):
        entry = log[t]
        if t >= plain_from or entry < 0:
            _defer(g, st, entry if t >= plain_from else -entry - 1)
        else:
            _settle(g, st, entry)


@kernel
def _try_insert(g: Graph, st: State, i: int, log: I64) -> int:
    """Settle deferred obligation i, repair the caps it breaks, re-admit
    around what was deferred; keep it only if the settled value grows.
    Returns the log entries used, negated when kept."""
    debtor, creditor, amount, cap = g[0], g[1], g[2], g[3]
    _settle(g, st, i)
    log[0] = i
    _push(st, debtor[i])
    repaired, ok = _repair(g, st, i, log, 1)
    k = repaired
    if ok:
        if cap[creditor[i]] >= 0:
            _push(st, creditor[i])
        for t in range(1, repaired):
            if log[t] >= 0:
                _push(st, debtor[log[t]])
        k = _drain(g, st, -1, log, repaired)
        gain = amount[i]
        for t in range(1, k):
            entry = log[t]
            if t >= repaired:
                gain += amount[entry]
            elif entry < 0:
                gain += amount[-entry - 1]
            else:
                gain -= amount[entry]
        if gain > 0:
            return -k
    _clear_queue(st)
    _undo(g, st, log, 1, k, repaired)
    _defer(g, st, i)
    return k


@kernel
def _insert_round(g: Graph, st: State, log: I64, budget: int) -> None:
    """Try an insert-and-repair for the largest deferred obligations of each
    participant, within a budget of logged steps."""
    cap, out_start, out_items, tree = g[3], g[4], g[5], st[6]
    spent = 0
    for p in range(cap.shape[0]):
        if cap[p] < 0 or st[2][p] == 0:
            continue
        j = _find_last(tree, out_start[p], out_start[p + 1], True)
        tries = 0
        while j >= 0 and tries < MOVE_TRIES:
            tries += 1
            spent += abs(_try_insert(g, st, out_items[j], log))
            if spent > budget:
                return
            j = _find_last(tree, out_start[p], j, True)
