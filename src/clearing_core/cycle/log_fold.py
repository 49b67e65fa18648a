"""The fold of ``clearing.obligations``: obligations and cycle-close markers in log order
become cycles, one currency at a time.

Why one class: the netting worker and ``clearing replay`` must turn the same log
into the same cycles and batches, byte for byte. Both drive this fold; what differs
between them (where rejections go, how many rejections a cycle saw, what happens to
a closed cycle's outcome, which reference data a cycle closes with) is passed in as
a ``FoldSink`` and a context function. Nothing here reads a clock or does I/O.

A poll's records are read in columns where they are plain obligations (a fraction
of a codec decode each) and counted in bulk per run between two other records;
markers, unreadable records and anything the columnar reader is not sure about go
through the codec one by one, in log order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

import numpy as np

from clearing_core.cycle.context import CycleContext
from clearing_core.cycle.ledger import SEEN_CYCLES, CurrencyLedger, CycleOutcome, log_time_of
from clearing_core.cycle.ledger_columns import ObligationBatch, rows_of
from clearing_core.encoding.avro_rows import columns_of, plan_of
from clearing_core.encoding.codec import Codec, CodecError, SingleObjectCodec
from clearing_core.encoding.records import CycleClose, Obligation
from clearing_core.errors import InputError

# the Obligation fields the ledger counts, in ObligationBatch's order after its currency
_BATCH_FIELDS = ("obligation_id", "debtor_id", "creditor_id", "amount_minor", "priority",
                 "source", "remainder_ppm", "carry_key")  # fmt: skip
_COUNTED_FIELDS = ("currency", *_BATCH_FIELDS)

# (currency, cycle_seq of the cycle closing) -> what that close needs of the reference data
ContextFor = Callable[[str, int], CycleContext]


@dataclass
class CurrencyTrack:
    """A currency's ledger plus where its recent cycles sit in the log: the partition
    and the offsets and ids of its last ``SEEN_CYCLES`` markers. A marker whose id is
    among them closed already (two schedulers, a retry) and is ignored."""

    ledger: CurrencyLedger
    partition: int
    marker_offsets: list[int] = field(default_factory=list)
    marker_ids: list[str] = field(default_factory=list)

    def closed(self, marker_id: str, offset: int) -> None:
        self.marker_ids = [*self.marker_ids, marker_id][-SEEN_CYCLES:]
        self.marker_offsets = [*self.marker_offsets, offset][-SEEN_CYCLES:]


@dataclass(frozen=True)
class LogSlice:
    """Records of ``clearing.obligations`` in log order, as parallel columns (one poll
    of a consumer, or a partition read whole). A tombstone is empty bytes (the codec
    rejects it like any other unreadable record)."""

    values: Sequence[bytes]
    partitions: Sequence[int]
    offsets: Sequence[int]
    log_ms: Sequence[int]

    def __post_init__(self) -> None:
        lengths = {len(self.values), len(self.partitions), len(self.offsets), len(self.log_ms)}
        if len(lengths) != 1:
            raise InputError(f"a log slice with columns of unequal lengths {sorted(lengths)}")


@dataclass(frozen=True)
class Closing:
    """A marker that closes a cycle, as the sink sees it before the close."""

    track: CurrencyTrack
    marker: CycleClose
    partition: int
    offset: int
    log_time: datetime


class FoldSink(Protocol):
    """What the fold's driver does with what the fold finds."""

    def rejected(self, index: int, reason_code: str, text: str) -> None:
        """Record ``index`` of the slice cannot be counted (unreadable, wrong type)."""

    def counted(self, currency: str, count: int, duplicates: int, open_count: int) -> None:
        """``count`` obligations of ``currency`` were read, ``duplicates`` of them dropped."""

    def rejections(self, closing: Closing) -> int:
        """How many ingest rejections of the currency the closing cycle saw (its report)."""

    def closed(self, closing: Closing, outcome: CycleOutcome) -> None:
        """A cycle closed; called before the fold reads the next record."""


class LogFold:
    """Per-currency ledgers over ``clearing.obligations`` (see the module docstring)."""

    def __init__(self, codec: Codec, context_for: ContextFor, sink: FoldSink) -> None:
        self.codec = codec
        self.context_for = context_for
        self.sink = sink
        self.tracks: dict[str, CurrencyTrack] = {}
        self._plan = plan_of(codec, "Obligation")
        self._limit = codec.record_bytes_max if isinstance(codec, SingleObjectCodec) else 0

    def track(self, currency: str, partition: int) -> CurrencyTrack:
        """The currency's track; a currency read for the first time starts at cycle 0."""
        track = self.tracks.get(currency)
        if track is None:
            track = self.tracks[currency] = CurrencyTrack(CurrencyLedger(currency), partition)
        return track

    def feed(self, records: LogSlice) -> None:
        """Count and close, in log order: each run of plain obligations between two
        other records is counted in bulk, every other record on its own."""
        good, columns = self._plain(records.values)
        rows = np.asarray(good, dtype=np.int64)  # record index of each column row
        plain = np.zeros(len(records.values), dtype=bool)
        plain[rows] = True
        start = 0
        for i in [*np.flatnonzero(~plain).tolist(), len(records.values)]:
            if start < i:  # records start..i-1 are rows lo..lo + (i - start) of the columns
                lo = int(np.searchsorted(rows, start))
                self._add_run(records, start, i, columns, lo)
            if i < len(records.values):
                self._one(records, i)
            start = i + 1

    def _plain(self, values: Sequence[bytes]) -> tuple[list[int], dict[str, list[Any]]]:
        if self._plan is None:
            return [], {}
        sized = [v if len(v) <= self._limit else b"" for v in values]
        return columns_of(self._plan, sized, _COUNTED_FIELDS)

    def _add_run(
        self, records: LogSlice, start: int, end: int, columns: dict[str, list[Any]], lo: int
    ) -> None:
        """Plain obligations start..end-1, one ``add_batch`` per currency (each
        currency's own order kept)."""
        run = {name: column[lo : lo + end - start] for name, column in columns.items()}
        log_ms = records.log_ms[start:end]
        by_currency: dict[str, list[int]] = {}
        if len(set(run["currency"])) == 1:  # the usual case: the key is the currency
            by_currency[run["currency"][0]] = list(range(end - start))
        else:
            for i, currency in enumerate(run["currency"]):
                by_currency.setdefault(currency, []).append(i)
        for currency, picked in by_currency.items():
            pick = rows_of(None if len(picked) == end - start else picked)
            track = self.track(currency, int(records.partitions[start + picked[0]]))
            ids, debtors, creditors, amounts, priorities, sources, ppms, keys = (
                pick(run[f]) for f in _BATCH_FIELDS
            )
            batch = ObligationBatch(currency, ids, debtors, creditors, amounts, priorities,
                                    sources, ppms, keys, pick(log_ms))  # fmt: skip
            duplicates = track.ledger.add_batch(batch)
            self.sink.counted(currency, len(picked), duplicates, track.ledger.open_count)

    def _one(self, records: LogSlice, i: int) -> None:
        try:
            decoded = self.codec.decode(records.values[i])
        except CodecError as exc:
            self.sink.rejected(i, exc.reason_code, str(exc))
            return
        record = decoded.record
        partition, log_time = int(records.partitions[i]), log_time_of(records.log_ms[i])
        if decoded.name == "Obligation":
            track = self.track(str(record["currency"]), partition)
            duplicate = not track.ledger.add(cast(Obligation, record), log_time)
            self.sink.counted(track.ledger.currency, 1, int(duplicate), track.ledger.open_count)
        elif decoded.name == "CycleClose":
            track = self.track(str(record["currency"]), partition)
            marker = cast(CycleClose, record)
            self._close(Closing(track, marker, partition, int(records.offsets[i]), log_time))
        else:
            self.sink.rejected(i, "WRONG_SCHEMA", f"{decoded.name} on clearing.obligations")

    def _close(self, closing: Closing) -> None:
        track, marker = closing.track, closing.marker
        if marker["marker_id"] in track.marker_ids:
            return  # the same marker twice (two schedulers, a retry): it closed already
        ledger = track.ledger
        context = self.context_for(ledger.currency, ledger.cycle_seq + 1)
        rejected = self.sink.rejections(closing)
        outcome = ledger.close(marker, closing.log_time, context, rejected_count=rejected)
        track.closed(marker["marker_id"], closing.offset)
        self.sink.closed(closing, outcome)
