"""Public front of gridlock resolution (liquidity-limited netting), one currency.

Why a per-currency function: caps and settlement are per currency, and the
streaming netting agent closes one currency per cycle; this path takes plain
arrays and returns plain arrays, with no per-obligation Python object.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from clearing_core.errors import InputError
from clearing_core.netting import kernels_parallel as kp
from clearing_core.netting.liquidity_resolve import _resolve_gridlock
from clearing_core.netting.positions import (
    as_amount_array,
    as_index_array,
    check_counts,
    check_lengths,
    raise_for_status,
)
from clearing_core.netting.types import I64, NO_CAP, Mask

SEARCH_STARTS: Final = 2
"""Starts of the heuristic: 1 = cascade only (about 4x faster on large
cycles), 2 = cascade and fill, keep the better (the default)."""


def as_cap_array(cap_minor: npt.ArrayLike, shape: tuple[int, ...]) -> I64:
    """Caps as contiguous int64 of the given shape: ``NO_CAP`` (-1) or >= 0."""
    cap = np.asarray(cap_minor)
    if cap.shape != shape or cap.dtype.kind not in "iu":
        raise InputError(f"cap_minor must be an integer array of shape {shape}, got {cap.shape}")
    cap = np.ascontiguousarray(cap, dtype=np.int64)
    if cap.size > 0 and int(cap.min()) < NO_CAP:
        raise InputError(f"cap_minor must be >= 0 or {NO_CAP} (no cap), got {int(cap.min())}")
    return cap


def as_priority_array(priority: npt.ArrayLike | None, n: int) -> I64:
    if priority is None:
        return np.zeros(n, np.int64)
    values = as_amount_array(priority, "priority")
    if values.shape[0] != n:
        raise InputError(f"priority has {values.shape[0]} entries for {n} obligations")
    return values


def settle_within_caps(
    debtor_idx: npt.NDArray[np.int32],
    creditor_idx: npt.NDArray[np.int32],
    amount_minor: I64,
    priority: I64,
    cap_minor: I64,
    starts: int = SEARCH_STARTS,
) -> tuple[Mask, I64]:
    """Kernel call on already validated arrays (one currency, gross checked)."""
    if starts not in (1, 2):
        raise InputError(f"starts must be 1 or 2, got {starts}")
    settled, position = _resolve_gridlock(
        debtor_idx, creditor_idx, amount_minor, priority, cap_minor, starts
    )
    return settled, position


def resolve_gridlock(
    debtor_idx: npt.ArrayLike,
    creditor_idx: npt.ArrayLike,
    amount_minor: npt.ArrayLike,
    cap_minor: npt.ArrayLike,
    *,
    priority: npt.ArrayLike | None = None,
    starts: int = SEARCH_STARTS,
) -> tuple[Mask, I64]:
    """Which obligations of one currency settle so that every participant ends
    within its net debit cap (net position >= -cap), settling as much value
    as the heuristic finds; and the resulting net positions.

    ``cap_minor`` has one entry per participant, ``NO_CAP`` (-1) for none.
    Among equal amounts, lower ``priority`` is deferred first, then the later
    obligation. Deterministic: same arrays, same answer.
    """
    cap = np.asarray(cap_minor)
    if cap.ndim != 1:
        raise InputError(f"cap_minor must be 1-D, one entry per participant, got {cap.shape}")
    n_participants = int(cap.shape[0])
    check_counts(n_participants, 1)
    cap = as_cap_array(cap, (n_participants,))
    debtor = as_index_array(debtor_idx, "debtor_idx", n_participants)
    creditor = as_index_array(creditor_idx, "creditor_idx", n_participants)
    amount = as_amount_array(amount_minor)
    m = check_lengths(debtor, creditor, amount)
    currency = np.zeros(m, np.int32)
    _, _, status, index = kp._net_positions(debtor, creditor, currency, amount, n_participants, 1)
    raise_for_status(status, index, (debtor, creditor, currency, amount), n_participants, 1)
    return settle_within_caps(debtor, creditor, amount, as_priority_array(priority, m), cap, starts)
