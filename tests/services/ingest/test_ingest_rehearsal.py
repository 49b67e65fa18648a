"""The throwaway batch an ingest worker prepares at start, so that its first real
batch does not wait for the kernels to load: every event in it must be one the
fast lane takes (else the rehearsal would leave lane kernels unloaded), and a
reference data set that cannot make some type leaves that type out."""

from __future__ import annotations

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.checks import DEFAULT_LIMITS
from clearing_core.ingest.fast_lane.lane import FastLane
from clearing_core.ingest.stage import process_batch
from clearing_core.refdata import load_default_refdata, parse_refdata
from clearing_services.ingest.prepare import REHEARSAL_EVENTS, BatchPreparer, rehearsal_events
from clearing_services.kafka.topics import EVENT_TOPICS
from tests.core.fixtures import base_document

CODEC = SingleObjectCodec(SchemaCatalog.load())
NOW_MS = 1_796_000_000_000  # 2026-11-29
EXPECTED = {spec.topic: spec.record_type for spec in EVENT_TOPICS}


def test_every_rehearsed_event_is_taken_by_the_fast_lane() -> None:
    refdata = load_default_refdata()
    groups = rehearsal_events(refdata, CODEC, NOW_MS, REHEARSAL_EVENTS)
    assert sorted(topic for topic, _ in groups) == sorted(EXPECTED)
    lane = FastLane(CODEC)
    for raw in groups.values():
        assert len(raw) == REHEARSAL_EVENTS
        taken = lane.accept(raw, refdata, EXPECTED, DEFAULT_LIMITS, True)
        assert taken.rows.tolist() == list(range(len(raw)))
        result = process_batch(raw, codec=CODEC, refdata=refdata, expected_type=EXPECTED,
                               seen={}, keys_must_match=True, lane=lane)  # fmt: skip
        assert result.rejections == []
        assert len(result.accepted) == len(raw)


def test_a_type_the_reference_data_cannot_make_is_left_out() -> None:
    doc = base_document()
    doc["price_books"] = []
    groups = rehearsal_events(parse_refdata(doc), CODEC, NOW_MS, 4)
    assert sorted(topic for topic, _ in groups) == ["clearing.events.meter",
                                                    "clearing.events.payment"]  # fmt: skip


def test_the_policys_dedup_window_is_the_maximum_event_age() -> None:
    """An event further than ``dedup_window_days`` before its log time is rejected as
    too old (its id may no longer be remembered); within the window it is taken, and
    the batch carries the window its sweep forgets by."""
    day_ms, doc = 86_400_000, base_document()
    doc["policy"] = {"dedup_window_days": 2}
    two_days, default = parse_refdata(doc), parse_refdata(base_document())
    (tp, raw), *_ = rehearsal_events(default, CODEC, NOW_MS, 4).items()
    for refdata, days_later, accepted in ((two_days, 1, 4), (two_days, 3, 0), (default, 3, 4)):
        moved = {tp: [r._replace(timestamp_ms=r.timestamp_ms + days_later * day_ms) for r in raw]}
        output = BatchPreparer(CODEC, lambda r=refdata: r).prepare(moved, lambda tp: {})
        assert output.window_ms == refdata.policy.dedup_window_days * day_ms
        assert sum(len(u) for u, _ in output.accepted.values()) == accepted
        assert output.rejects == ({} if accepted else {"TIMESTAMP_TOO_OLD": 4})
    assert default.policy.dedup_window_ms == DEFAULT_LIMITS.max_age_ms  # 35 days, as before
