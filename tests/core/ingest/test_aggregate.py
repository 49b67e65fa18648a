"""Pre-aggregation of a micro-batch's obligations: exact to the millionth, one
obligation per key, auditable (event count and digest), deterministic, and never
past int64."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core import ids
from clearing_core.encoding.avro_rows import plan_of
from clearing_core.encoding.avro_write import encode_columns
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.aggregate import aggregate, aggregate_key, exact_of, obligation_of
from clearing_core.ingest.batch import AggregateKey, Priced
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import PRICE_SCALE

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
PARTIES = ("A", "B", "C")
CODEC = SingleObjectCodec(SchemaCatalog.load())
PLAN = plan_of(CODEC, "Obligation")
NO_DEADLINE = settings(deadline=None)  # the first example compiles the kernels


def obligation(
    event_id: str, debtor: str, creditor: str, amount: int, remainder: int,
    source: str = "METER", minutes: int = 0,
) -> Priced:  # fmt: skip
    carry = f"{source}/{debtor}/{creditor}" if remainder else None
    key = ("CNH", debtor, creditor, source, 0, f"K-{debtor}-{creditor}", carry)
    time_ms = int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    return Priced(event_id, key, amount * PRICE_SCALE + remainder, time_ms)


def test_one_contract_becomes_one_obligation_with_the_exact_sum() -> None:
    items = [obligation("e1", "A", "B", 10, 600_000, minutes=1),
             obligation("e2", "A", "B", 20, 700_000, minutes=3),
             obligation("e3", "B", "A", 5, 0, source="PAYMENT")]  # fmt: skip
    out = aggregate(items)
    assert [r["source_event_count"] for _, r in out.records] == [2, 1]
    merged = out.records[0][1]
    assert (merged["amount_minor"], merged["remainder_ppm"]) == (31, 300_000)
    assert merged["obligation_id"] == ids.obligation_id("METER", ["e2", "e1"])
    assert merged["obligation_id"].startswith("m:agg:")
    assert merged["source_digest"] == ids.source_digest(["e1", "e2"])
    assert merged["event_time"] == T0 + timedelta(minutes=3)  # the latest
    assert out.records[1] == obligation_of(items[2])  # alone: unchanged, id m:/p:<event id>
    assert out.obligation_of == {"e1": merged["obligation_id"], "e2": merged["obligation_id"],
                                 "e3": "p:e3"}  # fmt: skip


def test_a_sum_past_int64_opens_a_new_aggregate() -> None:
    big = INT64_MAX // PRICE_SCALE - 1
    items = [obligation(f"e{i}", "A", "B", big // 2, 0) for i in range(5)]
    out = aggregate(items)
    assert sum(r["amount_minor"] for _, r in out.records) == 5 * (big // 2)
    assert all(exact_of(r) <= INT64_MAX for _, r in out.records)
    assert [r["source_event_count"] for _, r in out.records] == [2, 2, 1]


def test_an_amount_outside_int64_is_refused() -> None:
    fine = obligation("e1", "A", "B", 1, 0)
    for exact in (-1, INT64_MAX + 1):
        with pytest.raises(ValueError, match=r"outside 0\.\.int64"):
            aggregate([fine, fine._replace(event_id="e2", exact=exact)])


def test_one_event_keeps_its_own_record() -> None:
    key, record = obligation_of(obligation("e1", "A", "B", 12, 340_000, minutes=2))
    assert key == b"CNH"
    assert (record["obligation_id"], record["amount_minor"], record["remainder_ppm"]) == (
        "m:e1",
        12,
        340_000,
    )
    assert (record["source_event_count"], record["source_digest"]) == (1, None)
    assert record["event_time"] == T0 + timedelta(minutes=2)


amounts = st.tuples(st.sampled_from(PARTIES), st.sampled_from(PARTIES),
                    st.integers(0, 10**9), st.integers(0, PRICE_SCALE - 1))  # fmt: skip


def naive_groups(items: list[Priced]) -> list[tuple[AggregateKey, list[str], int, int]]:
    """The reference the kernel is compared with: (key, event ids, exact sum, newest
    time) per aggregate, in order of first appearance, a key's aggregate closed where
    the next amount would take it past int64."""
    open_: dict[AggregateKey, int] = {}
    groups: list[tuple[AggregateKey, list[str], int, int]] = []
    for item in items:
        at = open_.get(item.key)
        if at is None or groups[at][2] + item.exact > INT64_MAX:
            at = open_[item.key] = len(groups)
            groups.append((item.key, [], 0, item.event_time_ms))
        key, members, exact, newest = groups[at]
        groups[at] = (key, [*members, item.event_id], exact + item.exact,
                      max(newest, item.event_time_ms))  # fmt: skip
    return groups


big_amounts = st.tuples(st.sampled_from(PARTIES), st.sampled_from(PARTIES),
                        st.sampled_from([0, 1, 10**9, INT64_MAX // PRICE_SCALE // 3]),
                        st.integers(0, PRICE_SCALE - 1), st.integers(0, 50))  # fmt: skip


@NO_DEADLINE
@given(st.lists(big_amounts, max_size=40))
def test_the_kernel_groups_as_the_naive_reference(
    draws: list[tuple[str, str, int, int, int]],
) -> None:
    items = [obligation(f"e{i}", d, c, a, r, minutes=m)
             for i, (d, c, a, r, m) in enumerate(draws) if d != c]  # fmt: skip
    out = aggregate(items)
    expected = naive_groups(items)
    assert out.keys == [key for key, _, _, _ in expected]
    assert out.exact == [exact for _, _, exact, _ in expected]
    assert out.time_ms == [newest for _, _, _, newest in expected]
    assert out.counts == [len(members) for _, members, _, _ in expected]
    for (_, members, _, _), oid in zip(expected, out.obligation_ids, strict=True):
        assert all(out.obligation_of[e] == oid for e in members)


@NO_DEADLINE
@given(st.lists(amounts, max_size=30))
def test_obligations_written_from_columns_are_the_codecs(
    draws: list[tuple[str, str, int, int]],
) -> None:
    items = [obligation(f"e{i}", d, c, a, r) for i, (d, c, a, r) in enumerate(draws) if d != c]
    out = aggregate(items)
    assert encode_columns(PLAN, out.columns()) == [
        CODEC.encode("Obligation", record) for _, record in out.records
    ]
    assert [key for key, _ in out.records] == [k[0].encode() for k in out.keys]


def test_columns_that_are_not_the_schemas_fields_are_not_written() -> None:
    columns = aggregate([obligation("e1", "A", "B", 1, 0)]).columns()
    assert encode_columns(PLAN, {**columns, "extra": [1]}) is None
    assert encode_columns(PLAN, {**columns, "priority": ["high"]}) is None


@NO_DEADLINE
@given(st.lists(amounts, max_size=60))
def test_value_and_events_are_kept_per_key(draws: list[tuple[str, str, int, int]]) -> None:
    items = [obligation(f"e{i}", d, c, a, r) for i, (d, c, a, r) in enumerate(draws) if d != c]
    event_ids = [item.event_id for item in items]
    out = aggregate(items)
    exact_in: dict[Any, int] = {}
    for item in items:
        exact_in[item.key] = exact_in.get(item.key, 0) + item.exact
    exact_out: dict[Any, int] = {}
    for _, record in out.records:
        key = aggregate_key(record)
        exact_out[key] = exact_out.get(key, 0) + exact_of(record)
        assert 0 <= record["remainder_ppm"] < PRICE_SCALE
    assert exact_out == exact_in  # to the millionth, per key
    assert len(out.records) == len(exact_in)  # one per key (nothing near int64 here)
    assert sum(r["source_event_count"] for _, r in out.records) == len(items)
    assert sorted(out.obligation_of) == sorted(event_ids)
    assert aggregate(items) == out  # deterministic
