"""Metadata and offset reads that outlast a broker's death.

Why: while a broker is down and its partitions' leadership moves (9 s of
``broker.session.timeout.ms`` before the controller fences it), a client's
requests fail in ways that cure themselves: no leader yet, a connection to the
dead node refused, a request that times out. The failover chaos run found a
complete read of ``clearing.cycles`` ending on one ``list_topics`` that timed out
10 s after a ``kill -9`` while two of three nodes answered. Reads that must finish
(``read_topic``, watermarks, the audits) ask again within their own limit, with
fresh metadata in between; any other error, or one past the limit, is raised.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from clearing_services.kafka.waits import LEADER_RETRY_SECONDS, METADATA_TIMEOUT_SECONDS

SETTLE_SECONDS_MAX = 30.0  # longer than a failover takes (fencing 9 s, then an election)
SETTLING_CODES = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
    KafkaError._DESTROY_BROKER, KafkaError._TIMED_OUT,
    # a group's coordinator is the leader of its __consumer_offsets partition: it moves
    # and loads like any other leader (a fresh cluster's first commits meet these)
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
})  # fmt: skip
T = TypeVar("T")


def settling(error: object) -> bool:
    """Whether a Kafka error is one that leadership settling cures."""
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in SETTLING_CODES)


def while_settling(
    attempt: Callable[[], T], refresh: Callable[[], object],
    timeout_seconds: float = SETTLE_SECONDS_MAX,
) -> T:  # fmt: skip
    """``attempt()``, asked again after ``refresh()`` while it fails with a settling
    error, until ``timeout_seconds`` have passed (then its last error is raised)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            return attempt()
        except KafkaException as exc:
            if not settling(exc.args[0] if exc.args else None) or time.monotonic() >= deadline:
                raise
        time.sleep(LEADER_RETRY_SECONDS)
        with contextlib.suppress(KafkaException):  # who leads now: not the dead one again
            refresh()


def topic_partitions(consumer: Consumer, topic: str) -> list[int]:
    """The partitions of ``topic`` (none where it does not exist), asked until the
    cluster answers."""

    def attempt() -> list[int]:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS).topics.get(topic)
        return [] if metadata is None else sorted(metadata.partitions)

    return while_settling(attempt, lambda: None)


def watermarks(
    consumer: Consumer, tp: TopicPartition, timeout_seconds: float = SETTLE_SECONDS_MAX
) -> tuple[int, int]:
    """(low, high) of a partition, asked until its leader answers (a new topic, a lost
    broker), with fresh metadata between tries."""

    def attempt() -> tuple[int, int]:
        low, high = consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_SECONDS)
        return int(low), int(high)

    def refresh() -> None:
        consumer.list_topics(tp.topic, timeout=METADATA_TIMEOUT_SECONDS)

    return while_settling(attempt, refresh, timeout_seconds)
