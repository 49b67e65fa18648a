"""The settlement agent of one token rail: batches in, chain calls out, and one
acknowledgement per instruction written with the consumer offset in one Kafka
transaction.

Why nothing pays twice (docs/settlement.md): before each call the agent asks the
contract whether the call's key is recorded, and a recorded call is acknowledged
from the chain's logs instead of being sent; the contract itself refuses a key it
has recorded. So a kill anywhere (before a call is sent, after it is sent and
before its receipt, after the receipt and before the transaction commits) ends in
the same acknowledgements, written once: the batch is read again from the
committed offset, the chain answers for what it did.

Error policy: a record that is not a batch of this rail, or a batch the chain
cannot settle as the reference data stands (an account without an address), is
dead-lettered with a reason; a chain error (node unreachable, stuck or reverted
transaction) ends the process without committing, and its supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import SettlementAck, SettlementBatch
from clearing_core.exports.documents import ExportError
from clearing_core.exports.token_calls import acks_of_call, token_calls
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.records import rejected_record
from clearing_core.refdata import ReferenceData
from clearing_services.chain.settlement import settle
from clearing_services.faults import Faults
from clearing_services.kafka.clients import (
    consumer_config,
    produce_one,
    producer_config,
    record_of,
    send_offsets,
    transaction_abortable,
)
from clearing_services.kafka.topics import ACKS_TOPIC, DLQ_TOPIC, batch_topic
from clearing_services.runtime.metrics import Metrics
from clearing_services.settlement.token_chain import RailChain, chain_addresses

GROUP_PREFIX = "clearing-settle-"
BATCHES_PER_TRANSACTION = 8
CONSUME_WAIT_SECONDS = 0.5
TRANSACTION_SECONDS_MAX = 60.0
SESSION_TIMEOUT_MS = 10_000  # a killed agent's partitions move on in seconds
HEARTBEAT_MS = 3_000
_log = logging.getLogger("clearing.settle")
Send = tuple[str, bytes, bytes]


class TokenSettlementAgent:
    """Owns a consumer of the rail's batch topic and a transactional producer."""

    def __init__(
        self, bootstrap: str, codec: Codec, refdata: Callable[[], ReferenceData],
        chain: RailChain, worker_id: str, metrics: Metrics | None = None,
        faults: Faults | None = None,
    ) -> None:  # fmt: skip
        self.codec = codec
        self.refdata = refdata
        self.chain = chain
        self.rail_id = chain.rail.rail_id
        self.metrics = metrics or Metrics()
        self.faults = faults or Faults({})
        group = GROUP_PREFIX + self.rail_id
        # Static membership: a restarted agent (same worker id) takes its partition back at
        # once instead of waiting for the killed one's session to time out.
        membership: dict[str, str | int | float | bool] = {"session.timeout.ms": SESSION_TIMEOUT_MS,
                      "heartbeat.interval.ms": HEARTBEAT_MS,
                      "group.instance.id": f"{group}-{worker_id}"}  # fmt: skip
        self.consumer = Consumer(consumer_config(bootstrap, group, **membership))
        # Per worker, as the ingest loop's: a restarted agent fences its former self, and
        # an agent that lost the partition is fenced by the group generation (KIP-447).
        transactional = {"transactional.id": f"{group}-{worker_id}"}
        self.producer = Producer(producer_config(bootstrap, **transactional))
        self.producer.init_transactions(TRANSACTION_SECONDS_MAX)

    def run(self, stop: threading.Event) -> None:
        """Settle until ``stop``; a chain or Kafka error is raised to the caller, which
        ends the process (nothing past the last committed transaction was acknowledged)."""
        self.consumer.subscribe([batch_topic(self.rail_id)])
        try:
            while not stop.is_set():
                messages = self.consumer.consume(BATCHES_PER_TRANSACTION, CONSUME_WAIT_SECONDS)
                if messages:
                    self.handle(messages)
        finally:
            self.consumer.close()

    def handle(self, messages: list[Message]) -> None:
        sends: list[Send] = []
        offsets: dict[tuple[str, int], TopicPartition] = {}
        firsts: dict[tuple[str, int], TopicPartition] = {}
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            record = record_of(message)
            where = (record.topic, record.partition)
            firsts.setdefault(where, TopicPartition(*where, record.offset))
            offsets[where] = TopicPartition(*where, record.offset + 1)
            sends.extend(self.settle_record(record))
        self.faults.point("before_commit")
        try:
            self._transact(sends, list(offsets.values()))
        except KafkaException as exc:
            if not transaction_abortable(exc):
                raise
            _log.warning("settle %s: transaction aborted (%s); reading again", self.rail_id, exc)
            for tp in firsts.values():  # the chain keeps what it did: the retry reconciles
                self.consumer.seek(tp)

    def settle_record(self, record: RawEvent) -> list[Send]:
        """The acknowledgements of one batch record, or its dead letter."""
        try:
            decoded = self.codec.decode(record.value, topic=record.topic)
        except CodecError as exc:
            return [self._dead_letter(record, exc.reason_code, str(exc))]
        if decoded.name != "SettlementBatch":
            return [self._dead_letter(record, "WRONG_SCHEMA", f"{decoded.name} on {record.topic}")]
        batch = decoded.as_record(SettlementBatch)
        if batch["rail_id"] != self.rail_id:
            why = f"batch {batch['batch_id']} is for rail {batch['rail_id']}"
            return [self._dead_letter(record, "RAIL_MISMATCH", why)]
        try:
            calls = token_calls(batch, chain_addresses(self.refdata(), self.chain.rail))
        except ExportError as exc:
            return [self._dead_letter(record, "BATCH_NOT_SETTLEABLE", str(exc))]
        acks: list[SettlementAck] = []
        for call in calls:
            self.faults.point("before_submit")
            started = time.perf_counter()
            done = settle(self.chain.client, self.chain.settlement, call)
            self._count(done.sent_now, done.gas_used, time.perf_counter() - started)
            acks.extend(
                acks_of_call(batch, call, done.outcomes, done.inclusion, self.chain.bank_id)
            )
        for ack in acks:
            self.metrics.chain_instructions.labels(self.rail_id, ack["status"]).inc()
        key = batch["batch_id"].encode()
        return [(ACKS_TOPIC, key, self.codec.encode("SettlementAck", a, topic=ACKS_TOPIC))
                for a in acks]  # fmt: skip

    def _count(self, sent_now: bool, gas_used: int | None, seconds: float) -> None:
        metrics = self.metrics
        metrics.chain_calls.labels(self.rail_id, "sent" if sent_now else "reconciled").inc()
        metrics.chain_call_seconds.labels(self.rail_id).observe(seconds)
        if gas_used:
            metrics.chain_gas.labels(self.rail_id).inc(gas_used)

    def _dead_letter(self, record: RawEvent, reason_code: str, message: str) -> Send:
        _log.warning("settle %s: dead letter %s: %s", self.rail_id, reason_code, message)
        self.metrics.rejects.labels("settle", reason_code).inc()
        rejected = rejected_record(record, reason_code, message, stage="settle")
        value = self.codec.encode("Rejected", rejected, topic=DLQ_TOPIC)
        return (DLQ_TOPIC, record.topic.encode(), value)

    def _transact(self, sends: list[Send], offsets: list[TopicPartition]) -> None:
        producer = self.producer
        producer.begin_transaction()
        try:
            for topic, key, value in sends:
                produce_one(producer, topic, key, value)
            send_offsets(producer, offsets, self.consumer, "a settlement transaction's offsets")
            producer.commit_transaction(TRANSACTION_SECONDS_MAX)
        except KafkaException:
            producer.abort_transaction(TRANSACTION_SECONDS_MAX)
            raise
