"""Saving and restoring the netting stage's per-currency state.

The state record of a currency is written in the same Kafka transaction as the
cycle's batches and the consumer offsets, so it always agrees with what was
emitted. On a partition assignment the worker reads the state topic, rebuilds
each ledger (the record's conversion: ``clearing_core.cycle.state``), and re-reads
the last few closed cycles of the obligations log to remember which obligation ids
were already counted.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from clearing_core.cycle.ledger import CurrencyLedger
from clearing_core.cycle.log_fold import CurrencyTrack
from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import NettingState
from clearing_core.errors import ClearingError
from clearing_services.kafka.clients import Record, consume_batches, consumer_config, read_topic
from clearing_services.kafka.topics import OBLIGATIONS_TOPIC

STATE_TOPIC = "clearing.netting.state"


class UnreadableStateError(ClearingError):
    """A currency's latest netting state cannot be read: resuming without it would
    start the currency again at cycle 0 (reusing batch ids) or from an older state."""


def load_states(bootstrap: str, codec: Codec, group: str) -> dict[str, NettingState]:
    """The latest committed state record per currency. Only the latest record of each
    currency matters (the topic is compacted by currency); if that one cannot be read,
    the worker stops with a message naming it rather than resume from anything else."""
    latest: dict[bytes, Record] = {}
    for record in read_topic(bootstrap, STATE_TOPIC, group=group):
        latest[record.key or b""] = record
    states: dict[str, NettingState] = {}
    for key, record in sorted(latest.items()):
        where = f"{STATE_TOPIC}@{record.partition}:{record.offset}"
        try:
            decoded = codec.decode(record.value)
        except CodecError as exc:
            raise UnreadableStateError(
                f"{where}: the netting state of {key.decode(errors='replace')} is unreadable "
                f"({exc}); run a worker of the version that wrote it (CLEARING_WRITER_SCHEMAS)"
            ) from exc
        if decoded.name != "NettingState":
            raise UnreadableStateError(f"{where}: a {decoded.name} record, not a NettingState")
        state = decoded.as_record(NettingState)
        states[state["currency"]] = state
    return states


def remember_counted_ids(
    bootstrap: str, codec: Codec, tracks: Iterable[CurrencyTrack], up_to: dict[int, int]
) -> None:
    """Re-read each partition from its oldest remembered marker up to the committed
    offset and mark the obligation ids there as already counted."""
    by_partition: dict[int, list[CurrencyTrack]] = {}
    for track in tracks:
        if track.marker_offsets:
            by_partition.setdefault(track.partition, []).append(track)
    if not by_partition:
        return
    consumer = Consumer(consumer_config(bootstrap, "clearing-netting-restore"))
    try:
        for partition, group in by_partition.items():
            start = min(min(t.marker_offsets) for t in group)
            end = up_to.get(partition, 0)
            if end <= start:
                continue
            ledgers = {t.ledger.currency: t.ledger for t in group}
            consumer.assign([TopicPartition(OBLIGATIONS_TOPIC, partition, start)])
            _replay_ids(consumer, codec, ledgers, end)
    finally:
        consumer.close()


def _replay_ids(
    consumer: Consumer, codec: Codec, ledgers: dict[str, CurrencyLedger], end: int
) -> None:
    """Each consumed batch's obligation ids, remembered per currency in one call (the
    ledger hashes them as one batch)."""
    for batch in consume_batches(consumer, idle_timeout_seconds=2.0):
        counted: dict[str, list[str]] = {}
        for record in batch:
            if record.offset >= end:
                break
            try:
                decoded = codec.decode(record.value)
            except CodecError:
                # the netting stage dead-lettered this record when it first read it
                # (log_fold): it carries no obligation id that was counted
                continue
            currency = decoded.record.get("currency", "")
            if decoded.name == "Obligation" and currency in ledgers:
                counted.setdefault(currency, []).append(decoded.record["obligation_id"])
        for currency, obligation_ids in counted.items():
            ledgers[currency].remember(obligation_ids)
        if batch and batch[-1].offset + 1 >= end:
            return
