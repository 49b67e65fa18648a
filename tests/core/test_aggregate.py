"""Pre-aggregation of a micro-batch's obligations: exact to the millionth, one
obligation per key, auditable (event count and digest), deterministic, and never
past int64."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core import ids
from clearing_core.aggregate import aggregate, aggregate_key, exact_of
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import PRICE_SCALE

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
PARTIES = ("A", "B", "C")


def obligation(
    event_id: str, debtor: str, creditor: str, amount: int, remainder: int,
    source: str = "METER", minutes: int = 0,
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    carry = f"{source}/{debtor}/{creditor}" if remainder else None
    record = {
        "obligation_id": ids.obligation_id(source, [event_id]), "debtor_id": debtor,
        "creditor_id": creditor, "currency": "CNH", "amount_minor": amount, "priority": 0,
        "source": source, "contract_id": f"K-{debtor}-{creditor}", "source_event_count": 1,
        "source_digest": None, "event_time": T0 + timedelta(minutes=minutes),
        "remainder_ppm": remainder, "carry_key": carry,
    }  # fmt: skip
    return b"CNH", record


def test_one_contract_becomes_one_obligation_with_the_exact_sum() -> None:
    items = [obligation("e1", "A", "B", 10, 600_000, minutes=1),
             obligation("e2", "A", "B", 20, 700_000, minutes=3),
             obligation("e3", "B", "A", 5, 0, source="PAYMENT")]  # fmt: skip
    out = aggregate(items, ["e1", "e2", "e3"])
    assert [r["source_event_count"] for _, r in out.records] == [2, 1]
    merged = out.records[0][1]
    assert (merged["amount_minor"], merged["remainder_ppm"]) == (31, 300_000)
    assert merged["obligation_id"] == ids.obligation_id("METER", ["e2", "e1"])
    assert merged["obligation_id"].startswith("m:agg:")
    assert merged["source_digest"] == ids.source_digest(["e1", "e2"])
    assert merged["event_time"] == T0 + timedelta(minutes=3)  # the latest
    assert out.records[1][1] == items[2][1]  # alone: unchanged, id m:/p:<event id>
    assert out.obligation_of == {"e1": merged["obligation_id"], "e2": merged["obligation_id"],
                                 "e3": "p:e3"}  # fmt: skip


def test_a_sum_past_int64_opens_a_new_aggregate() -> None:
    big = INT64_MAX // PRICE_SCALE - 1
    items = [obligation(f"e{i}", "A", "B", big // 2, 0) for i in range(5)]
    out = aggregate(items, [f"e{i}" for i in range(5)])
    assert sum(r["amount_minor"] for _, r in out.records) == 5 * (big // 2)
    assert all(exact_of(r) <= INT64_MAX for _, r in out.records)
    assert [r["source_event_count"] for _, r in out.records] == [2, 2, 1]


def test_an_aggregate_is_not_aggregated_again_and_inputs_must_pair() -> None:
    key, record = obligation("e1", "A", "B", 1, 0)
    with pytest.raises(ValueError, match="event ids"):
        aggregate([(key, record)], [])
    with pytest.raises(ValueError, match="already an aggregate"):
        aggregate([(key, {**record, "source_event_count": 2})], ["e1"])


amounts = st.tuples(st.sampled_from(PARTIES), st.sampled_from(PARTIES),
                    st.integers(0, 10**9), st.integers(0, PRICE_SCALE - 1))  # fmt: skip


@given(st.lists(amounts, max_size=60))
def test_value_and_events_are_kept_per_key(draws: list[tuple[str, str, int, int]]) -> None:
    items = [obligation(f"e{i}", d, c, a, r) for i, (d, c, a, r) in enumerate(draws) if d != c]
    event_ids = [str(r["obligation_id"]).split(":", 1)[1] for _, r in items]
    out = aggregate(items, event_ids)
    exact_in: dict[Any, int] = {}
    for _, record in items:
        key = aggregate_key(record)
        exact_in[key] = exact_in.get(key, 0) + exact_of(record)
    exact_out: dict[Any, int] = {}
    for _, record in out.records:
        key = aggregate_key(record)
        exact_out[key] = exact_out.get(key, 0) + exact_of(record)
        assert 0 <= record["remainder_ppm"] < PRICE_SCALE
    assert exact_out == exact_in  # to the millionth, per key
    assert len(out.records) == len(exact_in)  # one per key (nothing near int64 here)
    assert sum(r["source_event_count"] for _, r in out.records) == len(items)
    assert sorted(out.obligation_of) == sorted(event_ids)
    assert aggregate(items, event_ids) == out  # deterministic
