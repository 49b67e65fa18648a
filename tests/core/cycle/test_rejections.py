"""Which rejections fall in a cycle: those of its currency rejected after the previous
close and up to its own, so consecutive cycles count each rejection once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.cycle.rejections import FIRST_CYCLE_LOOKBACK, RejectionWindow, rejection_window
from tests.core.cycle.test_cycle import context, marker, obligation

T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)


def rejected(at: datetime, currency: str = "CNH") -> dict[str, object]:
    return {"currency": currency, "rejected_at": at}


def test_a_first_cycle_looks_back_a_day() -> None:
    ledger = CurrencyLedger("CNH")
    ledger.add(obligation("a", "DC", "SOLAR", 100), T0 - timedelta(minutes=5))
    window = rejection_window(ledger, T0)
    assert window == RejectionWindow("CNH", T0 - FIRST_CYCLE_LOOKBACK, T0)


def test_a_later_cycle_starts_at_the_previous_close() -> None:
    ledger = CurrencyLedger("CNH")
    ledger.close(marker(1), T0, context())
    assert rejection_window(ledger, T0 + timedelta(hours=1)) == RejectionWindow(
        "CNH", T0, T0 + timedelta(hours=1)
    )


def test_the_window_holds_its_close_not_its_opening() -> None:
    window = RejectionWindow("CNH", T0, T0 + timedelta(hours=1))
    assert not window.covers(rejected(T0))  # counted by the previous cycle
    assert window.covers(rejected(T0 + timedelta(microseconds=1)))
    assert window.covers(rejected(T0 + timedelta(hours=1)))
    assert not window.covers(rejected(T0 + timedelta(hours=1, microseconds=1)))


def test_other_currencies_and_rejections_without_one_are_not_counted() -> None:
    window = RejectionWindow("CNH", T0, T0 + timedelta(hours=1))
    assert not window.covers(rejected(T0 + timedelta(minutes=1), currency="USD"))
    assert not window.covers({"rejected_at": T0 + timedelta(minutes=1)})  # unreadable event


@given(
    gaps=st.lists(st.integers(1, 10**9), min_size=1, max_size=6),
    at=st.integers(-(10**9), 7 * 10**9),
)
def test_consecutive_cycles_count_a_rejection_once(gaps: list[int], at: int) -> None:
    """Whenever a rejection falls after the first cycle's start and before the last
    close, exactly one of the consecutive cycles counts it."""
    ledger = CurrencyLedger("CNH")
    closes = [T0 + timedelta(microseconds=sum(gaps[: i + 1])) for i in range(len(gaps))]
    windows = []
    for n, closed_at in enumerate(closes, start=1):
        windows.append(rejection_window(ledger, closed_at))
        ledger.close(marker(n), closed_at, context())
    moment = T0 + timedelta(microseconds=at)
    counted = sum(window.covers(rejected(moment)) for window in windows)
    inside = windows[0].since < moment <= closes[-1]
    assert counted == (1 if inside else 0)
