"""Recent settlement batches by id, for the acknowledgements agent.

Why a follower rather than a table: batch topics have one partition per rail
and acknowledgements are keyed by batch id on another topic, so nothing is
co-partitioned; every acks worker simply tails every rail's batches (the most
recent ones) into a bounded map.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from clearing_core.codec import Codec, CodecError
from clearing_services.kafka_io import consumer_config, watermarks
from clearing_services.topics import batch_topic

BATCHES_KEPT = 20_000
INSTRUCTIONS_KEPT = 1_000_000  # about 250 MB at most, whatever the batches' sizes
RECENT_PER_RAIL = 5_000
ACK_FIELDS = ("instruction_id", "payer_id", "payee_id", "amount_minor")


def ack_view(batch: dict[str, Any]) -> dict[str, Any]:
    """What an acknowledgement needs of a batch (``acks.failed_obligation``): its id,
    rail and currency, and per instruction its id, parties and amount. Keeping whole
    decoded batches made an acks worker grow by about 3 MB a minute with 30-second
    cycles (docs/performance.md, the soak)."""
    return {
        "batch_id": batch["batch_id"], "rail_id": batch["rail_id"],
        "currency": batch["currency"],
        "instructions": [{k: i[k] for k in ACK_FIELDS} for i in batch["instructions"]],
    }  # fmt: skip


class BatchIndex:
    """A bounded map batch id -> what acks need of a ``SettlementBatch`` (``ack_view``),
    filled by ``run``; the oldest go first past ``BATCHES_KEPT`` batches or
    ``INSTRUCTIONS_KEPT`` instructions."""

    def __init__(self, bootstrap: str, codec: Codec, rails: Callable[[], Iterable[str]]) -> None:
        self.bootstrap = bootstrap
        self.codec = codec
        self.rails = rails
        self._batches: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._instructions = 0  # held over all batches
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def get(self, batch_id: str, wait_s: float = 0.0) -> dict[str, Any] | None:
        """The batch, waiting up to ``wait_s`` for the follower to catch up."""
        with self.changed:
            self.changed.wait_for(lambda: batch_id in self._batches, timeout=wait_s)
            return self._batches.get(batch_id)

    def _assignment(self, consumer: Consumer, rails: Iterable[str]) -> list[TopicPartition]:
        out = []
        for rail in sorted(set(rails)):
            topic = batch_topic(rail)
            low, high = watermarks(consumer, TopicPartition(topic, 0))
            out.append(TopicPartition(topic, 0, max(low, high - RECENT_PER_RAIL)))
        return out

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(consumer_config(self.bootstrap, "clearing-batch-index"))
        try:
            rails = sorted(set(self.rails()))
            consumer.assign(self._assignment(consumer, rails))
            while not stop.is_set():
                if sorted(set(self.rails())) != rails:  # reference data added a rail
                    rails = sorted(set(self.rails()))
                    consumer.assign(self._assignment(consumer, rails))
                self._take(consumer.consume(1000, timeout=0.5))
        finally:
            consumer.close()

    def _take(self, messages: list[Any]) -> None:
        decoded = []
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            try:
                found = self.codec.decode(message.value() or b"")
            except CodecError:
                continue
            if found.name == "SettlementBatch":
                decoded.append(ack_view(found.record))
        if not decoded:
            return
        with self.changed:
            for batch in decoded:
                previous = self._batches.pop(batch["batch_id"], None)
                if previous is not None:
                    self._instructions -= len(previous["instructions"])
                self._batches[batch["batch_id"]] = batch
                self._instructions += len(batch["instructions"])
            while len(self._batches) > BATCHES_KEPT or (
                self._instructions > INSTRUCTIONS_KEPT and len(self._batches) > 1
            ):
                _, oldest = self._batches.popitem(last=False)
                self._instructions -= len(oldest["instructions"])
            self.changed.notify_all()
