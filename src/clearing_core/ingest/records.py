"""The ingest stage's last step on a batch: in input order, each event's record, which
is its obligation's columns and its entry in the de-duplication table, or its dead
letter (``IngestResult``).

Why here and in order: an event id is accepted once. Whether an event is a
duplicate depends on every event before it in the batch that was accepted, by
the fast lane (``LaneResult``) or by the per-event steps (``Case``), and on the
ids accepted before the batch (``seen``). So both implementations' verdicts meet
here, and each event that was told apart by its id (decoded, its producer and its
key accepted) is checked against them before any later refusal counts: a resend
is a ``DUPLICATE_EVENT`` whatever else is wrong with it. The lane's runs of new
events are taken in bulk.

Nothing is dropped silently: every input ends as an obligation, a ``Rejected``
record with a reason, or (read again after its offsets were moved back) in
``redelivered``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import numpy as np

from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import RecordHeader, Rejected
from clearing_core.ingest.aggregate import Keyed, obligation_of
from clearing_core.ingest.batch import Case, LaneResult, Priced, PricedColumns, RawBatch, RawEvent
from clearing_core.ingest.checks import EVENT_ID_LENGTH_MAX
from clearing_core.ingest.seen_text import SEPARATOR, digested
from clearing_core.ingest.seen_text import body_digest as body_digest
from clearing_core.ingest.seen_text import seen_entry as seen_entry

SEEN_SEPARATOR = SEPARATOR

# A dead-letter record stays well under the codec's 1 MiB and Faust's 1,000,000-byte
# request limit: ids are short, so a longer key is garbage; values rarely come near.
REJECTED_ORIGINAL_MAX = 900 * 1024
REJECTED_KEY_MAX = 4 * 1024
REJECTED_HEADERS_MAX = 64 * 1024  # names and values together
Forms = Callable[[list[bytes]], list[bytes]]  # the canonical forms of the lane's rows


@runtime_checkable
class SeenLookup(Protocol):
    """Ids accepted before a batch, asked for all of the batch's ids at once (the
    seen store on disk: hashed once, filtered, read in one ``multi_get``)."""

    def found(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The seen entry of each of ``event_ids`` accepted before; only those."""
        ...


Seen = Mapping[str, str] | SeenLookup


def seen_found(seen: Seen, event_ids: Sequence[str]) -> dict[str, str]:
    """The entries ``seen`` holds of ``event_ids``: one call for the whole batch."""
    if isinstance(seen, SeenLookup):
        return seen.found(event_ids)
    return {e: seen[e] for e in event_ids if e in seen}


@dataclass
class IngestResult:
    """What one batch produces: records to send and state to store. The accepted
    events are kept as columns, in input order (``accepted``, ``digests``,
    ``offsets``); ``priced`` and ``seen_items`` give them one tuple per event."""

    accepted: PricedColumns = field(default_factory=PricedColumns)
    digests: list[str] = field(default_factory=list)  # per accepted event: its body digest
    offsets: list[int] = field(default_factory=list)  # per accepted event: its source offset
    redelivered: list[RawEvent] = field(default_factory=list)  # accepted before: nothing again
    rejections: list[Rejected] = field(default_factory=list)
    seen_updates: dict[str, str] = field(default_factory=dict)

    def accept(self, priced: Priced, digest: str, event: RawEvent) -> None:
        """An accepted event: its priced obligation and its seen entry."""
        event_id, time_ms = priced.event_id, priced.event_time_ms
        self.seen_updates[event_id] = seen_entry(digest, time_ms, event.partition, event.offset)
        self.accepted.append(priced)
        self.digests.append(digest)
        self.offsets.append(event.offset)

    def accept_run(
        self, events: RawBatch, found: LaneResult, first: int, last: int, forms: Forms | None
    ) -> None:
        """The lane's accepted rows ``first`` to ``last`` (positions in ``found``),
        whose events are ``events``, all new: accepted in bulk. ``forms`` makes their
        canonical forms; None where each is its own (``FastLane.own_forms``)."""
        values, offsets = events.values, events.offsets
        times = found.time_ms[first:last]
        event_ids = found.event_ids[first:last]
        digests, entries = digested(values if forms is None else forms(values), times,
                                    events.partitions, offsets)  # fmt: skip
        self.seen_updates.update(zip(event_ids, entries, strict=True))
        self.accepted.extend(event_ids, found.keys, found.key_ids[first:last],
                             found.exact[first:last].tolist(), times.tolist())  # fmt: skip
        self.digests += digests
        self.offsets += offsets

    @property
    def priced(self) -> list[Priced]:
        return self.accepted.priced

    @property
    def seen_items(self) -> list[tuple[str, str, int, int]]:
        """Per accepted event (event id, body digest, event time ms, offset)."""
        columns = self.accepted
        return list(zip(columns.event_ids, self.digests, columns.time_ms, self.offsets,
                        strict=True))  # fmt: skip

    @property
    def obligations(self) -> list[Keyed]:
        """One obligation per accepted event, before aggregation."""
        return [obligation_of(p) for p in self.priced]

    @property
    def event_ids(self) -> list[str]:
        return list(self.accepted.event_ids)


def records_of(
    events: Sequence[RawEvent], taken: LaneResult, cases: Sequence[Case],
    known: Seen, codec: Codec, forms: Forms | None,
) -> IngestResult:  # fmt: skip
    """The batch's records, in input order: the fast lane ``taken`` some events, the
    per-event steps decided the others (``cases``, in order); ``forms`` as in
    ``IngestResult.accept_run``. ``known`` is asked once, for every id in the batch."""
    batch = RawBatch.of(events)
    told_apart = [str(c.event_id) for c in cases if c.identified]
    seen = seen_found(known, [*taken.event_ids, *told_apart])
    result = IngestResult()
    rows = taken.rows.tolist()
    done = told = 0  # the events before ``done`` are decided, ``told`` of them cases
    for first, last in _runs(taken.rows):
        start = rows[first]
        for case in cases[told : told + start - done]:
            _decide_case(result, case, seen, codec)
        told += start - done
        run = batch[start : start + last - first]
        if _all_new(taken.event_ids[first:last], result.seen_updates, seen):
            result.accept_run(run, taken, first, last, forms)
        else:
            for at, event in zip(range(first, last), run, strict=True):
                _decide_row(result, event, taken.priced(at), seen, codec)
        done = start + last - first
    for case in cases[told:]:
        _decide_case(result, case, seen, codec)
    return result


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) positions of each run of consecutive event indices in ``rows``."""
    if not len(rows):
        return []
    breaks = (np.flatnonzero(np.diff(rows) != 1) + 1).tolist()
    starts = [0, *breaks]
    return list(zip(starts, [*breaks, len(rows)], strict=True))


def _all_new(event_ids: list[str], seen_now: Mapping[str, str], seen: Mapping[str, str]) -> bool:
    """No id twice in the run, and none accepted before it (in this batch or earlier)."""
    return (len(set(event_ids)) == len(event_ids) and seen_now.keys().isdisjoint(event_ids)
            and seen.keys().isdisjoint(event_ids))  # fmt: skip


def _decide_row(
    result: IngestResult, event: RawEvent, priced: Priced, seen: Mapping[str, str],
    codec: Codec,
) -> None:  # fmt: skip
    """A row the lane accepted, in a run not all new: accepted where its id is, else
    told as a duplicate (its currency hint is its obligation's: the lane found it)."""
    event_id = priced.event_id
    form = codec.canonical(event.value)
    digest = body_digest(form)
    previous = result.seen_updates.get(event_id) or seen.get(event_id)
    if not _duplicate(result, event, event_id, priced.key[0], previous, digest, form):
        result.accept(priced, digest, event)


def _decide_case(result: IngestResult, case: Case, seen: Mapping[str, str], codec: Codec) -> None:
    """An event of the per-event steps: refused before it was identified; else a
    duplicate, if it is one; else refused by a later step, or accepted."""
    event, refused = case.event, case.refused
    if case.identified:
        form = codec.canonical(event.value)
        digest = body_digest(form)
        event_id = str(case.event_id)
        previous = result.seen_updates.get(event_id) or seen.get(event_id)
        if _duplicate(result, event, case.event_id, case.hint, previous, digest, form):
            return
        if refused is None and case.priced is not None:
            result.accept(case.priced, digest, event)
            return
    assert refused is not None, "a case the steps left undecided"
    result.rejections.append(rejected_record(
        event, refused.reason_code, refused.message, refused.event_id, refused.currency,
        principal=refused.principal,
    ))  # fmt: skip


def _duplicate(
    result: IngestResult, event: RawEvent, event_id: str | None, hint: str | None,
    previous: str | None, digest: str, form: bytes,
) -> bool:  # fmt: skip
    """Whether the event's id was accepted before (``previous``: its seen entry), and
    then its verdict: nothing for the very record read again, else a dead letter."""
    if previous is None:
        return False
    same = _same_event(previous, digest, event, form)
    if same and _redelivered(previous, event):
        result.redelivered.append(event)
        return True
    code = "DUPLICATE_EVENT" if same else "DUPLICATE_EVENT_CONFLICT"
    text = "event id already accepted" if same else "event id reused with different content"
    result.rejections.append(rejected_record(event, code, f"{event_id}: {text}", event_id, hint))
    return True


def seen_parts(entry: str) -> tuple[str, int, int, int]:
    """(digest, event time in ms, partition, offset) of a seen entry."""
    digest, time_ms, partition, offset = entry.split(SEEN_SEPARATOR)
    return digest, int(time_ms), int(partition), int(offset)


def _same_event(entry: str, digest: str, event: RawEvent, form: bytes) -> bool:
    """Whether the seen ``entry`` is of this event: the digest of its canonical
    ``form``, or of its very bytes (an entry of an older writer's event, written before
    digests were of canonical forms, when the event's bytes were hashed as they came)."""
    stored = entry.split(SEEN_SEPARATOR, 1)[0]
    return stored == digest or (form is not event.value and stored == body_digest(event.value))


def _redelivered(entry: str, event: RawEvent) -> bool:
    """The very record that was accepted before (the same event, at the same partition
    and offset), read again: only after its consumer offsets were moved back, because
    the ingest stage commits its offsets with its outputs and its seen state in one
    transaction. Its value is on the log already, inside an obligation that may
    aggregate other events, so it yields nothing and no dead letter
    (``IngestResult.redelivered``)."""
    fields = entry.split(SEEN_SEPARATOR)
    return len(fields) == 4 and fields[2:] == [str(event.partition), str(event.offset)]


def rejected_record(
    event: RawEvent, reason_code: str, message: str, event_id: str | None = None,
    currency: str | None = None, stage: str = "ingest", principal: str | None = None,
) -> Rejected:  # fmt: skip
    """The ``Rejected`` record of an input any stage refuses: the original bytes, its
    headers (a forged event's signature is the evidence) and where they came from, so
    the record can be inspected and re-driven. A key, value or headers too big to fit
    a record under the size limits are cut, the message says so and ``original_cut``
    marks it as not re-drivable (else the dead-letter send itself would fail); an
    over-long event id is left out."""
    original, key = event.value[:REJECTED_ORIGINAL_MAX], event.key
    key = key[:REJECTED_KEY_MAX] if key is not None else None
    headers: list[RecordHeader] = []
    kept_bytes = 0
    for name, value in event.headers:
        kept_bytes += len(name) + len(value)
        if kept_bytes > REJECTED_HEADERS_MAX:
            break
        headers.append({"name": name, "value": value})
    cut = (len(original) < len(event.value) or len(headers) < len(event.headers)
           or (key is not None and len(key) < len(event.key or b"")))  # fmt: skip
    if cut:
        message = (f"key/value cut to {len(key or b'')}/{len(original)} bytes, headers to "
                   f"{len(headers)} of {len(event.headers)}; {message}")  # fmt: skip
    if event_id is not None and len(event_id) > EVENT_ID_LENGTH_MAX:
        event_id = None
    return {
        "source_topic": event.topic, "source_partition": event.partition,
        "source_offset": event.offset, "source_key": key, "original": original,
        "reason_code": reason_code, "message": message[:500], "stage": stage,
        "event_id": event_id, "principal": principal,
        "rejected_at": datetime.fromtimestamp(event.timestamp_ms / 1000, tz=UTC),
        "currency": currency, "headers": headers, "original_cut": cut,
    }  # fmt: skip
