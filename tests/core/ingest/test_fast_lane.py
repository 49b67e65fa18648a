"""The ingest fast lane: the columnar decoder reads what fastavro reads, the lane
takes plain valid events (so the differential tests elsewhere are not vacuous),
and at every boundary of the rules it decides exactly as the per-event path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing_core.encoding.avro_rows import decode_rows, pack, plan_for, records_of
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.checks import DEFAULT_LIMITS
from clearing_core.ingest.fast_lane import spans
from clearing_core.ingest.fast_lane import validate as lane_rules
from clearing_core.ingest.fast_lane.lane import FastLane
from clearing_core.refdata import load_default_refdata
from clearing_core.workload.generator import EventGenerator
from tests.support import bad_inputs
from tests.support.avro_strategies import records
from tests.support.bad_inputs import Sent
from tests.support.ingest_paths import ingest_both_ways

NOW_MS = 1_795_000_000_000
CODEC = SingleObjectCodec(SchemaCatalog.load())
TYPES = ("MeterReading", "ComputeUsage", "Payment")
TOPIC_OF = {name: topic for topic, name in bad_inputs.EXPECTED_TYPE.items()}
KEY_FIELD = {"MeterReading": "contract_id", "ComputeUsage": "provider_id", "Payment": "payer_id"}
CORPUS_REFDATA = bad_inputs.refdata()
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def events_of(sent: list[Sent], now_ms: int = NOW_MS) -> list[RawEvent]:
    return [RawEvent(s.topic, 0, n, s.key, s.value or b"", now_ms) for n, s in enumerate(sent)]


def both(sent: list[Sent], refdata: Any = CORPUS_REFDATA, now_ms: int = NOW_MS) -> Any:
    return ingest_both_ways(
        events_of(sent, now_ms), codec=CODEC, refdata=refdata,
        expected_type=bad_inputs.EXPECTED_TYPE, seen={}, keys_must_match=True,
    )  # fmt: skip


def lane_takes(sent: list[Sent], refdata: Any, now_ms: int = NOW_MS) -> list[bool]:
    verdicts = FastLane(CODEC).accept(
        events_of(sent, now_ms), refdata, bad_inputs.EXPECTED_TYPE, DEFAULT_LIMITS, True
    )
    taken = set(verdicts.rows.tolist())
    return [i in taken for i in range(len(sent))]


_RECORDS = st.sampled_from([*TYPES, "Obligation"]).flatmap(
    lambda name: st.tuples(st.just(name), records(CODEC.catalog.current(name).parsed))
)


@SETTINGS
@given(_RECORDS)
def test_rows_read_what_the_codec_reads(drawn: tuple[str, dict[str, Any]]) -> None:
    name, record = drawn
    value = CODEC.encode(name, record)
    plan = plan_for(CODEC.catalog.current(name))
    assert plan is not None
    data, buffer, starts, ends = pack([value])
    rows = decode_rows(plan, buffer, starts, ends)
    decoded = CODEC.decode(value, times_as_ms=True).record
    texts = [decoded[f] for f, kind in zip(plan.fields, plan.kinds, strict=True) if kind <= 1]
    plain = all(t is None or (t.isascii() and t.isprintable()) for t in texts)
    assert bool(rows.ok[0]) == plain  # only non-ASCII or unprintable text is left to the codec
    as_dict = records_of(plan, [value])[0]
    assert as_dict == (CODEC.decode(value).record if plain else None)
    if not plain:
        return
    for f, field in enumerate(plan.fields):
        got: Any
        if field in plan.enum_symbols:
            got = plan.enum_symbols[field][rows.number[0, f]]
        elif rows.str_length[0, f] >= 0:
            start = int(rows.str_offset[0, f])
            got = data[start : start + int(rows.str_length[0, f])].decode()
        elif plan.kinds[f] == 1:
            got = None
        else:
            got = int(rows.number[0, f])
        assert got == decoded[field], field


def test_other_writers_cut_records_and_trailing_bytes_are_left_to_the_codec() -> None:
    plan = plan_for(CODEC.catalog.current("Payment"))
    assert plan is not None
    good = bad_inputs.build(CODEC, NOW_MS).valid[2].value or b""
    assert CODEC.decode(good).name == "Payment"
    variants = [good, good[:-1], good + b"\x00", b"\xc3\x02" + good[2:], good[:9], b""]
    _, buffer, starts, ends = pack(variants)
    assert decode_rows(plan, buffer, starts, ends).ok.tolist() == [True] + [False] * 5
    varint_past_64_bits = plan.header + b"\xff" * 11
    _, buffer, starts, ends = pack([varint_past_64_bits])
    assert not decode_rows(plan, buffer, starts, ends).ok[0]


def test_the_lane_takes_every_generated_valid_event() -> None:
    refdata = load_default_refdata()
    generator = EventGenerator(refdata, seed=7, now_ms=NOW_MS)
    sent = []
    for _ in range(3_000):
        event = generator.valid()
        name = {"meter": "MeterReading", "compute": "ComputeUsage", "payment": "Payment"}[
            event.kind
        ]
        key = str(event.record[KEY_FIELD[name]]).encode()
        sent.append(Sent(TOPIC_OF[name], key, CODEC.encode(name, event.record)))
    assert all(lane_takes(sent, refdata))
    result = both(sent, refdata)
    assert len(result.priced) == len(sent)
    assert not result.rejections


def test_the_lane_takes_the_corpus_valid_events_and_no_bad_one() -> None:
    """Duplicates are valid events as such: the seen state refuses them after the lane."""
    corpus = bad_inputs.build(CODEC, NOW_MS)
    assert all(lane_takes(corpus.valid, CORPUS_REFDATA))
    taken = lane_takes([case.sent for case in corpus.bad], CORPUS_REFDATA)
    kinds = {case.kind for case, took in zip(corpus.bad, taken, strict=True) if took}
    assert kinds == {"exact-duplicate", "same-id-other-body"}


def test_signed_or_signature_requiring_batches_take_the_per_event_path() -> None:
    corpus = bad_inputs.build(CODEC, NOW_MS)
    signed = [RawEvent(s.topic, 0, n, s.key, s.value or b"", NOW_MS, (("x", b"y"),))
              for n, s in enumerate(corpus.valid)]  # fmt: skip
    lane = FastLane(CODEC)
    verdicts = lane.accept(signed, CORPUS_REFDATA, bad_inputs.EXPECTED_TYPE, DEFAULT_LIMITS, True)
    assert verdicts.rows.tolist() == []


def test_duplicates_in_one_batch_and_across_the_seen_state() -> None:
    b = bad_inputs._Builder(CODEC, NOW_MS, "dup")
    first, again = b.meter("m1"), b.meter("m1")
    other_body = b.meter("m1", energy_wh=5)
    result = both([first, again, other_body, b.compute("c1")])
    assert [p.event_id for p in result.priced] == ["dup-m1", "dup-c1"]
    assert [r["reason_code"] for r in result.rejections] == [
        "DUPLICATE_EVENT", "DUPLICATE_EVENT_CONFLICT"]  # fmt: skip
    seen = dict(result.seen_updates)
    later = ingest_both_ways(
        [RawEvent(first.topic, 0, 0, first.key, first.value or b"", NOW_MS),
         RawEvent(first.topic, 0, 9, first.key, first.value or b"", NOW_MS)],
        codec=CODEC, refdata=CORPUS_REFDATA, expected_type=bad_inputs.EXPECTED_TYPE,
        seen=seen, keys_must_match=True,
    )  # fmt: skip
    assert len(later.redelivered) == 1
    assert [r["reason_code"] for r in later.rejections] == ["DUPLICATE_EVENT"]


def test_a_reused_id_is_a_duplicate_before_any_rule_or_price_refuses_it() -> None:
    """The per-event steps validate and price every event before the records step
    tells duplicates, so the order of verdicts is the records step's: a reused id
    wins over what validation or pricing would say of the new body, and an event
    refused by them takes no id from a later one."""
    b = bad_inputs._Builder(CODEC, NOW_MS, "order")
    first = b.meter("m1")
    negative = b.meter("m1", energy_wh=-5)  # NEGATIVE_QUANTITY on its own
    too_old = b.payment("p1", reported_at=AT - timedelta(days=400))  # TIMESTAMP_TOO_OLD
    later = b.payment("p1")
    result = both([first, negative, too_old, later])
    assert [r["reason_code"] for r in result.rejections] == [
        "DUPLICATE_EVENT_CONFLICT", "TIMESTAMP_TOO_OLD"]  # fmt: skip
    assert [p.event_id for p in result.priced] == ["order-m1", "order-p1"]
    again = ingest_both_ways(
        events_of([negative]), codec=CODEC, refdata=CORPUS_REFDATA,
        expected_type=bad_inputs.EXPECTED_TYPE, seen=dict(result.seen_updates),
        keys_must_match=True,
    )  # fmt: skip
    assert [r["reason_code"] for r in again.rejections] == ["DUPLICATE_EVENT_CONFLICT"]


@SETTINGS
@given(st.lists(st.sampled_from(["m1", "m2", "c1", "p1", "bad", "dup-m1", "dup-p1"]), max_size=14))
def test_runs_of_plain_events_split_by_bad_ones_and_repeats_decide_as_one_by_one(
    picks: list[str],
) -> None:
    """The lane accepts runs of plain events in bulk: a bad event between runs, an id
    repeated inside a run or one from an earlier run must decide as the per-event path."""
    b = bad_inputs._Builder(CODEC, NOW_MS, "run")
    make = {
        "m1": lambda: b.meter("m1"), "m2": lambda: b.meter("m2"), "c1": lambda: b.compute("c1"),
        "p1": lambda: b.payment("p1"), "dup-m1": lambda: b.meter("m1", energy_wh=7),
        "dup-p1": lambda: b.payment("p1"), "bad": lambda: Sent(TOPIC_OF["Payment"], b"k", b"x"),
    }  # fmt: skip
    result = both([make[p]() for p in picks])
    assert len(result.priced) + len(result.rejections) == len(picks)
    assert len({p.event_id for p in result.priced}) == len(result.priced)


def test_profiles_whose_hashes_collide_are_told_apart_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every profile hash equal, only rows whose profile bytes are the first
    row's share its profile; the others go to the per-event path, decided alike."""

    def one_hash(buffer: Any, begin: Any, end: Any, ok: Any, hashes: Any) -> None:
        hashes[:] = 7

    monkeypatch.setattr(spans, "_span_hashes", one_hash)
    refdata = load_default_refdata()
    generator = EventGenerator(refdata, seed=3, now_ms=NOW_MS)
    records = [generator.meter().record for _ in range(60)]
    sent = [Sent(TOPIC_OF["MeterReading"], str(r["contract_id"]).encode(),
                 CODEC.encode("MeterReading", r)) for r in records]  # fmt: skip
    fields = lane_rules.PROFILE_FIELDS["MeterReading"]
    first = [records[0][f] for f in fields]
    expected = [[r[f] for f in fields] == first for r in records]
    assert lane_takes(sent, refdata) == expected
    assert not all(expected)
    assert len(both(sent, refdata).priced) == len(sent)
    # Payments group their participant ids the same way: with every hash equal, only
    # a payment whose reporter, payer and payee are all the first id can be taken.
    payments = [generator.payment().record for _ in range(40)]
    sent = [Sent(TOPIC_OF["Payment"], str(r["payer_id"]).encode(), CODEC.encode("Payment", r))
            for r in payments]  # fmt: skip
    assert not any(lane_takes(sent, refdata))  # a payer never pays itself
    assert len(both(sent, refdata).priced) == len(sent)


MINUTE = timedelta(minutes=1)
AT = datetime.fromtimestamp(NOW_MS / 1000, tz=UTC).replace(microsecond=0)
_EDGE_MS = st.sampled_from([-1, 0, 1, 999, 1000])
_AGE = DEFAULT_LIMITS.max_age_ms
_SKEW = DEFAULT_LIMITS.max_future_skew_ms


def _near(base_ms: int) -> st.SearchStrategy[datetime]:
    return _EDGE_MS.map(lambda d: datetime.fromtimestamp((base_ms + d) / 1000, tz=UTC))


_TIME = st.one_of(_near(NOW_MS + _SKEW), _near(NOW_MS - _AGE),
                  st.integers(-90, 3).map(lambda m: AT + m * MINUTE))  # fmt: skip
_AMOUNTS = st.one_of(
    st.sampled_from([-1, 0, 1, 2**63 - 1, (2**63 - 1) // 1_000_000,
                     (2**63 - 1) // 1_000_000 + 1]),
    st.integers(0, 10**13),
)  # fmt: skip


@st.composite
def edge_event(draw: st.DrawFn) -> Sent:
    """A corpus event with times, quantities and amounts at or next to a limit."""
    b = bad_inputs._Builder(CODEC, NOW_MS, f"edge{draw(st.integers(0, 10**6))}")
    name = draw(st.sampled_from(["meter", "compute", "payment"]))
    if name == "payment":
        return b.payment("p", amount_minor=draw(_AMOUNTS), reported_at=draw(_TIME))
    start, end = draw(_TIME), draw(_TIME)
    if name == "meter":
        return b.meter("m", interval_start=start, interval_end=end, reported_at=draw(_TIME),
                       energy_wh=draw(_AMOUNTS))  # fmt: skip
    return b.compute("c", usage_start=start, usage_end=end, reported_at=draw(_TIME),
                     quantity=draw(_AMOUNTS))  # fmt: skip


@SETTINGS
@given(st.lists(edge_event(), min_size=1, max_size=8))
def test_at_every_limit_both_paths_agree(sent: list[Sent]) -> None:
    result = both(sent)  # asserts the fast lane and the per-event path agree
    assert len(result.priced) + len(result.rejections) == len(sent)


def test_tariff_bands_are_priced_per_local_start_minute() -> None:
    refdata = load_default_refdata()
    contract = next(c for c in refdata.contracts.values() if c.tou_bands)
    seller = refdata.participants[contract.seller_id]
    assert seller.active
    b = bad_inputs._Builder(CODEC, NOW_MS, "tou")
    sent = []
    for minutes in range(15, 24 * 60, 15):
        end = AT - timedelta(minutes=minutes)
        sent.append(b.sent("MeterReading", bad_inputs.meter(
            NOW_MS, f"tou-{minutes}", reporter_id=contract.seller_id,
            contract_id=contract.contract_id, meter_id=contract.meter_ids[0],
            interval_start=end - 15 * MINUTE, interval_end=end, reported_at=AT,
            energy_wh=1_000,
        )))  # fmt: skip
    assert all(lane_takes(sent, refdata))
    result = both(sent, refdata)
    assert len(result.priced) == len(sent)
    tariffs = {p.exact // 1_000 for p in result.priced}
    assert tariffs == {contract.tariff_minor_per_mwh, *(b.tariff_minor_per_mwh
                                                      for b in contract.tou_bands)}  # fmt: skip
    assert np.all(np.array([p.exact for p in result.priced]) >= 0)


def test_the_profile_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache per type starts again at its bound, and every event is still taken;
    payments, checked by parts, are not cached at all."""
    monkeypatch.setitem(lane_rules.PROFILES_MAX, "ComputeUsage", 50)
    refdata = load_default_refdata()
    generator = EventGenerator(refdata, seed=11, now_ms=NOW_MS)
    lane = FastLane(CODEC)
    for _ in range(5):
        sent = []
        for _ in range(200):
            for record in (generator.compute().record, generator.payment().record):
                name = "ComputeUsage" if "sku" in record else "Payment"
                key = str(record["provider_id" if name == "ComputeUsage" else "payer_id"])
                sent.append(Sent(TOPIC_OF[name], key.encode(), CODEC.encode(name, record)))
        verdicts = lane.accept(events_of(sent), refdata, bad_inputs.EXPECTED_TYPE,
                               DEFAULT_LIMITS, True)  # fmt: skip
        assert verdicts.rows.tolist() == list(range(len(sent)))
        assert 0 < len(lane.profiles.cache["ComputeUsage"]) <= 50
        assert "Payment" not in lane.profiles.cache


def test_usage_profiles_stay_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Usage profiles are bounded by the reference data, so their cache holds them all:
    a profile is made once, and a second pass over the same combinations makes none
    (a bound below their number made a quarter of all usage events make one)."""
    made: list[str] = []
    maker = lane_rules._MAKERS["ComputeUsage"]

    def counted(text: Any, refdata: Any) -> Any:
        made.append(text["customer_id"])
        return maker(text, refdata)

    monkeypatch.setitem(lane_rules._MAKERS, "ComputeUsage", counted)
    refdata = load_default_refdata()
    generator = EventGenerator(refdata, seed=12, now_ms=NOW_MS)
    lane = FastLane(CODEC)
    usage = [generator.compute().record for _ in range(3_000)]
    for run in ("first", "second"):
        sent = []
        for n, record in enumerate(usage):
            record = {**record, "event_id": f"{run}-{n}"}
            key = str(record["provider_id"]).encode()
            sent.append(Sent(TOPIC_OF["ComputeUsage"], key, CODEC.encode("ComputeUsage", record)))
        verdicts = lane.accept(events_of(sent), refdata, bad_inputs.EXPECTED_TYPE,
                               DEFAULT_LIMITS, True)  # fmt: skip
        assert verdicts.rows.tolist() == list(range(len(sent)))
        if run == "first":
            distinct = len(made)
            assert 0 < distinct == len(lane.profiles.cache["ComputeUsage"])
    assert len(made) == distinct


_PARTIES = st.sampled_from([*sorted(CORPUS_REFDATA.participants), "NOBODY-01"])
_PAYMENTS = st.lists(
    st.tuples(_PARTIES, _PARTIES, _PARTIES,
              st.sampled_from(CODEC.catalog.current("Payment").parsed["fields"][4]["type"]["symbols"]),
              st.sampled_from([*sorted(CORPUS_REFDATA.currencies), "EUR"])),
    min_size=1, max_size=60,
)  # fmt: skip


@SETTINGS
@given(_PAYMENTS)
def test_payments_by_parts_decide_as_the_per_event_path(
    parties: list[tuple[str, str, str, str, str]],
) -> None:
    """Payments whose reporter, payer and payee are any participants (active or not,
    with or without an account in the currency, or unknown), of any kind and currency:
    the lane's checks by parts accept exactly what the per-event path accepts."""
    sent = []
    for n, (reporter, payer, payee, kind, currency) in enumerate(parties):
        record = bad_inputs.payment(NOW_MS, f"pp-{n}", reporter_id=reporter, payer_id=payer,
                                    payee_id=payee, kind=kind, currency=currency,
                                    amount_minor=1_000 + n)  # fmt: skip
        sent.append(Sent(TOPIC_OF["Payment"], payer.encode(), CODEC.encode("Payment", record)))
    result = both(sent)
    accepted = {p.event_id for p in result.priced}
    taken = lane_takes(sent, CORPUS_REFDATA)
    assert [f"pp-{n}" in accepted for n in range(len(sent))] == taken
