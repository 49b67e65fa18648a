"""The ingest stage's de-duplication state: restored from its SeenEvents records,
forgotten batch by batch past the maximum event age."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.ingest.records import seen_entry, seen_found
from clearing_services.ingest.seen_store import (
    SEEN_CHUNK_EVENTS,
    TTL_MARGIN_SECONDS,
    SeenStore,
    items_of,
    seen_column_values,
    seen_records,
    seen_topic,
    updates_of,
)

TP = ("clearing.events.meter", 2)


def updates(first: int, count: int, time_ms: int) -> dict[str, str]:
    return {f"e{i}": seen_entry(f"d{i}", time_ms, 2, 100 + i) for i in range(first, first + count)}


def test_records_round_trip_through_the_codec_and_restore_the_state(
    codec: SingleObjectCodec,
) -> None:
    accepted = updates(0, SEEN_CHUNK_EVENTS + 5, 1_000)
    obligation_of = {e: f"m:agg:{e[-1]}" for e in accepted}
    records = seen_records(TP[0], TP[1], accepted, obligation_of)
    assert [len(r["events"]) for r in records] == [SEEN_CHUNK_EVENTS, 5]
    topic = seen_topic(TP[0])
    assert topic == "clearing.ingest.seen.meter"
    encoded = [codec.encode("SeenEvents", r, topic=topic) for r in records]
    items = [(*item, obligation_of[item[0]]) for item in items_of(accepted)]
    columns = [list(column) for column in zip(*items, strict=True)]
    assert seen_column_values(codec, TP[0], TP[1], columns) == encoded
    backwards = [column[::-1] for column in columns]  # out of offset order: sorted first
    assert seen_column_values(codec, TP[0], TP[1], backwards) == encoded
    decoded = [codec.decode(value).record for value in encoded]
    assert decoded[0]["events"][0]["obligation_id"] == "m:agg:0"
    store = SeenStore()
    assert store.assign(TP, decoded) == len(accepted)
    assert dict(store.of(TP)) == accepted
    assert updates_of(decoded[1]) == dict(list(accepted.items())[SEEN_CHUNK_EVENTS:])


def test_ids_are_forgotten_a_batch_at_a_time_and_only_when_old() -> None:
    store = SeenStore()
    store.assign(TP, [])
    store.add(TP, updates(0, 3, 1_000))
    store.add(TP, updates(3, 2, 5_000))
    assert store.forget_before(1_000) == 0  # not older than the horizon
    assert store.forget_before(4_999) == 3
    assert sorted(store.of(TP)) == ["e3", "e4"]
    store.revoke(TP)
    with pytest.raises(KeyError):
        store.of(TP)
    assert len(store) == 0


def test_on_disk_the_ids_survive_nothing_but_their_partition(tmp_path: Path) -> None:
    store = SeenStore(tmp_path / "seen", max_age_ms=35 * 86_400_000)
    record = {"source_topic": TP[0], "source_partition": TP[1], "events": [
        {"event_id": "e1", "body_digest": "d1", "event_time_ms": 1_000, "source_offset": 101,
         "obligation_id": "m:e1"},
    ]}  # fmt: skip
    assert store.assign(TP, [record]) == 1
    store.add(TP, updates(2, 2, 2_000))
    seen = store.of(TP)
    assert seen.get("e1") == seen_entry("d1", 1_000, 2, 101)
    assert seen.get("e3") == seen_entry("d3", 2_000, 2, 103)
    assert seen.get("nope") is None
    assert "e2" in seen
    assert len(store) == 3
    store.assign(TP, [])  # a new assignment starts from the seen topic alone
    assert store.of(TP).get("e1") is None
    store.close()
    assert not (tmp_path / "seen" / f"{TP[0]}-{TP[1]}").exists()


def test_on_disk_a_batch_is_looked_up_at_once_and_agrees_with_memory(tmp_path: Path) -> None:
    """The store on disk answers a batch's ids through its filter and one multi_get;
    the answer is the in-memory store's (hits, misses, and ids never added)."""
    disk, memory = SeenStore(tmp_path / "seen", max_age_ms=86_400_000), SeenStore()
    for store in (disk, memory):
        store.assign(TP, [])
        store.add(TP, updates(0, 5_000, 1_000))
    asked = [f"e{i}" for i in range(4_990, 5_010)] + ["nope", "e0"]
    expected = {e: seen_entry(f"d{e[1:]}", 1_000, 2, 100 + int(e[1:]))
                for e in [*(f"e{i}" for i in range(4_990, 5_000)), "e0"]}  # fmt: skip
    assert seen_found(disk.of(TP), asked) == expected
    assert seen_found(memory.of(TP), asked) == expected
    assert seen_found(disk.of(TP), [f"new-{i}" for i in range(1_000)]) == {}
    wal = list((tmp_path / "seen").rglob("*.log"))  # rebuilt at every assignment: no WAL
    assert wal
    assert [path.stat().st_size for path in wal] == [0] * len(wal)
    assert 5_000 * 10 // 8 <= disk.filter_bytes() <= 2 * 65_536 * 10 // 8  # one first segment
    assert memory.filter_bytes() == 0  # the ids themselves are the heap
    disk.close()


def test_on_disk_the_filter_keeps_ids_as_long_as_the_database_may(tmp_path: Path) -> None:
    """Expiry on disk is RocksDB's TTL, the maximum age plus a margin; the filter in
    front lets a segment go only once it is older than that too."""
    store = SeenStore(tmp_path / "seen", max_age_ms=1_000)
    restored = {"source_topic": TP[0], "source_partition": TP[1], "events": [
        {"event_id": "r1", "body_digest": "d", "event_time_ms": 900, "source_offset": 99,
         "obligation_id": "m:r1"},
    ]}  # fmt: skip
    store.assign(TP, [restored])  # its segment's time is the record's event time
    store.add(TP, updates(0, 3, 1_000))
    margin_ms = TTL_MARGIN_SECONDS * 1000
    assert store.forget_before(1_001) == 0  # past the maximum age, within the margin
    assert seen_found(store.of(TP), ["e0"]) == {"e0": seen_entry("d0", 1_000, 2, 100)}
    assert store.forget_before(1_001 + margin_ms) == 4
    assert seen_found(store.of(TP), ["r1", "e0", "e1", "e2"]) == {}  # ruled out by the filter
    store.close()
