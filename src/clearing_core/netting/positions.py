"""Public, validating front of the position and compression kernels.

Why validation lives here and in the kernel: shape, dtype and size limits are
cheap to check once on the arrays; per-obligation checks (index range,
positive amount, self-obligation, overflow) ride along the kernel's single
pass, and a failure names the obligation's position in the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from clearing_core.errors import InputError
from clearing_core.netting import kernels as k
from clearing_core.netting import kernels_parallel as kp
from clearing_core.netting.types import (
    CURRENCIES_MAX,
    INT64_MAX,
    OBLIGATIONS_MAX,
    PARTICIPANTS_MAX,
    BilateralPairs,
    NettingStats,
    ObligationInputError,
    frozen_array,
)

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

_STATUS_TEXT = {
    k.BAD_DEBTOR: ("debtor", "debtor index {d} is outside 0..{np_last}"),
    k.BAD_CREDITOR: ("creditor", "creditor index {cr} is outside 0..{np_last}"),
    k.BAD_CURRENCY: ("currency", "currency index {c} is outside 0..{nc_last}"),
    k.BAD_AMOUNT: ("amount", "amount_minor must be > 0, got {a}"),
    k.SELF_OBLIGATION: ("self", "debtor and creditor are the same participant ({d})"),
    k.OVERFLOW: ("overflow", "the sum of amount_minor in currency {c} overflows int64"),
}


def check_counts(n_participants: int, n_currencies: int) -> None:
    """Reject table sizes beyond the limits (they bound the flat keys and memory)."""
    if not 1 <= n_participants <= PARTICIPANTS_MAX:
        raise InputError(f"n_participants must be in 1..{PARTICIPANTS_MAX}, got {n_participants}")
    if not 1 <= n_currencies <= CURRENCIES_MAX:
        raise InputError(f"n_currencies must be in 1..{CURRENCIES_MAX}, got {n_currencies}")


def as_index_array(values: npt.ArrayLike, name: str, upper: int) -> I32:
    """A contiguous int32 view or copy of an index array, every value in 0..upper-1."""
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise InputError(f"{name} must be a 1-D integer array, got {array.dtype} {array.shape}")
    if array.dtype == np.int32:
        return np.ascontiguousarray(array)
    if array.shape[0] > 0:
        bad = np.flatnonzero((array < 0) | (array >= upper))
        if bad.shape[0] > 0:
            i = int(bad[0])
            raise ObligationInputError(
                i, f"{name} {int(array[i])} is outside 0..{upper - 1}", name.split("_")[0]
            )
    return np.ascontiguousarray(array, dtype=np.int32)


def as_amount_array(values: npt.ArrayLike, name: str = "amount_minor") -> I64:
    """A contiguous int64 array; floats are refused (money is never a float)."""
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise InputError(f"{name} must be a 1-D integer array, got {array.dtype} {array.shape}")
    if array.dtype.kind == "u" and array.shape[0] > 0 and int(array.max()) > INT64_MAX:
        i = int(np.argmax(array > INT64_MAX))
        raise ObligationInputError(i, f"{name} {int(array[i])} exceeds int64", "amount")
    return np.ascontiguousarray(array, dtype=np.int64)


def check_lengths(*arrays: npt.NDArray[Any]) -> int:
    n = int(arrays[0].shape[0])
    if any(int(a.shape[0]) != n for a in arrays):
        raise InputError(f"obligation arrays differ in length: {[a.shape[0] for a in arrays]}")
    if n > OBLIGATIONS_MAX:
        raise InputError(f"{n} obligations exceed the limit of {OBLIGATIONS_MAX}")
    return n


def raise_for_status(
    status: int,
    index: int,
    arrays: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], I64],
    n_participants: int,
    n_currencies: int,
) -> None:
    """Turn a kernel status into a typed error naming the obligation."""
    if status == k.OK:
        return
    debtor, creditor, currency, amount = arrays
    code, template = _STATUS_TEXT[status]
    reason = template.format(
        d=int(debtor[index]),
        cr=int(creditor[index]),
        c=int(currency[index]),
        a=int(amount[index]),
        np_last=n_participants - 1,
        nc_last=n_currencies - 1,
    )
    raise ObligationInputError(index, reason, code)


def net_positions(
    debtor_idx: npt.ArrayLike,
    creditor_idx: npt.ArrayLike,
    currency_idx: npt.ArrayLike,
    amount_minor: npt.ArrayLike,
    *,
    n_participants: int,
    n_currencies: int,
) -> tuple[I64, I64]:
    """Multilateral net position (receivable - payable) per (participant, currency),
    shape (n_participants, n_currencies), and gross per currency.

    Raises ``ObligationInputError`` for a bad index, a non-positive amount, a
    self-obligation, or a currency whose sum overflows int64, naming the
    first such obligation in input order. Large batches run on all numba
    threads, with the same results (``kernels_parallel.parallel_chunks``).
    """
    check_counts(n_participants, n_currencies)
    debtor = as_index_array(debtor_idx, "debtor_idx", n_participants)
    creditor = as_index_array(creditor_idx, "creditor_idx", n_participants)
    currency = as_index_array(currency_idx, "currency_idx", n_currencies)
    amount = as_amount_array(amount_minor)
    check_lengths(debtor, creditor, currency, amount)
    position, gross, status, index = kp._net_positions(
        debtor, creditor, currency, amount, n_participants, n_currencies
    )
    raise_for_status(
        status, index, (debtor, creditor, currency, amount), n_participants, n_currencies
    )
    return position.reshape(n_participants, n_currencies), gross


def bilateral_compress(
    debtor_idx: npt.ArrayLike,
    creditor_idx: npt.ArrayLike,
    currency_idx: npt.ArrayLike,
    amount_minor: npt.ArrayLike,
    *,
    n_participants: int,
    n_currencies: int,
) -> BilateralPairs:
    """Sum obligations per ordered (debtor, creditor, currency) pair.

    Validates exactly like ``net_positions`` (which also proves the sums fit).
    """
    net_positions(
        debtor_idx,
        creditor_idx,
        currency_idx,
        amount_minor,
        n_participants=n_participants,
        n_currencies=n_currencies,
    )
    d, cr, cur, a = k._bilateral_pairs(
        as_index_array(debtor_idx, "debtor_idx", n_participants),
        as_index_array(creditor_idx, "creditor_idx", n_participants),
        as_index_array(currency_idx, "currency_idx", n_currencies),
        as_amount_array(amount_minor),
        n_participants,
    )
    return BilateralPairs(
        debtor_idx=frozen_array(d),
        creditor_idx=frozen_array(cr),
        currency_idx=frozen_array(cur),
        amount_minor=frozen_array(a),
    )


def netting_stats(
    debtor_idx: npt.ArrayLike,
    creditor_idx: npt.ArrayLike,
    currency_idx: npt.ArrayLike,
    amount_minor: npt.ArrayLike,
    *,
    n_participants: int,
    n_currencies: int,
) -> tuple[NettingStats, ...]:
    """Gross, bilateral net and multilateral net per currency that has obligations."""
    currency = as_index_array(currency_idx, "currency_idx", n_currencies)
    position, gross = net_positions(
        debtor_idx,
        creditor_idx,
        currency,
        amount_minor,
        n_participants=n_participants,
        n_currencies=n_currencies,
    )
    pairs = bilateral_compress(
        debtor_idx,
        creditor_idx,
        currency,
        amount_minor,
        n_participants=n_participants,
        n_currencies=n_currencies,
    )
    bilateral = k._bilateral_net(
        pairs.debtor_idx,
        pairs.creditor_idx,
        pairs.currency_idx,
        pairs.amount_minor,
        n_participants,
        n_currencies,
    )
    counts = np.bincount(currency, minlength=n_currencies)
    net = np.where(position > 0, position, 0).sum(axis=0)
    return tuple(
        NettingStats(
            currency_idx=c,
            obligation_count=int(counts[c]),
            gross_minor=int(gross[c]),
            bilateral_net_minor=int(bilateral[c]),
            net_minor=int(net[c]),
        )
        for c in range(n_currencies)
        if counts[c] > 0
    )
