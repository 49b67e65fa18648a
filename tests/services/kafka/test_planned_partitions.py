"""A topic whose partitions are planned grows to the plan, and a producer that read the
topic's metadata before it grew still writes to the new partition (it asks again)."""

from __future__ import annotations

from confluent_kafka import Producer

from clearing_services.kafka.clients import (
    admin_client,
    produce_one,
    producer_config,
    read_topic,
)
from clearing_services.kafka.topics import TopicSpec, create_topics, ensure_partitions


def test_a_grown_topic_is_written_on_its_new_partition_by_a_running_producer(
    kafka_bootstrap: str, unique: str
) -> None:
    topic, admin = f"planned-{unique}", admin_client(kafka_bootstrap)
    assert ensure_partitions(admin, topic, 2) == 0  # missing: left to create_topics
    create_topics(admin, [TopicSpec(topic, 1, 1, {})])
    producer = Producer(producer_config(kafka_bootstrap))
    produce_one(producer, topic, b"k", b"before", 0)  # the producer knows one partition
    assert producer.flush(30) == 0
    assert ensure_partitions(admin, topic, 2) == 2
    assert ensure_partitions(admin, topic, 1) == 2  # never shrunk
    produce_one(producer, topic, b"k", b"after", 1)  # unknown to it until it asks again
    assert producer.flush(30) == 0
    written = {(r.partition, r.value) for r in read_topic(kafka_bootstrap, topic, f"g-{unique}")}
    assert written == {(0, b"before"), (1, b"after")}
