"""The ingest stage's fourth step, and the rules of exact integer pricing: each
event's price split into whole minor units and a remainder, and the time-of-use
tariff an event is priced at.

The step (``price_events``, one event at a time; the fast lane prices in columns,
``fast_lane.price``) keeps each event's exact price, ``quantity * unit_price`` in
millionths of a minor unit; aggregation splits the sum once (``aggregate``).

Why a split and no rounding: an event's value is ``quantity * unit_price /
1,000,000`` minor units (Wh * minor/MWh, or units * minor/million units),
which is rarely a whole number. Rounding each event would leak up to one minor
unit per event, which over millions of meter intervals is real money. So each
event is split exactly::

    amount_minor, remainder_ppm = divmod(quantity * unit_price, 1,000,000)

and both travel on the event's obligation. Pricing keeps no state: the same
event always gives the same pair, so a re-delivered event yields the identical
obligation. The netting stage, which counts every obligation id once inside
Kafka transactions, adds the remainders up per carry key and settles each whole
minor unit they reach (``clearing_core.cycle.ledger``), so the total settled for a
contract is the exact total rounded once, down. ``split_price`` is the rule on
Python ints (ingest applies it per event); ``split_prices`` is the same rule
over int64 arrays (a Numba kernel) for the batch path. Overflow is an error,
never a wraparound.

Tariffs: ``tariff_at`` picks a contract's time-of-use band for one interval
start; ``TariffTable`` and ``select_tariffs`` do the same for arrays of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from clearing_core.errors import InputError
from clearing_core.ingest.batch import Case, Priced, PricedInput, Refused
from clearing_core.jit import kernel
from clearing_core.money import (
    INT64_MAX,
    MoneyOverflowError,
    as_int64_array,
    checked_mul,
)
from clearing_core.refdata.models import PRICE_SCALE, PpaContract

MS_PER_MINUTE = 60_000
MINUTES_PER_DAY = 1_440


def split_price(quantity: int, unit_price: int) -> tuple[int, int]:
    """``divmod(quantity * unit_price, 1,000,000)``: the whole minor units of an event
    and the remainder in millionths of a minor unit (0 <= remainder < 1,000,000).

    Raises ``InputError`` for a negative or non-integer input (bools and floats
    included) and ``MoneyOverflowError`` when an input or the product leaves int64.
    """
    for name, value in (("quantity", quantity), ("unit_price", unit_price)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InputError(f"{name} must be an integer, got {type(value).__name__}")
        if value < 0:
            raise InputError(f"{name} {value} is negative")
        if value > INT64_MAX:
            raise MoneyOverflowError(f"{name} {value} is above int64")
    amount, remainder = divmod(checked_mul(quantity, unit_price), PRICE_SCALE)
    return amount, remainder


def price_events(cases: Sequence[Case]) -> None:
    """Fill in the exact price of each case with facts to price; one whose
    ``quantity * unit_price`` leaves int64 is refused (``AMOUNT_OVERFLOW``)."""
    for case in cases:
        checked = case.checked
        if checked is None:
            continue
        try:
            exact = checked_mul(checked.quantity, checked.unit_price)
        except MoneyOverflowError as exc:
            case.refused = Refused(exc.reason_code, str(exc), checked.event_id, checked.currency)
            continue
        case.priced = priced_of(checked, exact)


def priced_of(priced: PricedInput, exact: int) -> Priced:
    """An event accepted by the per-event path, as the fast lane gives one."""
    key = (priced.currency, priced.debtor_id, priced.creditor_id, priced.source,
           priced.priority, priced.contract_id, priced.carry_key or None)  # fmt: skip
    return Priced(priced.event_id, key, exact, priced.event_time_ms)


@kernel
def _split_prices(
    quantity: NDArray[np.int64], unit_price: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """(amounts, remainders, -1), or the index of the first event whose q * p would
    overflow int64 (the outputs are then incomplete and must be dropped). Inputs
    must be non-negative; the caller checks."""
    scale = np.int64(1_000_000)
    big = np.int64(9223372036854775807)
    n = quantity.shape[0]
    amount = np.zeros(n, dtype=np.int64)
    remainder = np.zeros(n, dtype=np.int64)
    for i in range(n):
        q = quantity[i]
        p = unit_price[i]
        if p != 0 and q > big // p:
            return amount, remainder, i
        product = q * p
        whole = product // scale
        amount[i] = whole
        remainder[i] = product - whole * scale
    return amount, remainder, -1


def split_prices(
    quantity: ArrayLike, unit_price: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Vectorised ``split_price``: ``(amount_minor, remainder_ppm)`` per event.

    Raises ``InputError`` for negative values, non-integer arrays and arrays of
    unequal length, and ``MoneyOverflowError`` (with ``index``, the first event)
    when a product leaves int64.
    """
    q = as_int64_array(quantity, "quantity")
    p = as_int64_array(unit_price, "unit_price")
    if q.shape != p.shape:
        raise InputError(f"split_prices: {q.shape[0]} quantities, {p.shape[0]} prices")
    _first_bad(q < 0, "quantity", q, "is negative", "split_prices")
    _first_bad(p < 0, "unit_price", p, "is negative", "split_prices")
    amount, remainder, bad = _split_prices(q, p)
    if bad >= 0:
        i = int(bad)
        raise MoneyOverflowError(
            f"split_prices: quantity[{i}] * unit_price[{i}] = {int(q[i])} * {int(p[i])} "
            "overflows int64",
            i,
        )
    return amount, remainder


def _first_bad(
    mask: NDArray[np.bool_], name: str, values: NDArray[np.int64], why: str, where: str
) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{where}: {name}[{i}] = {int(values[i])} {why}")


# Time-of-use tariffs.


def local_minute_of_day(interval_start_ms: int, utc_offset_minutes: int) -> int:
    """Minute after local midnight (0..1439) of a UTC millisecond timestamp."""
    return (interval_start_ms // MS_PER_MINUTE + utc_offset_minutes) % MINUTES_PER_DAY


def tariff_at(contract: PpaContract, interval_start_ms: int) -> int:
    """The contract's tariff (minor units per MWh) for an interval starting then:
    the band containing the local start minute, else the base tariff."""
    minute = local_minute_of_day(interval_start_ms, contract.utc_offset_minutes)
    for band in contract.tou_bands:
        if band.start_minute <= minute < band.end_minute:
            return band.tariff_minor_per_mwh
    return contract.tariff_minor_per_mwh


@dataclass(frozen=True)
class TariffTable:
    """Tariffs of many contracts as flat arrays (bands in CSR form) for batches."""

    contract_ids: tuple[str, ...]
    base_tariff: NDArray[np.int64]
    utc_offset_minutes: NDArray[np.int64]
    band_offsets: NDArray[np.int64]  # bands of contract c: band_offsets[c]:band_offsets[c+1]
    band_start_minute: NDArray[np.int64]
    band_end_minute: NDArray[np.int64]
    band_tariff: NDArray[np.int64]

    @classmethod
    def from_contracts(cls, contracts: Iterable[PpaContract]) -> TariffTable:
        chosen = list(contracts)
        bands = [b for c in chosen for b in c.tou_bands]
        offsets = np.zeros(len(chosen) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(c.tou_bands) for c in chosen], dtype=np.int64)

        def ints(values: Iterable[int]) -> NDArray[np.int64]:
            return np.array(list(values), dtype=np.int64)

        return cls(
            contract_ids=tuple(c.contract_id for c in chosen),
            base_tariff=ints(c.tariff_minor_per_mwh for c in chosen),
            utc_offset_minutes=ints(c.utc_offset_minutes for c in chosen),
            band_offsets=offsets,
            band_start_minute=ints(b.start_minute for b in bands),
            band_end_minute=ints(b.end_minute for b in bands),
            band_tariff=ints(b.tariff_minor_per_mwh for b in bands),
        )


@kernel
def _select_tariffs(
    start_ms: NDArray[np.int64],
    contract: NDArray[np.int64],
    base: NDArray[np.int64],
    offset: NDArray[np.int64],
    band_offsets: NDArray[np.int64],
    band_start: NDArray[np.int64],
    band_end: NDArray[np.int64],
    band_tariff: NDArray[np.int64],
) -> NDArray[np.int64]:
    out = np.empty(start_ms.shape[0], dtype=np.int64)
    for i in range(start_ms.shape[0]):
        c = contract[i]
        minute = (start_ms[i] // 60_000 + offset[c]) % 1_440
        tariff = base[c]
        for b in range(band_offsets[c], band_offsets[c + 1]):
            if band_start[b] <= minute < band_end[b]:
                tariff = band_tariff[b]
                break
        out[i] = tariff
    return out


def select_tariffs(
    interval_start_ms: ArrayLike, contract_index: ArrayLike, table: TariffTable
) -> NDArray[np.int64]:
    """Vectorised ``tariff_at``: the tariff of each interval start, where event ``i``
    is priced under contract ``table.contract_ids[contract_index[i]]``."""
    starts = as_int64_array(interval_start_ms, "interval_start_ms")
    index = as_int64_array(contract_index, "contract_index")
    if starts.shape != index.shape:
        raise InputError(f"select_tariffs: {starts.shape[0]} starts, {index.shape[0]} contracts")
    count = len(table.contract_ids)
    _first_bad(
        (index < 0) | (index >= count),
        "contract_index",
        index,
        f"is not in 0..{count - 1}",
        "select_tariffs",
    )
    return _select_tariffs(
        starts,
        index,
        table.base_tariff,
        table.utc_offset_minutes,
        table.band_offsets,
        table.band_start_minute,
        table.band_end_minute,
        table.band_tariff,
    )
