"""Reading consumer lag from Kafka: groups, committed offsets, log offsets, record times.

Why this shape: the numbers come from the same requests that Kafka's own
``kafka-consumer-groups --describe`` makes (OffsetFetch for committed offsets,
ListOffsets at ``latest`` with read_uncommitted for the log end, DescribeGroups for
the state and the assignment), so both agree. Statuses and time estimates are the
pure ``clearing_core.operations.lag``; this module only samples and probes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from clearing_core.operations.lag import (
    GroupReport,
    OffsetSample,
    PartitionWindow,
    evaluate_partition,
    judged,
)
from clearing_services.kafka.clients import admin_client, consumer_config
from clearing_services.operations.group_sample import (
    REQUEST_TIMEOUT_SECONDS,
    TP,
    GroupProbe,
    GroupSample,
    lag_error,
)
from clearing_services.operations.group_sample import GroupNotFoundError as GroupNotFoundError
from clearing_services.operations.group_sample import LagError as LagError

PROBE_TIMEOUT_SECONDS = 5.0
READ_WAIT_SECONDS = 0.2  # one consume() while reading the records at the given offsets
TIMESTAMP_NOT_AVAILABLE = 0


_PROBE_CONFIG: dict[str, str | int | float | bool] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_uncommitted",
    "enable.partition.eof": True,
    "fetch.max.bytes": 1 << 20,
    "max.partition.fetch.bytes": 1 << 16,
}


def list_groups(admin: AdminClient) -> list[str]:
    """Every consumer group the cluster knows, sorted. A broker that did not answer is
    an error, not fewer groups: no answer at all once read as "no consumer groups"."""
    try:
        result = admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_SECONDS).result()
    except KafkaException as exc:
        raise lag_error("listing consumer groups", exc) from exc
    if result.errors:
        raise lag_error("listing consumer groups", KafkaException(result.errors[0]))
    return sorted({listing.group_id for listing in result.valid})


def _spec(name: str) -> OffsetSpec:
    """``OffsetSpec.earliest()`` / ``.latest()`` (untyped in confluent-kafka's stubs)."""
    factory: Callable[[], OffsetSpec] = getattr(OffsetSpec, name)
    return factory()


class StaleLeaderError(LagError):
    """The admin client asked a partition's former leader, or with its former epoch."""


# librdkafka's admin client keeps asking with the leader epoch it knew before a
# failover, and the new leader refuses it (FENCED_LEADER_EPOCH) at every later
# request, for minutes (the three-node chaos run): only a new client asks afresh.
# After two of three nodes came back, its cache found no leaders at all (_NOENT).
_LEADER_MOVED = {KafkaError.FENCED_LEADER_EPOCH, KafkaError.NOT_LEADER_FOR_PARTITION,
                 KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError._NOENT}  # fmt: skip


def log_offsets(admin: AdminClient, partitions: Iterable[TP]) -> dict[TP, tuple[int, int]]:
    """(log start, log end) of each partition, as ``kafka-consumer-groups`` reads them
    (ListOffsets, read_uncommitted: the log end is the high watermark). A partition whose
    topic is gone is left out."""
    wanted = sorted(set(partitions))
    if not wanted:
        return {}
    found: dict[TP, list[int]] = {tp: [0, 0] for tp in wanted}
    for index, spec in ((0, _spec("earliest")), (1, _spec("latest"))):
        futures = admin.list_offsets(
            {TopicPartition(t, p): spec for t, p in wanted}, request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        for tp, future in futures.items():
            key = (tp.topic, tp.partition)
            try:
                found[key][index] = int(future.result().offset)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() in {
                    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
                    KafkaError._UNKNOWN_TOPIC,
                }:  # fmt: skip
                    found.pop(key, None)
                    continue
                what = f"log offsets of {tp.topic}[{tp.partition}]"
                if isinstance(error, KafkaError) and error.code() in _LEADER_MOVED:
                    raise StaleLeaderError(str(lag_error(what, exc))) from exc
                raise lag_error(what, exc) from exc
    return {tp: (v[0], v[1]) for tp, v in found.items()}


def probe_record_times(
    bootstrap: str, positions: dict[TP, int], timeout_seconds: float = PROBE_TIMEOUT_SECONDS
) -> dict[TP, int | None]:
    """Timestamp (ms) of the first record at or after each position, read by a
    short-lived consumer that joins no group and commits nothing. None: no data record
    there (only transaction markers up to the log end); 0: a record without time.
    Partitions not answered within ``timeout_s`` are left out."""
    if not positions:
        return {}
    consumer = Consumer(
        consumer_config(
            bootstrap,
            f"clearing-lag-probe-{uuid.uuid4().hex[:8]}",  # never joined
            **_PROBE_CONFIG,
        )
    )
    found: dict[TP, int | None] = {}
    try:
        consumer.assign([TopicPartition(t, p, max(0, o)) for (t, p), o in positions.items()])
        deadline = time.monotonic() + timeout_seconds
        while len(found) < len(positions) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=READ_WAIT_SECONDS):
                key = (str(message.topic()), int(message.partition() or 0))
                if key in found or key not in positions:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        found[key] = None
                        consumer.pause([TopicPartition(*key)])
                    continue
                _kind, stamp = message.timestamp()
                found[key] = int(stamp) if stamp > 0 else TIMESTAMP_NOT_AVAILABLE
                consumer.pause([TopicPartition(*key)])
    finally:
        consumer.close()
    return found


class LagMonitor:
    """Samples groups and keeps a bounded window per (group, topic, partition)."""

    def __init__(
        self,
        bootstrap: str,
        groups: Sequence[str] | None = None,
        *,
        window: int = 30,
        admin: AdminClient | None = None,
        require: bool | None = None,
    ) -> None:
        """``require``: a named group that does not exist is an error (the default
        where groups are named)."""
        self.bootstrap = bootstrap
        self.groups = list(dict.fromkeys(groups)) if groups else None
        self.require = self.groups is not None if require is None else require
        self.window = max(2, window)
        self.admin = admin or admin_client(bootstrap)
        self.windows: dict[str, dict[TP, PartitionWindow]] = {}
        self.latest: dict[str, GroupSample] = {}
        self.probe = GroupProbe(bootstrap)  # DescribeConsumerGroups in a child: why there

    def close(self) -> None:
        self.probe.close()

    def log_offsets(self, partitions: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        """``log_offsets``, asked again by a new admin client where a broker died
        since the last request (``_LEADER_MOVED``)."""
        wanted = list(partitions)
        try:
            return log_offsets(self.admin, wanted)
        except StaleLeaderError:
            self.admin = admin_client(self.bootstrap)
            return log_offsets(self.admin, wanted)

    def __enter__(self) -> LagMonitor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def sample(self, now_ms: int | None = None) -> None:
        """One sample of every group (or of the named ones) and their partitions."""
        names = self.groups if self.groups is not None else list_groups(self.admin)
        samples = self.probe.sample(names, require=self.require)
        ends = self.log_offsets(tp for s in samples for tp in s.committed)
        at_ms = int(time.time() * 1000) if now_ms is None else now_ms
        seen = set()
        for group_sample in samples:
            seen.add(group_sample.group)
            self.latest[group_sample.group] = group_sample
            windows = self.windows.setdefault(group_sample.group, {})
            for tp, committed in group_sample.committed.items():
                if tp not in ends or not judged(tp[0], committed):
                    continue
                start, end = ends[tp]
                window = windows.setdefault(tp, PartitionWindow(max_samples=self.window))
                window.add(OffsetSample(at_ms, committed, end, start))
            for tp in [tp for tp in windows if tp not in group_sample.committed]:
                del windows[tp]  # offsets deleted or expired: no longer the group's
        for gone in [g for g in self.latest if g not in seen]:
            del self.latest[gone]
            self.windows.pop(gone, None)

    def report(self, *, probe: bool = True, now_ms: int | None = None) -> list[GroupReport]:
        """Reports of the groups as of the newest sample. ``probe``: read the record at
        each lagging committed offset for its time where the window cannot tell."""
        at_ms = int(time.time() * 1000) if now_ms is None else now_ms
        times: dict[tuple[str, TP], int | None] = {}
        if probe:
            pending: dict[tuple[TP, int], list[str]] = {}
            for group, windows in self.windows.items():
                for tp, window in windows.items():
                    latest = window.samples[-1]
                    if latest.lag > 0:
                        position = (
                            latest.log_start if latest.committed is None else latest.committed
                        )
                        pending.setdefault((tp, position), []).append(group)
            while pending:  # one consumer holds one position per partition: rounds
                round_: dict[TP, int] = {}
                for tp, position in pending:
                    round_.setdefault(tp, position)
                found = probe_record_times(self.bootstrap, round_)
                for tp, position in round_.items():
                    for group in pending.pop((tp, position)):
                        if tp in found:
                            times[(group, tp)] = found[tp]
        reports = []
        for group in sorted(self.windows):
            info = self.latest[group]
            partitions = []
            for tp in sorted(self.windows[group]):
                probed = (group, tp) in times
                partitions.append(
                    evaluate_partition(
                        tp[0],
                        tp[1],
                        self.windows[group][tp],
                        active=info.active,
                        now_ms=at_ms,
                        record_time_ms=times.get((group, tp)),
                        record_probed=probed,
                    )
                )
            reports.append(GroupReport(group, info.state, info.members, tuple(partitions)))
        return reports


def sample_window(
    monitor: LagMonitor, samples: int, interval_seconds: float, *, probe: bool = True
) -> list[GroupReport]:
    """One-shot mode: ``samples`` looks ``interval_s`` apart, then the reports."""
    for i in range(max(1, samples)):
        if i:
            time.sleep(interval_seconds)
        monitor.sample()
    return monitor.report(probe=probe)
