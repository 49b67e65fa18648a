"""The batch form of ``record_of`` (one C-level ``map`` per accessor) gives what the
per-message form gives, and the ingest loop's grouping keeps each partition's order.
Built from confluent-kafka's own ``Message`` objects: no broker needed."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from clearing_services.ingest.worker import _by_partition
from clearing_services.kafka.clients import record_of, records_of

METER = "clearing.events.meter"


def message(partition: int, offset: int, **fields: object) -> Message:
    given = {"topic": METER, "partition": partition, "offset": offset, "key": b"K",
             "value": b"v%d" % offset, "timestamp": (1, 1_795_000_000_000 + offset)}  # fmt: skip
    return Message(**(given | fields))


def test_records_are_record_of_each_message() -> None:
    batch = [
        message(0, 1), message(0, 2, key=None), message(1, 7, value=None),
        message(2, 3, headers=[("x-sig", b"s"), ("x-id", "text")]), message(0, 3, headers=[]),
    ]  # fmt: skip
    assert records_of(batch) == [record_of(m) for m in batch]
    assert records_of(batch)[2].value == b""  # no value: empty bytes, as record_of says
    assert records_of(batch)[3].headers == (("x-sig", b"s"), ("x-id", b"text"))
    assert records_of([]) == []


def test_a_consumer_error_is_raised() -> None:
    error = KafkaError(KafkaError._TRANSPORT)
    with pytest.raises(KafkaException) as raised:
        records_of([message(0, 1), message(0, 2, error=error)])
    assert raised.value.args[0].code() == KafkaError._TRANSPORT


def test_partitions_keep_their_order_across_runs() -> None:
    batch = [message(0, 1), message(0, 2), message(1, 5), message(0, 3), message(1, 6)]
    groups = _by_partition(batch)
    assert list(groups) == [(METER, 0), (METER, 1)]
    assert [r.offset for r in groups[(METER, 0)]] == [1, 2, 3]
    assert [r.offset for r in groups[(METER, 1)]] == [5, 6]


def test_runs_of_two_topics_on_the_same_partition_number_stay_apart() -> None:
    usage = "clearing.events.compute"
    batch = [message(0, 1), message(0, 1, topic=usage, headers=[("x-sig", b"s")]),
             message(0, 2), message(0, 2, topic=usage), message(1, 9)]  # fmt: skip
    groups = _by_partition(batch)
    assert list(groups) == [(METER, 0), (usage, 0), (METER, 1)]
    assert [r.offset for r in groups[(METER, 0)]] == [1, 2]
    assert [r.headers for r in groups[(usage, 0)]] == [(("x-sig", b"s"),), ()]
    assert list(groups[(METER, 1)]) == [record_of(batch[4])]
    assert _by_partition([]) == {}
    single = _by_partition([message(3, 4), message(3, 5)])
    assert list(single[(METER, 3)]) == [record_of(message(3, 4)), record_of(message(3, 5))]
