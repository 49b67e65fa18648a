"""The fair ceiling of ``bench/e2e.py`` (issue 21): a transactional echo.

Why: the raw consumer only reads, while the pipeline also writes and commits
transactions, so a ratio against it mixes the cost of the work with the cost of
the guarantees. The echo pays the guarantees and nothing else: as many processes
as the pipeline's ingest workers consume the event topics in a group of their own
(read_committed, cooperative-sticky, the ingest stage's settings), and for each
batch of up to ``batch_max`` records write, per input partition, one record as
large as the pipeline writes for that many events (obligations, seen-id records
and dead letters, measured on the broker's disk after the pipeline ran; random
bytes, so lz4 cannot shrink them below that), send the offsets and commit the
transaction. Rate: events from the first commit seen to the last, polled every
0.1 s.

``python bench/e2e_echo.py --child BOOTSTRAP GROUP TXN_ID BYTES_PER_EVENT BATCH_MAX``
is one echo process; ``echo`` starts and times them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic
from e2e_support import IngestProgress, ProcessSampler, check_progress, log, stop

from clearing_services.kafka.clients import admin_client, consumer_config, producer_config
from clearing_services.kafka.topics import EVENT_TOPIC_NAMES

ECHO_TOPIC = "bench.echo.out"
ECHO_PARTITIONS = 6
# what the ingest stage writes: its share of the log per event
WRITTEN_PREFIXES = ("clearing.obligations-", "clearing.ingest.seen.", "clearing.dlq-")
POLL_SECONDS = 0.1
CONSUME_WAIT_SECONDS = 0.2
TRANSACTION_SECONDS = 60.0
RECORD_BYTES_MAX = 256 * 1024


def written_bytes_per_event(broker_home: Path, events: int) -> float:
    """Bytes of the ingest stage's outputs on the broker's disk, per event (record
    batches as stored: compressed, with their headers)."""
    total = 0
    for folder in (broker_home / "data").iterdir():
        if folder.is_dir() and folder.name.startswith(WRITTEN_PREFIXES):
            total += sum(f.stat().st_size for f in folder.glob("*.log"))
    return total / max(1, events)


def echo(bootstrap: str, tmp: Path, events: int, processes: int, bytes_per_event: float,
         batch_max: int, run: int) -> dict[str, Any]:  # fmt: skip
    """Echo ``events`` with ``processes`` processes; the rate and CPU per event."""
    admin = admin_client(bootstrap)
    if ECHO_TOPIC not in admin.list_topics(timeout=30).topics:
        for future in admin.create_topics([NewTopic(ECHO_TOPIC, ECHO_PARTITIONS, 1)]).values():
            future.result(60)
    group = f"bench-echo-{run}"
    children = []
    for number in range(processes):
        command = [sys.executable, __file__, "--child", bootstrap, group,
                   f"{group}-{number}", f"{bytes_per_event:.1f}", str(batch_max)]  # fmt: skip
        with (tmp / f"{group}-{number}.log").open("w") as out:
            children.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT))
    samplers = [ProcessSampler(child.pid) for child in children]
    try:
        seconds = _timed(IngestProgress(bootstrap, group, EVENT_TOPIC_NAMES), children, events)
    finally:
        cpu = [sampler.sample() for sampler in samplers]
        for child in children:
            stop(child)
        for sampler in samplers:
            sampler.stop()
    log(f"echo ({run}): {events / seconds:,.0f} events/s, {sum(cpu):.1f} CPU s")
    return {"echo_per_s": events / seconds, "echo_seconds": seconds,
            "echo_cpu_us_per_event": sum(cpu) / events * 1e6}  # fmt: skip


def _timed(progress: IngestProgress, children: list[subprocess.Popen[Any]], events: int) -> float:
    """Seconds from the first commit seen to the last."""
    deadline = time.monotonic() + 600 + events / 1000
    started: float | None = None
    while (done := progress.committed()) < events:
        if started is None and done > 0:
            started = time.monotonic()
        check_progress(children, "echo", done, events, deadline)
        time.sleep(POLL_SECONDS)
    ended = time.monotonic()
    return ended - started if started is not None else POLL_SECONDS


def child(bootstrap: str, group: str, txn_id: str, bytes_per_event: float, batch_max: int) -> None:
    """One echo process: consume, write, send offsets, commit; until terminated."""
    consumer_overrides: dict[str, str | int | float | bool] = {
        "partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 3_000,
    }  # fmt: skip
    consumer = Consumer(consumer_config(bootstrap, group, **consumer_overrides))
    consumer.subscribe(list(EVENT_TOPIC_NAMES))
    transactional: dict[str, str | int | float | bool] = {
        "transactional.id": txn_id, "queue.buffering.max.messages": 4 * batch_max,
    }  # fmt: skip
    producer = Producer(producer_config(bootstrap, **transactional))
    producer.init_transactions(TRANSACTION_SECONDS)
    payload = os.urandom(int(bytes_per_event * batch_max) + 1)
    while True:
        messages = consumer.consume(batch_max, timeout=CONSUME_WAIT_SECONDS)
        if messages:
            _echo_batch(consumer, producer, messages, bytes_per_event, payload)


def _echo_batch(consumer: Consumer, producer: Producer, messages: list[Message],
                bytes_per_event: float, payload: bytes) -> None:  # fmt: skip
    counts: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [count, last offset]
    for message in messages:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(error)
        entry = counts.setdefault((str(message.topic()), int(message.partition() or 0)), [0, 0])
        entry[0] += 1
        entry[1] = int(message.offset() or 0)
    producer.begin_transaction()
    for (topic, partition), (count, _) in counts.items():
        size = int(count * bytes_per_event)
        for at in range(0, size, RECORD_BYTES_MAX):  # under the broker's message.max.bytes
            producer.produce(ECHO_TOPIC, key=f"{topic}/{partition}".encode(),
                             value=payload[: min(RECORD_BYTES_MAX, size - at)])  # fmt: skip
    offsets = [TopicPartition(t, p, last + 1) for (t, p), (_, last) in counts.items()]
    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(),
                                         TRANSACTION_SECONDS)  # fmt: skip
    producer.commit_transaction(TRANSACTION_SECONDS)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 7:
        sys.exit("usage: e2e_echo.py --child BOOTSTRAP GROUP TXN_ID BYTES_PER_EVENT BATCH_MAX")
    child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6]))
