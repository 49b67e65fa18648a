"""Single-object records cross between confluent-kafka (librdkafka) and a Faust
agent (aiokafka) on the real broker, both ways, and through a Schema Registry client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.kafka.clients import Record, produce_all, producer_config, read_topic
from clearing_services.kafka.topics import TopicSpec, create_topics
from tests.conftest import REPO
from tests.support.events import meter_reading


def _readings(count: int) -> list[dict[str, Any]]:
    """Readings of consecutive quarter hours, each a little different (meter, energy,
    quality), so that no two encode alike."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        meter_reading(f"m-{i}", 900_000 + i, at=t0 + timedelta(minutes=15 * (i + 1)),
                      meter_id=f"GS02-M{i % 3}",
                      reading_quality="ESTIMATED" if i % 7 == 0 else "ACTUAL")
        for i in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_confluent_to_faust_and_back(
    kafka_bootstrap: str,
    codec: SingleObjectCodec,
    unique: str,
    guarantee: str,
    tmp_path: Path,
) -> None:
    """confluent-kafka produces, a Faust agent consumes and decodes, the agent produces
    (in a Kafka transaction under exactly_once) and confluent-kafka reads it back."""
    topic_in, topic_out = f"interop.in.{unique}", f"interop.out.{unique}"
    create_topics(
        AdminClient({"bootstrap.servers": kafka_bootstrap}),
        [TopicSpec(topic_in, 3, 1), TopicSpec(topic_out, 3, 1)],
    )
    readings = _readings(200)
    produce_all(
        Producer(producer_config(kafka_bootstrap)), topic_in,
        [(r["event_id"].encode(), codec.encode("MeterReading", r)) for r in readings],
    )  # fmt: skip
    env = {**os.environ, "ECHO_BOOTSTRAP": kafka_bootstrap, "ECHO_IN": topic_in,
           "ECHO_OUT": topic_out, "ECHO_APP_ID": f"interop-{unique}",
           "ECHO_GUARANTEE": guarantee, "ECHO_DATADIR": str(tmp_path / "faust")}  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faust_echo", "worker", "-l", "warn",
         "--without-web"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        received = _wait_for(kafka_bootstrap, topic_out, len(readings), worker)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=60)[0].decode(errors="replace")
    assert len(received) == len(readings), output[-2000:]
    by_id = {r["event_id"]: r for r in readings}
    for record in received:
        assert record.value.startswith(codec.catalog.current("MeterReading").header)
        decoded = codec.decode_as(record.value, "MeterReading")
        assert decoded == by_id[decoded["event_id"]]
        assert record.key == decoded["event_id"].encode()


def _wait_for(
    bootstrap: str, topic: str, count: int, worker: subprocess.Popen[bytes]
) -> list[Record]:
    deadline = time.monotonic() + 120
    records: list[Record] = []
    while time.monotonic() < deadline and worker.poll() is None:
        records = read_topic(bootstrap, topic, group=f"check-{topic}")
        if len(records) >= count:
            break
        time.sleep(1)
    return records
