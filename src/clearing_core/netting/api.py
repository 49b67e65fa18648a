"""High-level netting: positions, liquidity limits, instructions, invariants.

``net_currency`` is the per-cycle path of the streaming netting agent (one
currency, arrays in, a frozen result out); ``net_obligations`` runs it for
every currency of a mixed batch, as ``clearing net`` does. Every result has
passed the invariant checks before it is returned.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from clearing_core.errors import InputError
from clearing_core.netting import kernels as k
from clearing_core.netting import kernels_parallel as kp
from clearing_core.netting.instructions import settlement_instructions
from clearing_core.netting.invariants import check_currency_result
from clearing_core.netting.liquidity import (
    SEARCH_STARTS,
    as_cap_array,
    as_priority_array,
    settle_within_caps,
)
from clearing_core.netting.positions import (
    as_amount_array,
    as_index_array,
    check_counts,
    check_lengths,
    raise_for_status,
)
from clearing_core.netting.types import (
    I64,
    NO_CAP,
    SETTLEMENT_MODES,
    CurrencyResult,
    NettingResult,
    SettlementMode,
    frozen_array,
)

I32 = npt.NDArray[np.int32]


def _check_mode(mode: str) -> SettlementMode:
    for known in SETTLEMENT_MODES:
        if mode == known:
            return known
    raise InputError(f"unknown settlement mode {mode!r}: use hub or direct")


def _net_one(
    arrays: tuple[I32, I32, I64, I64],
    position_all: I64,
    cap: I64 | None,
    mode: SettlementMode,
    currency_idx: int,
    starts: int,
) -> tuple[CurrencyResult, npt.NDArray[np.bool_]]:
    """One currency on validated arrays whose gross is known to fit in int64."""
    debtor, creditor, amount, priority = arrays
    gridlocked = cap is not None and bool(np.any((cap >= 0) & (position_all < -cap)))
    if gridlocked and cap is not None:
        settled, position = settle_within_caps(debtor, creditor, amount, priority, cap, starts)
    else:
        settled, position = np.ones(amount.shape[0], np.bool_), position_all.copy()
    deferred = np.flatnonzero(~settled).astype(np.int64)
    deferred_minor = int(amount[deferred].sum()) if deferred.shape[0] else 0
    gross = int(amount.sum()) if amount.shape[0] else 0
    result = CurrencyResult(
        currency_idx=currency_idx,
        mode=mode,
        position_minor=frozen_array(position),
        instructions=settlement_instructions(position, mode),
        deferred_idx=frozen_array(deferred),
        gross_minor=gross,
        net_minor=int(position[position > 0].sum()),
        settled_gross_minor=gross - deferred_minor,
        deferred_minor=deferred_minor,
    )
    check_currency_result(result, debtor, creditor, amount, settled, cap)
    return result, settled


def net_currency(
    debtor_idx: npt.ArrayLike,
    creditor_idx: npt.ArrayLike,
    amount_minor: npt.ArrayLike,
    *,
    n_participants: int,
    priority: npt.ArrayLike | None = None,
    cap_minor: npt.ArrayLike | None = None,
    mode: str = "hub",
    currency_idx: int = 0,
    starts: int = SEARCH_STARTS,
) -> CurrencyResult:
    """Net one currency's obligations (dense participant indices) under
    optional per-participant net debit caps (``NO_CAP`` = -1 for none).

    Raises ``ObligationInputError`` naming the obligation for bad input or a
    sum that overflows int64, ``InvariantError`` if a check fails.
    """
    settlement_mode = _check_mode(mode)
    check_counts(n_participants, 1)
    debtor = as_index_array(debtor_idx, "debtor_idx", n_participants)
    creditor = as_index_array(creditor_idx, "creditor_idx", n_participants)
    amount = as_amount_array(amount_minor)
    m = check_lengths(debtor, creditor, amount)
    currency = np.zeros(m, np.int32)
    position, _, status, index = kp._net_positions(
        debtor, creditor, currency, amount, n_participants, 1
    )
    raise_for_status(status, index, (debtor, creditor, currency, amount), n_participants, 1)
    cap = None if cap_minor is None else as_cap_array(cap_minor, (n_participants,))
    arrays = (debtor, creditor, amount, as_priority_array(priority, m))
    result, _ = _net_one(arrays, position, cap, settlement_mode, currency_idx, starts)
    return result


def net_obligations(
    debtor_idx: npt.ArrayLike,
    creditor_idx: npt.ArrayLike,
    currency_idx: npt.ArrayLike,
    amount_minor: npt.ArrayLike,
    *,
    n_participants: int,
    n_currencies: int,
    priority: npt.ArrayLike | None = None,
    cap_minor: npt.ArrayLike | None = None,
    mode: str = "hub",
    starts: int = SEARCH_STARTS,
) -> NettingResult:
    """Net a batch that mixes currencies: one ``CurrencyResult`` per currency
    with obligations, in currency order. ``cap_minor`` has shape
    (n_participants, n_currencies); ``deferred_idx`` index the input arrays.
    """
    settlement_mode = _check_mode(mode)
    check_counts(n_participants, n_currencies)
    debtor = as_index_array(debtor_idx, "debtor_idx", n_participants)
    creditor = as_index_array(creditor_idx, "creditor_idx", n_participants)
    currency = as_index_array(currency_idx, "currency_idx", n_currencies)
    amount = as_amount_array(amount_minor)
    m = check_lengths(debtor, creditor, currency, amount)
    flat, _, status, index = kp._net_positions(
        debtor, creditor, currency, amount, n_participants, n_currencies
    )
    raise_for_status(
        status, index, (debtor, creditor, currency, amount), n_participants, n_currencies
    )
    position = flat.reshape(n_participants, n_currencies)
    caps = None
    if cap_minor is not None:
        caps = as_cap_array(cap_minor, (n_participants, n_currencies))
    prio = as_priority_array(priority, m)
    order, start = k._group_by_currency(currency, n_currencies)
    results = []
    for c in range(n_currencies):
        sel = order[start[c] : start[c + 1]]
        if sel.shape[0] == 0:
            continue
        if sel.shape[0] == m:
            arrays = (debtor, creditor, amount, prio)
        else:
            arrays = (debtor[sel], creditor[sel], amount[sel], prio[sel])
        cap = None
        if caps is not None and bool(np.any(caps[:, c] != NO_CAP)):
            cap = np.ascontiguousarray(caps[:, c])
        one, _ = _net_one(
            arrays, np.ascontiguousarray(position[:, c]), cap, settlement_mode, c, starts
        )
        if sel.shape[0] != m:
            one = replace(one, deferred_idx=frozen_array(sel[one.deferred_idx]))
        results.append(one)
    return NettingResult(currencies=tuple(results))


def warm_up() -> None:
    """Run every kernel once on a tiny capped instance, in both settlement modes.

    Loading the cached machine code takes 0.6-2 s on the first call in a process;
    a worker does it at start so its first cycle close is not the slow one."""
    debtor, creditor = np.array([0, 1, 2], np.int64), np.array([1, 2, 0], np.int64)
    amount, caps = np.array([5, 7, 9], np.int64), np.array([1, 1, 1], np.int64)
    for mode in ("hub", "direct"):
        net_currency(debtor, creditor, amount, n_participants=3, cap_minor=caps, mode=mode)
        net_currency(debtor, creditor, amount, n_participants=3, mode=mode)
    kp.warm_up_parallel()  # the path of cycles of 2 x 2^18 obligations and more
