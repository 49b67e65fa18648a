"""Reads that a transaction left open must not fool. A read of "the whole topic as it
stands now" must not stop at one: under read_committed the broker's end offset is
the last stable offset, which such a transaction pins below records committed
after it. Stopping there looked complete but left them out (an ingest worker
restoring its seen state would forget accepted events; the chaos run's audit found
obligations "missing from the log"). And a group's committed offsets must be the
last commit, not wait for offsets such a transaction holds pending."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clearing_services.kafka.clients import (
    DeliveryError,
    Record,
    admin_client,
    consumer_config,
    log_ends,
    producer_config,
    read_partition,
    read_topic,
)
from clearing_services.kafka.groups import committed_offsets
from clearing_services.kafka.topics import TopicSpec, create_topics

TXN_SECONDS_MAX = 30.0


def transactional(bootstrap: str, name: str) -> Producer:
    producer = Producer(producer_config(bootstrap, **{"transactional.id": name}))
    producer.init_transactions(TXN_SECONDS_MAX)
    return producer


def committed(producer: Producer, topic: str, value: bytes) -> None:
    producer.begin_transaction()
    producer.produce(topic, value, partition=0)
    producer.commit_transaction(TXN_SECONDS_MAX)


def held_open(bootstrap: str, unique: str) -> tuple[str, Producer]:
    """A topic holding: b"first" (committed), b"open" (its transaction still open),
    b"after" (committed after the open one began)."""
    topic = f"open-txn-{unique}"
    create_topics(admin_client(bootstrap), [TopicSpec(topic, 1, 1)])
    other, held = transactional(bootstrap, f"c-{unique}"), transactional(bootstrap, f"o-{unique}")
    committed(other, topic, b"first")
    held.begin_transaction()
    held.produce(topic, b"open", partition=0)
    assert held.flush(TXN_SECONDS_MAX) == 0
    committed(other, topic, b"after")
    return topic, held


def values(records: list[Record]) -> list[bytes]:
    return [r.value for r in records]


READERS: dict[str, Callable[[str, str, float], list[Record]]] = {
    "read_topic": lambda bootstrap, topic, t: read_topic(bootstrap, topic, "g-open", t),
    "read_partition": lambda bootstrap, topic, t: read_partition(bootstrap, topic, 0, t),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("decision", ["abort", "commit"])
def test_a_read_waits_for_an_open_transaction_and_misses_nothing_committed_after_it(
    kafka_bootstrap: str, unique: str, reader: str, decision: str
) -> None:
    read = READERS[reader]
    topic, held = held_open(kafka_bootstrap, unique)
    assert log_ends(kafka_bootstrap, topic, [0]) == {0: (0, 5)}  # 3 records, 2 markers
    with pytest.raises(DeliveryError, match="transaction left open"):
        read(kafka_bootstrap, topic, 3.0)  # held back, never cut short
    if decision == "abort":
        held.abort_transaction(TXN_SECONDS_MAX)
        assert values(read(kafka_bootstrap, topic, 30.0)) == [b"first", b"after"]
    else:
        held.commit_transaction(TXN_SECONDS_MAX)
        assert values(read(kafka_bootstrap, topic, 30.0)) == [b"first", b"open", b"after"]


def test_committed_offsets_answers_the_last_commit_while_a_transaction_holds_one_pending(
    kafka_bootstrap: str, unique: str
) -> None:
    """The watchdog's probe: asked by a consumer of the group that never joins it (not
    the admin client, whose NOT_COORDINATOR path crashes librdkafka), and not held back
    by offsets a transaction has sent but not committed (a hung one is what it must see)."""
    topic, group = f"offsets-{unique}", f"g-{unique}"
    create_topics(admin_client(kafka_bootstrap), [TopicSpec(topic, 2, 1)])
    member = Consumer(consumer_config(kafka_bootstrap, group))
    member.subscribe([topic])
    member.consume(1, timeout=5.0)  # joins: the transaction's offsets carry its metadata
    member.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    held = transactional(kafka_bootstrap, f"o-{unique}")
    held.begin_transaction()
    held.send_offsets_to_transaction(
        [TopicPartition(topic, 0, 9)], member.consumer_group_metadata(), TXN_SECONDS_MAX
    )
    both = [(topic, 0), (topic, 1)]
    assert committed_offsets(kafka_bootstrap, group, both) == {(topic, 0): 3, (topic, 1): -1}
    held.commit_transaction(TXN_SECONDS_MAX)
    assert committed_offsets(kafka_bootstrap, group, both) == {(topic, 0): 9, (topic, 1): -1}
    member.close()
