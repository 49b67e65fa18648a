"""The seen-id store at scale, offline: lookups per second with ``--ids`` ids stored in
one partition, and how long the partition's next owner takes to restore it.

Why: a takeover used to read the partition's whole seen log back (every id of the
window), so its time grew with the window; now it restores the newest checkpoint
and reads only the log after it. This fills one partition's production store
(RocksDB, day column families, the filter in front) with ``--ids`` ids spread over
``--days`` days, then measures:

- lookups: batches of ``--batch`` ids, new ones (the common case: nearly every
  event is new) and stored ones (resends), through ``found`` as the ingest stage asks;
- the checkpoint: its time and bytes;
- the takeover: the checkpoint restored and ``--tail-ids`` ids after it applied from
  ``SeenEvents`` records encoded and decoded by the codec, as the worker reads them
  (the broker's fetch of those records is not in it); with ``--compare-log`` also
  the old way, every id applied from the log, for the same partition;
- expiry: the oldest day dropped, its time and the disk before and after.

Run: ``.venv/bin/python bench/seen.py`` (10M ids: a few minutes, about 1.5 GB of
disk under the temporary folder). The last line of stdout is one JSON object with
``stored_ids``, ``lookups_per_s`` and ``takeover_seconds``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from e2e_support import log

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.ingest.seen_text import seen_entries
from clearing_services.ingest.seen_checkpoint import Checkpoints
from clearing_services.ingest.seen_disk import DAY_MS, DiskEntries
from clearing_services.ingest.seen_store import SeenStore, seen_column_values, seen_topic
from clearing_services.settings import DEFAULT_CHECKPOINT_IDS, DEFAULT_INGEST_BATCH_MAX

TP = ("clearing.events.compute", 0)
START_MS = 1_790_000_000_000  # a fixed day: the figures do not depend on the clock
DIGEST = "0" * 32  # the digest's length is what costs: the value is irrelevant


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=10_000_000, help="ids stored before")
    parser.add_argument("--days", type=int, default=35, help="days the ids are spread over")
    parser.add_argument("--batch", type=int, default=DEFAULT_INGEST_BATCH_MAX)
    parser.add_argument("--lookups", type=int, default=2_000_000, help="ids looked up")
    parser.add_argument(
        "--tail-ids",
        type=int,
        default=DEFAULT_CHECKPOINT_IDS,
        help="ids after the checkpoint (at most CLEARING_CHECKPOINT_IDS)",
    )
    parser.add_argument(
        "--compare-log",
        action="store_true",
        help="also restore the same partition from the whole log, the old way",
    )
    return parser.parse_args(argv)  # fmt: skip


def event_ids(prefix: str, start: int, count: int) -> list[str]:
    """Ids shaped like the generator's (a participant prefix, a sequence, a suffix)."""
    return [f"{prefix}-{i:012d}-c0mpute" for i in range(start, start + count)]


def batches(prefix: str, total: int, size: int, days: int) -> Iterator[tuple[dict[str, str], int]]:
    """``total`` ids in batches of ``size`` with their seen entries, the batches' event
    times spread evenly over ``days`` days."""
    for start in range(0, total, size):
        ids = event_ids(prefix, start, min(size, total - start))
        time_ms = START_MS + (start * days // max(total, 1)) * DAY_MS
        entries = seen_entries([DIGEST] * len(ids), [time_ms] * len(ids), [TP[1]] * len(ids),
                               range(start, start + len(ids)))  # fmt: skip
        yield dict(zip(ids, entries, strict=True)), time_ms


def fill(store: SeenStore, args: argparse.Namespace) -> float:
    """The stored ids written; seconds."""
    started = time.perf_counter()
    for updates, time_ms in batches("held", args.ids, args.batch, args.days):
        store.add(TP, updates, time_ms)
    return time.perf_counter() - started


def lookups(entries: DiskEntries, args: argparse.Namespace) -> dict[str, Any]:
    """New ids and stored ids through ``found``, a batch at a time; ids per second."""
    new = [event_ids("new", start, args.batch) for start in range(0, args.lookups, args.batch)]
    step = max(1, args.ids // (4 * args.batch))  # resends: spread over every day
    picked = [f"held-{i:012d}-c0mpute" for i in range(0, args.ids, step)][: 4 * args.batch]
    stored = [picked[at : at + args.batch] for at in range(0, len(picked), args.batch)]
    entries.found(new[0][:10])  # the kernels loaded, untimed
    started = time.perf_counter()
    false_hits = sum(len(entries.found(ids)) for ids in new)
    new_seconds = time.perf_counter() - started
    started = time.perf_counter()
    hits = sum(len(entries.found(ids)) for ids in stored)
    stored_seconds = time.perf_counter() - started
    assert false_hits == 0, "a new id was found"
    assert hits == sum(map(len, stored)), "a stored id was not found"
    return {
        "lookups_per_s": round(sum(map(len, new)) / new_seconds),
        "stored_lookups_per_s": round(hits / stored_seconds),
        "filter_maybe_ratio": round(_maybe_ratio(entries, new[0]), 4),
    }


def _maybe_ratio(entries: DiskEntries, ids: list[str]) -> float:
    from clearing_core.ingest.seen_filter import id_hashes

    return float(entries.filter.maybe(id_hashes(ids)).mean())


def seen_log(codec: SingleObjectCodec, prefix: str, total: int, args: argparse.Namespace,
             days: int, later_ms: int = 0) -> list[bytes]:  # fmt: skip
    """The ``SeenEvents`` records of ``total`` ids, their times ``later_ms`` on."""
    values: list[bytes] = []
    for updates, time_ms in batches(prefix, total, args.batch, days):
        count = len(updates)
        columns: list[list[Any]] = [list(updates), [DIGEST] * count, [time_ms + later_ms] * count,
                                    list(range(count)), ["c:agg:x"] * count]  # fmt: skip
        values += seen_column_values(codec, TP[0], TP[1], columns)
    return values


def takeover(folder: Path, codec: SingleObjectCodec, tail: list[bytes], found: Any) -> float:
    """A new store restoring the checkpoint ``found`` (None: none) and the records after
    it, decoded by the codec as the worker decodes them; seconds."""
    store = SeenStore(folder, Checkpoints(folder.parent / "checkpoints"))
    topic = seen_topic(TP[0])
    started = time.perf_counter()
    records = (codec.decode(value, topic=topic).record for value in tail)
    held = store.assign(TP, records, found)
    seconds = time.perf_counter() - started
    store.close()
    log(f"takeover: {held:,} ids in {seconds:.2f} s")
    return seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    codec = SingleObjectCodec(SchemaCatalog.load())
    with tempfile.TemporaryDirectory(prefix="seen-bench-") as tmp:
        root = Path(tmp)
        store = SeenStore(root / "owner", Checkpoints(root / "checkpoints"))
        store.assign(TP, [])
        fill_seconds = fill(store, args)
        entries = store.of(TP)
        assert isinstance(entries, DiskEntries)
        log(f"filled {args.ids:,} ids in {fill_seconds:.1f} s")
        result: dict[str, Any] = {"stored_ids": len(entries), **lookups(entries, args)}
        started = time.perf_counter()
        folder = store.checkpoint(TP, "bench", seen_offset=1)
        result["checkpoint_seconds"] = round(time.perf_counter() - started, 3)
        result["checkpoint_bytes"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        found = Checkpoints(root / "checkpoints").newest(seen_topic(TP[0]), TP[1], "bench")
        tail = seen_log(codec, "tail", args.tail_ids, args, 1, args.days * DAY_MS)
        result["takeover_seconds"] = round(takeover(root / "heir", codec, tail, found), 3)
        result.update(expiry(entries))
        store.close()
    filter_bytes_per_id = round(entries.filter.nbytes / max(args.ids, 1), 3)
    result.update({"days": args.days, "tail_ids": args.tail_ids,
                   "fill_seconds": round(fill_seconds, 1),
                   "filter_bytes_per_id": filter_bytes_per_id})  # fmt: skip
    if args.compare_log:
        result["takeover_from_log_seconds"] = round(from_log(codec, args), 3)
    return result


def expiry(entries: DiskEntries) -> dict[str, Any]:
    """The oldest day dropped: seconds, and the store's disk before and after."""
    entries.flush()
    before, oldest = entries.disk_bytes(), min(entries.days)
    started = time.perf_counter()
    dropped = entries.forget_before(oldest + 2 * DAY_MS)
    seconds = time.perf_counter() - started
    after = entries.disk_bytes()
    return {"expiry_seconds": round(seconds, 4), "expired_ids": dropped,
            "disk_bytes_before_expiry": before, "disk_bytes_after_expiry": after}  # fmt: skip


def from_log(codec: SingleObjectCodec, args: argparse.Namespace) -> float:
    """The same partition taken over the old way: every stored id from its records."""
    records = seen_log(codec, "held", args.ids, args, args.days)
    with tempfile.TemporaryDirectory(prefix="seen-bench-log-") as tmp:
        return takeover(Path(tmp) / "heir", codec, records, None)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
