"""Fuzzing the ingest stage's batch function (decoders and validators together):
arbitrary bytes, valid encodings bit-flipped, cut or extended, and records with
random field values. Whatever comes in, ``process_batch`` returns; every input
event ends as one obligation or exactly one rejection with a documented reason
that the worker can send; and valid events in the same batch are unaffected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing_core.encoding import codec as codec_module
from clearing_core.encoding.codec import CodecError, SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.checks import Reason
from clearing_core.ingest.envelope import InputReason
from clearing_core.ingest.records import REJECTED_ORIGINAL_MAX, IngestResult
from clearing_core.money import INT64_MAX
from clearing_core.refdata.models import PRICE_SCALE
from tests.support import bad_inputs
from tests.support.avro_strategies import records
from tests.support.bad_inputs import Sent
from tests.support.ingest_paths import ingest_both_ways

NOW_MS = 1_795_000_000_000
NOW = datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)
REFDATA = bad_inputs.refdata()
CODEC = SingleObjectCodec(SchemaCatalog.load())
VALID = bad_inputs.build(CODEC, NOW_MS, prefix="fz").valid
TOPICS = sorted(bad_inputs.EXPECTED_TYPE)
HEADERS = [CODEC.catalog.current(name).header for name in
           ("MeterReading", "ComputeUsage", "Payment", "Position")]  # fmt: skip
CODES = (
    {str(r) for r in Reason} | {str(r) for r in InputReason}
    | {v.reason_code for v in vars(codec_module).values()
       if isinstance(v, type) and issubclass(v, CodecError)}
    | {"DUPLICATE_EVENT", "DUPLICATE_EVENT_CONFLICT", "AMOUNT_OVERFLOW"}
)  # fmt: skip
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ingest(sent: list[Sent]) -> tuple[list[RawEvent], IngestResult]:
    events = [RawEvent(s.topic, 0, n, s.key, s.value or b"", NOW_MS) for n, s in enumerate(sent)]
    result = ingest_both_ways(
        events, codec=CODEC, refdata=REFDATA, expected_type=bad_inputs.EXPECTED_TYPE, seen={},
        keys_must_match=True,
    )  # fmt: skip
    return events, result


def assert_accounted_for(events: list[RawEvent], result: IngestResult) -> None:
    """One obligation or exactly one rejection per event, and all of it sendable."""
    offsets = [r["source_offset"] for r in result.rejections]
    assert len(set(offsets)) == len(offsets)
    assert len(result.obligations) + len(result.rejections) == len(events)
    for rejected in result.rejections:
        event = events[rejected["source_offset"]]
        assert rejected["reason_code"] in CODES, rejected
        assert rejected["original"] == event.value[:REJECTED_ORIGINAL_MAX]
        message = rejected["message"]
        assert message
        assert "\n" not in message
        assert len(message) <= 500
        CODEC.encode("Rejected", rejected)  # what the worker sends to clearing.dlq
    ids = [o["obligation_id"] for _, o in result.obligations]
    assert len(set(ids)) == len(ids)
    for key, obligation in result.obligations:
        assert 0 <= obligation["amount_minor"] <= INT64_MAX
        assert 0 <= obligation["remainder_ppm"] < PRICE_SCALE
        assert key == obligation["currency"].encode()
        CODEC.encode("Obligation", obligation)


def assert_valid_unaffected(valid: list[Sent], result: IngestResult) -> None:
    """The valid events, sent first, give exactly what they give alone."""
    _, alone = ingest(valid)
    assert result.obligations[: len(alone.obligations)] == alone.obligations
    assert all(r["source_offset"] >= len(valid) for r in result.rejections)


_KNOWN_KEYS = [b"PPA-QH07-SZ01", b"GPUCLOUD-SG-02", b"DC-SHENZHEN-01"]
_keys = st.one_of(st.none(), st.just(b""), st.binary(max_size=20), st.sampled_from(_KNOWN_KEYS))
_values = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from(HEADERS), st.binary(max_size=200)).map(b"".join),
)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(TOPICS), _keys, _values), max_size=12))
def test_arbitrary_bytes(raw: list[tuple[str, bytes | None, bytes]]) -> None:
    sent = [*VALID[:3], *(Sent(t, k, v) for t, k, v in raw)]
    events, result = ingest(sent)
    assert_accounted_for(events, result)
    assert_valid_unaffected(VALID[:3], result)


@st.composite
def mutated(draw: st.DrawFn) -> Sent:
    """A valid encoding with bits flipped, cut, extended, or a slice replaced."""
    base = draw(st.sampled_from(VALID))
    value = bytearray(base.value or b"")
    how = draw(st.sampled_from(["flip", "cut", "extend", "splice", "flips"]))
    if how in {"flip", "flips"}:
        for _ in range(1 if how == "flip" else draw(st.integers(2, 8))):
            at = draw(st.integers(0, len(value) - 1))
            value[at] ^= 1 << draw(st.integers(0, 7))
    elif how == "cut":
        value = value[: draw(st.integers(0, len(value) - 1))]
    elif how == "extend":
        value += draw(st.binary(min_size=1, max_size=20))
    else:
        start = draw(st.integers(0, len(value)))
        end = draw(st.integers(start, min(len(value), start + 12)))
        value[start:end] = draw(st.binary(max_size=12))
    key = base.key if draw(st.booleans()) else draw(_keys)
    return Sent(draw(st.sampled_from([base.topic, *TOPICS])), key, bytes(value))


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=10))
def test_mutated_valid_encodings(bad: list[Sent]) -> None:
    sent = [*VALID, *bad]
    events, result = ingest(sent)
    assert_accounted_for(events, result)
    assert_valid_unaffected(VALID, result)


_IDS = sorted(
    {*REFDATA.participants, *REFDATA.contracts, *REFDATA.price_books, "MTR-QH07-01",
     "MTR-QH07-02", "MTR-QH07-09", "output_token", "input_token", "CNH", "USD", "EUR"}
)  # fmt: skip
_ID_FIELDS = {"reporter_id", "contract_id", "meter_id", "provider_id", "customer_id",
              "price_book_id", "sku", "payer_id", "payee_id", "currency"}  # fmt: skip
_TIMES = st.integers(-40 * 86_400_000, 10 * 60_000).map(
    lambda ms: NOW + timedelta(milliseconds=ms // 1000 * 1000)
)
_NUMBERS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-10, 10**8))
_KEY_FIELD = {"MeterReading": "contract_id", "ComputeUsage": "provider_id", "Payment": "payer_id"}


@st.composite
def random_event(draw: st.DrawFn) -> Sent:
    """A record of an event type with random values, ids mostly from the reference
    data and times mostly near the log time, so the validators' later rules run too."""
    name = draw(st.sampled_from(sorted(_KEY_FIELD)))
    record: dict[str, Any] = draw(records(CODEC.catalog.current(name).parsed))
    for field in record:
        if field in _ID_FIELDS and draw(st.integers(0, 4)):
            record[field] = draw(st.sampled_from(_IDS))
        elif field in {"energy_wh", "quantity", "amount_minor"} and draw(st.booleans()):
            record[field] = draw(_NUMBERS)
        elif field.endswith(("_start", "_end", "reported_at")) and draw(st.integers(0, 4)):
            record[field] = draw(_TIMES)
    right = str(record[_KEY_FIELD[name]]).encode()
    key = right if draw(st.integers(0, 3)) else draw(_keys)
    topic = {"MeterReading": bad_inputs.METER, "ComputeUsage": bad_inputs.COMPUTE,
             "Payment": bad_inputs.PAYMENT}[name]  # fmt: skip
    return Sent(topic, key, CODEC.encode(name, record))


@FUZZ
@given(st.lists(random_event(), min_size=1, max_size=10))
def test_random_field_values(events_in: list[Sent]) -> None:
    sent = [*VALID[:3], *events_in]
    events, result = ingest(sent)
    assert_accounted_for(events, result)
    assert_valid_unaffected(VALID[:3], result)
