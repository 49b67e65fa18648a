"""The seeded generator against the real ingest rules: every valid event is accepted,
every bad one is rejected with the reason it is labelled with."""

from __future__ import annotations

from collections import Counter

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.stage import process_batch
from clearing_core.refdata import load_default_refdata
from clearing_core.workload.generator import EventGenerator, GeneratedEvent

REFDATA = load_default_refdata()
NOW_MS = 1_795_564_800_000  # 2026-11-24T12:00Z
TYPES = {"meter": "MeterReading", "compute": "ComputeUsage", "payment": "Payment"}


def encode(codec: SingleObjectCodec, event: GeneratedEvent) -> bytes:
    value = codec.encode(TYPES[event.kind], event.record)
    return value[: len(value) // 2] if event.corrupt else value


def test_generated_stream_meets_its_labels(codec: SingleObjectCodec) -> None:
    events = EventGenerator(REFDATA, seed=7, now_ms=NOW_MS).events(
        3_000, bad_ratio=0.05, duplicate_ratio=0.03
    )
    raw = [RawEvent(f"clearing.events.{e.kind}", 0, i, b"k", encode(codec, e), NOW_MS)
           for i, e in enumerate(events)]  # fmt: skip
    expected_type = {f"clearing.events.{k}": v for k, v in TYPES.items()}
    result = process_batch(raw, codec=codec, refdata=REFDATA, expected_type=expected_type, seen={})
    rejected = {r["source_offset"]: r["reason_code"] for r in result.rejections}
    for i, event in enumerate(events):
        assert rejected.get(i) == event.expect, (event.expect, rejected.get(i), event.record)
    kinds = Counter(e.kind for e in events if e.expect is None)
    assert kinds["meter"] > kinds["compute"] > kinds["payment"] > 100
    assert len(result.obligations) == sum(kinds.values())
    assert {c for c, _ in result.obligations} == {b"CNH", b"USD", b"HKD"}


def test_same_seed_same_events() -> None:
    first = EventGenerator(REFDATA, seed=3, now_ms=NOW_MS).events(200, 0.1, 0.1)
    second = EventGenerator(REFDATA, seed=3, now_ms=NOW_MS).events(200, 0.1, 0.1)
    assert first == second
