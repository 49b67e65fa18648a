"""Events onto their topics: generated events encoded, and encoded events published,
signed by their reporter or not.

Why here and not in the CLI: ``clearing produce`` and the demo both publish events,
and the CLI's modules are leaves that nothing else imports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearing_core.encoding.codec import Codec
from clearing_core.ingest.identify import sign_event
from clearing_core.workload.generator import GeneratedEvent
from clearing_services.kafka.clients import Headers, produce_records, producer_config
from clearing_services.kafka.topics import event_topic
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

    def headers(self, topic: str, key: bytes | None, value: bytes) -> Headers:
        """The ``clearing-signer`` and ``clearing-signature`` headers of one record."""
        return list(sign_event(self.key, self.signer, topic, key, value))


def publish(
    bootstrap: str, events: list[EncodedEvent], signing: Signing | None = None
) -> Counter[str]:
    """Produce every event to its topic and wait for all; the count per topic. With
    ``signing``, each event carries the signer's ``clearing-signer`` and
    ``clearing-signature`` headers."""

    producer = Producer(producer_config(bootstrap))
    produce_records(producer, ((e.topic, e.key, e.value) for e in events),
                    headers_of=signing.headers if signing is not None else None)  # fmt: skip
    return Counter(e.topic for e in events)
