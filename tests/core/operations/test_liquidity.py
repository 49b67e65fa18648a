"""Liquidity per participant: net debit against the cap in force, most constrained first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clearing_core.operations.liquidity import LiquidityBook, liquidity_row, most_constrained


def position(
    participant: str, net: int, cap: int | None, *, seq: int = 1, deferred: int = 0,
    currency: str = "CNH",
) -> Any:  # fmt: skip
    return {"participant_id": participant, "currency": currency, "cycle_seq": seq,
            "rail_id": "cnh-cips", "receivable_minor": max(0, net), "payable_minor": max(0, -net),
            "net_minor": net, "deferred_minor": deferred, "net_debit_cap_minor": cap,
            "as_of": datetime(2026, 12, 7, tzinfo=UTC)}  # fmt: skip


def test_a_row_is_the_net_debit_against_the_cap() -> None:
    row = liquidity_row(position("A", -7_500, 10_000, deferred=300))
    figures = (row["net_debit_minor"], row["cap_minor"], row["headroom_minor"])
    assert figures == (7_500, 10_000, 2_500)
    assert row["used_bp"] == 7_500
    assert row["deferred_minor"] == 300
    receiver = liquidity_row(position("B", 4_000, 10_000))
    assert (receiver["net_debit_minor"], receiver["used_bp"]) == (0, 0)
    uncapped = liquidity_row(position("C", -4_000, None))
    assert (uncapped["cap_minor"], uncapped["headroom_minor"], uncapped["used_bp"]) == (
        None, None, None)  # fmt: skip


def test_the_most_constrained_come_first_exactly() -> None:
    # 666_666_666_666_667 / 10**15 is above 2/3 by one part in 3 * 10**15
    rows = [
        liquidity_row(position("UNCAPPED", -(10**12), None)),
        liquidity_row(position("HALF", -50, 100)),
        liquidity_row(position("TWO-THIRDS", -2, 3)),
        liquidity_row(position("JUST-OVER", -666_666_666_666_667, 10**15)),
        liquidity_row(position("FULL-DEFERRING", -100, 100, deferred=40)),
        liquidity_row(position("FULL", -1_000, 1_000)),
        liquidity_row(position("RECEIVES", 500, 100)),
    ]
    summary = most_constrained(rows, limit=5)
    assert [r["participant_id"] for r in summary["rows"]] == [
        "FULL-DEFERRING", "FULL", "JUST-OVER", "TWO-THIRDS", "HALF"]  # fmt: skip
    assert summary["participants"] == 7
    assert summary["capped"] == 6
    assert summary["at_cap"] == 2
    assert summary["deferring"] == 1
    everything = most_constrained(rows)["rows"]
    assert [r["participant_id"] for r in everything][-2:] == ["RECEIVES", "UNCAPPED"]


def test_the_book_keeps_the_newest_cycle_of_each_currency() -> None:
    book = LiquidityBook()
    book.add_position(position("A", -10, 100, seq=1))
    book.add_position(position("B", -20, 100, seq=1))
    book.add_position(position("A", -30, 100, seq=2))  # cycle 2: B was not in it
    book.add_position(position("B", -99, 100, seq=1))  # late, from another partition
    book.add_position(position("A", -5, None, seq=1, currency="USD"))
    rows = book.summary()["rows"]
    assert [(r["currency"], r["participant_id"], r["cycle_seq"], r["net_debit_minor"])
            for r in rows] == [("CNH", "A", 2, 30), ("USD", "A", 1, 5)]  # fmt: skip
