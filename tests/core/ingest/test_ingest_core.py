"""The ingest stage's pure batch function on the default reference data: exact
pricing split into minor units and a remainder, duplicates, and a reason for every rejection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from clearing_core import ids
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.ingest.aggregate import aggregate_columns
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.records import IngestResult
from clearing_core.refdata import load_default_refdata
from tests.support import events
from tests.support.events import DEFAULT_DATA_METER, meter_reading
from tests.support.ingest_paths import ingest_both_ways

REFDATA = load_default_refdata()
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NOW_MS = int((T0 + timedelta(minutes=20)).timestamp() * 1000)
TOPICS = {"clearing.events.meter": "MeterReading", "clearing.events.payment": "Payment",
          "clearing.events.compute": "ComputeUsage"}  # fmt: skip


meter = partial(meter_reading, at=T0 + timedelta(minutes=15),
                reported_at=T0 + timedelta(minutes=16), **DEFAULT_DATA_METER)  # fmt: skip
payment = partial(events.payment, payer="DC-GUIAN-04", payee="SOLAR-QINGHAI-01", kind="TRANSFER",
                  at=T0)  # fmt: skip


def raw(codec: SingleObjectCodec, topic: str, value: bytes, offset: int) -> RawEvent:
    return RawEvent(topic, 0, offset, b"k", value, NOW_MS)


def run(events: list[RawEvent], codec: SingleObjectCodec, **state: Any) -> IngestResult:
    return ingest_both_ways(
        events, codec=codec, refdata=REFDATA, expected_type=TOPICS,
        seen=state.get("seen", {}),
    )  # fmt: skip


def test_meter_pricing_is_exact_and_keeps_the_remainder(codec: SingleObjectCodec) -> None:
    assert REFDATA.contracts["PPA-CN-0001"].tariff_minor_per_mwh == 43_650

    def reading(event_id: str, energy_wh: int, offset: int) -> RawEvent:
        value = codec.encode("MeterReading", meter(event_id, energy_wh))
        return raw(codec, "clearing.events.meter", value, offset)

    events = [reading("m1", 10_000_000, 1), reading("m2", 1_234_567, 2),
              reading("m3", 1_234_567, 3)]  # fmt: skip
    result = run(events, codec)
    assert result.rejections == []
    split = [(o["amount_minor"], o["remainder_ppm"]) for _, o in result.obligations]
    # 10 MWh x 436.50 CNH; then 1,234,567 Wh x 43,650 = 53,888.849550 fen, twice
    assert split == [(436_500, 0), (53_888, 849_550), (53_888, 849_550)]
    assert {o["carry_key"] for _, o in result.obligations} == {"ppa:PPA-CN-0001"}
    first = result.obligations[0][1]
    assert (first["debtor_id"], first["creditor_id"], first["currency"]) == (
        "DC-GUIAN-04", "SOLAR-QINGHAI-01", "CNH",
    )  # fmt: skip
    assert first["obligation_id"] == "m:m1"
    assert result.obligations[0][0] == b"CNH"
    # the same event again (a re-delivery) prices identically: no state in between
    again = run([reading("m2", 1_234_567, 2)], codec)
    assert again.obligations == result.obligations[1:2]


def test_duplicates_and_bad_events_get_reasons(codec: SingleObjectCodec) -> None:
    good = codec.encode("MeterReading", meter("m1", 5_000_000))
    conflict = codec.encode("MeterReading", meter("m1", 5_000_001))
    cases = [
        (good, None),
        (good, "DUPLICATE_EVENT"),
        (conflict, "DUPLICATE_EVENT_CONFLICT"),
        (good[:25], "TRUNCATED_AVRO"),
        (b"\xc3\x01" + b"\x00" * 8 + good[10:], "UNKNOWN_SCHEMA"),
        (codec.encode("Payment", payment("p1", amount_minor=100)), "WRONG_SCHEMA"),
        (codec.encode("MeterReading", meter("m5", 1, contract_id="PPA-NOPE")), "UNKNOWN_CONTRACT"),
        (codec.encode("MeterReading", meter("m6", 1, reporter_id="DC-SHANGHAI-01")),
         "REPORTER_NOT_PARTY"),
        (codec.encode("MeterReading", meter("m7", 10**12)), "QUANTITY_ABOVE_LIMIT"),
        (codec.encode("MeterReading", meter("m8", 1, reported_at=T0 + timedelta(days=2))),
         "TIMESTAMP_IN_FUTURE"),
    ]  # fmt: skip
    events = [raw(codec, "clearing.events.meter", value, i) for i, (value, _) in enumerate(cases)]
    result = run(events, codec)
    assert len(result.obligations) == 1
    by_offset = {r["source_offset"]: r for r in result.rejections}
    for offset, (value, reason) in enumerate(cases):
        if reason is None:
            assert offset not in by_offset
            continue
        assert by_offset[offset]["reason_code"] == reason, by_offset[offset]["message"]
        assert by_offset[offset]["original"] == value
        assert by_offset[offset]["source_topic"] == "clearing.events.meter"
        assert "\n" not in by_offset[offset]["message"]
    assert by_offset[1]["currency"] == "CNH"
    assert set(result.seen_updates) == {"m1"}


@pytest.mark.parametrize("amount", [1, 999_999_999])
def test_payment_obligation_is_the_amount(codec: SingleObjectCodec, amount: int) -> None:
    value = codec.encode("Payment", payment("p1", amount_minor=amount))
    result = run([raw(codec, "clearing.events.payment", value, 0)], codec)
    assert result.rejections == []
    ((_, obligation),) = result.obligations
    assert obligation["amount_minor"] == amount
    assert obligation["obligation_id"] == "p:p1"
    assert (obligation["remainder_ppm"], obligation["carry_key"]) == (0, None)


def test_payments_of_one_pair_aggregate_whatever_their_references(
    codec: SingleObjectCodec,
) -> None:
    """Issue 21: a payment's reference is not in its obligation's key, so a batch's
    payments between the same payer and payee become one obligation; each stays
    traceable by its event id (the digest, and the obligation its seen entry names)."""
    values = [codec.encode("Payment", payment(f"p{i}", amount_minor=100 + i, reference=ref))
              for i, ref in enumerate(["INV-1", "INV-2", None])]  # fmt: skip
    events = [raw(codec, "clearing.events.payment", v, i) for i, v in enumerate(values)]
    result = run(events, codec)
    assert result.rejections == []
    out = aggregate_columns([result.accepted])
    (record,) = [r for _, r in out.records]
    assert (record["amount_minor"], record["source_event_count"]) == (303, 3)
    assert record["contract_id"] is None
    assert record["source_digest"] == ids.source_digest(["p0", "p1", "p2"])
    assert out.obligation_of == dict.fromkeys(["p0", "p1", "p2"], record["obligation_id"])


def test_seen_table_from_earlier_batches(codec: SingleObjectCodec) -> None:
    value = codec.encode("MeterReading", meter("m1", 5))
    first = run([raw(codec, "clearing.events.meter", value, 0)], codec)
    second = run([raw(codec, "clearing.events.meter", value, 1)], codec, seen=first.seen_updates)
    assert [r["reason_code"] for r in second.rejections] == ["DUPLICATE_EVENT"]
    assert second.obligations == []
