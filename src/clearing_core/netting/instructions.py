"""Settlement instructions from one currency's net positions.

``hub``: every net debtor pays the clearing house, which pays every net
creditor (one instruction per non-zero participant). ``direct``: participants
pay each other with at most n-1 instructions for n non-zero participants.
Fewer transfers need zero-sum sub-groups (finding the most is NP-hard), so
direct mode first settles exactly cancelling pairs, then, where the search
is cheap, triples (one to two) that cancel, and then matches the rest
greedily largest to largest, each step closing at least one participant.
A group that nets to zero always settles among itself in k-1 transfers, so
the total is n minus the number of groups found.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from clearing_core.errors import InputError
from clearing_core.jit import I64, kernel
from clearing_core.netting.types import (
    PARTICIPANTS_MAX,
    Instructions,
    SettlementMode,
    frozen_array,
)

TRIPLE_SEARCH_BUDGET: Final = 1 << 22
"""Debtor x creditor count above which the triple search is skipped (it is
quadratic); pairs and the greedy matching still run."""


@kernel
def _hub_instructions(position: I64) -> tuple[I64, I64, I64]:
    """One instruction per non-zero participant, against the hub (index -1)."""
    n = 0
    for p in range(position.shape[0]):
        if position[p] != 0:
            n += 1
    payer = np.empty(n, np.int64)
    payee = np.empty(n, np.int64)
    amount = np.empty(n, np.int64)
    k = 0
    for p in range(position.shape[0]):
        x = position[p]
        if x < 0:
            payer[k], payee[k], amount[k] = p, -1, -x
            k += 1
        elif x > 0:
            payer[k], payee[k], amount[k] = -1, p, x
            k += 1
    return payer, payee, amount


@kernel
def _side(position: I64, sign: int) -> tuple[I64, I64]:
    """Participants on one side (sign -1 debtors, +1 creditors) by amount desc, index asc."""
    idx = np.flatnonzero(position * sign > 0)
    amount = position[idx] * sign
    order = np.argsort(-amount, kind="mergesort")
    return idx[order], amount[order]


@kernel
def _match_pairs(
    d_amt: I64,
    c_amt: I64,
    d_used: npt.NDArray[np.bool_],
    c_used: npt.NDArray[np.bool_],
    out: I64,
    k: int,
) -> int:
    """Pair equal and opposite amounts (both sides sorted desc); out rows are
    (debtor slot, creditor slot, amount). Returns the new row count."""
    i = 0
    j = 0
    while i < d_amt.shape[0] and j < c_amt.shape[0]:
        if d_amt[i] == c_amt[j]:
            out[k, 0], out[k, 1], out[k, 2] = i, j, d_amt[i]
            d_used[i] = True
            c_used[j] = True
            k += 1
            i += 1
            j += 1
        elif d_amt[i] > c_amt[j]:
            i += 1
        else:
            j += 1
    return k


@kernel
def _find_two(target: int, amt: I64, used: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """Two unused slots of ``amt`` (sorted desc) summing to ``target``, or (-1, -1)."""
    lo = 0
    hi = amt.shape[0] - 1
    while True:
        while lo < hi and used[lo]:
            lo += 1
        while hi > lo and used[hi]:
            hi -= 1
        if lo >= hi:
            return -1, -1
        s = amt[lo] + amt[hi]
        if s == target:
            return lo, hi
        if s > target:
            lo += 1
        else:
            hi -= 1


@kernel
def _match_triples(
    d_amt: I64,
    c_amt: I64,
    d_used: npt.NDArray[np.bool_],
    c_used: npt.NDArray[np.bool_],
    out: I64,
    k: int,
) -> int:
    """One debtor against two creditors that cancel exactly, then the mirror."""
    for i in range(d_amt.shape[0]):
        if not d_used[i]:
            a, b = _find_two(d_amt[i], c_amt, c_used)
            if a >= 0:
                d_used[i] = c_used[a] = c_used[b] = True
                out[k, 0], out[k, 1], out[k, 2] = i, a, c_amt[a]
                out[k + 1, 0], out[k + 1, 1], out[k + 1, 2] = i, b, c_amt[b]
                k += 2
    for j in range(c_amt.shape[0]):
        if not c_used[j]:
            a, b = _find_two(c_amt[j], d_amt, d_used)
            if a >= 0:
                c_used[j] = d_used[a] = d_used[b] = True
                out[k, 0], out[k, 1], out[k, 2] = a, j, d_amt[a]
                out[k + 1, 0], out[k + 1, 1], out[k + 1, 2] = b, j, d_amt[b]
                k += 2
    return k


@kernel
def _match_greedy(
    d_amt: I64,
    c_amt: I64,
    d_used: npt.NDArray[np.bool_],
    c_used: npt.NDArray[np.bool_],
    out: I64,
    k: int,
) -> int:
    """Largest remaining debtor pays largest remaining creditor; each step
    closes at least one side, the last closes both: at most n-1 rows."""
    i = 0
    j = 0
    d_left = np.int64(0)
    c_left = np.int64(0)
    while True:
        if d_left == 0:
            while i < d_amt.shape[0] and d_used[i]:
                i += 1
            if i == d_amt.shape[0]:
                break
            d_left = d_amt[i]
        if c_left == 0:
            while j < c_amt.shape[0] and c_used[j]:
                j += 1
            if j == c_amt.shape[0]:
                break
            c_left = c_amt[j]
        x = min(d_left, c_left)
        out[k, 0], out[k, 1], out[k, 2] = i, j, x
        k += 1
        d_left -= x
        c_left -= x
        if d_left == 0:
            i += 1
        if c_left == 0:
            j += 1
    return k


@kernel
def _direct_instructions(position: I64, triple_budget: int) -> tuple[I64, I64, I64]:
    """Participant-to-participant instructions, sorted by (payer, payee)."""
    d_idx, d_amt = _side(position, -1)
    c_idx, c_amt = _side(position, 1)
    d_used = np.zeros(d_amt.shape[0], np.bool_)
    c_used = np.zeros(c_amt.shape[0], np.bool_)
    out = np.empty((d_amt.shape[0] + c_amt.shape[0] + 1, 3), np.int64)
    k = _match_pairs(d_amt, c_amt, d_used, c_used, out, 0)
    if d_amt.shape[0] * c_amt.shape[0] <= triple_budget:
        k = _match_triples(d_amt, c_amt, d_used, c_used, out, k)
    k = _match_greedy(d_amt, c_amt, d_used, c_used, out, k)
    n = np.int64(position.shape[0])
    payer = np.empty(k, np.int64)
    payee = np.empty(k, np.int64)
    for r in range(k):
        payer[r] = d_idx[out[r, 0]]
        payee[r] = c_idx[out[r, 1]]
    order = np.argsort(payer * n + payee, kind="mergesort")
    return payer[order], payee[order], out[:k, 2][order].copy()


def settlement_instructions(position_minor: npt.ArrayLike, mode: SettlementMode) -> Instructions:
    """Instructions that settle one currency's positions (which must sum to zero)."""
    position = np.ascontiguousarray(position_minor, dtype=np.int64)
    if position.ndim != 1 or position.shape[0] > PARTICIPANTS_MAX:
        raise InputError(f"position_minor must be 1-D with <= {PARTICIPANTS_MAX} entries")
    if mode == "hub":
        payer, payee, amount = _hub_instructions(position)
    elif mode == "direct":
        payer, payee, amount = _direct_instructions(position, TRIPLE_SEARCH_BUDGET)
    else:
        raise InputError(f"unknown settlement mode {mode!r}: use hub or direct")
    return Instructions(
        payer_idx=frozen_array(payer),
        payee_idx=frozen_array(payee),
        amount_minor=frozen_array(amount),
    )
