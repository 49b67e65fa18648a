"""Broker warm-up for ``bench/e2e.py``, and the broker's JIT compile time.

Why: the bench starts a broker of its own, and a fresh JVM compiles each code path
the first time it runs hot. The preload and the raw consumer exercise produce and
plain fetches; the pipeline is the first to run transactions (AddPartitionsToTxn,
TxnOffsetCommit, EndTxn, transaction markers), cooperative group rebalances and
read_committed fetches. A JFR recording of the broker during the pipeline phase
showed 6-7 s of JIT compilation in a 15 s phase, most of the broker's 8.6 s of
CPU, while only about 0.4 s of samples ran Kafka's own code: the pipeline paid
for warming the broker up, which a broker that has been running for a while
does not charge. So before anything is timed, a short consume-transform-produce
loop on scratch topics runs those paths: the same client settings as the workers
(idempotent, transactional, lz4, read_committed, cooperative-sticky), batches of
the same size, a large record per transaction as the ``SeenEvents`` ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic

from clearing_services.kafka.clients import (
    Record,
    admin_client,
    consumer_config,
    produce_all,
    producer_config,
    records_of,
)

WARM_IN, WARM_OUT = "bench.warm.in", "bench.warm.out"
WARM_BATCH = 20_000
LARGE_RECORD_BYTES = 200_000  # like a SeenEvents record of 2,000 events
TRANSACTION_SECONDS_MAX = 60.0


def warm_broker(bootstrap: str, records: int) -> dict[str, float]:
    """Run the pipeline's broker paths on scratch topics; returns how long it took."""
    t0 = time.perf_counter()
    admin = admin_client(bootstrap)
    futures = admin.create_topics([NewTopic(WARM_IN, 6, 1), NewTopic(WARM_OUT, 4, 1)])
    for future in futures.values():
        future.result(60)
    body = os.urandom(110)
    produce_all(Producer(producer_config(bootstrap)), WARM_IN,
                ((b"k%d" % (i % 500), body) for i in range(records)))  # fmt: skip
    cooperative = {"partition.assignment.strategy": "cooperative-sticky"}
    source = Consumer(consumer_config(bootstrap, "bench-warm", **cooperative))
    reader = Consumer(consumer_config(bootstrap, "bench-warm-reader"))
    producer = Producer(producer_config(bootstrap, **{"transactional.id": "bench-warm"}))
    producer.init_transactions(TRANSACTION_SECONDS_MAX)
    source.subscribe([WARM_IN])
    reader.subscribe([WARM_OUT])
    done, deadline = 0, time.monotonic() + 300
    try:
        while done < records and time.monotonic() < deadline:
            consumed = records_of(source.consume(WARM_BATCH, timeout=1.0))
            if not consumed:
                continue
            done += len(consumed)
            _transact(producer, source, consumed)
            reader.consume(WARM_BATCH, timeout=0)  # read_committed fetches of the outputs
    finally:
        source.close()
        reader.close()
    if done < records:
        raise RuntimeError(f"broker warm-up: {done:,} of {records:,} records in time")
    return {"broker_warm_s": time.perf_counter() - t0}


def _transact(producer: Producer, source: Consumer, consumed: list[Record]) -> None:
    """One transaction as an ingest batch makes it: a fifth as many outputs, one
    large record, and the consumer offsets."""
    producer.begin_transaction()
    for record in consumed[::5]:
        producer.produce(WARM_OUT, key=record.key, value=record.value * 3)
    producer.produce(WARM_OUT, key=b"large", value=os.urandom(LARGE_RECORD_BYTES))
    last: dict[int, int] = {}
    for record in consumed:
        last[record.partition] = record.offset
    offsets = [TopicPartition(WARM_IN, p, o + 1) for p, o in last.items()]
    producer.send_offsets_to_transaction(
        offsets, source.consumer_group_metadata(), TRANSACTION_SECONDS_MAX
    )
    producer.commit_transaction(TRANSACTION_SECONDS_MAX)


def jit_seconds(pid: int | None) -> float | None:
    """The JVM's total JIT compile time so far (``jstat -compiler``), None where it
    cannot be read (no jstat, no broker process)."""
    jstat = shutil.which("jstat")
    if pid is None or jstat is None:
        return None
    done = subprocess.run([jstat, "-compiler", str(pid)], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    lines = done.stdout.splitlines()
    try:  # Compiled Failed Invalid Time FailedType FailedMethod, then one row of values
        return float(lines[1].split()[lines[0].split().index("Time")])
    except (ValueError, IndexError):
        return None
