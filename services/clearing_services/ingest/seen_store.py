"""The ingest stage's de-duplication state: which event ids each source partition
has accepted, restored from ``clearing.ingest.seen.<event type>``.

Why a topic of its own and not a Faust table: the ingest loop writes one
``SeenEvents`` record per source partition in the same Kafka transaction as the
obligations and the consumer offsets, so the state, the outputs and the input
position move together or not at all. A new owner of a partition reads that
partition of the seen topic back (read_committed) before it takes any event.
The same records are the audit trail from each event to its obligation.

Two homes for the ids of an owned partition. On disk (``CLEARING_STORE=rocksdb://``,
the default): a RocksDB database per partition under the worker's state folder,
rebuilt from the seen topic at every assignment, whose entries expire (RocksDB
TTL) one day after the maximum event age, beyond which the validator refuses
events anyway; the worker's memory then stays flat however many ids it holds.
In memory (``memory://``, for tests and benches): a dict per partition, whose ids
are forgotten one ingest batch at a time once the batch's newest event is older
than the age limit.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from clearing_core.encoding.codec import Codec, SingleObjectCodec
from clearing_core.encoding.seen_codec import SEEN_EVENT_LAYOUT, encode_seen_columns, matches
from clearing_core.ingest.records import SEEN_SEPARATOR, Seen, seen_parts
from clearing_core.ingest.seen_filter import SeenFilter, id_hashes
from clearing_core.ingest.seen_text import seen_entries
from clearing_services.kafka.topics import EVENT_TOPICS

SEEN_TOPIC_PREFIX = "clearing.ingest.seen."
SEEN_CHUNK_EVENTS = 2_000  # events per SeenEvents record: well under the 1 MiB record limit
TTL_MARGIN_SECONDS = 86_400  # on disk, ids live this long beyond the maximum event age
WRITE_BUFFER_BYTES = 4 << 20  # per partition database, at most two of them
BLOCK_CACHE_BYTES = 32 << 20  # shared by the worker's partition databases
TopicPartitionKey = tuple[str, int]
T = TypeVar("T")


def seen_topic(event_topic: str) -> str:
    """``clearing.ingest.seen.<alias>`` for an event topic."""
    for spec in EVENT_TOPICS:
        if spec.topic == event_topic:
            return SEEN_TOPIC_PREFIX + spec.alias
    raise KeyError(f"{event_topic} is not an event topic")


@dataclass
class _Partition:
    entries: dict[str, str] = field(default_factory=dict)
    # (newest event time of a batch, the ids it added), oldest batch first
    batches: deque[tuple[int, list[str]]] = field(default_factory=deque)

    def add(self, updates: Mapping[str, str], newest_ms: int) -> None:
        if not updates:
            return
        self.entries.update(updates)
        self.batches.append((newest_ms, list(updates)))

    def forget_before(self, horizon_ms: int) -> int:
        forgotten = 0
        while self.batches and self.batches[0][0] < horizon_ms:
            _, ids = self.batches.popleft()
            for event_id in ids:
                if self.entries.pop(event_id, None) is not None:
                    forgotten += 1
        return forgotten

    def __len__(self) -> int:
        return len(self.entries)


def _options(cache: Cache) -> Options:
    """Bounded memory per partition database: RocksDB's default 64 MiB write buffer
    (twice) per database let a worker owning 15 partitions grow by about 50 MB a
    minute towards 2 GB; reads share one block cache."""
    options = Options()
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)  # else they grow with the data, unbounded
    options.set_block_based_table_factory(table)
    return options


class _DiskEntries(Mapping[str, str]):
    """A partition's ids in a RocksDB database of its own, with a time to live, and a
    filter of their hashes in front of it (``found``: a batch's lookups in one read)."""

    def __init__(self, path: Path, ttl_seconds: int, cache: Cache) -> None:
        shutil.rmtree(path, ignore_errors=True)  # rebuilt from the seen topic, never reused
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = Rdict(str(path), _options(cache), access_type=AccessType.with_ttl(ttl_seconds))
        # A database rebuilt at every assignment needs no write-ahead log: 0.16 against
        # 0.26 us per id written, measured. (A property at run time; the stub says method.)
        unlogged = WriteOptions()
        unlogged.disable_wal = True  # type: ignore[method-assign,assignment]
        self.db.set_write_options(unlogged)
        self.count = 0  # written since the assignment (expiry is RocksDB's, lazily)
        self.filter = SeenFilter()

    def __getitem__(self, key: str) -> str:
        value = self.db.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.db.get(key)
        return default if value is None else value

    def __iter__(self) -> Iterator[str]:
        keys: Iterable[Any] = self.db.keys()
        for key in keys:
            yield str(key)

    def __len__(self) -> int:
        return self.count

    def found(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The entries of those ``event_ids`` the database holds: the ids hashed once,
        the filter rules most out, one ``multi_get`` reads the rest (its exact keys
        decide; a false hit of the filter reads nothing)."""
        maybe = self.filter.maybe(id_hashes(event_ids)).nonzero()[0].tolist()
        if not maybe:
            return {}
        asked: list[str | int | float | bytes | bool] = [event_ids[i] for i in maybe]
        values = self.db.get(asked)
        assert isinstance(values, list)  # a list of keys: multi_get
        return {str(e): str(v) for e, v in zip(asked, values, strict=True) if v is not None}

    def add(self, updates: Mapping[str, str], newest_ms: int) -> None:
        if not updates:
            return
        batch = WriteBatch()
        deque(map(batch.put, updates.keys(), updates.values()), maxlen=0)  # no Python loop
        self.db.write(batch)
        self.filter.add(id_hashes(list(updates)), newest_ms)
        self.count += len(updates)

    def forget_before(self, horizon_ms: int) -> int:
        """RocksDB drops expired entries as it compacts; the filter drops its segments
        once they are as old as the database's margin, so it never rules out an id the
        database may still hold. The count of ids the filter let go."""
        return self.filter.forget_before(horizon_ms - TTL_MARGIN_SECONDS * 1000)

    def memory_bytes(self) -> int:
        """Write buffers and table readers (the block cache is shared: see the store)."""
        return sum(
            int(self.db.property_int_value(name) or 0)
            for name in ("rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-table-readers-mem")
        )

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)


class SeenStore:
    """Per owned source partition, event id -> seen entry (``ingest.seen_entry``);
    on disk under ``disk_dir`` when given, else in memory."""

    def __init__(self, disk_dir: Path | None = None, max_age_ms: int = 0) -> None:
        self._partitions: dict[TopicPartitionKey, _Partition | _DiskEntries] = {}
        self.disk_dir = disk_dir
        self.ttl_seconds = max_age_ms // 1000 + TTL_MARGIN_SECONDS
        self.cache = Cache(BLOCK_CACHE_BYTES) if disk_dir is not None else None

    def assign(self, tp: TopicPartitionKey, records: Iterable[Mapping[str, Any]]) -> int:
        """Take a partition over, with the ``SeenEvents`` records of its seen topic."""
        self.revoke(tp)
        partition: _Partition | _DiskEntries
        if self.disk_dir is None:
            partition = _Partition()
        else:
            assert self.cache is not None
            partition = _DiskEntries(
                self.disk_dir / f"{tp[0]}-{tp[1]}", self.ttl_seconds, self.cache
            )
        for record in records:  # the newest time from the record's columns: no entry parsed
            newest_ms = max((int(e["event_time_ms"]) for e in record["events"]), default=0)
            partition.add(updates_of(record), newest_ms)
        self._partitions[tp] = partition
        return len(partition)

    def revoke(self, tp: TopicPartitionKey) -> None:
        partition = self._partitions.pop(tp, None)
        if isinstance(partition, _DiskEntries):
            partition.close()

    def close(self) -> None:
        for tp in list(self._partitions):
            self.revoke(tp)

    def of(self, tp: TopicPartitionKey) -> Seen:
        """The accepted ids of an owned partition (KeyError for one not owned)."""
        partition = self._partitions[tp]
        return partition.entries if isinstance(partition, _Partition) else partition

    def add(
        self, tp: TopicPartitionKey, updates: Mapping[str, str], newest_ms: int | None = None
    ) -> None:
        """Record what a committed transaction accepted (``newest_ms``: the newest event
        time among them, if known; else it is read from the entries)."""
        if updates and newest_ms is None:  # parsed from the entries only where not known
            newest_ms = max(seen_parts(entry)[1] for entry in updates.values())
        self._partitions[tp].add(updates, newest_ms or 0)

    def forget_before(self, horizon_ms: int) -> int:
        return sum(p.forget_before(horizon_ms) for p in self._partitions.values())

    def __len__(self) -> int:
        return sum(len(p) for p in self._partitions.values())

    def disk_memory_bytes(self) -> int:
        """What RocksDB holds in memory for the owned partitions (0 in memory mode, where
        the ids themselves are the Python heap)."""
        parts = [p.memory_bytes() for p in self._partitions.values() if isinstance(p, _DiskEntries)]
        cache = int(self.cache.get_usage()) if self.cache is not None else 0
        return sum(parts) + cache

    def filter_bytes(self) -> int:
        """The Bloom filters' bits in front of the owned partitions' databases (1.25 to
        2.5 bytes per id held: segments double), on the Python heap."""
        parts = self._partitions.values()
        return sum(p.filter.nbytes for p in parts if isinstance(p, _DiskEntries))


def updates_of(record: Mapping[str, Any]) -> dict[str, str]:
    """The seen entries a ``SeenEvents`` record stands for."""
    events = record["events"]
    entries = seen_entries(
        [e["body_digest"] for e in events], [int(e["event_time_ms"]) for e in events],
        [int(record["source_partition"])] * len(events), [int(e["source_offset"]) for e in events],
    )  # fmt: skip
    return dict(zip([e["event_id"] for e in events], entries, strict=True))


SeenItem = tuple[str, str, int, int, str]  # event id, digest, time ms, offset, obligation id
Accepted = tuple[str, str, int, int]  # ``IngestResult.seen_items``: the same, no obligation


def items_of(updates: Mapping[str, str]) -> list[Accepted]:
    """The accepted events that seen entries stand for."""
    items = []
    for event_id, entry in updates.items():
        digest, time_ms, _, offset = entry.split(SEEN_SEPARATOR)
        items.append((event_id, digest, int(time_ms), int(offset)))
    return items


def seen_items(accepted: Iterable[Accepted], obligation_of: Mapping[str, str]) -> list[SeenItem]:
    """One partition's accepted events as ``SeenEvents`` items, in offset order."""
    items = [(e, digest, time_ms, offset, obligation_of[e])
             for e, digest, time_ms, offset in accepted]  # fmt: skip
    items.sort(key=lambda item: item[3])
    return items


def seen_records(
    topic: str, partition: int, updates: Mapping[str, str], obligation_of: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The ``SeenEvents`` records of one partition's accepted events, in offset order,
    ``SEEN_CHUNK_EVENTS`` per record."""
    return _records(topic, partition, seen_items(items_of(updates), obligation_of))


def _records(topic: str, partition: int, items: Sequence[SeenItem]) -> list[dict[str, Any]]:
    names = [name for name, _ in SEEN_EVENT_LAYOUT]
    return [
        {"source_topic": topic, "source_partition": partition,
         "events": [dict(zip(names, item, strict=True)) for item in chunk]}
        for chunk in _chunks(items, SEEN_CHUNK_EVENTS)
    ]  # fmt: skip


def seen_column_values(
    codec: Codec, topic: str, partition: int, columns: Sequence[list[Any]]
) -> list[bytes]:
    """The ``SeenEvents`` records of one partition's accepted events given as columns
    (event ids, digests, times ms, offsets, obligation ids), in offset order,
    ``SEEN_CHUNK_EVENTS`` per record: written directly (``clearing_core.encoding.seen_codec``)
    while the current schema is the known layout."""
    offsets = columns[3]
    if offsets != sorted(offsets):  # not in offset order (rare; sorted() of sorted is O(n))
        order = sorted(range(len(offsets)), key=offsets.__getitem__)
        columns = [[column[i] for i in order] for column in columns]
    version = codec.catalog.current("SeenEvents") if isinstance(codec, SingleObjectCodec) else None
    if version is None or not matches(version.expanded):
        items = list(zip(*columns, strict=True))
        return [codec.encode("SeenEvents", record, topic=seen_topic(topic))
                for record in _records(topic, partition, items)]  # fmt: skip
    return encode_seen_columns(version.header, topic, partition, columns, SEEN_CHUNK_EVENTS)


def _chunks(items: Sequence[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
