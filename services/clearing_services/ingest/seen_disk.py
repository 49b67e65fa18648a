"""One owned partition's seen ids on disk: a RocksDB database with a column family per
day of event time, and a filter of the ids' hashes in front of it.

Why a column family per day: the ids must be kept for the de-duplication window
(``dedup_window_days`` of the reference data's policy, beyond which the validator
rejects an event as too old) and no longer. Dropping a whole day's column family
deletes its files at once, with no scan and no compaction to wait for; RocksDB's
TTL (the design before) dropped expired entries only when compaction happened to
rewrite their files, so the disk of a long-lived partition kept growing. Each batch
of ids goes into the day of the batch's newest event time, so a day is dropped
only when every id in it is older than the window (plus a margin that covers the
validator's allowance for clocks ahead).

Lookups: the filter rules out nearly every new id (``found``); the few it cannot
are read with one ``multi_get`` per live day, newest first, and the store's exact
keys decide. The whole state (the database's files, the filter, the day counts)
can be checkpointed and restored by another process (``seen_checkpoint``).
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from clearing_core.ingest.checks import DEFAULT_LIMITS
from clearing_core.ingest.seen_filter import SeenFilter, id_hashes
from clearing_core.jit import Mask

DAY_MS = 86_400_000  # the width of a column family's bucket of event time
EXPIRY_MARGIN_MS = 3_600_000  # a day is dropped this long after the window has passed it
WRITE_BUFFER_BYTES = 4 << 20  # per written column family, at most two of them
INFO_LOGS_KEPT, INFO_LOG_BYTES_MAX = 2, 256 << 10  # RocksDB's LOG: at most 512 KiB
MANIFEST_BYTES_MAX = 4 << 20
ROCKSDB_BITS_PER_ID = 10  # RocksDB's own filter per table file: about 1% false hits
_DAY_PREFIX = "day-"
_DEFAULT_FAMILY = "default"  # RocksDB's own, left empty
assert DEFAULT_LIMITS.max_future_skew_ms <= EXPIRY_MARGIN_MS  # clocks ahead stay covered


def options(cache: Cache) -> Options:
    """Bounded memory per column family: RocksDB's default 64 MiB write buffer (twice)
    per database let a worker owning 15 partitions grow by about 50 MB a minute towards
    2 GB; reads share one block cache. Only the newest day is written, so the other
    days hold no write buffer."""
    opts = Options()
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_max_write_buffer_number(2)
    opts.set_keep_log_file_num(INFO_LOGS_KEPT)  # RocksDB's own log: bounded like the data
    opts.set_max_log_file_size(INFO_LOG_BYTES_MAX)
    opts.set_max_manifest_file_size(MANIFEST_BYTES_MAX)  # rolled over, not grown for ever
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)  # else they grow with the data, unbounded
    # a resend's id is asked of each day, newest first, until one holds it: the
    # other days answer from their Bloom filter blocks, without reading data blocks
    table.set_bloom_filter(ROCKSDB_BITS_PER_ID, False)
    opts.set_block_based_table_factory(table)
    return opts


def day_of(time_ms: int) -> int:
    """The start of the day bucket ``time_ms`` falls in."""
    return time_ms - time_ms % DAY_MS


class DiskEntries(Mapping[str, str]):
    """A partition's ids (event id -> seen entry) in day column families, the
    ``SeenFilter`` of their hashes, and how many ids each day holds."""

    def __init__(
        self, path: Path, cache: Cache, days: Mapping[int, int] | None = None,
        seen_filter: SeenFilter | None = None,
    ) -> None:  # fmt: skip
        """Open the database at ``path``: a new one unless ``days`` (a database restored
        there from a checkpoint, with its day counts and filter)."""
        if days is None:
            shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._options = options(cache)
        self.days: dict[int, int] = dict(days or {})
        families = {_family(day): self._options for day in self.days}
        self.db = Rdict(str(path), self._options, column_families=families or None)
        existing = set(Rdict.list_cf(str(path))) - {_DEFAULT_FAMILY}
        if existing != set(families):
            self.db.close()
            raise ValueError(f"{path}: column families {sorted(existing)} are not the days "
                             f"{sorted(families)} its checkpoint recorded")  # fmt: skip
        # Rebuilt from a checkpoint and the seen topic at every assignment, so no
        # write-ahead log: 0.16 against 0.26 us per id written, measured. A checkpoint
        # flushes the write buffers first. (A property at run time; the stub says method.)
        unlogged = WriteOptions()
        unlogged.disable_wal = True  # type: ignore[method-assign,assignment]
        self.db.set_write_options(unlogged)
        self._families = {day: self.db.get_column_family(_family(day)) for day in self.days}
        self.filter = seen_filter or SeenFilter()

    def _newest_first(self) -> list[Rdict]:
        return [self._families[day] for day in sorted(self._families, reverse=True)]

    def __getitem__(self, key: str) -> str:
        for family in self._newest_first():
            value = family.get(key)
            if value is not None:
                return str(value)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        for family in self._newest_first():
            yield from (str(key) for key in family.keys())  # noqa: SIM118 (an Rdict, not a dict)

    def __len__(self) -> int:
        return sum(self.days.values())

    def found(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The entries of those ``event_ids`` the database holds: the ids hashed once,
        the filter rules most out; each of the rest is read only from the days of the
        filter segments that may hold it (one ``multi_get`` per day; its exact keys
        decide, and a false hit of the filter reads nothing)."""
        hashes = id_hashes(event_ids)
        maybe = self.filter.maybe(hashes).nonzero()[0]
        if not len(maybe):
            return {}
        wanted: dict[int, Mask] = {}  # day -> which of the maybe ids to ask it for
        for segment, mask in self.filter.hits(hashes[maybe]):
            for day in range(day_of(segment.oldest_ms), segment.newest_ms + 1, DAY_MS):
                if day in self._families:
                    wanted[day] = wanted[day] | mask if day in wanted else mask
        entries: dict[str, str] = {}
        asked = [event_ids[i] for i in maybe.tolist()]
        for day in sorted(wanted, reverse=True):
            keys: list[str | int | float | bytes | bool] = [
                asked[i] for i in wanted[day].nonzero()[0].tolist() if asked[i] not in entries
            ]  # fmt: skip
            values = self._families[day].get(keys) if keys else []
            assert isinstance(values, list)  # a list of keys: multi_get
            entries.update((str(e), str(v)) for e, v in zip(keys, values, strict=True)
                           if v is not None)  # fmt: skip
        return entries

    def add(self, updates: Mapping[str, str], newest_ms: int) -> None:
        """Write ``updates`` into the day of ``newest_ms`` (the newest event time among
        them: every id stays at least as long as its own day would keep it)."""
        if not updates:
            return
        day = day_of(newest_ms)
        if day not in self._families:
            self._families[day] = self.db.create_column_family(_family(day), self._options)
            self.days[day] = 0
        batch = WriteBatch()
        batch.set_default_column_family(self.db.get_column_family_handle(_family(day)))
        deque(map(batch.put, updates.keys(), updates.values()), maxlen=0)  # no Python loop
        self.db.write(batch)
        self.filter.add(id_hashes(list(updates)), newest_ms)
        self.days[day] += len(updates)

    def forget_before(self, horizon_ms: int) -> int:
        """Drop each day that ends ``EXPIRY_MARGIN_MS`` or more before ``horizon_ms`` (its
        files go at once), and the filter's segments older than the oldest day kept;
        the count of ids dropped."""
        cutoff = day_of(horizon_ms - EXPIRY_MARGIN_MS)
        dropped = 0
        for day in [d for d in self.days if d + DAY_MS <= cutoff]:
            del self._families[day]
            self.db.drop_column_family(_family(day))
            dropped += self.days.pop(day)
        self.filter.forget_before(cutoff)  # a segment older than that holds dropped days only
        return dropped

    def memory_bytes(self) -> int:
        """Write buffers and table readers (the block cache is shared: see the store)."""
        return sum(
            int(self.db.property_int_value(name) or 0)
            for name in ("rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-table-readers-mem")
        )

    def flush(self) -> None:
        """Write every day's buffer to its files (a checkpoint does this itself)."""
        for family in self._families.values():
            family.flush()

    def disk_bytes(self) -> int:
        """The files of the database (what expiry keeps flat)."""
        return sum(path.stat().st_size for path in self.path.rglob("*") if path.is_file())

    def close(self) -> None:
        self._families.clear()  # each holds the database open: released first
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _family(day: int) -> str:
    return f"{_DAY_PREFIX}{day}"
