"""Numba data structures of gridlock resolution (the liquidity-saving mechanism).

The problem (Guntzer, Jungnickel & Leclerc 1998, "the bank clearing
problem"; Bech & Soramaki 2001 for gridlock in payment systems): choose which
obligations settle so that every capped participant ends with a net position
>= -cap, settling as much value as possible. It is NP-hard (a multi-
dimensional knapsack), so ``liquidity_search`` runs a heuristic with local
search over the structures defined here:

* only obligations whose debtor is capped are decisions: one whose debtor has
  no cap can only raise others' positions, so it always settles;
* decisions are bucketed per debtor (and per creditor) in CSR form, each
  bucket sorted by amount asc, priority asc, index desc, so within equal
  amounts the first is the one to defer first (lower priority, later);
* a segment tree counts deferred decisions over the debtor buckets, so
  "next settled outflow >= x" and "largest deferred outflow <= x" cost
  O(log m) even for a participant with a hundred thousand outflows.

Every cap test is written as ``amount - cap <= position``, never as
``cap + position``: with 0 <= cap and positions bounded by the currency's
gross (checked to fit in int64 by the caller), nothing can overflow.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from clearing_core.jit import I64, IntArray, Mask, kernel

CASCADE_SCAN: Final = 32
MOVE_TRIES: Final = 64
CHAIN_DEPTH: Final = 3
CHAIN_BRANCH: Final = 2
CHAIN_SCAN: Final = 32
MOVE_LOG: Final = 64
IMPROVE_ROUNDS: Final = 4
ABOUT_EQUAL: Final = 1000
ROUND_GAIN_STOP: Final = 1000

# (debtor, creditor, amount, cap, out_start, out_items, out_amt, in_start, in_items, in_amt, slot)
Graph = tuple[IntArray, IntArray, I64, I64, I64, I64, I64, I64, I64, I64, I64]
# (pos, settled, n_def, queue, in_queue, queue_state[head, size], deferred-count tree)
State = tuple[I64, Mask, I64, I64, Mask, I64, I64]


@kernel
def _decision_order(debtor: IntArray, amount: I64, priority: I64, cap: I64) -> I64:
    """Obligations with a capped debtor by amount asc, priority asc, index desc."""
    count = 0
    for i in range(amount.shape[0]):
        if cap[debtor[i]] >= 0:
            count += 1
    idx = np.empty(count, np.int64)
    k = 0
    for i in range(amount.shape[0] - 1, -1, -1):
        if cap[debtor[i]] >= 0:
            idx[k] = i
            k += 1
    if count > 0 and priority[idx].min() != priority[idx].max():
        idx = idx[np.argsort(priority[idx], kind="mergesort")]
    return idx[np.argsort(amount[idx], kind="mergesort")]


@kernel
def _csr(owner: IntArray, order: I64, amount: I64, n: int) -> tuple[I64, I64, I64]:
    """Stable bucket of ``order`` by owner: segment starts, items, their amounts."""
    start = np.zeros(n + 1, np.int64)
    for i in order:
        start[owner[i] + 1] += 1
    for p in range(n):
        start[p + 1] += start[p]
    cursor = start[:-1].copy()
    items = np.empty(order.shape[0], np.int64)
    for i in order:
        items[cursor[owner[i]]] = i
        cursor[owner[i]] += 1
    return start, items, amount[items]


@kernel
def _build_graph(
    debtor: IntArray, creditor: IntArray, amount: I64, priority: I64, cap: I64
) -> Graph:
    n = cap.shape[0]
    order = _decision_order(debtor, amount, priority, cap)
    out_start, out_items, out_amt = _csr(debtor, order, amount, n)
    in_start, in_items, in_amt = _csr(creditor, order, amount, n)
    slot = np.full(amount.shape[0], -1, np.int64)
    for j in range(out_items.shape[0]):
        slot[out_items[j]] = j
    return (
        debtor,
        creditor,
        amount,
        cap,
        out_start,
        out_items,
        out_amt,
        in_start,
        in_items,
        in_amt,
        slot,
    )


@kernel
def _new_state(g: Graph, pos0: I64) -> State:
    n = pos0.shape[0]
    size = 1
    while size < max(1, g[5].shape[0]):
        size *= 2
    return (
        pos0.copy(),
        np.ones(g[2].shape[0], np.bool_),
        np.zeros(n, np.int64),
        np.empty(n, np.int64),
        np.zeros(n, np.bool_),
        np.zeros(2, np.int64),
        np.zeros(2 * size, np.int64),
    )


@kernel
def _push(st: State, p: int) -> None:
    queue, in_queue, qs = st[3], st[4], st[5]
    if not in_queue[p]:
        in_queue[p] = True
        queue[(qs[0] + qs[1]) % queue.shape[0]] = p
        qs[1] += 1


@kernel
def _pop(st: State) -> int:
    queue, in_queue, qs = st[3], st[4], st[5]
    p = queue[qs[0]]
    qs[0] = (qs[0] + 1) % queue.shape[0]
    qs[1] -= 1
    in_queue[p] = False
    return int(p)


@kernel
def _clear_queue(st: State) -> None:
    while st[5][1] > 0:
        _pop(st)


@kernel
def _tree_add(tree: I64, position: int, delta: int) -> None:
    node = position + tree.shape[0] // 2
    while node >= 1:
        tree[node] += delta
        node >>= 1


@kernel
def _defer(g: Graph, st: State, i: int) -> None:
    debtor, creditor, amount = g[0], g[1], g[2]
    pos, settled, n_def = st[0], st[1], st[2]
    settled[i] = False
    pos[debtor[i]] += amount[i]
    pos[creditor[i]] -= amount[i]
    n_def[debtor[i]] += 1
    _tree_add(st[6], g[10][i], 1)


@kernel
def _settle(g: Graph, st: State, i: int) -> None:
    debtor, creditor, amount = g[0], g[1], g[2]
    pos, settled, n_def = st[0], st[1], st[2]
    settled[i] = True
    pos[debtor[i]] -= amount[i]
    pos[creditor[i]] += amount[i]
    n_def[debtor[i]] -= 1
    _tree_add(st[6], g[10][i], -1)


@kernel
def _violates(g: Graph, st: State, p: int) -> bool:
    cap = g[3]
    return bool(cap[p] >= 0 and st[0][p] < -cap[p])


@kernel
def _fits(g: Graph, st: State, p: int, a: int) -> bool:
    """Whether p stays within its cap after paying a more (or receiving a less)."""
    cap = g[3]
    return bool(cap[p] < 0 or a - cap[p] <= st[0][p])


@kernel
def _lower_bound(values: I64, lo: int, hi: int, x: int) -> int:
    """First position in values[lo:hi] (sorted asc) holding >= x."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def _fit_bound(g: Graph, st: State, p: int) -> int:
    """End of the prefix of p's outflows small enough to fit its headroom."""
    cap, out_start, out_amt = g[3], g[4], g[6]
    lo, hi = out_start[p], out_start[p + 1]
    if cap[p] < 0:
        return int(hi)
    while lo < hi:
        mid = (lo + hi) >> 1
        if out_amt[mid] - cap[p] <= st[0][p]:
            lo = mid + 1
        else:
            hi = mid
    return int(lo)


@kernel
def _has(tree: I64, node: int, span: int, deferred: bool) -> bool:
    return bool(tree[node] > 0) if deferred else bool(tree[node] < span)


@kernel
def _find_first(tree: I64, lo: int, hi: int, deferred: bool) -> int:
    """First position in [lo, hi) that is deferred (or settled), else -1."""
    if lo >= hi:
        return -1
    size = tree.shape[0] // 2
    node = lo + size
    span = 1
    if _has(tree, node, span, deferred):
        return lo
    while True:
        while node & 1:
            if node == 1:
                return -1
            node >>= 1
            span <<= 1
        node += 1
        if node * span - size >= hi:
            return -1
        if _has(tree, node, span, deferred):
            break
    while node < size:
        span >>= 1
        node = 2 * node if _has(tree, 2 * node, span, deferred) else 2 * node + 1
    position = node - size
    return position if position < hi else -1


@kernel
def _find_last(tree: I64, lo: int, hi: int, deferred: bool) -> int:
    """Last position in [lo, hi) that is deferred (or settled), else -1."""
    if lo >= hi:
        return -1
    size = tree.shape[0] // 2
    node = hi - 1 + size
    span = 1
    if _has(tree, node, span, deferred):
        return hi - 1
    while True:
        while not node & 1:
            node >>= 1
            span <<= 1
        if node == 1:
            return -1
        node -= 1
        if (node + 1) * span - 1 - size < lo:
            return -1
        if _has(tree, node, span, deferred):
            break
    while node < size:
        span >>= 1
        node = 2 * node + 1 if _has(tree, 2 * node + 1, span, deferred) else 2 * node
    position = node - size
    return position if position >= lo else -1


@kernel
def _settled_value(g: Graph, st: State) -> int:
    out_items, out_amt, settled = g[5], g[6], st[1]
    total = 0
    for j in range(out_items.shape[0]):
        if settled[out_items[j]]:
            total += out_amt[j]
    return total
