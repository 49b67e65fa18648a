"""``clearing replay``: re-net the obligations log and compare with what was emitted.

Why it can work byte for byte: batches derive only from the log (ids from the
currency and cycle sequence, times from the marker's log timestamp), and the
ledger the worker uses is the same pure class driven here over the same
records in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from clearing_core.codec import Codec, CodecError
from clearing_core.cycle import CurrencyLedger, CycleContext
from clearing_services.kafka_io import Record, read_topic
from clearing_services.topics import OBLIGATIONS_TOPIC, batch_topic


@dataclass
class ReplayReport:
    """What the replay found, batch by batch."""

    cycles: int = 0
    identical: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    not_emitted: list[str] = field(default_factory=list)
    emitted_only: list[str] = field(default_factory=list)
    emitted_twice: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.different or self.emitted_only or self.emitted_twice)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "cycles": self.cycles, "batches_identical": len(self.identical),
            "different": self.different, "emitted_only": self.emitted_only,
            "emitted_twice": self.emitted_twice, "not_yet_emitted": self.not_emitted,
        }  # fmt: skip


def renet(
    records: Iterable[Record], codec: Codec, context_for: Callable[[str], CycleContext]
) -> tuple[dict[str, bytes], int]:
    """Encoded batches by batch id from re-netting the log, and the number of cycles."""
    ledgers: dict[str, CurrencyLedger] = {}
    markers_seen: set[tuple[str, str]] = set()
    batches: dict[str, bytes] = {}
    cycles = 0
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            decoded = codec.decode(record.value)
        except CodecError:
            continue  # the worker dead-letters these too
        currency = str(decoded.record.get("currency", ""))
        ledger = ledgers.setdefault(currency, CurrencyLedger(currency))
        log_time = datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)
        if decoded.name == "Obligation":
            ledger.add(decoded.record, log_time)
        elif decoded.name == "CycleClose":
            key = (currency, decoded.record["marker_id"])
            if key in markers_seen:
                continue
            markers_seen.add(key)
            outcome = ledger.close(decoded.record, log_time, context_for(currency))
            cycles += 1
            for batch in outcome.batches:
                topic = batch_topic(batch["rail_id"])
                batches[batch["batch_id"]] = codec.encode("SettlementBatch", batch, topic=topic)
    return batches, cycles


def replay(
    bootstrap: str, codec: Codec, context_for: Callable[[str], CycleContext], rails: Iterable[str]
) -> ReplayReport:
    """Re-net ``clearing.obligations`` from the beginning and compare every batch."""
    group = "clearing-replay"
    replayed, cycles = renet(read_topic(bootstrap, OBLIGATIONS_TOPIC, group), codec, context_for)
    emitted: dict[str, bytes] = {}
    report = ReplayReport(cycles=cycles)
    for rail in sorted(set(rails)):
        for record in read_topic(bootstrap, batch_topic(rail), group):
            batch_id = (record.key or b"").decode()
            if batch_id in emitted:
                report.emitted_twice.append(batch_id)
            emitted[batch_id] = record.value
    for batch_id in sorted(set(replayed) | set(emitted)):
        if batch_id not in emitted:
            report.not_emitted.append(batch_id)
        elif batch_id not in replayed:
            report.emitted_only.append(batch_id)
        elif replayed[batch_id] == emitted[batch_id]:
            report.identical.append(batch_id)
        else:
            report.different.append(batch_id)
    return report
