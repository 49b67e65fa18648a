"""The ingest stage: a transactional consume-check-price-produce loop on the three
event topics.

Why a confluent-kafka batch loop and not a Faust agent: Faust builds an event,
a future and an acknowledgement per record, and its per-record machinery was
73% of an ingest worker's time, capping it near a naive per-event agent's
rate (docs/performance-history.md). Here one ``consume()`` takes up to
``CLEARING_INGEST_BATCH_MAX`` records (50,000), the pure core checks and prices them, the
obligations of the whole batch are pre-aggregated, and the obligations, the
dead letters, the de-duplication state (``SeenEvents``) and the consumer
offsets are written in one Kafka transaction (exactly-once, with zombie
fencing through the consumer group's metadata, KIP-447). A crash before the
commit leaves nothing visible; the next owner re-reads the same records.

Error policy: a bad record becomes a dead-letter record with its reason; any
other error ends the process (``failure.fatal``) with nothing committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from operator import ne
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from clearing_core.encoding.codec import Codec
from clearing_core.errors import ClearingError
from clearing_core.ingest.batch import RawBatch
from clearing_core.ingest.checks import DEFAULT_LIMITS, ValidationLimits
from clearing_core.ingest.records import Seen
from clearing_core.refdata import ReferenceData
from clearing_services.ingest.prepare import (
    REHEARSAL_EVENTS,
    BatchOutput,
    BatchPreparer,
    Groups,
    rehearsal_events,
)
from clearing_services.ingest.seen_checkpoint import Checkpoints
from clearing_services.ingest.seen_store import SEEN_TOPIC_PREFIX, SeenStore, seen_topic
from clearing_services.kafka.clients import (
    READ_SECONDS_MAX,
    admin_client,
    consumer_config,
    log_ends,
    message_columns,
    produce_one,
    producer_config,
    read_range,
    send_offsets,
    transaction_abortable,
)
from clearing_services.kafka.topics import (
    DLQ_TOPIC,
    EVENT_TOPIC_NAMES,
    OBLIGATIONS_TOPIC,
    topic_ids,
)
from clearing_services.runtime.failure import deadline
from clearing_services.runtime.metrics import Metrics, StageTiming
from clearing_services.settings import DEFAULT_CHECKPOINT_IDS, DEFAULT_INGEST_BATCH_MAX

GROUP = "clearing-ingest"
CONSUME_BATCH_MAX = DEFAULT_INGEST_BATCH_MAX
CONSUME_WAIT_SECONDS = 0.25
TRANSACTION_SECONDS_MAX = 60.0
RESTORE_SECONDS_MAX = READ_SECONDS_MAX  # waits out a transaction a dead owner left open
SWEEP_EVERY_MS = 60_000  # of a partition's log time: how often its ids past the window go
_log = logging.getLogger("clearing.ingest")


class IngestWorker:
    """Owns a consumer in the ingest group and a transactional producer."""

    def __init__(
        self, bootstrap: str, codec: Codec, refdata: Callable[[], ReferenceData],
        worker_id: str, metrics: Metrics | None = None,
        limits: ValidationLimits = DEFAULT_LIMITS, seen_dir: Path | None = None,
        batch_max: int = CONSUME_BATCH_MAX, checkpoint_dir: Path | None = None,
        checkpoint_ids: int = DEFAULT_CHECKPOINT_IDS,
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.codec = codec
        self.refdata = refdata
        self.metrics = metrics or Metrics()
        self.limits = limits
        self.batch_max = batch_max
        # on disk when given a folder, checkpointed when given another
        checkpoints = Checkpoints(checkpoint_dir) if checkpoint_dir and seen_dir else None
        self.seen = SeenStore(seen_dir, checkpoints)
        self.checkpoint_ids = checkpoint_ids
        self._swept_ms: dict[tuple[str, int], int] = {}
        # per source partition, of the open transaction: its SeenEvents records not yet
        # acknowledged, and the highest offset acknowledged
        self._seen_sent: dict[tuple[str, int], tuple[int, int]] = {}
        self._event_topic = {seen_topic(topic): topic for topic in EVENT_TOPIC_NAMES}
        self._topic_ids: dict[str, str] = {}
        self.timing = StageTiming(_log)
        self.preparer = BatchPreparer(codec, refdata, limits)
        overrides: dict[str, str | int | float | bool] = {
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,  # a killed worker's partitions move on in seconds
            "heartbeat.interval.ms": 3_000,
        }
        self.consumer = Consumer(consumer_config(bootstrap, GROUP, **overrides))
        transactional: dict[str, str | int | float | bool] = {
            "transactional.id": f"clearing-ingest-{worker_id}",
            "queue.buffering.max.messages": 4 * batch_max,
        }
        self.producer = Producer(producer_config(bootstrap, **transactional))
        self.producer.init_transactions(TRANSACTION_SECONDS_MAX)

    def owned(self) -> list[tuple[str, int]]:
        """The event partitions this worker owns now (for the stall watchdog); none
        once the consumer is closed (the loop has ended, so nothing can stall)."""
        try:
            assignment = self.consumer.assignment()
        except RuntimeError:  # "Consumer closed": the process is stopping
            return []
        return sorted((tp.topic, tp.partition) for tp in assignment)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Restore each new partition's de-duplication state before taking events.
        The committed offsets are asked first: that waits for any transaction a
        previous owner left open, so the seen topic is complete when it is read."""
        consumer.committed(partitions, timeout=RESTORE_SECONDS_MAX)
        for tp in partitions:
            self._restore((tp.topic, tp.partition))

    def _restore(self, tp: tuple[str, int]) -> None:
        """The partition's newest checkpoint, where one is usable, and the seen topic
        after it; else the whole seen topic."""
        started, topic = time.perf_counter(), seen_topic(tp[0])
        ((low, high),) = log_ends(self.bootstrap, topic, [tp[1]]).values()
        checkpoints = self.seen.checkpoints
        found = None
        if checkpoints is not None:
            found = checkpoints.newest(topic, tp[1], self._topic_id(topic))
        if found is not None and not found.manifest.seen_offset <= high:
            _log.warning("ingest: %s ignored: past the log end %d", found.folder, high)
            found = None
        start = low if found is None else max(low, found.manifest.seen_offset)
        records = self._seen_records(topic, tp[1], start, high)
        try:
            count = self.seen.assign(tp, records, found)
        except (OSError, ValueError) as exc:  # a damaged checkpoint: the whole log instead
            _log.warning("ingest: checkpoint %s unusable (%s); reading the seen log", found, exc)
            records = self._seen_records(topic, tp[1], low, high)
            count, found = self.seen.assign(tp, records), None
        where = "no checkpoint" if found is None else f"checkpoint at {start}"
        seconds, source = time.perf_counter() - started, "log" if found is None else "checkpoint"
        self.metrics.restore_seconds.labels(source).observe(seconds)
        self.metrics.restore_records.labels(source).inc(len(records))
        _log.info("ingest: took %s[%d] with %d event ids (%s, %d records after it) in %.2f s",
                  tp[0], tp[1], count, where, len(records), seconds)  # fmt: skip

    def _seen_records(self, topic: str, partition: int, start: int, end: int) -> list[Any]:
        """The decoded ``SeenEvents`` records of ``topic[partition]`` in [start, end)."""
        if start >= end:  # nothing after the checkpoint (or an empty log)
            return []
        records = read_range(self.bootstrap, topic, partition, start, end, RESTORE_SECONDS_MAX)
        decoded = [self.codec.decode(r.value, topic=topic) for r in records]
        if any(d.name != "SeenEvents" for d in decoded):
            raise ClearingError(f"{topic}[{partition}] holds a record not SeenEvents")
        return [d.record for d in decoded]

    def _topic_id(self, topic: str) -> str:
        if topic not in self._topic_ids:
            admin = admin_client(self.bootstrap)
            self._topic_ids.update(topic_ids(admin, [topic], RESTORE_SECONDS_MAX))
        return self._topic_ids[topic]

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.seen.revoke((tp.topic, tp.partition))

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; any unexpected error is raised to the caller,
        which must end the process (nothing past the last transaction was committed)."""
        self.consumer.subscribe(
            list(EVENT_TOPIC_NAMES), on_assign=self._on_assign,
            on_revoke=self._on_revoke, on_lost=self._on_revoke,
        )  # fmt: skip
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                messages = self.consumer.consume(self.batch_max, timeout=CONSUME_WAIT_SECONDS)
                self.timing.add("consume", time.perf_counter() - t0, len(messages))
                if messages:
                    self.handle(messages)
                if self.timing.maybe_log():
                    self._log_seen()
        finally:
            self.consumer.close()
            self.seen.close()

    def _log_seen(self) -> None:
        seen = self.seen
        _log.info("ingest: %d event ids held, RocksDB memory %.1f MB, filters %.1f MB",
                  len(seen), seen.disk_memory_bytes() / 1e6, seen.filter_bytes() / 1e6)  # fmt: skip

    def handle(self, messages: list[Message]) -> None:
        """Turn one consumed batch into its outputs and commit them with the offsets."""
        t0 = time.perf_counter()
        output = self.prepare(_by_partition(messages))
        t1 = time.perf_counter()
        try:
            with deadline(2 * TRANSACTION_SECONDS_MAX, "an ingest transaction"):
                self._transact(output)
        except KafkaException as exc:
            if not transaction_abortable(exc):
                raise
            self._rewind(output.firsts, exc)
            return
        self.timing.add("prepare", t1 - t0, len(messages))
        self.timing.add("commit", time.perf_counter() - t1, len(output.sends))
        for tp, (updates, newest_ms) in output.accepted.items():
            self.seen.add(tp, updates, newest_ms)
        self._keep_state(output)
        self._count(output)

    def _keep_state(self, output: BatchOutput) -> None:
        """After a commit: each partition's ids past the window (by its own newest log
        time, the validator's reference) go; a partition that took enough ids since its
        last checkpoint, and whose seen records of this transaction were all
        acknowledged, is checkpointed at the offset after them."""
        for tp, log_ms in output.log_ms.items():
            if log_ms - self._swept_ms.get(tp, 0) > SWEEP_EVERY_MS:
                self._swept_ms[tp] = log_ms
                self.seen.forget_before(log_ms - output.window_ms, tp)
        if self.seen.checkpoints is None:
            return
        self.producer.poll(0)  # any acknowledgement not yet handed over
        for tp, (pending, last) in self._seen_sent.items():
            if pending == 0 and self.seen.unchecked.get(tp, 0) >= self.checkpoint_ids:
                self.seen.checkpoint(tp, self._topic_id(seen_topic(tp[0])), last + 1)
                self.metrics.checkpoints.inc()

    def _seen_delivered(self, error: KafkaError | None, message: Message) -> None:
        """A ``SeenEvents`` record's acknowledgement: its offset, for the checkpoint."""
        if error is not None:
            return  # the transaction fails, and with it this batch
        tp = (self._event_topic[message.topic() or ""], message.partition() or 0)
        pending, last = self._seen_sent[tp]
        self._seen_sent[tp] = (pending - 1, max(last, message.offset() or 0))

    def rehearse(self, now_ms: int) -> BatchOutput:
        """Prepare a throwaway batch of generated valid events of each type the reference
        data can make, against an empty seen state; nothing is written or kept. Why: a
        process's first batch loads every kernel of the lane, the aggregation and the
        writers from Numba's cache (0.6 s measured; seconds with a cold cache). A
        worker rehearses at start, as the netting stage rehearses a close, so that no
        real batch waits for it."""
        started = time.perf_counter()
        groups = rehearsal_events(self.refdata(), self.codec, now_ms, REHEARSAL_EVENTS)
        output = self.prepare(groups, seen_of=lambda tp: {})
        count = sum(map(len, groups.values()))
        ms = 1000 * (time.perf_counter() - started)
        _log.info("ingest: rehearsed a batch of %d events in %.0f ms", count, ms)
        return output

    def prepare(
        self, groups: Groups, seen_of: Callable[[tuple[str, int]], Seen] | None = None
    ) -> BatchOutput:
        """``BatchPreparer.prepare``, against the store's seen ids unless ``seen_of``."""
        return self.preparer.prepare(groups, seen_of or self.seen.of)

    def _transact(self, output: BatchOutput) -> None:
        producer = self.producer
        producer.begin_transaction()
        self._seen_sent = {}
        try:
            for topic, key, value, partition in output.sends:
                if topic.startswith(SEEN_TOPIC_PREFIX):
                    tp = (self._event_topic[topic], partition)
                    pending, last = self._seen_sent.get(tp, (0, -1))
                    self._seen_sent[tp] = (pending + 1, last)
                    produce_one(producer, topic, key, value, partition, self._seen_delivered)
                    continue
                produce_one(producer, topic, key, value, partition)
            send_offsets(producer, output.offsets, self.consumer, "an ingest transaction's offsets")
            producer.commit_transaction(TRANSACTION_SECONDS_MAX)
        except KafkaException:
            producer.abort_transaction(TRANSACTION_SECONDS_MAX)
            raise

    def _rewind(self, batch: list[TopicPartition], exc: KafkaException) -> None:
        """After an aborted transaction, read the batch again where this worker still
        owns its partitions: nothing of it was written, its offsets included. A
        partition the rebalance took is the new owner's, from the committed offset."""
        self.metrics.aborted.labels("ingest").inc()
        _log.warning("ingest: transaction aborted (%s); the batch is read again", exc)
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for tp in batch:
            if (tp.topic, tp.partition) in owned:
                self.consumer.seek(tp)  # an error here ends the process: nothing is skipped

    def _count(self, output: BatchOutput) -> None:
        metrics = self.metrics
        for topic, count in output.events_per_topic.items():
            metrics.events_in.labels("ingest", topic).inc(count)
        metrics.records_out.labels(OBLIGATIONS_TOPIC).inc(output.obligations_out)
        metrics.aggregated.inc(output.obligations_in - output.obligations_out)
        if output.redelivered:
            metrics.redelivered.inc(output.redelivered)
            _log.warning(
                "ingest: %d records accepted before were read again (offsets moved "
                "back?); their obligations are on the log already",
                output.redelivered,
            )
        for code, count in output.rejects.items():
            metrics.rejects.labels("ingest", code).inc(count)
            metrics.records_out.labels(DLQ_TOPIC).inc(count)


def _by_partition(messages: list[Message]) -> Groups:
    """The batch's records per (topic, partition), in offset order, as columns (the
    consumer hands them over in runs per partition); a consumer error (not a record)
    ends the process: the broker or the group is in trouble."""
    batch = message_columns(messages)
    topics, partitions, count = batch.topics, batch.partitions, len(batch)
    if not count:
        return {}
    changed = np.fromiter(map(ne, topics[1:], topics[:-1]), np.bool_, count - 1)
    changed |= np.diff(np.asarray(partitions, np.int64)) != 0
    bounds = [0, *(np.flatnonzero(changed) + 1).tolist(), count]
    if len(bounds) == 2:  # one partition's records only
        return {(topics[0], partitions[0]): batch}
    runs: dict[tuple[str, int], list[RawBatch]] = {}
    for first, last in pairwise(bounds):
        runs.setdefault((topics[first], partitions[first]), []).append(batch[first:last])
    return {tp: RawBatch.concat(parts) for tp, parts in runs.items()}
