"""The ingest stage's de-duplication state: restored from its SeenEvents records (after
a checkpoint, where one is usable), forgotten past the de-duplication window: batch
by batch in memory, a day's column family at a time on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.ingest.records import seen_entry, seen_found
from clearing_core.ingest.seen_filter import SEGMENT_IDS_MIN, id_hashes
from clearing_services.ingest.seen_checkpoint import Checkpoints
from clearing_services.ingest.seen_disk import (
    DAY_MS,
    EXPIRY_MARGIN_MS,
    INFO_LOG_BYTES_MAX,
    INFO_LOGS_KEPT,
    DiskEntries,
)
from clearing_services.ingest.seen_store import (
    SEEN_CHUNK_EVENTS,
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
    assert store.forget_before(1_000, TP) == 0  # not older than the horizon
    assert store.forget_before(4_999, TP) == 3
    assert sorted(store.of(TP)) == ["e3", "e4"]
    store.revoke(TP)
    with pytest.raises(KeyError):
        store.of(TP)
    assert len(store) == 0


def test_on_disk_the_ids_survive_nothing_but_their_partition(tmp_path: Path) -> None:
    store = SeenStore(tmp_path / "seen")
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
    disk, memory = SeenStore(tmp_path / "seen"), SeenStore()
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


def test_on_disk_a_day_goes_whole_once_the_window_and_margin_have_passed_it(
    tmp_path: Path,
) -> None:
    """Each batch lands in the day of its newest event time; a day's column family is
    dropped (its files with it) once it ends a margin before the horizon, and the
    filter's segments of those days go with it, so nothing held is ruled out."""
    store = SeenStore(tmp_path / "seen")
    restored = {"source_topic": TP[0], "source_partition": TP[1], "events": [
        {"event_id": "r1", "body_digest": "d", "event_time_ms": 900, "source_offset": 99,
         "obligation_id": "m:r1"},
    ]}  # fmt: skip
    store.assign(TP, [restored])  # day 0, from the record's event time
    store.add(TP, updates(0, 3, 1_000))  # day 0
    store.add(TP, updates(3, 2, 3 * DAY_MS + 5))  # day 3
    store.add(TP, updates(10, 20_000, 1_000))  # day 0: files worth measuring
    entries = store.of(TP)
    assert isinstance(entries, DiskEntries)
    assert entries.days == {0: 20_004, 3 * DAY_MS: 2}
    entries.flush()
    held_bytes = store.disk_bytes()
    assert store.forget_before(DAY_MS + EXPIRY_MARGIN_MS - 1, TP) == 0  # within the margin
    assert seen_found(entries, ["r1", "e0"]) == {"r1": seen_entry("d", 900, 2, 99),
                                                 "e0": seen_entry("d0", 1_000, 2, 100)}  # fmt: skip
    assert store.forget_before(DAY_MS + EXPIRY_MARGIN_MS, TP) == 20_004
    assert entries.days == {3 * DAY_MS: 2}
    kept_ms = 3 * DAY_MS + 5
    assert seen_found(entries, ["r1", "e0", "e3", "e4"]) == {
        "e3": seen_entry("d3", kept_ms, 2, 103), "e4": seen_entry("d4", kept_ms, 2, 104),
    }  # fmt: skip
    assert entries.filter.maybe(id_hashes(["e3", "e4"])).all()  # the kept day's segment stays
    assert store.disk_bytes() < held_bytes / 2  # the day's files went, no compaction waited
    assert len(store) == 2
    store.close()


def _checkpointed(tmp_path: Path) -> tuple[SeenStore, Checkpoints]:
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    store = SeenStore(tmp_path / "seen-a", checkpoints)
    store.assign(TP, [])
    store.add(TP, updates(0, 3_000, 1_000))
    store.add(TP, updates(3_000, 10, 2 * DAY_MS))
    return store, checkpoints


def test_a_checkpoint_and_the_log_after_it_restore_what_the_owner_held(tmp_path: Path) -> None:
    """Another owner restores the newest checkpoint of the topic as it is (its id), and
    the records after it: the same answers as the owner's, ids, days and filter."""
    owner, checkpoints = _checkpointed(tmp_path)
    folder = owner.checkpoint(TP, "topic-id-1", seen_offset=42)
    assert folder.name == f"{42:020d}"
    tail = seen_records(TP[0], TP[1], updates(5_000, 5, 2 * DAY_MS), {
        f"e{i}": "m:x" for i in range(5_000, 5_005)})  # fmt: skip
    owner.add(TP, updates(5_000, 5, 2 * DAY_MS))
    topic = seen_topic(TP[0])
    assert checkpoints.newest(topic, TP[1], "another-topic-id") is None  # made again: unusable
    found = checkpoints.newest(topic, TP[1], "topic-id-1")
    assert found is not None
    assert found.manifest.seen_offset == 42
    assert found.manifest.days == {0: 3_000, 2 * DAY_MS: 10}
    heir = SeenStore(tmp_path / "seen-b", Checkpoints(tmp_path / "checkpoints"))
    assert heir.assign(TP, tail, found) == 3_015
    asked = [f"e{i}" for i in range(0, 3_010, 7)] + ["e5004", "never"]
    assert seen_found(heir.of(TP), asked) == seen_found(owner.of(TP), asked)
    assert len(seen_found(heir.of(TP), asked)) == len(range(0, 3_010, 7)) + 1  # and e5004
    assert heir.of(TP).days == {0: 3_000, 2 * DAY_MS: 15}  # type: ignore[union-attr]
    owner.add(TP, updates(6_000, 1, 2 * DAY_MS))  # the owner's files are its own, not linked
    assert seen_found(heir.of(TP), ["e6000"]) == {}
    owner.close()
    heir.close()


def test_checkpoints_are_whole_or_absent_and_only_the_newest_stay(tmp_path: Path) -> None:
    owner, checkpoints = _checkpointed(tmp_path)
    topic, folder = seen_topic(TP[0]), tmp_path / "checkpoints" / f"{seen_topic(TP[0])}-{TP[1]}"
    for offset in (10, 20, 30):
        owner.checkpoint(TP, "id", offset)
    assert sorted(p.name for p in folder.iterdir()) == [f"{20:020d}", f"{30:020d}"]
    (folder / f".partial-40-{os.getpid()}").mkdir()  # a writer died mid-way: never read
    abandoned = folder / ".partial-5-1"
    abandoned.mkdir()
    os.utime(abandoned, (1, 1))  # long ago: the next checkpoint clears it away
    owner.checkpoint(TP, "id", 35)
    assert not abandoned.exists()
    assert (folder / f".partial-40-{os.getpid()}").exists()  # a recent one may be writing
    (folder / f"{50:020d}").mkdir()  # no manifest (not this format): skipped
    found = checkpoints.newest(topic, TP[1], "id")
    assert found is not None
    assert found.manifest.seen_offset == 35
    (segment,) = found.manifest.segments
    (found.folder / "filter" / segment.name).unlink()  # damaged: the worker reads the log
    with pytest.raises(OSError, match=segment.name):
        checkpoints.restore(found, tmp_path / "seen-b" / "x", owner.cache)  # type: ignore[arg-type]
    owner.close()


def test_on_disk_the_store_stays_flat_over_a_soak_longer_than_the_window(
    tmp_path: Path,
) -> None:
    """Twelve days of the same traffic through a two-day window, swept as the worker
    sweeps (the horizon: the newest log time less the window): from the third day on
    the store holds the same days, ids and, within a block's slack, the same disk."""
    window_ms, store = 2 * DAY_MS, SeenStore(tmp_path / "seen")
    store.assign(TP, [])
    disk, held = [], []
    for day in range(12):
        for batch in range(4):
            first = (day * 4 + batch) * 5_000
            store.add(TP, updates(first, 5_000, day * DAY_MS + batch * 3_600_000))
        entries = store.of(TP)
        assert isinstance(entries, DiskEntries)
        store.forget_before((day + 1) * DAY_MS - window_ms, TP)  # the day's last log time
        entries.flush()
        disk.append(store.disk_bytes())
        held.append(len(store))
    assert held[3:] == [60_000] * 9  # the window's two days and the margin's one
    # flat: the data does not grow with the days passed; RocksDB's own log does, up to
    # its bound (it notes each flush and each day's column family made and dropped)
    assert max(disk[3:]) <= 1.1 * min(disk[3:]) + INFO_LOGS_KEPT * INFO_LOG_BYTES_MAX
    assert disk[-1] < disk[2] + INFO_LOGS_KEPT * INFO_LOG_BYTES_MAX < 2 * disk[2]
    assert sorted(entries.days) == [9 * DAY_MS, 10 * DAY_MS, 11 * DAY_MS]
    store.close()


def test_a_checkpoint_links_what_did_not_change_since_the_last(tmp_path: Path) -> None:
    """Full filter segments and the database's table files are linked from the last
    checkpoint of this store (the same inode), so a checkpoint costs what changed;
    the segment still filling is written anew."""
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    store = SeenStore(tmp_path / "seen", checkpoints)
    store.assign(TP, [])
    store.add(TP, updates(0, SEGMENT_IDS_MIN + 10, 1_000))  # one full segment, one filling
    first = store.checkpoint(TP, "id", 1)
    store.add(TP, updates(SEGMENT_IDS_MIN + 10, 5, 1_000))
    second = store.checkpoint(TP, "id", 2)
    inode = {path.name: path.stat().st_ino for path in (first / "filter").iterdir()}
    again = {path.name: path.stat().st_ino for path in (second / "filter").iterdir()}
    full = f"0-{SEGMENT_IDS_MIN}.bits"
    assert again[full] == inode[full]
    assert set(again) - set(inode) == {"1-15.bits"}  # the filling one, written again
    heir = SeenStore(tmp_path / "heir", Checkpoints(tmp_path / "checkpoints"))
    found = heir.checkpoints.newest(seen_topic(TP[0]), TP[1], "id")  # type: ignore[union-attr]
    assert found is not None
    assert found.folder == second
    heir.assign(TP, [], found)
    asked = [f"e{i}" for i in range(0, SEGMENT_IDS_MIN + 20, 97)]
    assert seen_found(heir.of(TP), asked) == seen_found(store.of(TP), asked)
    store.close()
    heir.close()
