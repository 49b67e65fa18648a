"""The Faust application: the acknowledgements agent. A thin adapter: decode and
check in the core, send what comes out, and only then let Faust acknowledge the
input. (The event topics are ingested by the transactional batch loop in
``ingest_worker.py``; the obligations are netted by ``netting_worker.py``.)

Error policy: a bad acknowledgement becomes a dead-letter record with a reason;
any other error ends the process at once, without committing offsets
(``failure.fatal``), so the supervisor restarts it and the uncommitted input is
processed again. A failed instruction's obligation id is deterministic
(``f:<instruction id>``), so a re-processed acknowledgement yields the same
obligation and the netting stage counts it once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from confluent_kafka import Producer
from faust.streams import Stream

from clearing_core.acks import AckProblem, failed_obligation
from clearing_core.codec import Codec, CodecError
from clearing_core.identity import header_pairs
from clearing_core.ingest import RawEvent, rejected_record
from clearing_services.batch_index import BatchIndex
from clearing_services.failure import fatal
from clearing_services.kafka_io import produce_records, producer_config
from clearing_services.metrics import Metrics
from clearing_services.refdata_io import RefdataHolder
from clearing_services.security import faust_credentials
from clearing_services.settings import Settings
from clearing_services.topics import ACKS_TOPIC, DLQ_TOPIC, OBLIGATIONS_TOPIC

BATCH_MAX = 2_000
BATCH_WITHIN_S = 0.25
BATCH_WAIT_S = 5.0
_log = logging.getLogger("clearing.agents")
Send = tuple[str, bytes, bytes]  # topic, key, value


@dataclass
class Runtime:
    """What the agents share: the codec, the reference data and the batch index."""

    codec: Codec
    refdata: RefdataHolder
    batches: BatchIndex | None
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
        # A worker killed without leaving its group holds its partitions until the
        # session times out: keep that short so a restart takes over within seconds.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        **faust_credentials(settings.kafka_security),  # SASL/SCRAM over TLS: docs/security.md
    )
    if "acks" in roles:
        _acks_agent(app, runtime, Sender(settings.bootstrap()))
    return app


class Sender:
    """One agent's confluent-kafka producer. A batch's records are produced together
    and awaited together on a thread, before the agent lets Faust acknowledge the
    input: Faust's per-record ``topic.send`` cost a quarter of a worker's time
    (docs/performance.md)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer(producer_config(bootstrap))

    async def send_all(self, sends: list[Send]) -> None:
        if sends:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, produce_records, self.producer, sends)


def _acks_agent(app: faust.App, runtime: Runtime, sender: Sender) -> None:
    source = app.topic(ACKS_TOPIC, key_type=bytes, value_type=bytes)

    async def acks(stream: faust.StreamT[Any]) -> None:
        assert isinstance(stream, Stream)
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            try:
                await _apply_acks([_raw(e) for e in events], runtime, sender)
            except Exception as exc:
                fatal("acknowledgements", exc)

    app.agent(source, name="acks")(acks)


async def _apply_acks(raw: list[RawEvent], runtime: Runtime, sender: Sender) -> None:
    codec = runtime.codec
    sends: list[Send] = []
    for event in raw:
        runtime.metrics.events_in.labels("acks", event.topic).inc()
        problem: AckProblem | None
        try:
            ack = codec.decode(event.value, topic=event.topic)
        except CodecError as exc:
            problem = AckProblem(exc.reason_code, str(exc))
        else:
            if ack.name != "SettlementAck":
                problem = AckProblem("WRONG_SCHEMA", f"{ack.name} on {event.topic}")
            else:
                batch = await _batch(runtime, ack.record["batch_id"])
                outcome = failed_obligation(ack.record, batch)
                problem = outcome if isinstance(outcome, AckProblem) else None
                if isinstance(outcome, dict):
                    value = codec.encode("Obligation", outcome, topic=OBLIGATIONS_TOPIC)
                    key = str(outcome["currency"]).encode()
                    sends.append((OBLIGATIONS_TOPIC, key, value))
        if problem is not None:
            rejected = rejected_record(event, problem.reason_code, problem.message, stage="acks")
            value = codec.encode("Rejected", rejected, topic=DLQ_TOPIC)
            sends.append((DLQ_TOPIC, ACKS_TOPIC.encode(), value))
            runtime.metrics.rejects.labels("acks", problem.reason_code).inc()
    await sender.send_all(sends)


async def _batch(runtime: Runtime, batch_id: str) -> dict[str, Any] | None:
    """The batch from the index, giving the follower a moment to catch up."""
    assert runtime.batches is not None
    return await asyncio.get_running_loop().run_in_executor(
        None, runtime.batches.get, batch_id, BATCH_WAIT_S
    )
