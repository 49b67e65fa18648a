"""confluent-kafka producers and consumers with the project's guarantees.

Why these settings: idempotent producers with ``acks=all`` so a retry never
duplicates a record; lz4 and a short linger so records travel in batches;
consumers that never auto-commit, so offsets are committed only after the
outputs of a batch are written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from clearing_core.errors import ClearingError

FLUSH_SECONDS_MAX = 60.0
_log = logging.getLogger("clearing.kafka")


class DeliveryError(ClearingError):
    """A record could not be written to Kafka."""

    reason_code = "DELIVERY_FAILED"


def producer_config(bootstrap: str, **overrides: str | int | float | bool) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "log_level": 3,
    }
    config.update(overrides)
    return config


def consumer_config(
    bootstrap: str, group: str, **overrides: str | int | float | bool
) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "log_level": 3,
    }
    config.update(overrides)
    return config


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record, detached from librdkafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


def produce_all(producer: Producer, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Produce every (key, value) and wait until all are acknowledged; raise on any failure."""
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    for key, value in items:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        count += 1
        producer.poll(0)
    remaining = producer.flush(FLUSH_SECONDS_MAX)
    if remaining:
        raise DeliveryError(
            f"{remaining} records to {topic} not delivered in {FLUSH_SECONDS_MAX} s"
        )
    if failures:
        raise DeliveryError(f"{len(failures)} records to {topic} failed: {failures[0]}")
    return count


def _detach(message: Message) -> Record:
    value = message.value()
    timestamp = message.timestamp()[1]
    return Record(
        topic=str(message.topic()),
        partition=int(message.partition() or 0),
        offset=int(message.offset() or 0),
        key=message.key() if isinstance(message.key(), bytes) else None,
        value=value if isinstance(value, bytes) else b"",
        timestamp_ms=int(timestamp),
    )


def consume_batches(
    consumer: Consumer, batch_size: int = 10_000, idle_timeout_s: float = 5.0,
    poll_timeout_s: float = 0.5,
) -> Iterator[list[Record]]:  # fmt: skip
    """Yield batches until nothing arrives for ``idle_timeout_s``; errors raise."""
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_timeout_s:
        messages = consumer.consume(num_messages=batch_size, timeout=poll_timeout_s)
        batch = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            batch.append(_detach(message))
        if batch:
            idle_since = time.monotonic()
            yield batch


def read_topic(bootstrap: str, topic: str, group: str, timeout_s: float = 60.0) -> list[Record]:
    """Read a whole topic as it stands now (every partition up to its high watermark);
    commits nothing. For tests, the demo and replay."""
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for batch in consume_batches(consumer, idle_timeout_s=0.5):
                for record in batch:
                    records.append(record)
                    if record.offset + 1 >= ends.get(record.partition, 0):
                        ends.pop(record.partition, None)
                if not ends:
                    break
        if ends:
            raise DeliveryError(f"{topic}: partitions {sorted(ends)} not read to the end in time")
        return records
    finally:
        consumer.close()
