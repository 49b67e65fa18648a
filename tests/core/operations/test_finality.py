"""Finality per cycle and rail, folded from cycle reports, batches and states."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from clearing_core.operations.finality import FinalityBook, per_rail
from tests.core.exports.test_exports import CREATED, make_batch

NOW_MS = int((CREATED + timedelta(minutes=30)).timestamp() * 1000)


def report(currency: str, seq: int, batch_ids: list[str]) -> dict[str, Any]:
    return {"cycle_id": f"{currency}-{seq:08d}", "currency": currency, "cycle_seq": seq,
            "closed_at": CREATED, "batch_ids": batch_ids}  # fmt: skip


def status(instruction_id: str, state: str, batch_id: str = "") -> dict[str, Any]:
    return {"instruction_id": instruction_id, "batch_id": batch_id, "status": state}


def book_of_one_cycle() -> tuple[FinalityBook, dict[str, Any], dict[str, Any]]:
    token = make_batch("cnh-stable", "CNH", "CNY", 2, 6, [("A", "B", 100, None, None),
                       ("C", "B", 50, None, None), ("D", "B", 7, None, None)],
                       fmt="TOKEN_BATCH", token="CNHT")  # fmt: skip
    bank = make_batch("cnh-cips", "CNH", "CNY", 2, 2, [("E", "CLEARING_HOUSE", 9, "ABCDCNBJ",
                                                        None)])  # fmt: skip
    book = FinalityBook()
    book.add_cycle(report("CNH", 1, [token["batch_id"], bank["batch_id"]]))  # type: ignore[arg-type]
    book.add_batch(token)  # type: ignore[arg-type]
    book.add_batch(bank)  # type: ignore[arg-type]
    return book, token, bank


def test_settled_failed_and_pending_per_rail_with_the_carried_value() -> None:
    book, token, _ = book_of_one_cycle()
    ids = [i["instruction_id"] for i in token["instructions"]]
    book.add_status(status(ids[0], "SETTLED"))  # type: ignore[arg-type]
    book.add_status(status(ids[1], "FAILED"))  # type: ignore[arg-type]
    (cycle,) = book.cycles(NOW_MS, {"cnh-stable": 3_600, "cnh-cips": 600})
    stable, cips = cycle["rails"]
    assert (stable["settled"], stable["failed"], stable["pending"], stable["overdue"]) == (
        1,
        1,
        1,
        0,
    )
    assert (stable["settled_minor"], stable["carried_minor"]) == (100, 50)
    assert (cips["pending"], cips["overdue"]) == (1, 1)  # 30 minutes > 600 s
    assert not cycle["final"]
    assert per_rail([cycle])["cnh-stable"] == {
        "batches": 1,
        "settled": 1,
        "failed": 1,
        "pending": 1,
        "overdue": 0,
        "carried_minor": 50,
    }


def test_a_cycle_is_final_when_every_instruction_is_settled_or_failed() -> None:
    book, token, bank = book_of_one_cycle()
    for i, instruction in enumerate(token["instructions"] + bank["instructions"]):
        book.add_status(status(instruction["instruction_id"], "FAILED" if i == 2 else "SETTLED"))  # type: ignore[arg-type]
    (cycle,) = book.cycles(NOW_MS, {})
    assert cycle["final"]
    assert [r["carried_minor"] for r in cycle["rails"]] == [7, 0]


def test_a_cycle_whose_batch_is_not_read_yet_is_not_final() -> None:
    book = FinalityBook()
    book.add_cycle(report("USD", 4, ["usd-swift-USD-00000004"]))  # type: ignore[arg-type]
    (cycle,) = book.cycles(NOW_MS, {})
    assert (cycle["final"], cycle["rails"]) == (False, [])


def test_the_book_keeps_the_last_cycles_and_drops_their_batches() -> None:
    book, token, _ = book_of_one_cycle()
    book.cycles_per_currency = 1
    book.add_cycle(report("CNH", 2, []))  # type: ignore[arg-type]
    assert [c["cycle_seq"] for c in book.cycles(NOW_MS, {})] == [2]
    assert token["batch_id"] not in book.batches


def test_the_states_held_are_bounded_oldest_out() -> None:
    book = FinalityBook(states_max=2)
    for n in range(3):
        book.add_status(status(f"i-{n}", "SETTLED"))  # type: ignore[arg-type]
    assert list(book.states) == ["i-1", "i-2"]
