"""The ingest stage's de-duplication state: which event ids each source partition
has accepted, restored from ``clearing.ingest.seen.<event type>``.

Why a topic of its own and not a Faust table: the ingest loop writes one
``SeenEvents`` record per source partition in the same Kafka transaction as the
obligations and the consumer offsets, so the state, the outputs and the input
position move together or not at all. A new owner of a partition restores the
partition's newest checkpoint (``seen_checkpoint``) and reads the seen topic after
it (read_committed) before it takes any event; without a usable checkpoint it
reads the whole partition of the seen topic. The same records are the audit trail
from each event to its obligation.

Two homes for the ids of an owned partition. On disk (``CLEARING_STORE=rocksdb://``,
the default): a RocksDB database per partition under the worker's state folder,
with a column family per day of event time, dropped whole once the de-duplication
window has passed it (``seen_disk``); the worker's memory then stays flat however
many ids it holds. In memory (``memory://``, for tests and benches): a dict per
partition, whose ids are forgotten one ingest batch at a time once the batch's
newest event is older than the window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rocksdict import Cache

from clearing_core.encoding.codec import Codec, SingleObjectCodec
from clearing_core.encoding.seen_codec import SEEN_EVENT_LAYOUT, encode_seen_columns, matches
from clearing_core.ingest.records import SEEN_SEPARATOR, Seen, seen_parts
from clearing_core.ingest.seen_text import seen_entries
from clearing_services.ingest.seen_checkpoint import Checkpoints, Found, Manifest
from clearing_services.ingest.seen_disk import DiskEntries
from clearing_services.kafka.topics import EVENT_TOPICS

SEEN_TOPIC_PREFIX = "clearing.ingest.seen."
SEEN_CHUNK_EVENTS = 2_000  # events per SeenEvents record: well under the 1 MiB record limit
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


class SeenStore:
    """Per owned source partition, event id -> seen entry (``ingest.seen_entry``);
    on disk under ``disk_dir`` when given (checkpointed under ``checkpoints`` when
    given), else in memory."""

    def __init__(self, disk_dir: Path | None = None, checkpoints: Checkpoints | None = None,
                 ) -> None:  # fmt: skip
        assert checkpoints is None or disk_dir is not None, "checkpoints are of the disk store"
        self._partitions: dict[TopicPartitionKey, _Partition | DiskEntries] = {}
        self.disk_dir = disk_dir
        self.checkpoints = checkpoints
        self.cache = Cache(BLOCK_CACHE_BYTES) if disk_dir is not None else None
        self.unchecked: dict[TopicPartitionKey, int] = {}  # ids added since the last checkpoint

    def assign(
        self, tp: TopicPartitionKey, records: Iterable[Mapping[str, Any]],
        found: Found | None = None,
    ) -> int:  # fmt: skip
        """Take a partition over, with the ``SeenEvents`` records of its seen topic
        (after the checkpoint ``found``, where one is restored: disk only)."""
        self.revoke(tp)
        partition: _Partition | DiskEntries
        if self.disk_dir is None:
            assert found is None, "a checkpoint restores the disk store only"
            partition = _Partition()
        else:
            assert self.cache is not None
            path = self.disk_dir / f"{tp[0]}-{tp[1]}"
            if found is None:
                partition = DiskEntries(path, self.cache)
            else:
                assert self.checkpoints is not None, "a checkpoint restores a checkpointed store"
                partition = self.checkpoints.restore(found, path, self.cache)
        added = 0
        for record in records:  # the newest time from the record's columns: no entry parsed
            newest_ms = max((int(e["event_time_ms"]) for e in record["events"]), default=0)
            updates = updates_of(record)
            partition.add(updates, newest_ms)
            added += len(updates)
        self._partitions[tp] = partition
        self.unchecked[tp] = added
        return len(partition)

    def revoke(self, tp: TopicPartitionKey) -> None:
        partition = self._partitions.pop(tp, None)
        self.unchecked.pop(tp, None)
        if isinstance(partition, DiskEntries):
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
        self.unchecked[tp] = self.unchecked.get(tp, 0) + len(updates)

    def checkpoint(self, tp: TopicPartitionKey, topic_id: str, seen_offset: int) -> Path:
        """Checkpoint an owned partition on disk as covering its seen topic before
        ``seen_offset`` (the caller's word: the last committed SeenEvents record + 1)."""
        partition = self._partitions[tp]
        assert self.checkpoints is not None
        assert isinstance(partition, DiskEntries)
        manifest = Manifest(seen_topic(tp[0]), tp[1], topic_id, seen_offset, dict(partition.days))
        folder = self.checkpoints.write(partition, manifest)
        self.unchecked[tp] = 0
        return folder

    def forget_before(self, horizon_ms: int, tp: TopicPartitionKey) -> int:
        """Forget the owned partition ``tp``'s ids older than ``horizon_ms`` (each partition
        by its own log time); the count forgotten."""
        return self._partitions[tp].forget_before(horizon_ms)

    def __len__(self) -> int:
        return sum(len(p) for p in self._partitions.values())

    def disk_memory_bytes(self) -> int:
        """What RocksDB holds in memory for the owned partitions (0 in memory mode, where
        the ids themselves are the Python heap)."""
        parts = [p.memory_bytes() for p in self._partitions.values() if isinstance(p, DiskEntries)]
        cache = int(self.cache.get_usage()) if self.cache is not None else 0
        return sum(parts) + cache

    def disk_bytes(self) -> int:
        """The owned partitions' database files (0 in memory mode)."""
        parts = self._partitions.values()
        return sum(p.disk_bytes() for p in parts if isinstance(p, DiskEntries))

    def filter_bytes(self) -> int:
        """The Bloom filters' bits in front of the owned partitions' databases (1.25 to
        2.5 bytes per id held: segments double), on the Python heap."""
        parts = self._partitions.values()
        return sum(p.filter.nbytes for p in parts if isinstance(p, DiskEntries))


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
