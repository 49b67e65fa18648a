"""Invariants checked on every netting run, before anything is emitted.

Why recompute instead of trusting the kernels: a result that breaks
conservation would move money that was never owed. Each check uses a path
independent of the one that produced the value (positions are recomputed
from the settled mask, gross is summed in two 32-bit halves, instructions
are replayed onto zero balances), so a bug in one kernel cannot hide itself.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clearing_core.errors import InvariantError
from clearing_core.netting import kernels as k
from clearing_core.netting.types import HUB, I64, CurrencyResult, Mask


def exact_sum(values: I64) -> int:
    """Exact sum of int64 values as a Python int (no wraparound), vectorised."""
    if values.shape[0] == 0:
        return 0
    high = int(np.sum(values >> 32, dtype=np.int64))
    low = int(np.sum(values & 0xFFFFFFFF, dtype=np.int64))
    return (high << 32) + low


def _fail(result: CurrencyResult, what: str) -> InvariantError:
    return InvariantError(f"netting invariant broken in currency {result.currency_idx}: {what}")


def check_positions(result: CurrencyResult, cap_minor: I64 | None) -> None:
    """Positions sum to zero; net is the sum of receivers; caps are respected."""
    position = result.position_minor
    if exact_sum(position) != 0:
        raise _fail(result, f"positions sum to {exact_sum(position)}, not 0")
    if exact_sum(np.where(position > 0, position, 0)) != result.net_minor:
        raise _fail(result, "net_minor is not the sum of positive positions")
    if cap_minor is not None:
        over = np.flatnonzero((cap_minor >= 0) & (position < -cap_minor))
        if over.shape[0] > 0:
            p = int(over[0])
            raise _fail(result, f"participant {p} ends at {position[p]} below cap {cap_minor[p]}")


def check_settlement(
    result: CurrencyResult,
    debtor: npt.NDArray[np.int32],
    creditor: npt.NDArray[np.int32],
    amount: I64,
    settled: Mask,
) -> None:
    """Positions and values are those of the settled obligations; gross is all."""
    n = result.position_minor.shape[0]
    position, settled_gross = k._settled_positions(debtor, creditor, amount, settled, n)
    if not np.array_equal(position, result.position_minor):
        raise _fail(result, "positions differ from the net of the settled obligations")
    if exact_sum(amount) != result.gross_minor:
        raise _fail(result, "gross_minor is not the sum of the obligations")
    if int(settled_gross) != result.settled_gross_minor:
        raise _fail(result, "settled_gross_minor is not the sum of the settled obligations")
    if result.gross_minor - result.settled_gross_minor != result.deferred_minor:
        raise _fail(result, "deferred_minor is not gross minus settled")
    if result.deferred_count != int(amount.shape[0]) - int(np.count_nonzero(settled)):
        raise _fail(result, "deferred count differs from the settled mask")


def check_instructions(result: CurrencyResult) -> None:
    """Applying the instructions to zero balances yields exactly the positions,
    the hub ends at zero, and the count fits the settlement model."""
    position = result.position_minor
    ins = result.instructions
    n = position.shape[0]
    balance, status = k._apply_instructions(ins.payer_idx, ins.payee_idx, ins.amount_minor, n)
    if status != 0:
        raise _fail(result, f"malformed instruction (status {status})")
    if not np.array_equal(balance[:n], position) or balance[n] != 0:
        raise _fail(result, "instructions do not reproduce the positions")
    nonzero = int(np.count_nonzero(position))
    touches_hub = (ins.payer_idx == HUB) | (ins.payee_idx == HUB)
    if result.mode == "hub":
        if len(ins) != nonzero or not bool(np.all(touches_hub)):
            raise _fail(result, "hub mode needs one instruction per non-zero participant")
    elif bool(np.any(touches_hub)) or len(ins) > max(0, nonzero - 1):
        raise _fail(result, f"direct mode used {len(ins)} instructions for {nonzero} participants")


def check_currency_result(
    result: CurrencyResult,
    debtor: npt.NDArray[np.int32],
    creditor: npt.NDArray[np.int32],
    amount: I64,
    settled: Mask,
    cap_minor: I64 | None,
) -> None:
    """Every invariant of one currency's result; raises ``InvariantError``."""
    check_positions(result, cap_minor)
    check_settlement(result, debtor, creditor, amount, settled)
    check_instructions(result)
