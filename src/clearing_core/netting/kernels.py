"""Numba kernels for positions, grouping and bilateral compression.

Private, array in and array out, no Python objects: the public functions in
``positions`` validate, convert and give these plain contiguous arrays.
Validation happens inside the single pass over the obligations, so checking
costs no extra sweep of memory. Money is int64 and no sum may wrap: each
currency's gross accumulates in uint64 and the pass ORs every new gross into
one word, whose top bit then says exactly whether some running gross ever
passed int64 (the gross bounds every partial sum of every position, so no
position can wrap either). Only then does a checked pass run, to name the
obligation. Large batches run the same pass on one contiguous chunk per
thread (``kernels_parallel``); the serial kernel here is the reference and
both give identical results, errors included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from clearing_core.jit import I64, IntArray, Mask, kernel

OK = 0
BAD_DEBTOR = 1
BAD_CREDITOR = 2
BAD_CURRENCY = 3
BAD_AMOUNT = 4
SELF_OBLIGATION = 5
OVERFLOW = 6

_I64_MAX = np.iinfo(np.int64).max

Int = int | np.integer[Any]
U64 = npt.NDArray[np.uint64]


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
def _status_of(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    i: int,
    n_participants: int,
    n_currencies: int,
) -> int:
    """Which check obligation ``i`` fails. A function of its own: with the
    array reads written in the caller, LLVM compiles the hot loop it inlines
    ~5% slower."""
    return _classify(debtor[i], creditor[i], currency[i], amount[i], n_participants, n_currencies)


@kernel
def _accumulate(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    n_participants: int,
    n_currencies: int,
    position: I64,
    gross: U64,
) -> tuple[int, bool | np.bool_]:
    """The hot loop: validate the obligations and add them to ``position``
    (flat, participant-major) and ``gross`` (uint64, per currency).

    Returns (the index of the first invalid obligation or -1, whether some
    gross passed int64 before it). Indices are compared as unsigned, so one
    test rejects negatives too and no access needs a negative-index fix-up
    (a chunk is therefore passed as slices and the loop starts at 0: with a
    signed counter not known to be >= 0 the loop is ~40% slower). Overflow:
    each amount is in 1..2^63-1, so while a gross is <= INT64_MAX the next
    add cannot wrap uint64, and the first sum above INT64_MAX sets the top
    bit of ``sticky``: exact detection for one OR and no branch. Below that
    bound |position| <= gross, so the position adds are exact too.
    """
    n_p = np.uint64(n_participants)
    n_c = np.uint64(n_currencies)
    sticky = np.uint64(0)
    for i in range(amount.shape[0]):
        d = np.uint64(debtor[i])
        cr = np.uint64(creditor[i])
        c = np.uint64(currency[i])
        a = amount[i]
        if (d >= n_p) | (cr >= n_p) | (c >= n_c) | (a <= 0) | (d == cr):
            return i, (sticky >> np.uint64(63)) != 0
        g = gross[c] + np.uint64(a)
        sticky |= g
        gross[c] = g
        position[d * n_c + c] -= a
        position[cr * n_c + c] += a
    return -1, (sticky >> np.uint64(63)) != 0


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
    first obligation that would overflow it is the one reported. Runs only
    when the fast pass saw an overflow, to name the obligation."""
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
def _net_positions_serial(
    debtor: IntArray,
    creditor: IntArray,
    currency: IntArray,
    amount: I64,
    n_participants: int,
    n_currencies: int,
) -> tuple[I64, I64, int, int]:
    """The reference: net position per (participant, currency), flat, and
    gross per currency, in one pass.

    Returns (position, gross, status, index): status is OK or the first
    problem in input order, index the obligation it was found at (-1 if OK).
    An obligation that fails a check is reported unless some gross passed
    int64 before it; then the checked pass names the first obligation whose
    currency sum overflows. On an error, position and gross hold the sums of
    the obligations before the reported one.
    """
    position = np.zeros(n_participants * n_currencies, np.int64)
    gross = np.zeros(n_currencies, np.uint64)
    stop, overflowed = _accumulate(
        debtor, creditor, currency, amount, n_participants, n_currencies, position, gross
    )
    if overflowed:
        return _net_positions_checked(
            debtor, creditor, currency, amount, n_participants, n_currencies
        )
    if stop < 0:
        return position, gross.view(np.int64), OK, -1
    return (
        position,
        gross.view(np.int64),
        _status_of(debtor, creditor, currency, amount, stop, n_participants, n_currencies),
        int(stop),
    )


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
