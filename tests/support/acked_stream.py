"""The chaos producer's side of the audit, as Kafka's own replication tests do it:
every event is sent with a delivery report, the ids the cluster acknowledged are
recorded, and a send that failed is sent again until acknowledged or reported.

Why by event id and never by count: a produce the producer saw fail may still have
been appended (the leader wrote it, then lost the replicas before it could answer),
so a resend can put an event on the log twice. The ingest stage keeps each event id
once; the audit proves that for every acknowledged id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import KafkaError, Message, Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.workload.generator import GeneratedEvent
from clearing_services.kafka.clients import produce_one, producer_config
from clearing_services.kafka.topics import event_topic

CHUNKS_PER_SECOND = 5  # the stream's pace: a small batch every 200 ms
FLUSH_SECONDS_MAX = 330.0  # past librdkafka's message.timeout.ms (300 s): every send decided
RESENDS_MAX = 5
RESEND_WAIT_SECONDS = 2.0


@dataclass
class Acknowledged:
    """What the cluster said about each event sent: acknowledged ids, and the events
    whose send failed (with the error), kept for a resend."""

    ids: set[str] = field(default_factory=set)
    failed: list[tuple[GeneratedEvent, str]] = field(default_factory=list)
    failures: int = 0  # sends that failed, resent or not
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self, event: GeneratedEvent, error: KafkaError | None, _: Message) -> None:
        with self.lock:
            if error is None:
                self.ids.add(str(event.record["event_id"]))
            else:
                self.failed.append((event, error.name()))
                self.failures += 1

    def take_failed(self) -> list[GeneratedEvent]:
        with self.lock:
            failed, self.failed = self.failed, []
        return [event for event, _ in failed]


def send(
    bootstrap: str, codec: SingleObjectCodec, events: Sequence[GeneratedEvent],
    acknowledged: Acknowledged, seconds: float = 0.0,
) -> int:  # fmt: skip
    """Send ``events`` spread evenly over ``seconds`` and wait until every send is
    decided; the number left undecided (none unless the flush ran out of time)."""
    producer = Producer(producer_config(bootstrap))
    chunks = max(1, int(seconds * CHUNKS_PER_SECOND))
    size = -(-len(events) // chunks) if events else 1
    started = time.monotonic()
    for number, at in enumerate(range(0, len(events), size)):
        for event in events[at : at + size]:
            spec = event_topic(event.kind)
            value = codec.encode(spec.record_type, event.record)
            key = str(event.record[spec.key_field]).encode()
            produce_one(producer, spec.topic, key, value,
                        on_delivery=partial(acknowledged.delivered, event))  # fmt: skip
        producer.poll(0)
        pause = started + (number + 1) / CHUNKS_PER_SECOND - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return int(producer.flush(FLUSH_SECONDS_MAX))


class Stream(threading.Thread):
    """``send`` on a thread, so faults can be injected while events stream."""

    def __init__(
        self, bootstrap: str, codec: SingleObjectCodec, events: Sequence[GeneratedEvent],
        acknowledged: Acknowledged, seconds: float,
    ) -> None:  # fmt: skip
        super().__init__(name="chaos-stream", daemon=True)
        self.args = (bootstrap, codec, events, acknowledged, seconds)
        self.undecided = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.undecided = send(*self.args)
        except BaseException as exc:  # re-raised by finish() on the caller's thread
            self.error = exc

    def finish(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.undecided == 0, f"{self.undecided} sends undecided after the flush"


def resend_failed(bootstrap: str, codec: SingleObjectCodec, acknowledged: Acknowledged) -> int:
    """Send the failed events again until each is acknowledged (RESENDS_MAX tries);
    how many were resent. Events still refused after that are left in ``failed``
    for the caller to report."""
    resent = 0
    for _ in range(RESENDS_MAX):
        failed = acknowledged.take_failed()
        if not failed:
            break
        resent += len(failed)
        undecided = send(bootstrap, codec, failed, acknowledged)
        assert undecided == 0, f"{undecided} resends undecided after the flush"
        time.sleep(RESEND_WAIT_SECONDS if acknowledged.failed else 0.0)
    return resent
