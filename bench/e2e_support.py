"""Helpers of ``bench/e2e.py``: the broker, topics and reference data, the preload,
and small readers of record timestamps and process statistics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from clearing_core.encoding.codec import Codec
from clearing_core.refdata import ReferenceData
from clearing_core.refdata.loader import DEFAULT_REFDATA_PATH, parse_refdata, parse_yaml
from clearing_core.workload.generator import EventGenerator
from clearing_services.kafka.clients import (
    admin_client,
    consumer_config,
    produce_all,
    producer_config,
)
from clearing_services.kafka.refdata import publish_refdata
from clearing_services.kafka.settling import watermarks
from clearing_services.kafka.topics import TopicSpec, create_topics, event_topic, load_topic_plan

# The worker's own scheduler closes every currency every ``cycle_seconds`` (30 s in the
# default); the bench closes cycles itself, so it publishes the default with the
# longest schedule the model allows (one slot a day, turning at 00:00 UTC).
HERE = Path(__file__).resolve().parent
BENCH_CYCLE_SECONDS = 86_400
PRELOAD_CHUNK = 50_000
HOST_OBLIGATIONS = 1_300_000  # of the host calibration: bench/close.py's default


def log(message: str) -> None:
    print(f"[e2e] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def own_broker(home: Path, heap_mb: int = 1024) -> Iterator[str]:
    """A single-node broker of the bench's own, on free ports, data under ``home``.
    Unlike the tests' broker it keeps Kafka's default initial rebalance delay (3 s):
    the ingest workers, started together, are then assigned together, as they are
    where workers run before the events arrive. With no delay the first one ready
    took all 15 partitions, and the cooperative rebalance moved an unequal share
    (7.0 against 12.4 s of CPU in one run); the clocks start at the first
    obligation and the first consumed batch, so the delay is in none of them."""
    from clearing_services.broker.select import local_broker
    from clearing_services.settings import load_settings

    node = local_broker(load_settings(), home=home, port=free_port(),
                        controller_port=free_port(), heap_mb=heap_mb,
                        overrides={"group.initial.rebalance.delay.ms": "3000"})  # fmt: skip
    status, _ = node.start()
    try:
        yield status.bootstrap
    finally:
        node.stop()


def bench_refdata(
    keep_caps: bool, cycle_seconds: int | None = BENCH_CYCLE_SECONDS
) -> ReferenceData:
    """The embedded default, with every rail's schedule at ``cycle_seconds`` (None: as
    in the default) and,
    unless ``keep_caps``, no net debit caps. The default's caps are sized for the
    demo's 30-second cycles; against cycles of 10^5..10^6 obligations they defer
    10% or more of a cycle, and the netting state record that carries deferred
    obligations to the next cycle then outgrows the codec's 1 MiB limit
    (RecordTooLargeError: the worker exits, and again on every restart)."""
    data = parse_yaml(Path(DEFAULT_REFDATA_PATH).read_text())
    for rail in data["rails"]:
        if cycle_seconds is not None:
            rail["cycle_seconds"] = cycle_seconds
    if not keep_caps:
        for participant in data["participants"]:
            for account in participant.get("accounts", []):
                account.pop("net_debit_cap_minor", None)
    return parse_refdata(data)


def prepare(bootstrap: str, codec: Codec, refdata: ReferenceData, extra: list[str]) -> None:
    plan = load_topic_plan()
    specs = plan.for_rails(refdata.rails)
    specs += [TopicSpec(name, 4, 1) for name in extra]
    create_topics(admin_client(bootstrap), specs)
    publish_refdata(bootstrap, codec, refdata, by="bench-e2e")


def preload(
    bootstrap: str, codec: Codec, refdata: ReferenceData, count: int, seed: int
) -> dict[str, Any]:
    """Generate, encode and produce ``count`` valid events in chunks; key statistics."""
    generator = EventGenerator(refdata, seed=seed, now_ms=int(time.time() * 1000), prefix="e2e")
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 50}))
    keys: dict[str, Counter[str]] = {}
    value_bytes = 0
    done = 0
    while done < count:
        chunk = generator.events(min(PRELOAD_CHUNK, count - done))
        generator.accepted.clear()  # only kept for duplicates, which the bench does not ask
        by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for event in chunk:
            spec = event_topic(event.kind)
            key = str(event.record[spec.key_field])
            value = codec.encode(spec.record_type, event.record, topic=spec.topic)
            by_topic.setdefault(spec.topic, []).append((key.encode(), value))
            keys.setdefault(spec.topic, Counter())[key] += 1
            value_bytes += len(value)
        for topic, items in sorted(by_topic.items()):
            produce_all(producer, topic, items)
        done += len(chunk)
        if done % 500_000 < PRELOAD_CHUNK:
            log(f"preload: {done:,} / {count:,}")
    return {
        "value_bytes_mean": round(value_bytes / max(1, done), 1),
        "per_topic": {t: sum(c.values()) for t, c in sorted(keys.items())},
        "key_skew": {t: key_skew(c) for t, c in sorted(keys.items())},
    }


def key_skew(counts: Counter[str]) -> dict[str, Any]:
    ranked = [n for _, n in counts.most_common()]
    total = sum(ranked)
    top_decile = ranked[: max(1, len(ranked) // 10)]
    return {
        "distinct_keys": len(ranked),
        "top_key_share": round(ranked[0] / total, 4),
        "top_10pct_keys_share": round(sum(top_decile) / total, 4),
        "max_over_mean_key": round(ranked[0] / (total / len(ranked)), 2),
    }


def partition_counts(bootstrap: str, topic: str) -> list[int]:
    """Records per partition (high minus low watermark)."""
    consumer = Consumer(consumer_config(bootstrap, "bench-e2e-probe"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        out = []
        for p in sorted(partitions):
            low, high = watermarks(consumer, TopicPartition(topic, p))
            out.append(high - low)
        return out
    finally:
        consumer.close()


def first_timestamp_ms(bootstrap: str, topic: str) -> int:
    """The earliest record timestamp over the first record of every partition."""
    consumer = Consumer(
        consumer_config(bootstrap, "bench-e2e-first", **{"enable.partition.eof": True})
    )
    try:
        sizes = partition_counts(bootstrap, topic)
        wanted = {p for p, n in enumerate(sizes) if n > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(wanted)])
        first: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while wanted - set(first) and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.5):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
                if error is None:
                    first.setdefault(int(message.partition() or 0), message.timestamp()[1])
        return min(first.values())
    finally:
        consumer.close()


def pid_of(fragment: str) -> int | None:
    """The pid of the process whose command line holds ``fragment`` (the broker's
    JVM names its home folder), else None."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if fragment in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
            except OSError:
                continue
    return None


class IngestProgress:
    """Events the ingest group has committed, over every event partition: one admin
    client for the whole run, so the bench's own polling costs the machine little."""

    def __init__(self, bootstrap: str, group: str, topics: Iterable[str]) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions

        self.admin = admin_client(bootstrap)
        counts = {t: len(partition_counts(bootstrap, t)) for t in topics}
        wanted = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        self.request = ConsumerGroupTopicPartitions(group, wanted)

    def committed(self) -> int:
        (future,) = self.admin.list_consumer_group_offsets([self.request]).values()
        answer = future.result(timeout=10).topic_partitions or []
        return sum(max(0, tp.offset) for tp in answer)


class ProcessSampler:
    """Samples a process's VmRSS (and CPU time) every second, in a thread."""

    def __init__(self, pid: int, every_seconds: float = 1.0) -> None:
        self.pid = pid
        self.every_seconds = every_seconds
        self.rss_mb_max = 0.0
        self.rss_mb = 0.0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample_rss_mb(self) -> float:
        """Sample now; the current VmRSS in MB."""
        self._sample()
        return self.rss_mb

    def sample(self) -> float:
        """Sample now; the CPU seconds used so far."""
        self._sample()
        return self.cpu_seconds

    def _sample(self) -> None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                self.rss_mb = int(line.split()[1]) / 1024
                self.rss_mb_max = max(self.rss_mb_max, self.rss_mb)
        ticks = os.sysconf("SC_CLK_TCK")
        self.cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_seconds)

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._thread.join(timeout=5)


def wait_ready(
    process: subprocess.Popen[Any], log_path: Path, timeout_seconds: float = 300
) -> None:
    """Until the ``worker all`` process has its netting partitions. Why: it starts
    slower (Faust, kernel warm-up); an ingest-only worker started with it would take
    every partition and starve that start on 2 cores, so the run would measure one
    worker and a late netting stage."""
    deadline = time.monotonic() + timeout_seconds
    while "netting: assigned partitions" not in log_path.read_text(errors="replace"):
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker was not ready in {timeout_seconds:.0f} s")
        time.sleep(0.2)


def host_speed(obligations: int = HOST_OBLIGATIONS) -> dict[str, float]:
    """A CPU-bound calibration of the host on code the pipeline does not share with
    the raw consumer (``bench/close.py``: ``CurrencyLedger.add`` and one close, in a
    process of its own). Why: on a shared host the same code ran 30-60% slower from
    one session to another while the raw consumer lost 5-10%, so a ratio is only
    comparable between runs next to this figure."""
    command = [sys.executable, str(HERE / "close.py"), "--n", str(obligations)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {"host_add_us": found["add_us_per_obligation"], "host_close_ms": found["close_ms"]}


def combine(before: dict[str, float], after: dict[str, float]) -> tuple[dict[str, float], ...]:
    """Each baseline's mean of its two measurements, and both of them."""
    out: list[dict[str, float]] = []
    for keys in (("raw_consume_per_s", "raw_seconds"), ("naive_faust_per_s", "naive_seconds"),
                 ("host_add_us", "host_close_ms")):  # fmt: skip
        part = {keys[0]: (before[keys[0]] + after[keys[0]]) / 2}
        for key in keys:
            part[f"{key}_before"], part[f"{key}_after"] = before[key], after[key]
        out.append(part)
    return tuple(out)


def check_progress(processes: list[subprocess.Popen[Any]], what: str, done: int, events: int,
                   deadline: float) -> None:  # fmt: skip
    """Raise where a process of the phase has exited or its deadline has passed."""
    for process in processes:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: a process exited with {process.returncode}")
    if time.monotonic() > deadline:
        raise RuntimeError(f"{what}: {done:,} of {events:,} events in time")


def stop(process: subprocess.Popen[Any], timeout_seconds: float = 60) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``: a benchmark never leaves a process behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
