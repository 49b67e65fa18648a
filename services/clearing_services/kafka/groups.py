"""Consumer groups from outside: what a group has committed, and how far behind it is.

For the lag gauge and ``clearing lag``, the stall watchdog, the dashboard and the
demo; none of them joins the group it asks about.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from clearing_services.kafka.clients import consumer_config
from clearing_services.kafka.settling import watermarks


def committed_offsets(
    bootstrap: str, group: str, partitions: Iterable[tuple[str, int]], timeout_seconds: float = 10.0
) -> dict[tuple[str, int], int]:
    """A consumer group's committed offset of each partition (-1 where it has none).

    Asked by a consumer of the group that never joins it, read_uncommitted (the last
    commit, not waiting for one a transaction holds pending). Why not the admin
    client's ``list_consumer_group_offsets``: librdkafka then follows a
    ``NOT_COORDINATOR`` answer, which a broker gives while a group's coordinator
    moves or loads (every broker restart), into the admin client's missing group
    handle, and the whole worker dies of SIGSEGV without a word (librdkafka issue
    #5040; three times in one chaos run of four broker restarts)."""
    wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not wanted:
        return {}
    config = consumer_config(bootstrap, group, **{"isolation.level": "read_uncommitted"})
    probe = Consumer(config)
    try:
        answer = probe.committed(wanted, timeout=timeout_seconds)
    finally:
        probe.close()
    out = {}
    for tp in answer:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[(tp.topic, tp.partition)] = int(tp.offset) if tp.offset >= 0 else -1
    return out


def partitions_in(
    client: Consumer | AdminClient,
    topics: Iterable[str] | None = None,
    timeout_seconds: float = 10.0,
) -> list[tuple[str, int]]:
    """Every (topic, partition) of ``topics`` that exists now; without ``topics``, of
    every topic but Kafka's own (``__consumer_offsets``, ...)."""
    metadata = client.list_topics(timeout=timeout_seconds).topics
    if topics is None:
        names = sorted(name for name in metadata if not name.startswith("__"))
    else:
        names = [name for name in topics if name in metadata]
    return [(name, p) for name in names if metadata[name].error is None
            for p in sorted(metadata[name].partitions)]  # fmt: skip


def group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> dict[str, int]:
    """Per topic of ``topics``, the records a consumer group has not committed yet
    (never negative); partitions the group has never committed are left out."""
    probe = Consumer(consumer_config(bootstrap, f"{group}-lag-probe"))
    lag: dict[str, int] = {}
    try:
        committed = committed_offsets(bootstrap, group, partitions_in(probe, topics))
        for (topic, partition), offset in committed.items():
            if offset >= 0:
                end = watermarks(probe, TopicPartition(topic, partition))[1]
                lag[topic] = lag.get(topic, 0) + max(0, end - offset)
        return lag
    finally:
        probe.close()


def group_offsets(
    bootstrap: str, group: str, owned: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, int]]:
    """(committed, log end) of the given partitions for a consumer group; a partition
    with no commit yet counts from its log start."""
    committed = committed_offsets(bootstrap, group, owned)
    probe = Consumer(consumer_config(bootstrap, f"{group}-offsets-probe"))
    try:
        out = {}
        for topic, partition in owned:
            low, high = watermarks(probe, TopicPartition(topic, partition))
            start = committed.get((topic, partition), -1)
            out[(topic, partition)] = (start if start >= 0 else low, high)
        return out
    finally:
        probe.close()
