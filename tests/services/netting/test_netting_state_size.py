"""A cycle that defers many obligations under tight caps carries them in its
``NettingState`` record; that record must fit the codec, the netting producer and
the state topic, or the currency could never close again after a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer

from clearing_core.encoding.codec import RECORD_BYTES_MAX, RecordTooLargeError, SingleObjectCodec
from clearing_services.kafka.clients import admin_client, produce_all, producer_config, read_topic
from clearing_services.kafka.topics import TopicSpec, create_topics, load_topic_plan
from clearing_services.netting.worker import STATE_BYTES_MAX

CARRIED = 20_000  # about 2.6 MB of state


def state(carried: int) -> dict[str, Any]:
    return {
        "currency": "USD", "cycle_seq": 7, "source_partition": 1, "marker_offset": 99,
        "opened_at": datetime(2026, 11, 24, tzinfo=UTC), "recent_marker_offsets": [99],
        "recent_marker_ids": ["m-7"], "remainders": [],
        "carried": [{"obligation_id": f"p:deferred-payment-{i:09d}", "debtor_id": "DC-SZ-01",
                     "creditor_id": "SOLAR-QH-07", "amount_minor": 1_000 + i, "priority": 5,
                     "source": "PAYMENT"} for i in range(carried)],
    }  # fmt: skip


def test_a_large_netting_state_encodes_and_decodes(codec: SingleObjectCodec) -> None:
    record = state(CARRIED)
    data = codec.encode("NettingState", record)
    assert RECORD_BYTES_MAX < len(data) <= STATE_BYTES_MAX
    assert codec.decode(data).record["carried"] == record["carried"]


def test_other_types_keep_the_one_mebibyte_limit(codec: SingleObjectCodec) -> None:
    rejected = {"source_topic": "t", "source_partition": 0, "source_offset": 0,
                "source_key": None, "original": b"x" * (RECORD_BYTES_MAX + 1),
                "reason_code": "R", "message": "m", "stage": "ingest", "event_id": None,
                "currency": None, "principal": None,
                "rejected_at": datetime(2026, 11, 24, tzinfo=UTC)}  # fmt: skip
    with pytest.raises(RecordTooLargeError):
        codec.encode("Rejected", rejected)


def test_the_state_topic_and_the_netting_producer_take_it(
    kafka_bootstrap: str, codec: SingleObjectCodec, unique: str
) -> None:
    plan = load_topic_plan().get("clearing.netting.state")
    topic = f"state-size-{unique}"
    create_topics(admin_client(kafka_bootstrap), [TopicSpec(topic, 1, 1, plan.config)])
    data = codec.encode("NettingState", state(CARRIED))
    config = producer_config(kafka_bootstrap, **{"message.max.bytes": STATE_BYTES_MAX + (1 << 20)})
    assert produce_all(Producer(config), topic, [(b"USD", data)]) == 1
    (record,) = read_topic(kafka_bootstrap, topic, f"read-{unique}")
    assert codec.decode(record.value).record["carried"][-1]["amount_minor"] == 1_000 + CARRIED - 1
