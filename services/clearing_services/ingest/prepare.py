"""What an ingest worker makes of one consumed batch, before anything is written:
each partition's events checked and priced by the pure core, the obligations of the
whole batch pre-aggregated and encoded, the dead letters, and the ``SeenEvents``
records with the offsets to commit (``BatchOutput``).

Why apart from the worker: this is the ingest stage's CPU, and it needs no broker.
The worker (``ingest/worker.py``) consumes, calls ``BatchPreparer.prepare`` and
writes the output in one transaction; ``bench/prepare.py`` times the same code
offline, where a lever of a few tenths of a microsecond per event can be
resolved (a full end-to-end run resolves 20-40%).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import TopicPartition

from clearing_core.encoding.avro_rows import plan_of
from clearing_core.encoding.avro_write import encode_columns
from clearing_core.encoding.codec import Codec, SingleObjectCodec
from clearing_core.ingest.aggregate import Aggregation, aggregate_columns
from clearing_core.ingest.batch import RawBatch, RawEvent
from clearing_core.ingest.checks import DEFAULT_LIMITS, ValidationLimits
from clearing_core.ingest.fast_lane.lane import FastLane
from clearing_core.ingest.records import IngestResult, Seen
from clearing_core.ingest.stage import process_batch
from clearing_core.refdata import ReferenceData
from clearing_core.workload.generator import EventGenerator
from clearing_services.ingest.seen_store import seen_column_values, seen_topic
from clearing_services.kafka.topics import DLQ_TOPIC, EVENT_TOPICS, OBLIGATIONS_TOPIC

REHEARSAL_EVENTS = 32  # of each event type, in the throwaway batch a worker prepares at start
Send = tuple[str, bytes | None, bytes, int]  # topic, key, value, partition (-1: by key)
# a batch's records per (topic, partition): a worker's as columns (``RawBatch``)
Groups = dict[tuple[str, int], Sequence[RawEvent]]


@dataclass
class BatchOutput:
    """What one consumed batch turns into, before it is written."""

    sends: list[Send] = field(default_factory=list)
    offsets: list[TopicPartition] = field(default_factory=list)
    firsts: list[TopicPartition] = field(default_factory=list)  # the batch's first offsets
    # per partition: the seen entries accepted, and the newest event time among them
    accepted: dict[tuple[str, int], tuple[dict[str, str], int]] = field(default_factory=dict)
    events_per_topic: dict[str, int] = field(default_factory=dict)
    log_ms: dict[tuple[str, int], int] = field(
        default_factory=dict
    )  # newest log time per partition
    window_ms: int = 0  # the de-duplication window the batch was checked with (its max age)
    obligations_in: int = 0  # before pre-aggregation
    obligations_out: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    redelivered: int = 0  # records accepted before, read again after offsets moved back


class BatchPreparer:
    """The ingest stage's work on a batch: the lane and the writers it keeps between
    batches (profile caches, row plans), and the reference data in force."""

    def __init__(
        self, codec: Codec, refdata: Callable[[], ReferenceData],
        limits: ValidationLimits = DEFAULT_LIMITS,
    ) -> None:  # fmt: skip
        self.codec = codec
        self.refdata = refdata
        self.limits = limits  # its max_age_ms follows the policy's dedup_window_days
        self.lane = FastLane(codec) if isinstance(codec, SingleObjectCodec) else None
        self._obligation_plan = plan_of(codec, "Obligation")
        self.expected = {spec.topic: spec.record_type for spec in EVENT_TOPICS}

    def prepare(self, groups: Groups, seen_of: Callable[[tuple[str, int]], Seen]) -> BatchOutput:
        """Check and price every partition's events, pre-aggregate the obligations of
        the whole batch, and lay out the records of the transaction (``seen_of``: the
        ids accepted before, per partition)."""
        refdata = self.refdata()
        window_ms = refdata.policy.dedup_window_ms
        if self.limits.max_age_ms != window_ms:  # the policy's window is the maximum age
            self.limits = replace(self.limits, max_age_ms=window_ms)
        output, results = BatchOutput(window_ms=window_ms), []
        for (topic, partition), records in groups.items():
            raw = RawBatch.of(records)
            result = process_batch(
                raw, codec=self.codec, refdata=refdata, expected_type=self.expected,
                seen=seen_of((topic, partition)), limits=self.limits, keys_must_match=True,
                lane=self.lane,
            )  # fmt: skip
            results.append(((topic, partition), result))
            output.redelivered += len(result.redelivered)
            output.events_per_topic[topic] = output.events_per_topic.get(topic, 0) + len(raw)
            output.log_ms[(topic, partition)] = max(raw.timestamps_ms)
            output.offsets.append(TopicPartition(topic, partition, raw.offsets[-1] + 1))
            output.firsts.append(TopicPartition(topic, partition, raw.offsets[0]))
        aggregated = aggregate_columns([r.accepted for _, r in results])
        output.obligations_in = len(aggregated.carriers)
        output.obligations_out = len(aggregated.keys)
        values = self._encode_obligations(aggregated)
        plan = {c: refdata.obligation_partition(c) for c in {key[0] for key in aggregated.keys}}
        for key, value in zip(aggregated.keys, values, strict=True):  # each on its own partition
            output.sends.append((OBLIGATIONS_TOPIC, key[0].encode(), value, plan[key[0]]))
        at = 0
        for tp, result in results:
            self._rejections(result, output)
            count = len(result.accepted)
            _accepted(tp, result, aggregated.carriers[at : at + count], output, self.codec)
            at += count
        return output

    def _encode_obligations(self, aggregated: Aggregation) -> list[bytes]:
        """Written from the aggregation's columns where the codec is the single-object
        one and the schema is the layout they fill (byte for byte fastavro's, a
        fraction of its time); else record by record by the codec."""
        plan = self._obligation_plan
        written = encode_columns(plan, aggregated.columns()) if plan is not None else None
        if written is not None:
            return written
        return [self.codec.encode("Obligation", record, topic=OBLIGATIONS_TOPIC)
                for _, record in aggregated.records]  # fmt: skip

    def _rejections(self, result: IngestResult, output: BatchOutput) -> None:
        for rejected in result.rejections:
            value = self.codec.encode("Rejected", rejected, topic=DLQ_TOPIC)
            output.sends.append((DLQ_TOPIC, rejected["source_topic"].encode(), value, -1))
            code = str(rejected["reason_code"])
            output.rejects[code] = output.rejects.get(code, 0) + 1


def _accepted(
    tp: tuple[str, int], result: IngestResult, carriers: list[str], output: BatchOutput,
    codec: Codec,
) -> None:  # fmt: skip
    """The partition's new seen entries, and their ``SeenEvents`` records to write
    (``carriers``: per accepted event, the id of the obligation that carries it)."""
    if not result.seen_updates:
        return
    columns = result.accepted
    output.accepted[tp] = (result.seen_updates, max(columns.time_ms))
    items: list[list[Any]] = [
        columns.event_ids,
        result.digests,
        columns.time_ms,
        result.offsets,
        carriers,
    ]
    topic = seen_topic(tp[0])
    for value in seen_column_values(codec, tp[0], tp[1], items):
        output.sends.append((topic, str(tp[1]).encode(), value, tp[1]))  # as its source


def rehearsal_events(refdata: ReferenceData, codec: Codec, now_ms: int, count: int) -> Groups:
    """``count`` generated valid events of each type, as partition 0 of its topic would
    hold them; a type the reference data has nothing to make from (no contract, no
    price book, no currency with two account holders) is left out."""
    generator = EventGenerator(refdata, seed=0, now_ms=now_ms, prefix="rehearsal")
    makers = {"meter": generator.meter, "compute": generator.compute,
              "payment": generator.payment}  # fmt: skip
    groups: Groups = {}
    for spec in EVENT_TOPICS:
        try:
            records = [makers[spec.alias]().record for _ in range(count)]
        except (IndexError, KeyError, ValueError):  # an empty choice or sample
            continue
        groups[(spec.topic, 0)] = [
            RawEvent(spec.topic, 0, offset, str(record[spec.key_field]).encode(),
                     codec.encode(spec.record_type, record, topic=spec.topic), now_ms)
            for offset, record in enumerate(records)
        ]  # fmt: skip
    return groups
