"""Numba kernels for positions, grouping and bilateral compression.

Private, array in and array out, no Python objects: the public functions in
``positions`` validate, convert and give these plain contiguous arrays.
Validation happens inside the single pass over the obligations, so checking
costs no extra sweep of memory. Money is int64 and no sum may wrap: when
count x largest amount fits in int64 nothing can overflow and one unchecked
pass is exact; otherwise a checked pass adds every obligation to its
currency's running gross, which bounds every partial sum of every position.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clearing_core.netting._jit import I64, IntArray, Mask, kernel

OK = 0
BAD_DEBTOR = 1
BAD_CREDITOR = 2
BAD_CURRENCY = 3
BAD_AMOUNT = 4
SELF_OBLIGATION = 5
OVERFLOW = 6

_I64_MAX = np.iinfo(np.int64).max

Int = int | np.integer[Any]


@kernel
def _classify(d: Int, cr: Int, c: Int, a: Int, n_participants: int, n_currencies: int) -> int:
    """Which check an obligation fails (OK if none)."""
    if d < 0 or d >= n_participants:
        return BAD_DEBTOR
    if cr < 0 or cr >= n_participants:
        return BAD_CREDITOR
    if c < 0 or c >= n_currencies:
        return BAD_CURRENCY
    if a <= 0:
        return BAD_AMOUNT
    if d == cr:
        return SELF_OBLIGATION
    return OK


@kernel
def _net_positions_fast(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    n_participants: int,
    n_currencies: int,
) -> tuple[I64, I64, int, int, int]:
    """One pass, no overflow test: positions, gross and the largest amount.

    Indices are compared as unsigned, so one test rejects negatives too and
    the array accesses need no negative-index fix-up; the gross accumulates
    in uint64, which wraps without undefined behaviour. The caller keeps the
    result only when the count times the largest amount fits in int64, in
    which case no sum can have overflowed.
    """
    position = np.zeros(n_participants * n_currencies, np.int64)
    gross = np.zeros(n_currencies, np.uint64)
    n_p = np.uint64(n_participants)
    n_c = np.uint64(n_currencies)
    largest = np.int64(0)
    for i in range(amount.shape[0]):
        d = np.uint64(debtor[i])
        cr = np.uint64(creditor[i])
        c = np.uint64(currency[i])
        a = amount[i]
        if (d >= n_p) | (cr >= n_p) | (c >= n_c) | (a <= 0) | (d == cr):
            status = _classify(debtor[i], creditor[i], currency[i], a, n_participants, n_currencies)
            return position, gross.view(np.int64), status, i, int(largest)
        largest = max(largest, a)
        gross[c] += np.uint64(a)
        position[d * n_c + c] -= a
        position[cr * n_c + c] += a
    return position, gross.view(np.int64), OK, -1, int(largest)


@kernel
def _net_positions_checked(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    n_participants: int,
    n_currencies: int,
) -> tuple[I64, I64, int, int]:
    """The same with a checked add of every obligation to its currency's gross:
    the running gross bounds every partial sum of every position, so the
    first obligation that would overflow it is the one reported."""
    position = np.zeros(n_participants * n_currencies, np.int64)
    gross = np.zeros(n_currencies, np.int64)
    for i in range(amount.shape[0]):
        d = np.int64(debtor[i])
        cr = np.int64(creditor[i])
        c = np.int64(currency[i])
        a = amount[i]
        status = _classify(d, cr, c, a, n_participants, n_currencies)
        if status != OK:
            return position, gross, status, i
        g = gross[c]
        if a > _I64_MAX - g:
            return position, gross, OVERFLOW, i
        gross[c] = g + a
        position[d * n_currencies + c] -= a
        position[cr * n_currencies + c] += a
    return position, gross, OK, -1


@kernel
def _net_positions(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    n_participants: int,
    n_currencies: int,
) -> tuple[I64, I64, int, int]:
    """Net position per (participant, currency), flat, and gross per currency.

    Returns (position, gross, status, index): status is OK or the first
    problem, index the obligation it was found at. The fast pass is exact
    whenever count x largest amount fits in int64 (any real batch of money);
    otherwise the checked pass decides, and names the first obligation whose
    currency sum would overflow.
    """
    position, gross, status, index, largest = _net_positions_fast(
        debtor, creditor, currency, amount, n_participants, n_currencies
    )
    if status != OK or largest <= _I64_MAX // max(1, amount.shape[0]):
        return position, gross, status, index
    return _net_positions_checked(debtor, creditor, currency, amount, n_participants, n_currencies)


@kernel
def _settled_positions(
    debtor: IntArray, creditor: IntArray, amount: I64, settled: Mask, n_participants: int
) -> tuple[I64, int]:
    """Positions of one currency over the settled obligations only.

    Bounded by the gross already checked, so plain adds cannot wrap.
    """
    position = np.zeros(n_participants, np.int64)
    settled_gross = np.int64(0)
    for i in range(amount.shape[0]):
        if settled[i]:
            a = amount[i]
            position[debtor[i]] -= a
            position[creditor[i]] += a
            settled_gross += a
    return position, int(settled_gross)


@kernel
def _group_by_currency(currency: IntArray, n_currencies: int) -> tuple[I64, I64]:
    """Stable counting sort: obligation order per currency and segment starts."""
    start = np.zeros(n_currencies + 1, np.int64)
    for i in range(currency.shape[0]):
        start[currency[i] + 1] += 1
    for c in range(n_currencies):
        start[c + 1] += start[c]
    cursor = start[:-1].copy()
    order = np.empty(currency.shape[0], np.int64)
    for i in range(currency.shape[0]):
        c = currency[i]
        order[cursor[c]] = i
        cursor[c] += 1
    return order, start


@kernel
def _bilateral_pairs(
    debtor: IntArray, creditor: IntArray, currency: IntArray, amount: I64, n_participants: int
) -> tuple[I64, I64, I64, I64]:
    """Sum obligations per ordered (currency, debtor, creditor).

    Sums are bounded by the checked gross of their currency.
    """
    n = amount.shape[0]
    key = np.empty(n, np.int64)
    for i in range(n):
        key[i] = (np.int64(currency[i]) * n_participants + debtor[i]) * n_participants + creditor[i]
    order = np.argsort(key, kind="mergesort")
    runs = 0
    for k in range(n):
        if k == 0 or key[order[k]] != key[order[k - 1]]:
            runs += 1
    out_d = np.empty(runs, np.int64)
    out_c = np.empty(runs, np.int64)
    out_cur = np.empty(runs, np.int64)
    out_a = np.zeros(runs, np.int64)
    r = -1
    for k in range(n):
        i = order[k]
        if k == 0 or key[i] != key[order[k - 1]]:
            r += 1
            out_d[r] = debtor[i]
            out_c[r] = creditor[i]
            out_cur[r] = currency[i]
        out_a[r] += amount[i]
    return out_d, out_c, out_cur, out_a


@kernel
def _bilateral_net(
    pair_debtor: I64,
    pair_creditor: I64,
    pair_currency: I64,
    pair_amount: I64,
    n_participants: int,
    n_currencies: int,
) -> I64:
    """Per currency, the sum over unordered pairs of |owed one way - owed the other|."""
    n = pair_amount.shape[0]
    key = np.empty(n, np.int64)
    signed = np.empty(n, np.int64)
    for i in range(n):
        lo = min(pair_debtor[i], pair_creditor[i])
        hi = max(pair_debtor[i], pair_creditor[i])
        key[i] = (pair_currency[i] * n_participants + lo) * n_participants + hi
        signed[i] = pair_amount[i] if pair_debtor[i] == lo else -pair_amount[i]
    order = np.argsort(key, kind="mergesort")
    total = np.zeros(n_currencies, np.int64)
    run = np.int64(0)
    for k in range(n):
        i = order[k]
        run += signed[i]
        if k == n - 1 or key[order[k + 1]] != key[i]:
            total[pair_currency[i]] += abs(run)
            run = np.int64(0)
    return total


@kernel
def _apply_instructions(
    payer: I64, payee: I64, amount: I64, n_participants: int
) -> tuple[I64, int]:
    """Balances after applying instructions to zero; the hub is the last slot.

    Returns (balance, status): status 1 if an amount is not positive, 2 if an
    index is out of range, 3 if a running balance would overflow.
    """
    balance = np.zeros(n_participants + 1, np.int64)
    for i in range(amount.shape[0]):
        a = amount[i]
        if a <= 0:
            return balance, 1
        s = n_participants if payer[i] < 0 else payer[i]
        t = n_participants if payee[i] < 0 else payee[i]
        if s >= n_participants + 1 or t >= n_participants + 1 or s == t:
            return balance, 2
        if balance[s] < -_I64_MAX + a or balance[t] > _I64_MAX - a:
            return balance, 3
        balance[s] -= a
        balance[t] += a
    return balance, 0
