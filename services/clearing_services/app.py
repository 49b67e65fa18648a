"""The Faust application: ingest agents on the three event topics and the
acknowledgements agent. Thin adapters: decode and check in the core, send what
comes out, and only then let Faust acknowledge the input.

Error policy: a bad record becomes a dead-letter record with a reason; any
other error in an agent ends the process at once, without committing offsets
(``os._exit``), so the supervisor restarts it and the uncommitted input is
processed again. Obligation ids are deterministic, so a re-processed event
yields the same obligation and the netting stage counts it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
from confluent_kafka import Producer
from faust.streams import Stream, _current_event

from clearing_core.acks import AckProblem, failed_obligation
from clearing_core.codec import Codec, CodecError
from clearing_core.identity import header_pairs
from clearing_core.ingest import (
    IngestResult,
    RawEvent,
    process_batch,
    rejected_record,
    seen_time_and_partition,
)
from clearing_core.validation import DEFAULT_LIMITS
from clearing_services.batch_index import BatchIndex
from clearing_services.failure import fatal
from clearing_services.gaps import CommittedOf, PartitionCursor, ReadRange, complete
from clearing_services.kafka_io import (
    group_offsets,
    produce_records,
    producer_config,
    read_range,
)
from clearing_services.metrics import Metrics
from clearing_services.refdata_io import RefdataHolder
from clearing_services.security import faust_credentials
from clearing_services.settings import Settings
from clearing_services.topics import (
    ACKS_TOPIC,
    DLQ_TOPIC,
    EVENT_TOPICS,
    OBLIGATIONS_TOPIC,
    EventTopic,
    TopicSpec,
    load_topic_plan,
)

BATCH_MAX = 2_000
BATCH_WITHIN_S = 0.25
SWEEP_EVERY_S = 300.0
BATCH_WAIT_S = 5.0
_log = logging.getLogger("clearing.agents")
_STR: faust.Schema[str, str] = faust.Schema(
    key_type=str, value_type=str, key_serializer="json", value_serializer="json"
)
Send = tuple[str, bytes, bytes]  # topic, key, value


@dataclass
class Runtime:
    """What the agents share: the codec, the reference data and the batch index."""

    codec: Codec
    refdata: RefdataHolder
    batches: BatchIndex | None
    metrics: Metrics = field(default_factory=Metrics)
    cursor: PartitionCursor = field(default_factory=PartitionCursor)
    # (topic, partition) -> the ingest group's committed offset; and the records of a
    # range read straight from the broker (both set by build_app)
    committed_of: CommittedOf | None = None
    read_range: ReadRange | None = None


def _raw(event: Any) -> RawEvent:
    message = event.message
    return RawEvent(
        topic=message.topic, partition=message.partition, offset=message.offset,
        key=message.key, value=message.value or b"", timestamp_ms=int(message.timestamp * 1000),
        headers=header_pairs(getattr(message, "headers", None)),  # signatures: docs/identity.md
    )  # fmt: skip


@contextmanager
def _table_partition_of(event: Any) -> Iterator[None]:
    """Direct table writes to the store and changelog partition of ``event``.

    Faust takes that partition from the task-local current event. Only the context
    variable is set here: the stream's shared ``current_event`` attribute is read by
    ``take_events``' buffering task, and replacing it there files a newly buffered
    record under an old event, so that record is acknowledged without ever being
    processed (seen as lost events after a rebalance)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def _distinct(events: Sequence[Any]) -> list[Any]:
    """Each (partition, offset) once. After a rebalance Faust seeks back to the committed
    offsets and delivers again records that ``take_events`` still holds, so one batch
    can carry a record twice; the second copy would be refused as a duplicate event."""
    positions: set[tuple[int, int]] = set()
    distinct = []
    for event in events:
        position = (event.message.partition, event.message.offset)
        if position not in positions:
            positions.add(position)
            distinct.append(event)
    if len(distinct) < len(events):
        _log.info("batch of %d events held %d delivered twice", len(events),
                  len(events) - len(distinct))  # fmt: skip
    return distinct


def _by_partition(events: Sequence[Any]) -> Iterable[list[Any]]:
    groups: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        groups[event.message.partition].append(event)
    return (groups[p] for p in sorted(groups))


APP_ID = "clearing"


def seen_table_name(spec: EventTopic) -> str:
    return f"ingest-seen-{spec.alias}"


def changelog_topics() -> list[TopicSpec]:
    """The Faust tables' changelog topics, created before Faust starts: a fresh broker
    may not show a topic Faust just created when Faust checks its partitions."""
    plan = load_topic_plan()
    return [
        TopicSpec(f"{APP_ID}-{seen_table_name(spec)}-changelog",
                  plan.get(spec.topic).partitions, plan.get(spec.topic).replication_factor,
                  {"cleanup.policy": "compact"}, f"de-duplication table of {spec.topic}")
        for spec in EVENT_TOPICS
    ]  # fmt: skip


def build_app(settings: Settings, runtime: Runtime, roles: set[str]) -> faust.App:
    """The Faust app with the agents of the given roles (``ingest``, ``acks``)."""
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
        # The event-id tables are rebuilt from their changelogs on a rebalance; standby
        # copies would double the recovery reads on 2 cores for no gain here.
        table_standby_replicas=0,
        # A worker killed without leaving its group holds its partitions until the
        # session times out: keep that short so a restart takes over within seconds.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        **faust_credentials(settings.kafka_security),  # SASL/SCRAM over TLS: docs/security.md
    )
    _follow_partitions(app, runtime, settings.bootstrap())
    bootstrap = settings.bootstrap()
    plan = load_topic_plan()
    if "ingest" in roles:
        for spec in EVENT_TOPICS:
            _ingest_agent(app, runtime, spec, plan.get(spec.topic).partitions, Sender(bootstrap))
    if "acks" in roles:
        _acks_agent(app, runtime, Sender(bootstrap))
    return app


def _follow_partitions(app: faust.App, runtime: Runtime, bootstrap: str) -> None:
    """Let the agents check their partitions' offsets (gaps.py): where each continues
    after an assignment, and how to read what the consumer skipped."""
    runtime.committed_of = lambda tp: group_offsets(bootstrap, APP_ID, [tp])[tp][0]
    runtime.read_range = lambda tp, start, end: read_range(bootstrap, tp[0], tp[1], start, end)

    async def forget(*_args: Any, **_kwargs: Any) -> None:
        runtime.cursor.forget()  # a new assignment: continue from the committed offsets

    app.on_partitions_assigned.connect(forget)


class Sender:
    """One agent's confluent-kafka producer. A batch's records are produced together
    and awaited together on a thread, before the agent lets Faust acknowledge the
    input: Faust's per-record ``topic.send`` took a quarter of an ingest worker's
    time (docs/performance.md)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer(producer_config(bootstrap))

    async def send_all(self, sends: list[Send]) -> None:
        if sends:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, produce_records, self.producer, sends)


def _ingest_agent(
    app: faust.App, runtime: Runtime, spec: EventTopic, partitions: int, sender: Sender,
) -> None:  # fmt: skip
    source = app.topic(spec.topic, key_type=bytes, value_type=bytes)
    seen = app.Table(seen_table_name(spec), schema=_STR, partitions=partitions)
    expected = {spec.topic: spec.record_type}
    last_sweep = [time.monotonic()]

    async def ingest(stream: faust.StreamT[Any]) -> None:
        assert isinstance(stream, Stream)  # take_events is on the concrete stream
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            try:
                await _ingest_batch(events, runtime, seen, expected, sender)
                if time.monotonic() - last_sweep[0] > SWEEP_EVERY_S:
                    last_sweep[0] = time.monotonic()
                    _sweep(events, seen)
            except Exception as exc:
                fatal(f"ingest of {spec.topic}", exc)

    app.agent(source, name=f"ingest-{spec.alias}")(ingest)


async def _ingest_batch(
    events: Sequence[Any], runtime: Runtime, seen: Any, expected: dict[str, str],
    sender: Sender,
) -> None:  # fmt: skip
    """Check and price each partition's events, send every output of the batch at
    once, and only then record the event ids (table) and move the cursors."""
    done: list[tuple[Any, list[RawEvent], IngestResult]] = []
    sends: list[Send] = []
    for group in _by_partition(_distinct(events)):
        raw = await _complete([_raw(e) for e in group], runtime)
        result = process_batch(
            raw, codec=runtime.codec, refdata=runtime.refdata.get(), expected_type=expected,
            seen=seen, limits=DEFAULT_LIMITS, keys_must_match=True,
        )  # fmt: skip
        sends.extend(_outputs(result, runtime))
        done.append((group[-1], raw, result))
    await sender.send_all(sends)
    for last, raw, result in done:
        with _table_partition_of(last):
            for event_id, entry in result.seen_updates.items():
                seen[event_id] = entry
        runtime.cursor.advance((raw[0].topic, raw[0].partition), [e.offset for e in raw])
        runtime.metrics.events_in.labels("ingest", raw[0].topic).inc(len(raw))
        runtime.metrics.records_out.labels(OBLIGATIONS_TOPIC).inc(len(result.obligations))
        runtime.metrics.records_out.labels(DLQ_TOPIC).inc(len(result.rejections))


def _outputs(result: IngestResult, runtime: Runtime) -> list[Send]:
    encode = runtime.codec.encode
    sends: list[Send] = [
        (OBLIGATIONS_TOPIC, key, encode("Obligation", record, topic=OBLIGATIONS_TOPIC))
        for key, record in result.obligations
    ]
    for rejected in result.rejections:
        value = encode("Rejected", rejected, topic=DLQ_TOPIC)
        sends.append((DLQ_TOPIC, rejected["source_topic"].encode(), value))
        runtime.metrics.rejects.labels("ingest", rejected["reason_code"]).inc()
    return sends


async def _complete(raw: list[RawEvent], runtime: Runtime) -> list[RawEvent]:
    """The batch of one partition in offset order, with any record the consumer skipped
    read from the broker and put in its place (blocking reads, so on a thread)."""
    assert runtime.committed_of is not None
    assert runtime.read_range is not None
    if runtime.cursor.continues(raw):
        return raw  # the common case: no broker call, so no thread
    return await asyncio.get_running_loop().run_in_executor(
        None, complete, runtime.cursor, raw, runtime.committed_of, runtime.read_range
    )


def _sweep(events: Sequence[Any], seen: Any) -> None:
    """Forget event ids older than the maximum event age (the validator rejects such
    events anyway), for the partitions of this batch."""
    horizon = max(int(e.message.timestamp * 1000) for e in events) - DEFAULT_LIMITS.max_age_ms
    for group in _by_partition(events):
        partition = group[-1].message.partition
        stale = []
        for key, entry in list(seen.items()):
            time_ms, entry_partition = seen_time_and_partition(entry)
            if entry_partition == partition and time_ms < horizon:
                stale.append(key)
        with _table_partition_of(group[-1]):
            for key in stale:
                del seen[key]


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
