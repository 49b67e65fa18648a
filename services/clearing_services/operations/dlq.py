"""Reading the dead-letter queue, and sending dead letters again (``clearing dlq``).

A re-drive is exactly once per dead letter: each original is sent to its source
topic and partition, with its key and headers (plus one naming the letter it
came from), in a Kafka transaction that also writes a ``Redriven`` record keyed
by the letter's place on the DLQ. A run that
is interrupted leaves either both or neither; the next run reads what was
re-driven (read_committed) first and sends only the rest. The fixed
transactional id fences a second re-drive running at the same time.

Why the original partition rather than the partitioner's choice: the event
topics are keyed, and the partition the record first came in on is the one its
key maps to for the producers that wrote it (partitions only grow); the
re-sent event lands where its neighbours did.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import KafkaException, Producer

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import Redriven, Rejected
from clearing_core.operations.dead_letters import (
    REDRIVEN_FROM_HEADER,
    DeadLetter,
    redrive_key,
    redrive_refusal,
)
from clearing_services.kafka.clients import (
    Record,
    produce_one,
    producer_config,
    read_topic,
)
from clearing_services.kafka.topics import DLQ_TOPIC, REDRIVEN_TOPIC
from clearing_services.settings import process_client_security

REDRIVE_TRANSACTIONAL_ID = "clearing-dlq-redrive"
REDRIVE_BATCH_MAX = 500  # dead letters per transaction
TRANSACTION_SECONDS_MAX = 60.0


@dataclass
class DlqReading:
    """The dead letters read, and the records of the DLQ that are not dead letters
    (one line each: never passed over unsaid)."""

    letters: list[DeadLetter] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def read_dead_letters(bootstrap: str, codec: Codec, since_ms: int | None = None) -> DlqReading:
    """The DLQ as it stands now (from log time ``since_ms``), oldest first per
    partition, each original decoded where its bytes decode."""
    reading = DlqReading()
    group = f"clearing-dlq-{uuid.uuid4().hex[:12]}"  # never joined: reads commit nothing
    for record in read_topic(bootstrap, DLQ_TOPIC, group, since_ms=since_ms):
        letter = _letter(codec, record)
        if isinstance(letter, str):
            reading.unreadable.append(letter)
        else:
            reading.letters.append(letter)
    return reading


def _letter(codec: Codec, record: Record) -> DeadLetter | str:
    where = f"{DLQ_TOPIC}@{record.partition}:{record.offset}"
    try:
        decoded = codec.decode(record.value, topic=DLQ_TOPIC)
    except CodecError as exc:
        return f"{where}: unreadable ({exc})"
    if decoded.name != "Rejected":
        return f"{where}: a {decoded.name} record, not a Rejected"
    rejected = decoded.as_record(Rejected)
    try:
        original = codec.decode(rejected["original"], topic=rejected["source_topic"])
    except CodecError:  # the reason it is here, often: shown in hex
        return DeadLetter(record.partition, record.offset, rejected)
    return DeadLetter(record.partition, record.offset, rejected, original.name, original.record)


def redriven_keys(bootstrap: str) -> set[bytes]:
    """The dead letters re-driven so far (committed re-drives only)."""
    group = f"clearing-dlq-{uuid.uuid4().hex[:12]}"
    return {r.key for r in read_topic(bootstrap, REDRIVEN_TOPIC, group) if r.key is not None}


@dataclass
class RedrivePlan:
    """What a re-drive would do with the selected letters."""

    to_send: list[DeadLetter] = field(default_factory=list)
    done_before: list[DeadLetter] = field(default_factory=list)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)


def plan_redrive(letters: Iterable[DeadLetter], done: set[bytes]) -> RedrivePlan:
    plan = RedrivePlan()
    for letter in letters:
        refusal = redrive_refusal(letter)
        if refusal is not None:
            plan.refused.append((letter, refusal))
        elif redrive_key(letter) in done:
            plan.done_before.append(letter)
        else:
            plan.to_send.append(letter)
    return plan


def redrive(bootstrap: str, codec: Codec, letters: Sequence[DeadLetter]) -> int:
    """Send ``letters`` again, each with its ``Redriven`` record in one transaction
    per REDRIVE_BATCH_MAX; the number sent."""
    transactional: dict[str, str | int | float | bool] = {
        "transactional.id": REDRIVE_TRANSACTIONAL_ID
    }
    producer = Producer(producer_config(bootstrap, **transactional))
    producer.init_transactions(TRANSACTION_SECONDS_MAX)  # fences and aborts an earlier run's
    by = process_client_security().username
    sent = 0
    for start in range(0, len(letters), REDRIVE_BATCH_MAX):
        batch = letters[start : start + REDRIVE_BATCH_MAX]
        producer.begin_transaction()
        try:
            for letter in batch:
                _send(producer, codec, letter, by)
            producer.commit_transaction(TRANSACTION_SECONDS_MAX)
        except KafkaException:
            producer.abort_transaction(TRANSACTION_SECONDS_MAX)
            raise
        sent += len(batch)
    return sent


def _send(producer: Producer, codec: Codec, letter: DeadLetter, by: str | None) -> None:
    rejected = letter.rejected
    key = redrive_key(letter)
    headers: list[tuple[str, str | bytes | None]] = [
        (h["name"], h["value"]) for h in rejected.get("headers", [])
    ]
    if all(name != REDRIVEN_FROM_HEADER for name, _ in headers):
        headers.append((REDRIVEN_FROM_HEADER, key))
    produce_one(producer, rejected["source_topic"], rejected["source_key"], rejected["original"],
                rejected["source_partition"], headers=headers or None)  # fmt: skip
    record: Redriven = {
        "dlq_partition": letter.partition, "dlq_offset": letter.offset,
        "source_topic": rejected["source_topic"], "source_partition": rejected["source_partition"],
        "source_offset": rejected["source_offset"], "reason_code": rejected["reason_code"],
        "event_id": rejected.get("event_id"), "redriven_by": by,
        "redriven_at": datetime.fromtimestamp(time.time(), tz=UTC),
    }  # fmt: skip
    value = codec.encode("Redriven", record, topic=REDRIVEN_TOPIC)
    produce_one(producer, REDRIVEN_TOPIC, key, value)
