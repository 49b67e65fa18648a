"""Which compression the workers' producers should use: none, lz4 or zstd, measured.

Why a bench of its own: compression is a per-batch cost in librdkafka's threads
and the broker's, too small to resolve in one full ``bench/e2e.py`` run (single
runs move by 20-40%). Here the same records go through a real broker once per
codec, in alternating rounds, and the CPU each side spends is read directly.

The records are the real ones. ``--events`` generated valid events (the e2e mix)
are prepared by the ingest stage (``BatchPreparer``) in batches of ``--batch`` events, as
the worker prepares a consumed batch: the ``Obligation`` and ``SeenEvents``
records it would write. The events' own values are a third stream: a
participant's producer picks their compression, and the ingest consumer pays to
decompress it. For each codec and stream the bench produces the records (a
transaction per batch, as the worker does), reads them back with the workers'
consumer settings, and reports per input event: the producer's and the
consumer's CPU microseconds (this process's, librdkafka's threads included), the
broker's CPU microseconds and the bytes the broker wrote to disk.

Run: ``.venv/bin/python bench/compression.py`` (200,000 events, two rounds, about
two minutes). The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic
from e2e_support import ProcessSampler, bench_refdata, log, own_broker, pid_of
from ingest_batches import PARTITIONS, generated_batches

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.ingest.prepare import BatchPreparer
from clearing_services.kafka.clients import admin_client, consumer_config, producer_config
from clearing_services.kafka.topics import OBLIGATIONS_TOPIC

CODECS = ("none", "lz4", "zstd")
STREAMS = ("events", "obligations", "seen")
Send = tuple[str, int, bytes | None, bytes]  # stream, partition, key, value
READ_SECONDS_MAX = 120.0
IDLE_SECONDS = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000, help="events per worker batch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261207)
    return parser.parse_args(argv)


def worker_batches(events: int, batch: int, seed: int) -> list[list[Send]]:
    """Per batch of generated events: the events as sent, then what an ingest
    worker's ``prepare`` lays out for them (obligations, ``SeenEvents``)."""
    codec = SingleObjectCodec(SchemaCatalog.load())
    refdata = bench_refdata(keep_caps=False)
    preparer = BatchPreparer(codec, lambda: refdata)
    out: list[list[Send]] = []
    for groups in generated_batches(refdata, codec, events, batch, seed, int(time.time() * 1000)):
        sends: list[Send] = [("events", e.partition, e.key, e.value)
                             for raw in groups.values() for e in raw]  # fmt: skip
        output = preparer.prepare(groups, lambda tp: {})
        for topic, key, record, partition in output.sends:
            stream = "obligations" if topic == OBLIGATIONS_TOPIC else "seen"
            where = partition if partition >= 0 else zlib.crc32(key or b"") % PARTITIONS
            sends.append((stream, where, key, record))
        out.append(sends)
    return out


def produce(bootstrap: str, topic: str, batches: list[list[tuple[int, bytes | None, bytes]]],
            codec: str) -> float:  # fmt: skip
    """Send every batch in a transaction of its own; this process's CPU seconds."""
    settings: dict[str, str | int | float | bool] = {
        "compression.type": codec, "transactional.id": f"cmp-{topic}",
        "queue.buffering.max.messages": 400_000,
    }  # fmt: skip
    producer = Producer(producer_config(bootstrap, **settings))
    producer.init_transactions(30)
    started = time.process_time()
    for batch in batches:
        producer.begin_transaction()
        for partition, key, value in batch:
            while True:
                try:
                    producer.produce(topic, value, key, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.commit_transaction(60)
    return time.process_time() - started


def consume(bootstrap: str, topic: str, count: int) -> float:
    """Read ``count`` records of ``topic`` back, as the workers read; CPU seconds."""
    consumer = Consumer(consumer_config(bootstrap, f"cmp-read-{topic}"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    started, seen = time.process_time(), 0
    deadline = time.monotonic() + READ_SECONDS_MAX
    try:
        while seen < count:
            assert time.monotonic() < deadline, f"{topic}: {seen} of {count} records read"
            for message in consumer.consume(20_000, timeout=0.5):
                if message.error() is None:
                    seen += 1
        return time.process_time() - started
    finally:
        consumer.close()


def disk_bytes(home: Path, topic: str) -> int:
    return sum(p.stat().st_size for p in home.rglob(f"{topic}-*/*.log"))


def idle_rate(broker: ProcessSampler, seconds: float = IDLE_SECONDS) -> float:
    """The broker's CPU seconds per second with no client busy (its timers, the
    controller's heartbeats), taken off each pass's share by the pass's duration."""
    before, started = broker.sample(), time.monotonic()
    time.sleep(seconds)
    return (broker.sample() - before) / (time.monotonic() - started)


Found = dict[str, dict[str, float]]  # per stream: CPU seconds, disk bytes, records


def one_pass(bootstrap: str, home: Path, batches: list[list[Send]], codec: str,
             round_no: int, broker: tuple[ProcessSampler, float]) -> Found:  # fmt: skip
    """Every stream through the broker with ``codec``: CPU seconds and disk bytes
    (``broker``: its sampler and its idle rate)."""
    found: Found = {}
    admin = admin_client(bootstrap)  # kept until its futures answer
    for stream in STREAMS:
        topic = f"cmp.{codec}.{round_no}.{stream}"
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
        mine = [[(p, k, v) for s, p, k, v in sends if s == stream] for sends in batches]
        count = sum(map(len, mine))
        sampler, idle = broker
        broker_before, started = sampler.sample(), time.monotonic()
        produced = produce(bootstrap, topic, mine, codec)
        consumed = consume(bootstrap, topic, count)
        busy = sampler.sample() - broker_before - idle * (time.monotonic() - started)
        found[stream] = {"produce_cpu_s": produced, "consume_cpu_s": consumed,
                         "broker_cpu_s": busy,
                         "disk_bytes": disk_bytes(home, topic), "records": count}  # fmt: skip
    return found


def per_event(passes: list[dict[str, dict[str, float]]], events: int) -> dict[str, Any]:
    """Per stream, the mean over the rounds, per input event (µs, bytes)."""
    out: dict[str, Any] = {}
    for stream in STREAMS:
        rows = [p[stream] for p in passes]

        def mean(name: str, rows: list[dict[str, float]] = rows) -> float:
            return sum(r[name] for r in rows) / len(rows)

        out[stream] = {
            "produce_cpu_us_per_event": round(1e6 * mean("produce_cpu_s") / events, 3),
            "consume_cpu_us_per_event": round(1e6 * mean("consume_cpu_s") / events, 3),
            "broker_cpu_us_per_event": round(1e6 * mean("broker_cpu_s") / events, 3),
            "disk_bytes_per_event": round(mean("disk_bytes") / events, 1),
            "records": int(mean("records")),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cmp-bench-") as tmp:
        home = Path(tmp)
        with own_broker(home) as bootstrap:
            broker_pid = pid_of(str(home))
            assert broker_pid is not None, "the broker's process was not found"
            broker = ProcessSampler(broker_pid, every_seconds=60)  # sampled when asked
            log(f"preparing {args.events:,} events in batches of {args.batch:,}")
            batches = worker_batches(args.events, args.batch, args.seed)
            idle = idle_rate(broker)
            passes: dict[str, list[dict[str, dict[str, float]]]] = {c: [] for c in CODECS}
            for round_no in range(args.rounds):
                order = CODECS if round_no % 2 == 0 else tuple(reversed(CODECS))
                for codec in order:
                    log(f"round {round_no + 1}: {codec}")
                    found = one_pass(bootstrap, home, batches, codec, round_no, (broker, idle))
                    passes[codec].append(found)
            broker.stop()
    events = len(batches) * args.batch
    result: dict[str, Any] = {
        "events": events,
        "batch": args.batch,
        "rounds": args.rounds,
        "broker_idle_cpu_per_s": round(idle, 4),
    }
    result["codecs"] = {codec: per_event(found, events) for codec, found in passes.items()}
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
