"""Events onto their topics: generated events encoded, and encoded events published,
signed by their reporter or not.

Why here and not in the CLI: ``clearing produce`` and the demo both publish events,
and the CLI's modules are leaves that nothing else imports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearing_core.encoding.codec import Codec
from clearing_core.ingest.identify import sign_event
from clearing_core.workload.generator import GeneratedEvent
from clearing_services.kafka.clients import (
    FLUSH_SECONDS_MAX,
    DeliveryError,
    produce_all,
    producer_config,
)
from clearing_services.kafka.topics import event_topic
from clearing_services.kafka.waits import QUEUE_DRAIN_SECONDS
from clearing_services.sources.event_files import EncodedEvent


def encode_generated(codec: Codec, event: GeneratedEvent) -> EncodedEvent:
    """A generated event as bytes on its topic; a corrupt one is cut in half."""
    spec = event_topic(event.kind)
    value = codec.encode(spec.record_type, event.record, topic=spec.topic)
    if event.corrupt:
        value = value[: len(value) // 2]
    return EncodedEvent(spec.topic, str(event.record[spec.key_field]).encode(), value)


@dataclass(frozen=True)
class Signing:
    """Who signs the events sent, and with what key (docs/identity.md)."""

    key: Ed25519PrivateKey
    signer: str


def publish(bootstrap: str, events: list[EncodedEvent]) -> Counter[str]:
    """Produce every event to its topic and wait for all; the count per topic."""
    producer = Producer(producer_config(bootstrap))
    counts: Counter[str] = Counter()
    for topic in sorted({e.topic for e in events}):
        counts[topic] = produce_all(
            producer, topic, [(e.key, e.value) for e in events if e.topic == topic]
        )
    return counts


def publish_signed(bootstrap: str, events: list[EncodedEvent], signing: Signing) -> Counter[str]:
    """Like ``publish``, each event with the signer's ``clearing-signer`` and
    ``clearing-signature`` headers."""
    producer = Producer(producer_config(bootstrap))
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    counts: Counter[str] = Counter()
    for e in events:
        headers = sign_event(signing.key, signing.signer, e.topic, e.key, e.value)
        while True:
            try:
                producer.produce(e.topic, value=e.value, key=e.key, headers=list(headers),
                                 on_delivery=on_delivery)  # fmt: skip
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(QUEUE_DRAIN_SECONDS)
        counts[e.topic] += 1
        producer.poll(0)
    remaining = producer.flush(FLUSH_SECONDS_MAX)
    if remaining or failures:
        why = failures[0] if failures else f"not delivered in {FLUSH_SECONDS_MAX} s"
        raise DeliveryError(f"{remaining or len(failures)} signed records failed: {why}")
    return counts
