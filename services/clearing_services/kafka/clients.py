"""confluent-kafka producers and consumers with the project's guarantees.

Why these settings: idempotent producers with ``acks=all`` so a retry never
duplicates a record; lz4 and a short linger so records travel in batches;
consumers that never auto-commit, so offsets are committed only after the
outputs of a batch are written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from clearing_core.errors import ClearingError
from clearing_core.ingest.batch import RawBatch, RawEvent
from clearing_core.ingest.identify import header_pairs
from clearing_services.kafka.settling import topic_partitions, watermarks
from clearing_services.kafka.waits import METADATA_TIMEOUT_SECONDS, QUEUE_DRAIN_SECONDS
from clearing_services.runtime.failure import deadline
from clearing_services.settings import process_client_security

FLUSH_SECONDS_MAX = 60.0
# One consume() of a read to the log end: at most this many records, waiting at most
# this long, before the read looks at its positions again.
READ_RECORDS_MAX = 10_000
READ_WAIT_SECONDS = 0.2
# How long the broker lets a transaction stay open (the transactional producers set
# it); it aborts one older than that at its next check, every 10 s by default.
TRANSACTION_TIMEOUT_MS = 60_000
TRANSACTION_CHECK_MS = 10_000
# How long a complete read (``read_topic``, ``read_partition``) waits for a
# transaction left open to be decided: longer than the broker takes to abort it.
READ_SECONDS_MAX = 120.0
assert READ_SECONDS_MAX * 1000 > TRANSACTION_TIMEOUT_MS + TRANSACTION_CHECK_MS
# send_offsets_to_transaction takes milliseconds, but can block for ever after a
# broker restart (``send_offsets``); past this the process ends and is restarted.
SEND_OFFSETS_SECONDS_MAX = 30.0
METADATA_SECONDS_MAX = 10.0  # a producer asking again for a topic's partitions
_log = logging.getLogger("clearing.kafka")


class DeliveryError(ClearingError):
    """A record could not be written to Kafka."""

    reason_code = "DELIVERY_FAILED"


# librdkafka writes its own log lines straight to stderr unless a client is given a
# logger: with no broker at the address, hundreds of them in a minute. Every client
# built here hands them to this logger instead, which the entry point routes (the CLI:
# only at --log-level debug, the workers' errors always); the clients' failures reach
# the caller anyway, as exceptions and delivery errors.
RDKAFKA_LOGGER = logging.getLogger("clearing.rdkafka")
RDKAFKA_ERRORS, RDKAFKA_DEBUG = 3, 7  # librdkafka's syslog levels


def show_rdkafka_logs(level: int | None) -> None:
    """Which of librdkafka's own log lines reach this process's log handlers: those at
    ``level`` (a ``logging`` level) and above, or none. For clients built after the call
    (``_client_config`` asks librdkafka for the lines the logger takes)."""
    RDKAFKA_LOGGER.setLevel(logging.CRITICAL + 1 if level is None else level)


def _client_config(bootstrap: str) -> dict[str, object]:
    """What every client built here shares: the address, librdkafka's log lines handed
    to ``RDKAFKA_LOGGER`` (below its errors only where the logger takes debug lines),
    and the process's connection profile (its settings' ``kafka_security``, from the
    same ``CLEARING_KAFKA_*`` variables: ``settings.process_client_security``)."""
    debug = RDKAFKA_LOGGER.isEnabledFor(logging.DEBUG)
    return {"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOGGER,
            "log_level": RDKAFKA_DEBUG if debug else RDKAFKA_ERRORS,
            **process_client_security().librdkafka()}  # fmt: skip


def admin_client(bootstrap: str, **overrides: Any) -> AdminClient:
    """An admin client of this process's profile (``_client_config``)."""
    config: dict[str, Any] = {**_client_config(bootstrap), **overrides}
    return AdminClient(config)


def producer_config(bootstrap: str, **overrides: str | int | float | bool) -> dict[str, object]:
    config: dict[str, object] = {
        **_client_config(bootstrap),
        # The Java clients' and aiokafka's (Faust's) partitioner: every producer of a
        # key must pick the same partition, or a currency's markers and obligations
        # would land on different partitions and lose their order.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.size": 1 << 20,
    }
    config.update(overrides)
    if "transactional.id" in config:  # the reads' READ_SECONDS_MAX rests on it
        config.setdefault("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
    return config


def send_offsets(
    producer: Producer, offsets: list[TopicPartition], consumer: Consumer, what: str
) -> None:
    """Add a consumer's offsets to the producer's open transaction, under a deadline.

    Why a deadline of its own, shorter than the transaction's: librdkafka's
    ``send_offsets_to_transaction`` ignores its timeout while it looks for a group
    coordinator it has dropped, and after a broker restart it blocks for ever
    (librdkafka issues #5456 and #5511; every ingest worker, at every broker restart
    of the chaos runs). Only a new process gets past it; nothing of the transaction
    was committed, so ending this one at once loses nothing and gets the partitions
    moving again sooner."""
    with deadline(SEND_OFFSETS_SECONDS_MAX, what):
        producer.send_offsets_to_transaction(
            offsets, consumer.consumer_group_metadata(), SEND_OFFSETS_SECONDS_MAX / 2
        )


def transaction_abortable(exc: KafkaException) -> bool:
    """A transaction error that aborting and reading the batch again cures (a
    rebalance made the group generation stale: ILLEGAL_GENERATION and the like),
    not one that ends the producer (fenced by a newer instance: fatal)."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.txn_requires_abort() and not error.fatal()


def consumer_config(
    bootstrap: str, group: str, **overrides: str | int | float | bool
) -> dict[str, object]:
    config: dict[str, object] = {
        **_client_config(bootstrap),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config


# Headers of a record as the producer takes them.
Headers = list[tuple[str, str | bytes | None]]

# A consumed record is the same thing the core's stages take as input.
Record = RawEvent


def produce_all(
    producer: Producer, topic: str, items: Iterable[tuple[bytes | None, bytes]],
    partition_of: Callable[[str, bytes | None], int] | None = None,
) -> int:  # fmt: skip
    """Produce every (key, value) and wait until all are acknowledged; raise on any failure."""
    records = ((topic, key, value) for key, value in items)
    return produce_records(producer, records, partition_of=partition_of)


def produce_one(
    producer: Producer, topic: str, key: bytes | None, value: bytes, partition: int = -1,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    headers: Headers | None = None,
) -> None:  # fmt: skip
    """Hand one record to the producer, waiting while its local queue is full;
    ``partition`` -1 lets the partitioner choose from the key. A partition the
    producer does not know yet (one added since its metadata was read, as for a new
    currency of clearing.obligations) makes it ask the metadata again, once."""
    asked = False
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition,
                             on_delivery=on_delivery, headers=headers)  # fmt: skip
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(QUEUE_DRAIN_SECONDS)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            unknown = (
                isinstance(error, KafkaError) and error.code() == KafkaError._UNKNOWN_PARTITION
            )
            if asked or not unknown:
                raise
            producer.list_topics(topic, timeout=METADATA_SECONDS_MAX)  # refreshes its cache
            asked = True


def produce_records(
    producer: Producer,
    items: Iterable[tuple[str, bytes | None, bytes]],
    headers_of: Callable[[str, bytes | None, bytes], Headers] | None = None,
    partition_of: Callable[[str, bytes | None], int] | None = None,
) -> int:
    """Produce every (topic, key, value), with the headers ``headers_of`` gives it, to the
    partition ``partition_of`` gives it (else the partitioner's, by key), and wait until
    all are acknowledged; raise on any failure. Blocking: call it on a thread from
    asynchronous code."""
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    topics: set[str] = set()
    for topic, key, value in items:
        headers = headers_of(topic, key, value) if headers_of is not None else None
        partition = partition_of(topic, key) if partition_of is not None else -1
        produce_one(producer, topic, key, value, partition, on_delivery, headers)
        count += 1
        topics.add(topic)
        producer.poll(0)
    remaining = producer.flush(FLUSH_SECONDS_MAX)
    where = ", ".join(sorted(topics))
    if remaining:
        raise DeliveryError(
            f"{remaining} records to {where} not delivered in {FLUSH_SECONDS_MAX} s"
        )
    if failures:
        raise DeliveryError(f"{len(failures)} records to {where} failed: {failures[0]}")
    return count


def record_of(message: Message) -> Record:
    """A consumed message as the core's ``RawEvent`` (no key: None; no value: b\"\")."""
    key, value, headers = message.key(), message.value(), message.headers()
    return Record(  # positional, and each accessor called once: one is built per record
        str(message.topic()), message.partition() or 0, message.offset() or 0,
        key if isinstance(key, bytes) else None, value if isinstance(value, bytes) else b"",
        message.timestamp()[1], header_pairs(headers) if headers else (),
    )  # fmt: skip


def records_of(messages: Sequence[Message]) -> list[Record]:
    """``record_of`` of each message, accessor by accessor over the whole batch (a
    C-level ``map`` each, not a Python call per record); a consumer error (not a
    record) is raised as ``KafkaException``."""
    return list(message_columns(messages))  # a RawBatch makes each record as it iterates


def message_columns(messages: Sequence[Message]) -> RawBatch:
    """The messages' fields as columns, one C-level ``map`` per accessor; a consumer
    error (not a record) is raised as ``KafkaException``."""
    errors = list(map(Message.error, messages))
    if not set(map(type, errors)) <= _NO_ERROR:  # by type: KafkaError == None raises
        raise KafkaException(next(e for e in errors if e is not None))
    keys: list[Any] = list(map(Message.key, messages))
    if not set(map(type, keys)) <= _KEY_TYPES:
        keys = [k if isinstance(k, bytes) else None for k in keys]
    values: list[Any] = list(map(Message.value, messages))
    if not set(map(type, values)) <= _VALUE_TYPES:
        values = [v if isinstance(v, bytes) else b"" for v in values]
    raw_headers = list(map(Message.headers, messages))
    headers = [header_pairs(h) if h else () for h in raw_headers] if any(raw_headers) else None
    # a consumed record's topic, partition and offset are never None
    topics: list[Any] = list(map(Message.topic, messages))
    partitions: list[Any] = list(map(Message.partition, messages))
    offsets: list[Any] = list(map(Message.offset, messages))
    times = list(map(_SECOND, map(Message.timestamp, messages)))
    return RawBatch(topics, partitions, offsets, keys, values, times, headers)


_KEY_TYPES, _VALUE_TYPES, _NO_ERROR = {bytes, type(None)}, {bytes}, {type(None)}
_SECOND = itemgetter(1)


def read_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int, timeout_seconds: float = 30.0
) -> list[Record]:
    """The committed records of one partition with offsets in ``[start, end)``; offsets
    held by transaction markers or aborted records yield nothing."""
    consumer = Consumer(consumer_config(bootstrap, f"clearing-range-{topic}"))
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        records: list[Record] = []
        deadline = time.monotonic() + timeout_seconds
        while True:
            records.extend(r for r in _poll(consumer) if start <= r.offset < end)
            (position,) = consumer.position([TopicPartition(topic, partition)])
            if position.offset >= end:
                return records
            if time.monotonic() > deadline:
                raise DeliveryError(
                    f"{topic}[{partition}] {start}..{end} not read in {timeout_seconds:.0f} s "
                    "(a transaction left open holds it back until it is decided)"
                )
    finally:
        consumer.close()


def consume_batches(
    consumer: Consumer, idle_timeout_seconds: float = 5.0
) -> Iterator[list[Record]]:
    """Yield batches until nothing arrives for ``idle_timeout_s``; errors raise."""
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_timeout_seconds:
        batch = _poll(consumer)
        if batch:
            idle_since = time.monotonic()
            yield batch


def read_topic(
    bootstrap: str, topic: str, group: str, timeout_seconds: float = READ_SECONDS_MAX,
    since_ms: int | None = None,
) -> list[Record]:  # fmt: skip
    """Read a whole topic as it stands now: the committed records of every partition up
    to its log end (``log_ends``), or those of log time ``since_ms`` and later; commits
    nothing. For tests, the demo, replay, the audit, state recovery and the DLQ tools.

    Done-ness is judged by the consumer's position, not by the offset of the last
    record seen: transaction markers occupy offsets that are never delivered. An
    open transaction holds the position back until it is decided, so the read waits
    for it (or raises ``DeliveryError`` after ``timeout_seconds``) rather than leave out
    what was committed after it."""
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        partitions = topic_partitions(consumer, topic)
        ends = {p: high for p, (low, high) in log_ends(bootstrap, topic, partitions).items()
                if high > low}  # fmt: skip
        starts = _starts(consumer, topic, ends, since_ms)
        ends = {p: end for p, end in ends.items() if p in starts}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        records: list[Record] = []
        deadline = time.monotonic() + timeout_seconds
        while ends and time.monotonic() < deadline:
            records.extend(_poll(consumer))
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            for tp in positions:
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        if ends:
            raise DeliveryError(f"{topic}: partitions {sorted(ends)} not read to their end in "
                                f"{timeout_seconds:.0f} s (a transaction left open holds them "
                                "back until it is decided)")  # fmt: skip
        return records
    finally:
        consumer.close()


def _starts(
    consumer: Consumer, topic: str, ends: dict[int, int], since_ms: int | None
) -> dict[int, int]:
    """Where to start reading each partition: its start, or its first record of log
    time ``since_ms`` or later (a partition with none that late is left out)."""
    if since_ms is None or not ends:
        return dict.fromkeys(ends, 0)
    wanted = [TopicPartition(topic, p, since_ms) for p in ends]
    found = consumer.offsets_for_times(wanted, timeout=METADATA_TIMEOUT_SECONDS)
    return {tp.partition: tp.offset for tp in found if 0 <= tp.offset < ends[tp.partition]}


def log_ends(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(log start, high watermark) of each partition, asked with read_uncommitted.

    Why not the reading consumer's own watermarks: under read_committed the broker
    answers with the last stable offset, which a transaction left open pins below
    everything committed after it began. A read that stops there looks complete
    but silently misses those records (an ingest worker restoring its seen state
    would forget accepted events; the audit would find obligations missing)."""
    probe = Consumer(consumer_config(bootstrap, f"clearing-ends-{topic}",
                                     **{"isolation.level": "read_uncommitted"}))  # fmt: skip
    try:
        return {p: watermarks(probe, TopicPartition(topic, p)) for p in partitions}
    finally:
        probe.close()


def _poll(consumer: Consumer) -> list[Record]:
    out = []
    for message in consumer.consume(num_messages=READ_RECORDS_MAX, timeout=READ_WAIT_SECONDS):
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(error)
        out.append(record_of(message))
    return out


def read_partition(
    bootstrap: str, topic: str, partition: int, timeout_seconds: float = READ_SECONDS_MAX
) -> list[Record]:
    """The committed records of one partition as it stands now (start to log end,
    waiting out a transaction left open: ``log_ends``)."""
    ((low, high),) = log_ends(bootstrap, topic, [partition]).values()
    return read_range(bootstrap, topic, partition, low, high, timeout_seconds) if high > low else []
