"""``clearing replay``: re-net the obligations log and compare with what was emitted.

Why it can work byte for byte: batches derive only from the log (ids from the
currency and cycle sequence, times from the marker's log timestamp), and the
replay drives the very fold the netting worker drives (``clearing_core.cycle.log_fold``)
over the same records, each cycle with the reference-data version its report says
it was closed with (``clearing.refdata.versions``).

Why a cut: the workers go on closing cycles while the replay reads. The replay
reads the obligations log first, then the batch topics, then the cycle reports.
It compares the batches of the cycles whose markers it read; a batch of a later
cycle (a scheduled close that came after the read) is "after the cut", and a
re-netted cycle whose batches are not out yet is "not yet emitted": neither is a
difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import cast

from clearing_core.cycle.context import VersionedContexts
from clearing_core.cycle.ledger import CycleOutcome
from clearing_core.cycle.log_fold import Closing, LogFold, LogSlice
from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import CycleReport, SettlementBatch
from clearing_core.errors import ClearingError
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import Record, read_topic
from clearing_services.kafka.refdata import load_versions
from clearing_services.kafka.topics import CYCLES_TOPIC, OBLIGATIONS_TOPIC, batch_topic

GROUP = "clearing-replay"
PROBLEMS_SHOWN_MAX = 20  # batch ids named per kind of problem in the message


@dataclass
class ReplayReport:
    """What the replay found, batch by batch."""

    cycles: int = 0
    identical: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    not_emitted: list[str] = field(default_factory=list)
    emitted_only: list[str] = field(default_factory=list)
    emitted_twice: list[str] = field(default_factory=list)
    after_cut: list[str] = field(default_factory=list)
    unreadable_records: int = 0  # on clearing.obligations (the worker dead-letters them)
    refdata_unknown: list[str] = field(default_factory=list)  # cycles re-netted with the latest

    @property
    def ok(self) -> bool:
        return not (self.different or self.emitted_only or self.emitted_twice)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok, "cycles": self.cycles, "batches_identical": len(self.identical),
            "different": self.different, "emitted_only": self.emitted_only,
            "emitted_twice": self.emitted_twice, "not_yet_emitted": self.not_emitted,
            "emitted_after_cut": self.after_cut, "unreadable_records": self.unreadable_records,
            "refdata_unknown": self.refdata_unknown,
        }  # fmt: skip

    def summary(self) -> str:
        return (
            f"replayed {self.cycles} cycles: {len(self.identical)} batches identical, "
            f"{len(self.different)} different, {len(self.emitted_only)} emitted only, "
            f"{len(self.emitted_twice)} emitted twice, {len(self.not_emitted)} not yet emitted, "
            f"{len(self.after_cut)} emitted after the cut"
        )

    def problems(self) -> list[str]:
        """One line per kind of difference, naming the batches and why."""
        kinds = (
            (self.different, "different (re-netting gives other bytes)"),
            (self.emitted_only, "emitted only (on a batch topic, not made by re-netting "
                                "the cycles read)"),
            (self.emitted_twice, "emitted twice (the same batch id more than once)"),
        )  # fmt: skip
        lines = []
        for ids, why in kinds:
            if ids:
                lines.append(f"{len(ids)} {why}: {_named(ids)}")
        if self.refdata_unknown and lines:
            lines.append("cycles whose reference-data version is not recorded (re-netted with "
                         f"the latest): {_named(self.refdata_unknown)}")  # fmt: skip
        return lines


def _named(ids: list[str]) -> str:
    more = len(ids) - PROBLEMS_SHOWN_MAX
    return ", ".join(ids[:PROBLEMS_SHOWN_MAX]) + (f" and {more} more" if more > 0 else "")


@dataclass
class _Replayed:
    """The fold's sink for a replay: batches by id and the last cycle of each currency."""

    codec: Codec
    batches: dict[str, bytes] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    cycles: int = 0
    unreadable: int = 0

    def rejected(self, index: int, reason_code: str, text: str) -> None:
        self.unreadable += 1

    def counted(self, currency: str, count: int, duplicates: int, open_count: int) -> None:
        pass

    def rejections(self, closing: Closing) -> int:
        return 0  # reports are not compared, only batches

    def closed(self, closing: Closing, outcome: CycleOutcome) -> None:
        self.cycles += 1
        currency = closing.track.ledger.currency
        self.last_seq[currency] = outcome.cycle_seq
        for batch in outcome.batches:
            topic = batch_topic(batch["rail_id"])
            self.batches[batch["batch_id"]] = self.codec.encode("SettlementBatch", batch,
                                                                topic=topic)  # fmt: skip


def renet(records: Iterable[Record], codec: Codec, contexts: VersionedContexts) -> _Replayed:
    """Fold the log partition by partition, as the netting workers do."""
    sink = _Replayed(codec)
    fold = LogFold(codec, contexts, sink)
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    for _, group in groupby(ordered, key=lambda r: r.partition):
        part = list(group)
        fold.feed(LogSlice([r.value for r in part], [r.partition for r in part],
                           [r.offset for r in part], [r.timestamp_ms for r in part]))  # fmt: skip
    return sink


def replay(
    bootstrap: str, codec: Codec, latest: ReferenceData, rails: Iterable[str],
    obligations: list[Record] | None = None,
) -> ReplayReport:  # fmt: skip
    """Re-net ``clearing.obligations`` from the beginning and compare every batch of
    the cycles read (see the module docstring for the cut). ``obligations``: the log
    as read earlier (a test's way to let cycles close between the reads)."""
    if obligations is None:
        obligations = read_topic(bootstrap, OBLIGATIONS_TOPIC, GROUP)
    emitted: dict[str, list[Record]] = {}
    for rail in sorted(set(rails)):
        for record in read_topic(bootstrap, batch_topic(rail), GROUP):
            emitted.setdefault((record.key or b"").decode(), []).append(record)
    digests = _report_digests(bootstrap, codec)
    contexts = VersionedContexts(latest, load_versions(bootstrap, codec, GROUP), digests)
    replayed = renet(obligations, codec, contexts)
    report = ReplayReport(cycles=replayed.cycles, unreadable_records=replayed.unreadable,
                          refdata_unknown=contexts.unknown)  # fmt: skip
    for batch_id in sorted(set(replayed.batches) | set(emitted)):
        copies = emitted.get(batch_id, [])
        if not copies:
            report.not_emitted.append(batch_id)
        elif batch_id not in replayed.batches:  # only these need their cycle decoded
            currency, seq = _cycle_of_batch(codec, copies[0])
            after = seq > replayed.last_seq.get(currency, 0)
            (report.after_cut if after else report.emitted_only).append(batch_id)
        elif len(copies) > 1:
            report.emitted_twice.append(batch_id)
        elif copies[0].value == replayed.batches[batch_id]:
            report.identical.append(batch_id)
        else:
            report.different.append(batch_id)
    return report


def _cycle_of_batch(codec: Codec, record: Record) -> tuple[str, int]:
    """(currency, cycle seq) of an emitted batch; an unreadable one is an error, not a
    batch to leave out of the comparison."""
    try:
        batch = codec.decode(record.value).as_record(SettlementBatch)
        return batch["currency"], batch["cycle_seq"]
    except (CodecError, KeyError) as exc:
        raise ClearingError(
            f"{record.topic}@{record.partition}:{record.offset}: not a readable "
            f"SettlementBatch ({exc})"
        ) from exc


def _report_digests(bootstrap: str, codec: Codec) -> dict[tuple[str, int], str | None]:
    """The reference-data digest each emitted cycle was closed with, from its report."""
    out: dict[tuple[str, int], str | None] = {}
    for record in read_topic(bootstrap, CYCLES_TOPIC, GROUP):
        try:
            report = cast(CycleReport, codec.decode(record.value).record)  # the topic's type
        except CodecError as exc:
            raise ClearingError(
                f"{CYCLES_TOPIC}@{record.partition}:{record.offset}: unreadable ({exc})"
            ) from exc
        out[(report["currency"], report["cycle_seq"])] = report.get("refdata_digest")
    return out
