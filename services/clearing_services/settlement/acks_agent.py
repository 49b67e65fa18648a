"""The Faust application: the acknowledgements agent. A thin adapter: decode and
decide in the core (``acks.apply_ack``: the state machine per instruction), write
what comes out in one Kafka transaction, and only then let Faust acknowledge the
input. (The event topics are ingested by the transactional batch loop in
``ingest/worker.py``; the obligations are netted by ``netting/worker.py``.)

Why one transaction: an instruction's new state (``clearing.settlement.status``)
and the obligation that carries a failure must land together. Re-processed after a
crash, an acknowledgement whose state landed is a repeat and changes nothing; one
whose state did not land is applied again, and its obligation id
(``f:<instruction id>``) is the same, so the netting stage counts it once.

Error policy: a bad acknowledgement (unknown batch or instruction, a contradiction
of a final state) becomes a dead-letter record with a reason; any other error ends
the process at once, without committing offsets (``failure.fatal``), so the
supervisor restarts it and the uncommitted input is processed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import faust
from confluent_kafka import KafkaException, Producer
from faust.streams import Stream

from clearing_core.cycle.acks import AckOutcome, AckProblem, apply_ack
from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import InstructionState, InstructionStatus, SettlementAck
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.identify import header_pairs
from clearing_core.ingest.records import rejected_record
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import producer_config
from clearing_services.kafka.refdata import RefdataHolder
from clearing_services.kafka.security import faust_credentials
from clearing_services.kafka.topics import (
    ACKS_TOPIC,
    DLQ_TOPIC,
    OBLIGATIONS_TOPIC,
    STATUS_TOPIC,
    ParticipantTopics,
    participant_statement_topic,
)
from clearing_services.runtime.failure import fatal
from clearing_services.runtime.metrics import Metrics
from clearing_services.settings import Settings
from clearing_services.settlement.batch_index import AckView, BatchIndex

BATCH_MAX = 2_000
BATCH_WITHIN_SECONDS = 0.25
BATCH_WAIT_SECONDS = 5.0
TRANSACTION_SECONDS_MAX = 60.0
# The Faust app's group membership: the broker drops it after SESSION_TIMEOUT_SECONDS
# without a heartbeat, sent every HEARTBEAT_SECONDS.
SESSION_TIMEOUT_SECONDS = 10.0
HEARTBEAT_SECONDS = 3.0
_log = logging.getLogger("clearing.agents")
Send = tuple[str, bytes, bytes, int]  # topic, key, value, partition (-1: by key)


@dataclass
class Runtime:
    """What the agents share: the codec, the reference data and the batch index."""

    codec: Codec
    refdata: RefdataHolder
    batches: BatchIndex | None
    statement_topics: ParticipantTopics
    metrics: Metrics = field(default_factory=Metrics)


def _raw(event: Any) -> RawEvent:
    message = event.message
    return RawEvent(
        topic=message.topic, partition=message.partition, offset=message.offset,
        key=message.key, value=message.value or b"", timestamp_ms=int(message.timestamp * 1000),
        headers=header_pairs(getattr(message, "headers", None)),
    )  # fmt: skip


APP_ID = "clearing"


def build_app(settings: Settings, runtime: Runtime, roles: set[str]) -> faust.App:
    """The Faust app with the agents of the given roles (``acks``)."""
    app = faust.App(
        APP_ID,
        broker=f"kafka://{settings.bootstrap()}",
        store=settings.store_url,
        datadir=str(settings.state_dir / "faust"),
        value_serializer="raw",
        key_serializer="raw",
        processing_guarantee="at_least_once",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        broker_commit_interval=1.0,
        producer_compression_type="lz4",
        producer_linger_ms=5,
        producer_acks=-1,
        table_standby_replicas=0,  # no tables
        # no leader election used: no <app>-__assignor-__leader topic assigned to the
        # group and never committed (clearing lag showed it as a partition of the group)
        topic_disable_leader=True,
        # A worker killed without leaving its group holds its partitions until the
        # session times out: keep that short so a restart takes over within seconds.
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_heartbeat_interval=HEARTBEAT_SECONDS,
        **faust_credentials(settings.kafka_security),  # SASL/SCRAM over TLS: docs/security.md
    )
    if "acks" in roles:
        _acks_agent(app, runtime, Sender(settings.bootstrap(), settings.worker_id))
    return app


class Sender:
    """One agent's transactional confluent-kafka producer. A batch's records are
    written in one transaction on a thread, before the agent lets Faust acknowledge
    the input: Faust's per-record ``topic.send`` cost a quarter of a worker's time
    (docs/performance-history.md)."""

    def __init__(self, bootstrap: str, worker_id: str) -> None:
        config = producer_config(bootstrap, **{"transactional.id": f"clearing-acks-{worker_id}"})
        self.producer = Producer(config)
        self.producer.init_transactions(TRANSACTION_SECONDS_MAX)

    async def send_all(self, sends: list[Send]) -> None:
        if sends:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._transact, sends)

    def _transact(self, sends: list[Send]) -> None:
        self.producer.begin_transaction()
        try:
            for topic, key, value, partition in sends:
                self.producer.produce(topic, key=key, value=value, partition=partition)
            self.producer.commit_transaction(TRANSACTION_SECONDS_MAX)
        except KafkaException:
            self.producer.abort_transaction(TRANSACTION_SECONDS_MAX)
            raise


def _acks_agent(app: faust.App, runtime: Runtime, sender: Sender) -> None:
    source = app.topic(ACKS_TOPIC, key_type=bytes, value_type=bytes)

    async def acks(stream: faust.StreamT[Any]) -> None:
        assert isinstance(stream, Stream)
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_SECONDS):
            try:
                await _apply_acks([_raw(e) for e in events], runtime, sender)
            except Exception as exc:
                fatal("acknowledgements", exc)

    app.agent(source, name="acks")(acks)


async def _apply_acks(raw: list[RawEvent], runtime: Runtime, sender: Sender) -> None:
    """Decide each acknowledgement in order against its instruction's state (as read,
    or as set earlier in this batch), then write states, carries and dead letters in
    one transaction."""
    index = runtime.batches
    assert index is not None
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, index.sync)  # states a previous owner committed
    sends: list[Send] = []
    states: dict[str, InstructionStatus] = {}  # instruction id -> state set in this batch
    parties: set[str] = set()  # whose statement topics get the new states
    applied: Counter[tuple[str, str]] = Counter()  # (rail, state) -> instructions
    for event in raw:
        runtime.metrics.events_in.labels("acks", event.topic).inc()
        decided = await _decide(event, runtime, states)
        if isinstance(decided, AckProblem):
            rejected = rejected_record(event, decided.reason_code, decided.message, stage="acks")
            sends.append((DLQ_TOPIC, ACKS_TOPIC.encode(), runtime.codec.encode(
                "Rejected", rejected, topic=DLQ_TOPIC), -1))  # fmt: skip
            runtime.metrics.rejects.labels("acks", decided.reason_code).inc()
            continue
        sends.extend(_writes(runtime.codec, decided, runtime.refdata.get()))
        if decided.status is not None:
            states[decided.status["instruction_id"]] = decided.status
            parties.update(decided.parties)
            applied[(decided.status["rail_id"], str(decided.status["status"]))] += 1
    await loop.run_in_executor(None, runtime.statement_topics.ensure, parties)
    await sender.send_all(sends)
    index.record(states.values())
    for (rail, state), count in applied.items():  # once written
        runtime.metrics.acks.labels(rail, state).inc(count)


async def _decide(
    event: RawEvent, runtime: Runtime, states: dict[str, InstructionStatus]
) -> AckOutcome | AckProblem:
    try:
        ack = runtime.codec.decode(event.value, topic=event.topic)
    except CodecError as exc:
        return AckProblem(exc.reason_code, str(exc))
    if ack.name != "SettlementAck":
        return AckProblem("WRONG_SCHEMA", f"{ack.name} on {event.topic}")
    record = ack.as_record(SettlementAck)
    batch = await _batch(runtime, record["batch_id"])
    earlier = states.get(record["instruction_id"])
    current = earlier["status"] if earlier else _state(runtime, record)
    return apply_ack(record, batch, current)


def _state(runtime: Runtime, ack: SettlementAck) -> InstructionState | None:
    assert runtime.batches is not None
    return runtime.batches.state_of(ack["batch_id"], ack["instruction_id"])


def _writes(codec: Codec, outcome: AckOutcome, refdata: ReferenceData) -> list[Send]:
    """The records an acknowledgement makes: a carried failure on its currency's own
    partition of clearing.obligations (the plan's), the state and its copies."""
    out: list[Send] = []
    if outcome.obligation is not None:
        currency = str(outcome.obligation["currency"])
        value = codec.encode("Obligation", outcome.obligation, topic=OBLIGATIONS_TOPIC)
        partition = refdata.obligation_partition(currency)
        out.append((OBLIGATIONS_TOPIC, currency.encode(), value, partition))
    if outcome.status is not None:
        instruction_id = str(outcome.status["instruction_id"])
        value = codec.encode("InstructionStatus", outcome.status, topic=STATUS_TOPIC)
        out.append((STATUS_TOPIC, instruction_id.encode(), value, -1))
        for party in outcome.parties:  # the copy its participant may read
            topic = participant_statement_topic(party)
            copy = codec.encode("InstructionStatus", outcome.status, topic=topic)
            out.append((topic, f"instruction/{instruction_id}".encode(), copy, -1))
    return out


async def _batch(runtime: Runtime, batch_id: str) -> AckView | None:
    """The batch from the index, giving the follower a moment to catch up."""
    assert runtime.batches is not None
    return await asyncio.get_running_loop().run_in_executor(
        None, runtime.batches.get, batch_id, BATCH_WAIT_SECONDS
    )
