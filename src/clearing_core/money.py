"""Money: checked int64 arithmetic and exact conversion to rail units.

Why: every amount in the clearing house is an int64 count of minor units
(fen, cents). A silent wraparound would create or destroy money, so every
add, multiply and sum here either returns the exact result or raises
``MoneyOverflowError``. Rails may count in finer units than the ledger
(stablecoins use 6 decimals); converting is a multiplication by a power of
ten, which is exact, so the opposite case (a rail coarser than the ledger)
is a configuration error rather than a rounding rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from clearing_core.errors import ClearingError, InputError
from clearing_core.jit import kernel

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
DECIMALS_MAX = 18  # 10**18 still fits int64; more could not scale even one unit
EXPONENT_MAX = 9

_F = TypeVar("_F", bound=Callable[..., Any])


class MoneyOverflowError(ClearingError):
    """An amount or a sum left the int64 range; ``index`` names the first bad element
    of an array input (None for scalars)."""

    reason_code = "AMOUNT_OVERFLOW"

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class MoneyConfigError(InputError):
    """Currency or rail settings that would make a conversion lossy or impossible."""

    reason_code = "BAD_CONFIG"


def _check_int64(value: int, what: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise MoneyOverflowError(f"{what}: {value} is outside int64")
    return value


def checked_add(a: int, b: int) -> int:
    """a + b, raising instead of leaving int64."""
    return _check_int64(_as_int(a) + _as_int(b), "add")


def checked_mul(a: int, b: int) -> int:
    """a * b, raising instead of leaving int64."""
    return _check_int64(_as_int(a) * _as_int(b), "multiply")


def checked_sum(values: Iterable[int]) -> int:
    """Sum of int64 values; every partial sum must stay in int64, as it would in a
    running int64 accumulator (so the result does not depend on Python's big ints)."""
    total = 0
    for position, value in enumerate(values):
        total += _check_int64(_as_int(value), f"sum element {position}")
        if not INT64_MIN <= total <= INT64_MAX:
            raise MoneyOverflowError(f"sum overflows int64 at element {position}", position)
    return total


def _as_int(value: int) -> int:
    """Python int of an int or numpy integer; bools and floats are refused (money is
    never a float, and True is not an amount)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"amount must be an integer, got {type(value).__name__}")
    return int(value)


@kernel
def _sum_int64(values: NDArray[np.int64]) -> tuple[np.int64, int]:
    """(sum, -1) or (partial sum, index of the first element that overflows)."""
    total = np.int64(0)
    big = np.int64(9223372036854775807)
    small = np.int64(-9223372036854775807 - 1)
    for i in range(values.shape[0]):
        v = values[i]
        if (v > 0 and total > big - v) or (v < 0 and total < small - v):
            return total, i
        total += v
    return total, -1


def checked_sum_array(values: ArrayLike) -> int:
    """Sum of an int64 array, raising ``MoneyOverflowError`` at the first element whose
    running sum leaves int64 (numpy's own sum wraps silently)."""
    array = as_int64_array(values, "values")
    total, bad = _sum_int64(array)
    if bad >= 0:
        raise MoneyOverflowError(f"sum overflows int64 at index {bad}", int(bad))
    return int(total)


def as_int64_array(values: ArrayLike, name: str) -> NDArray[np.int64]:
    """A contiguous 1-D int64 view/copy of integer input; floats, bools and objects
    are refused rather than truncated."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array, got {array.ndim} dimensions")
    if array.dtype.kind not in "iu":
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        raise InputError(f"{name}: expected integers, got dtype {array.dtype}")
    if array.dtype == np.uint64 and array.size and int(array.max()) > INT64_MAX:
        raise MoneyOverflowError(f"{name}: value above int64", int(np.argmax(array > INT64_MAX)))
    return np.ascontiguousarray(array, dtype=np.int64)


def rail_scale(currency_exponent: int, rail_decimals: int) -> int:
    """10 ** (rail_decimals - currency_exponent): rail units per ledger minor unit."""
    if not 0 <= currency_exponent <= EXPONENT_MAX:
        raise MoneyConfigError(f"currency exponent {currency_exponent} is not in 0..{EXPONENT_MAX}")
    if not 0 <= rail_decimals <= DECIMALS_MAX:
        raise MoneyConfigError(f"rail decimals {rail_decimals} is not in 0..{DECIMALS_MAX}")
    if rail_decimals < currency_exponent:
        raise MoneyConfigError(
            f"rail decimals {rail_decimals} are fewer than the currency exponent "
            f"{currency_exponent}: the conversion would lose value"
        )
    return int(10 ** (rail_decimals - currency_exponent))


def to_rail_units(amount_minor: int, currency_exponent: int, rail_decimals: int) -> int:
    """Ledger minor units to rail units, exactly: amount * 10^(decimals - exponent)."""
    scale = rail_scale(currency_exponent, rail_decimals)
    amount = _check_int64(_as_int(amount_minor), "amount_minor")
    result = amount * scale
    if not INT64_MIN <= result <= INT64_MAX:
        raise MoneyOverflowError(f"{amount} minor units * {scale} overflows int64 rail units")
    return result


def to_rail_units_array(
    amount_minor: ArrayLike, currency_exponent: int, rail_decimals: int
) -> NDArray[np.int64]:
    """Vectorised ``to_rail_units``; the first element that would overflow is named."""
    scale = rail_scale(currency_exponent, rail_decimals)
    amounts = as_int64_array(amount_minor, "amount_minor")
    high = INT64_MAX // scale
    low = -((INT64_MAX + 1) // scale)
    bad = np.flatnonzero((amounts > high) | (amounts < low))
    if bad.size:
        index = int(bad[0])
        raise MoneyOverflowError(
            f"amount_minor[{index}] = {int(amounts[index])} * {scale} overflows int64", index
        )
    return amounts * np.int64(scale)


def format_units(amount: int, decimals: int) -> str:
    """Exact decimal text of an integer amount with ``decimals`` places ("-12.05"),
    for ISO 20022 and token exports; no float ever touches it."""
    value = _as_int(amount)
    if not 0 <= decimals <= DECIMALS_MAX:
        raise MoneyConfigError(f"decimals {decimals} is not in 0..{DECIMALS_MAX}")
    sign = "-" if value < 0 else ""
    digits = str(abs(value))
    if decimals == 0:
        return sign + digits
    digits = digits.rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


class HasIsoCode(Protocol):
    """What ``iso_4217_code`` needs of a currency record (``refdata.Currency`` fits)."""

    @property
    def code(self) -> str: ...

    @property
    def iso_code(self) -> str: ...


def iso_4217_code(ledger_code: str, currencies: Mapping[str, HasIsoCode]) -> str:
    """ISO 4217 code to write in exports for a ledger currency: CNH is a market label,
    so its Currency record says ``iso_code: CNY``; the mapping is data, not code."""
    currency = currencies.get(ledger_code)
    if currency is None:
        raise InputError(f"unknown currency {ledger_code!r}")
    return currency.iso_code
