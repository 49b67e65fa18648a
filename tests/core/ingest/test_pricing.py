"""Exact pricing: the split of each event into whole minor units and a remainder
(scalar and Numba kernel against a naive Python reference, overflow), the
end-to-end rule with the real netting ledger (every remainder settles once
whole, duplicates add nothing), and time-of-use bands."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.cycle.context import CycleContext, RailInfo
from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.cycle.settlement import RailSpec
from clearing_core.errors import InputError
from clearing_core.ingest.aggregate import obligation_of
from clearing_core.ingest.batch import PricedInput
from clearing_core.ingest.price import (
    TariffTable,
    local_minute_of_day,
    priced_of,
    select_tariffs,
    split_price,
    split_prices,
    tariff_at,
)
from clearing_core.money import INT64_MAX, MoneyOverflowError
from clearing_core.refdata import PpaContract
from tests.core.fixtures import base_refdata, ms

SCALE = 1_000_000


def naive(quantity: int, price: int) -> tuple[int, int]:
    """The specification in Python ints and fractions: the whole minor units of the
    exact value, and what is left of it in millionths."""
    exact = Fraction(quantity * price, SCALE)
    whole = math.floor(exact)
    return whole, int((exact - whole) * SCALE)


def split_all(quantity: list[int], price: list[int]) -> tuple[list[int], list[int]]:
    amounts, remainders = split_prices(
        np.array(quantity, dtype=np.int64), np.array(price, dtype=np.int64)
    )
    return amounts.tolist(), remainders.tolist()


@pytest.mark.parametrize(
    ("q", "p", "amount", "remainder"),
    [
        (1_000, 35_000, 35, 0),  # 1 kWh at 350 yuan/MWh = 35 fen exactly
        (3, 35_000, 0, 105_000),  # 3 Wh at 35,000 fen/MWh = 0.105 fen: all remainder
        (1_234_567, 43_650, 53_888, 849_550),  # 53,888.849550 fen
        (2_500_000, 1_200, 3_000, 0),  # 2.5M tokens at $12/M (1,200 cents per million) = $30
        (1_250_000, SCALE, 1_250_000, 0),  # a payment: unit price 1,000,000, never a remainder
        (1, 999_999, 0, 999_999),  # the largest remainder
        (0, 52_000, 0, 0),
        (5, 0, 0, 0),
        (INT64_MAX, 1, INT64_MAX // SCALE, INT64_MAX % SCALE),  # the product may reach int64 max
    ],
)
def test_handmade_cases(q: int, p: int, amount: int, remainder: int) -> None:
    assert split_price(q, p) == (amount, remainder)
    assert naive(q, p) == (amount, remainder)
    assert split_all([q], [p]) == ([amount], [remainder])


@given(st.integers(0, 10**11), st.integers(0, 10**7))  # products stay within int64
def test_scalar_equals_the_naive_reference(q: int, p: int) -> None:
    amount, remainder = split_price(q, p)
    assert (amount, remainder) == naive(q, p)
    assert amount * SCALE + remainder == q * p  # nothing created or lost
    assert 0 <= remainder < SCALE


@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)), max_size=60))
def test_kernel_equals_the_naive_reference(events: list[tuple[int, int]]) -> None:
    q = [e[0] for e in events]
    p = [e[1] for e in events]
    amounts, remainders = split_all(q, p)
    assert list(zip(amounts, remainders, strict=True)) == [naive(*e) for e in events]
    assert list(zip(amounts, remainders, strict=True)) == [split_price(*e) for e in events]


@given(st.lists(st.tuples(st.integers(0, INT64_MAX), st.integers(0, INT64_MAX)), max_size=8))
def test_kernel_across_the_whole_int64_range(events: list[tuple[int, int]]) -> None:
    q = [e[0] for e in events]
    p = [e[1] for e in events]
    overflows = [i for i, (qi, pi) in enumerate(events) if qi * pi > INT64_MAX]
    if overflows:
        with pytest.raises(MoneyOverflowError) as caught:
            split_all(q, p)
        assert caught.value.index == overflows[0]
        with pytest.raises(MoneyOverflowError):
            split_price(*events[overflows[0]])
    else:
        amounts, remainders = split_all(q, p)
        assert list(zip(amounts, remainders, strict=True)) == [naive(*e) for e in events]


def test_overflow_names_the_first_bad_event() -> None:
    price = 1_000_000_000
    fits = INT64_MAX // price
    with pytest.raises(MoneyOverflowError) as caught:
        split_prices([1, fits, fits + 1, fits + 2], [price] * 4)
    assert caught.value.index == 2
    assert caught.value.reason_code == "AMOUNT_OVERFLOW"
    assert "quantity[2] * unit_price[2]" in str(caught.value)
    assert split_price(fits, price) == naive(fits, price)
    with pytest.raises(MoneyOverflowError) as scalar:
        split_price(fits + 1, price)
    assert scalar.value.index is None
    # A zero price never overflows, whatever the quantity.
    assert split_all([INT64_MAX], [0]) == ([0], [0])


@pytest.mark.parametrize(
    ("q", "p", "error", "message"),
    [
        (-1, 1, InputError, "quantity -1 is negative"),
        (1, -1, InputError, "unit_price -1 is negative"),
        (1.0, 1, InputError, "quantity must be an integer, got float"),
        (True, 1, InputError, "quantity must be an integer, got bool"),
        (1, 2**63, MoneyOverflowError, "unit_price 9223372036854775808 is above int64"),
    ],
)
def test_scalar_input_checks(q: Any, p: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        split_price(q, p)


def test_scalar_accepts_numpy_integers() -> None:
    q: Any = np.int64(3)  # typed int; numpy integers are accepted too
    p: Any = np.uint32(35_000)
    assert split_price(q, p) == (0, 105_000)


@pytest.mark.parametrize(
    ("q", "p", "error", "message"),
    [
        ([1, -1], [1, 1], InputError, r"split_prices: quantity\[1\] = -1 is negative"),
        ([1], [-1], InputError, r"split_prices: unit_price\[0\] = -1 is negative"),
        ([1, 2], [1], InputError, "2 quantities, 1 prices"),
        ([1.5], [1], InputError, "quantity: expected integers"),
        ([[1]], [[1]], InputError, "expected a 1-D array"),
        (np.array([2**63], dtype=np.uint64), [1], MoneyOverflowError, "value above int64"),
    ],
)
def test_bad_batch_input(q: Any, p: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        split_prices(q, p)


def test_empty_batch() -> None:
    amounts, remainders = split_prices([], [])
    assert amounts.dtype == remainders.dtype == np.int64
    assert amounts.shape == remainders.shape == (0,)


# The end-to-end rule: remainders ride on the obligations and the netting ledger
# settles them per carry key once whole.

T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)


def context() -> CycleContext:
    """Two parties on one hub rail, no caps: everything settles every cycle."""
    rails = {"cnh-cips": RailInfo(RailSpec("cnh-cips", "hub", 2, 2), "ISO20022", None)}
    return CycleContext(
        currency="CNH", iso_currency="CNY", currency_exponent=2, rails=rails,
        rail_of={"DC": "cnh-cips", "SOLAR": "cnh-cips"}, cap_minor={}, identities={},
    )  # fmt: skip


@dataclass(frozen=True)
class Stream:
    """A carry key as ingest fills it in (``""``: a payment, which carries nothing)."""

    source: str
    carry_key: str
    debtor: str
    creditor: str


STREAMS = (
    Stream("METER", "ppa:PPA-1", "DC", "SOLAR"),
    Stream("METER", "ppa:PPA-2", "SOLAR", "DC"),  # the other direction
    Stream("COMPUTE", "book:BOOK-1:DC", "DC", "SOLAR"),
    Stream("PAYMENT", "", "SOLAR", "DC"),
)


def record(stream: Stream, event_id: str, quantity: int, unit_price: int) -> dict[str, Any]:
    """The Obligation record ingest makes of an accepted event."""
    priced = PricedInput(
        source=stream.source, event_id=event_id, debtor_id=stream.debtor,
        creditor_id=stream.creditor, currency="CNH", quantity=quantity, unit_price=unit_price,
        carry_key=stream.carry_key, priority=0, contract_id=stream.carry_key or None,
        event_time_ms=1_700_000_000_000,
    )  # fmt: skip
    return obligation_of(priced_of(priced, quantity * unit_price))[1]


class SpyLedger(CurrencyLedger):
    """The real ledger, noting the whole-unit obligations its remainders become."""

    def __init__(self) -> None:
        super().__init__("CNH")
        self.settled: list[tuple[int, str, int]] = []  # (cycle, obligation id, amount)

    def _settle_remainders(self, seq: int) -> None:
        before = self.open_count
        super()._settle_remainders(seq)
        ids = self._open.obligation_id[before:]
        amounts = self._open.amount_minor[before:]
        self.settled += [(seq, oid, amount) for oid, amount in zip(ids, amounts, strict=True)]


amounts_st = st.one_of(st.integers(0, 5_000), st.integers(0, 10**8))


@st.composite
def logs(draw: st.DrawFn, streams: int) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """Events ``(event index, stream, quantity, unit price)`` in log order, each maybe
    re-delivered later (same index), and 0..3 cut points splitting the log into cycles."""
    drawn = draw(
        st.lists(st.tuples(st.integers(0, streams - 1), amounts_st, amounts_st), max_size=40)
    )
    # A payment is priced at exactly 1,000,000 per minor unit (its quantity is the amount).
    events = [(s, q, SCALE if STREAMS[s].source == "PAYMENT" else p) for s, q, p in drawn]
    deliveries: list[tuple[int, int, int]] = [(i, 0, i) for i in range(len(events))]
    for i in range(len(events)):
        for _ in range(draw(st.integers(0, 2))):  # re-deliveries at or after the original
            deliveries.append((draw(st.integers(i, len(events))), 1, i))
    log = [(i, *events[i]) for _, _, i in sorted(deliveries)]
    cuts = sorted(draw(st.lists(st.integers(0, len(log)), max_size=3)))
    return log, cuts


def run_cycles(
    log: list[tuple[int, int, int, int]], cuts: list[int]
) -> tuple[SpyLedger, list[dict[str, Any]], list[dict[str, Any]], list[bool]]:
    """Feed the log to a ledger, closing a cycle at each cut and at the end; the
    records, cycle reports and what each ``add`` answered."""
    ledger = SpyLedger()
    records = [record(STREAMS[s], f"e{i}", q, p) for i, s, q, p in log]
    reports, positions, added = [], [], []
    bounds = [0, *cuts, len(records)]
    for n, (start, end) in enumerate(itertools.pairwise(bounds)):
        added += [ledger.add(r) for r in records[start:end]]
        marker = {"marker_id": f"m{n}"}
        outcome = ledger.close(marker, T0 + timedelta(minutes=n), context())
        assert outcome.carried.obligation_id == ()  # no caps: nothing deferred
        reports.append(outcome.report)
        positions += outcome.positions
    return ledger, reports, positions, added


def check_rule(log: list[tuple[int, int, int, int]], cuts: list[int]) -> None:
    ledger, reports, positions, added = run_cycles(log, cuts)
    first = {i: n for n, (i, *_) in reversed(list(enumerate(log)))}
    # Only the first delivery of an event id counts; re-deliveries add nothing.
    assert added == [first[i] == n for n, (i, *_) in enumerate(log)]
    assert sum(r["duplicate_count"] for r in reports) == len(log) - len(first)
    events = {i: (s, q, p) for i, s, q, p in log}
    remainders = {k: r.remainder_ppm for k, r in ledger.remainders.items()}
    whole_units: dict[str, int] = {}
    for seq, oid, amount in ledger.settled:
        # Whole units of a key are one obligation r:<carry_key>:<seq> per cycle.
        prefix, _, rest = oid.partition(":")
        key, _, cycle = rest.rpartition(":")
        assert (prefix, cycle) == ("r", str(seq))
        assert amount > 0
        whole_units[key] = whole_units.get(key, 0) + amount
    assert len({oid for _, oid, _ in ledger.settled}) == len(ledger.settled)
    exact_total = 0
    for stream in STREAMS:
        mine = [(q, p) for s, q, p in events.values() if STREAMS[s] == stream]
        exact = sum(q * p for q, p in mine)
        exact_total += exact
        billed = sum(split_price(q, p)[0] for q, p in mine)
        if not stream.carry_key:  # payments: whole by construction, nothing carried
            assert exact % SCALE == 0
            assert billed == exact // SCALE
            continue
        settled = billed + whole_units.get(stream.carry_key, 0)
        assert settled == exact // SCALE  # the exact total rounded once, down
        assert remainders.get(stream.carry_key, 0) == exact % SCALE  # the rest, carried
    assert set(remainders) | set(whole_units) <= {s.carry_key for s in STREAMS if s.carry_key}
    # What netted and settled over all cycles is the same total, seen from the ledger.
    total_settled = sum(r["settled_gross_minor"] for r in reports)
    assert sum(r["gross_minor"] for r in reports) == total_settled
    assert total_settled * SCALE + sum(remainders.values()) == exact_total
    signed: dict[str, int] = {"DC": 0, "SOLAR": 0}
    for s, q, p in events.values():
        stream, units = STREAMS[s], split_price(q, p)[0]
        signed[stream.creditor] += units
        signed[stream.debtor] -= units
    for key, units in whole_units.items():
        stream = next(s for s in STREAMS if s.carry_key == key)
        signed[stream.creditor] += units
        signed[stream.debtor] -= units
    for party, expected in signed.items():
        assert sum(p["net_minor"] for p in positions if p["participant_id"] == party) == expected


@settings(max_examples=60, deadline=None)
@given(logs(streams=1))
def test_one_contract_settles_its_exact_total_across_cycles(
    drawn: tuple[list[tuple[int, int, int, int]], list[int]],
) -> None:
    check_rule(*drawn)


@settings(max_examples=60, deadline=None)
@given(logs(streams=len(STREAMS)))
def test_several_contracts_and_payments_settle_their_exact_totals(
    drawn: tuple[list[tuple[int, int, int, int]], list[int]],
) -> None:
    check_rule(*drawn)


def test_ten_small_readings_settle_one_fen_and_carry_the_rest() -> None:
    # Ten readings of 3 Wh at 350.00 yuan/MWh: 0.105 fen each, 1.05 fen in all.
    log = [(i, 0, 3, 35_000) for i in range(10)]
    log.insert(4, (2, 0, 3, 35_000))  # a re-delivery of event 2
    ledger, reports, _, added = run_cycles(log, cuts=[5])
    assert added.count(False) == 1
    assert [r["settled_gross_minor"] for r in reports] == [0, 1]  # 0.42 fen, then 1.05 fen
    assert ledger.settled == [(2, "r:ppa:PPA-1:2", 1)]
    assert ledger.remainders["ppa:PPA-1"].remainder_ppm == 50_000  # 0.05 fen, still owed


# Time-of-use bands.


def _contract() -> PpaContract:
    return base_refdata().contracts["PPA-0001"]  # +08:00; 00:00-07:00 and 08:00-11:00


@pytest.mark.parametrize(
    ("utc", "tariff"),
    [
        ("2025-06-01T00:00:00+00:00", 52_000),  # 08:00 local: peak starts (inclusive)
        ("2025-05-31T23:59:59.999+00:00", 35_000),  # 07:59:59.999 local: base
        ("2025-06-01T02:59:00+00:00", 52_000),  # 10:59 local: still peak
        ("2025-06-01T03:00:00+00:00", 35_000),  # 11:00 local: peak ended (exclusive)
        ("2025-05-31T16:00:00+00:00", 20_000),  # local midnight: valley
        ("2025-05-31T15:59:00+00:00", 35_000),  # 23:59 local the day before: base
        ("2025-05-31T22:59:00+00:00", 20_000),  # 06:59 local: valley
        ("2025-05-31T23:00:00+00:00", 35_000),  # 07:00 local: valley ended
    ],
)
def test_tou_band_edges_in_local_time(utc: str, tariff: int) -> None:
    assert tariff_at(_contract(), ms(utc)) == tariff


def test_negative_offsets_cross_midnight_backwards() -> None:
    contract = _contract().model_copy(update={"utc_offset_minutes": -300})
    # 05:00 UTC is 00:00 in UTC-5: the valley band.
    assert local_minute_of_day(ms("2025-06-01T05:00:00+00:00"), -300) == 0
    assert tariff_at(contract, ms("2025-06-01T05:00:00+00:00")) == 20_000
    # 04:59 UTC is 23:59 the day before.
    assert local_minute_of_day(ms("2025-06-01T04:59:00+00:00"), -300) == 1439
    assert tariff_at(contract, ms("2025-06-01T04:59:00+00:00")) == 35_000
    # Before the epoch the floor division still gives the right minute.
    assert local_minute_of_day(-1, 0) == 1439


@settings(max_examples=50)
@given(
    st.lists(st.tuples(st.integers(-(10**13), 10**13), st.integers(0, 2)), max_size=40),
    st.integers(-840, 840),
)
def test_vectorised_tariffs_match_scalar(events: list[tuple[int, int]], offset: int) -> None:
    ref = base_refdata()
    contracts = [
        ref.contracts["PPA-0001"].model_copy(update={"utc_offset_minutes": offset}),
        ref.contracts["PPA-0002"],
        ref.contracts["PPA-0001"],
    ]
    table = TariffTable.from_contracts(contracts)
    starts = np.array([s for s, _ in events], dtype=np.int64)
    index = np.array([c for _, c in events], dtype=np.int64)
    got = select_tariffs(starts, index, table).tolist()
    assert got == [tariff_at(contracts[c], s) for s, c in events]


def test_select_tariffs_checks_its_input() -> None:
    table = TariffTable.from_contracts([_contract()])
    with pytest.raises(InputError, match=r"select_tariffs: contract_index\[0\] = 1"):
        select_tariffs([0], [1], table)
    with pytest.raises(InputError, match="1 starts, 2 contracts"):
        select_tariffs([0], [0, 0], table)
