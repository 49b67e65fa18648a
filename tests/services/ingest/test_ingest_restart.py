"""The ingest loop's de-duplication state across processes, on a real broker with
real workers and the on-disk (RocksDB) store: a new worker reads the accepted ids
back from ``clearing.ingest.seen.*``, so a participant's resend is still refused,
and records read again after the group's offsets are moved back yield nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.ingest.prepare import REHEARSAL_EVENTS
from clearing_services.ingest.worker import GROUP, IngestWorker, _by_partition
from clearing_services.kafka.clients import admin_client, transaction_abortable
from clearing_services.kafka.refdata import load_refdata_from_topics
from clearing_services.operations.audit import coverage
from tests.support.events import meter_reading
from tests.support.pipeline import (
    decoded,
    scrape,
    send_events,
    wait_until,
    worker,
)

pytestmark = pytest.mark.own_broker
METER_TOPIC, METER_PARTITIONS = "clearing.events.meter", 6


def duplicates_of(bootstrap: str, codec: SingleObjectCodec, event_id: str) -> list[str]:
    return [r["reason_code"] for r in decoded(bootstrap, codec, "clearing.dlq",
            f"dlq-{time.time_ns()}") if r["event_id"] == event_id]  # fmt: skip


def redelivered(url: str) -> float:
    """The worker's count of records read again (0 until its endpoint answers)."""
    try:
        return scrape(url).get("clearing_events_redelivered_total", 0.0)
    except OSError:  # not serving yet
        return 0.0


def rewind(bootstrap: str) -> None:
    """Move the ingest group's meter offsets back to the start (the group is empty)."""
    request = ConsumerGroupTopicPartitions(
        GROUP, [TopicPartition(METER_TOPIC, p, 0) for p in range(METER_PARTITIONS)]
    )
    admin = admin_client(bootstrap)  # held: a dropped client never answers its futures
    (future,) = admin.alter_consumer_group_offsets([request]).values()
    future.result(timeout=30)


def test_accepted_ids_outlive_the_worker_and_rewound_records_yield_nothing(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    first = [meter_reading("rs-m1", 1_000_000), meter_reading("rs-m2", 2_000_000)]
    with worker(bootstrap, state, worker_id="r1", store="rocksdb://"):
        send_events(bootstrap, codec, "meter", first)
        wait_until("ingest", lambda: coverage(bootstrap, codec).events("rs-") == {"rs-m1", "rs-m2"})
        assert (state / "ingest-seen" / "r1").is_dir()  # the ids are on disk
    carried = coverage(bootstrap, codec).obligation_of["rs-m1"]

    with worker(bootstrap, state, worker_id="r2", store="rocksdb://"):
        send_events(bootstrap, codec, "meter", first[:1])  # a participant's resend
        assert wait_until(
            "the resend's dead letter", lambda: duplicates_of(bootstrap, codec, "rs-m1")
        ) == ["DUPLICATE_EVENT"]

    rewind(bootstrap)
    with worker(bootstrap, state, worker_id="r3", store="rocksdb://") as third:
        wait_until("the records read again", lambda: redelivered(third.metrics_url) >= 2)
        # the resend is read again too: refused again, one more dead letter
        wait_until("the resend refused again",
                   lambda: len(duplicates_of(bootstrap, codec, "rs-m1")) == 2)  # fmt: skip
        assert redelivered(third.metrics_url) == 2  # rs-m1 and rs-m2, nothing else

    after = coverage(bootstrap, codec)
    after.assert_sound()  # each event carried once, by one logged obligation
    assert after.events("rs-") == {"rs-m1", "rs-m2"}
    assert after.obligation_of["rs-m1"] == carried


def test_a_new_owner_restores_the_checkpoint_and_the_log_after_it(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    """The first owner checkpoints after every batch; the second checkpoints none of
    its one batch; the third restores the first's checkpoint, reads only the second's
    record after it, and refuses resends accepted by either."""
    tag = f"ck{time.time_ns()}"
    first = [meter_reading(f"{tag}-1", 1_000_000), meter_reading(f"{tag}-2", 1_000_000)]
    later = [meter_reading(f"{tag}-3", 2_000_000)]  # every reading: one contract, one partition
    for worker_id, events, every in (("c1", first, "1"), ("c2", later, "1000000")):
        with worker(bootstrap, state, worker_id=worker_id, store="rocksdb://",
                    extra_env={"CLEARING_CHECKPOINT_IDS": every}):  # fmt: skip
            send_events(bootstrap, codec, "meter", events)
            wait_until(f"{worker_id}'s events", lambda e=events: {r["event_id"] for r in e}
                       <= coverage(bootstrap, codec).events(tag))  # fmt: skip
    assert list((state / "ingest-checkpoints").glob("clearing.ingest.seen.meter-*/[0-9]*"))
    with worker(bootstrap, state, worker_id="c3", store="rocksdb://") as third:
        send_events(bootstrap, codec, "meter", [first[0], later[0]])  # resends of both
        for event_id in (first[0]["event_id"], later[0]["event_id"]):
            assert wait_until("the resend's dead letter",
                              lambda i=event_id: duplicates_of(bootstrap, codec, i)
                              ) == ["DUPLICATE_EVENT"]  # fmt: skip
        page = scrape(third.metrics_url)
    # the readings' partition came from the first owner's checkpoint, and the one record
    # read after it is the second owner's; every other partition of this module is empty
    assert page.get('clearing_seen_restore_records_total{source="log"}', 0.0) == 0.0
    assert page['clearing_seen_restore_records_total{source="checkpoint"}'] == 1.0
    after = coverage(bootstrap, codec)
    after.assert_sound()
    assert after.events(tag) == {f"{tag}-1", f"{tag}-2", f"{tag}-3"}


def test_an_abortable_transaction_error_reads_the_batch_again(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    """What a rebalance does to a transaction in flight (a stale generation is an
    abortable error): the batch is read again from its first offsets and then
    committed once; a fatal error is not taken for an abortable one."""
    stale = KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True)
    assert transaction_abortable(KafkaException(stale))
    assert not transaction_abortable(KafkaException(KafkaError(KafkaError._FENCED, fatal=True)))
    assert not transaction_abortable(KafkaException(KafkaError(KafkaError._TRANSPORT)))
    ids = [f"ab-{time.time_ns()}-{i}" for i in range(3)]
    send_events(bootstrap, codec, "meter", [meter_reading(i, 1_000_000) for i in ids])
    refdata = load_refdata_from_topics(bootstrap, codec, f"ab-refdata-{time.time_ns()}")
    loop = IngestWorker(bootstrap, codec, lambda: refdata, f"ab-{time.time_ns()}")
    loop.consumer.subscribe([METER_TOPIC], on_assign=loop._on_assign, on_revoke=loop._on_revoke)
    try:
        batch = read_ours(loop, ids)
        output = loop.prepare(_by_partition(batch))
        loop._rewind(output.firsts, KafkaException(stale))
        again = read_ours(loop, ids)
        assert where(again, ids) == where(batch, ids)
        loop.handle(again)
    finally:
        loop.consumer.close()
        loop.seen.close()
    aborted = loop.metrics.registry.get_sample_value(
        "clearing_transactions_aborted_total", {"stage": "ingest"}
    )
    assert aborted == 1

    def logged() -> Any:
        found = coverage(bootstrap, codec)
        return found if set(ids) <= found.events("ab-") else None

    covered = wait_until("the batch on the log", logged)
    covered.assert_sound()
    assert len({covered.obligation_of[i] for i in ids}) == 1  # one batch, one aggregate


def test_a_rehearsal_prepares_every_type_and_keeps_nothing(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    """The batch a worker rehearses at start is fully accepted, aggregated and laid out,
    and leaves no event id in the store."""
    refdata = load_refdata_from_topics(bootstrap, codec, f"rh-refdata-{time.time_ns()}")
    loop = IngestWorker(bootstrap, codec, lambda: refdata, f"rh-{time.time_ns()}")
    try:
        output = loop.rehearse(int(time.time() * 1000))
    finally:
        loop.consumer.close()
        loop.seen.close()
    assert output.rejects == {}
    assert output.redelivered == 0
    assert sum(output.events_per_topic.values()) == 3 * REHEARSAL_EVENTS
    assert output.obligations_in == 3 * REHEARSAL_EVENTS >= output.obligations_out > 0
    assert len(loop.seen) == 0  # nothing was committed, so nothing is remembered


def read_ours(loop: IngestWorker, ids: list[str], timeout_seconds: float = 60) -> list[Message]:
    """Consume until the records of ``ids`` are in hand (with any others before them)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_seconds
    while len(where(got, ids)) < len(ids):
        assert time.monotonic() < deadline, f"only {where(got, ids)} of {ids} read"
        got += loop.consumer.consume(1_000, timeout=1.0)
    return got


def where(messages: list[Message], ids: list[str]) -> set[tuple[int, int]]:
    return {(m.partition() or 0, m.offset() or 0) for m in messages
            if any(i.encode() in (m.value() or b"") for i in ids)}  # fmt: skip
