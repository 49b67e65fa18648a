"""The bad-input corpus (tests/support/bad_inputs.py) on a real broker and a real
worker process: every bad record, interleaved with valid events, ends in
clearing.dlq with its reason code and original bytes; every valid event becomes
its obligation; and the worker is still running at the end.

A module-scoped broker of its own keeps the contract's fixed topic names and
consumer groups clear of the other tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.records import REJECTED_ORIGINAL_MAX, IngestResult
from clearing_core.ingest.stage import process_batch
from clearing_services.kafka.clients import producer_config
from clearing_services.operations.audit import coverage, value_of
from tests.support import bad_inputs
from tests.support.bad_inputs import BadInput, Sent
from tests.support.pipeline import decoded, worker

pytestmark = pytest.mark.own_broker
WAIT_S = 60.0


@pytest.fixture(scope="module")
def refdata_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bad_inputs.write_refdata(tmp_path_factory.mktemp("corpus") / "corpus-refdata.yaml")


def send(bootstrap: str, items: list[Sent | BadInput]) -> None:
    """In order, through one idempotent producer (so per partition in order)."""
    producer = Producer(producer_config(bootstrap))
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _message: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for item in items:
        sent = item.sent if isinstance(item, BadInput) else item
        producer.produce(sent.topic, value=sent.value, key=sent.key, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []


def expected_obligations(codec: SingleObjectCodec, valid: list[Sent]) -> IngestResult:
    """What the valid events give on their own, priced one by one."""
    now_ms = int(time.time() * 1000)
    events = [RawEvent(s.topic, 0, n, s.key, s.value or b"", now_ms) for n, s in enumerate(valid)]
    result = process_batch(events, codec=codec, refdata=bad_inputs.refdata(),
                           expected_type=bad_inputs.EXPECTED_TYPE, seen={})  # fmt: skip
    assert result.rejections == []
    return result


def dlq_index(records: list[dict[str, Any]]) -> dict[tuple[str, bytes, bytes], list[str]]:
    index: dict[tuple[str, bytes, bytes], list[str]] = {}
    for r in records:
        where = (r["source_topic"], r["original"], r["source_key"] or b"")
        index.setdefault(where, []).append(r["reason_code"])
    return index


def test_every_bad_input_reaches_the_dlq_and_the_worker_survives(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    prefix = f"bk{time.time_ns() % 10**9}"
    corpus = bad_inputs.build(codec, int(time.time() * 1000), prefix=prefix)
    items = list(corpus.interleaved(broker=True))
    bad = [i for i in items if isinstance(i, BadInput)]
    assert len({c.kind for c in bad}) >= 30
    wanted = expected_obligations(codec, corpus.valid)
    with worker(bootstrap, state, worker_id="bad-inputs") as process:
        send(bootstrap, items)
        deadline = time.monotonic() + WAIT_S
        while True:
            dlq = decoded(bootstrap, codec, "clearing.dlq", f"dlq-{time.time_ns()}")
            covered = coverage(bootstrap, codec)
            if (len(dlq) >= len(bad) and set(wanted.event_ids) <= covered.events(prefix)) or (
                time.monotonic() > deadline
            ):
                break
            assert process.poll() is None, "the worker died"
            time.sleep(1.0)
        assert process.poll() is None, "the worker died"

    index = dlq_index(dlq)
    missing = []
    for case in bad:
        value = (case.sent.value or b"")[:REJECTED_ORIGINAL_MAX]
        reasons = index.get((case.sent.topic, value, case.sent.key or b""), [])
        if reasons != [case.reason]:
            missing.append(f"{case.kind}: expected [{case.reason}], got {reasons}")
    assert missing == [], "\n".join(missing)
    assert len(dlq) == len(bad)
    # every valid event once, nothing for a bad one, and at its price: the obligations
    # carrying them hold, per aggregate key, exactly the value priced one by one
    covered.assert_sound()
    assert covered.events(prefix) == set(wanted.event_ids)
    assert covered.value_by_key(wanted.event_ids) == value_of(o for _, o in wanted.obligations)
