"""The ingest stage's work on one micro-batch, as a pure function.

Why pure: the ingest loop is thin (it passes raw records in and writes what
comes out), so every rule here (decode, the topic's record type, duplicate
event ids, validation, exact pricing) is tested without a broker. Plain events
are accepted in columns by the fast lane (``clearing_core.ingest.fast_lane``); every
other event takes the per-event path below, which is also the reference the
tests compare the lane with.

Why pricing keeps no state here: each event's exact price ``q x p`` is split
into whole minor units and a remainder in millionths, both carried on the
obligation. The netting stage, which counts every obligation id exactly once
inside Kafka transactions, adds the remainders up per contract and settles
each whole unit they reach. So a re-delivered event yields the identical
obligation, and no crash can count a remainder twice or lose it.
Nothing is dropped silently: every input ends as an obligation or a
``Rejected`` record with a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from clearing_core.encoding.codec import Codec, CodecError, SingleObjectCodec
from clearing_core.ingest.aggregate import Keyed, Priced, PricedColumns, obligation_of
from clearing_core.ingest.envelope import key_problem
from clearing_core.ingest.fast_lane import FastLane, LaneResult
from clearing_core.ingest.identify import authenticated_principal, check_identity
from clearing_core.ingest.validate import (
    DEFAULT_LIMITS,
    EVENT_ID_LENGTH_MAX,
    PricedInput,
    Rejection,
    ValidationLimits,
    validate_event,
)
from clearing_core.money import MoneyOverflowError, checked_mul
from clearing_core.refdata import ReferenceData

SEEN_SEPARATOR = "|"
_PARTITION, _OFFSET, _VALUE = itemgetter(1), itemgetter(2), itemgetter(4)  # of a RawEvent
# A dead-letter record stays well under the codec's 1 MiB and Faust's 1,000,000-byte
# request limit: ids are short, so a longer key is garbage; values rarely come near.
REJECTED_ORIGINAL_MAX = 900 * 1024
REJECTED_KEY_MAX = 4 * 1024


class RawEvent(NamedTuple):
    """A record as the broker gave it. A named tuple: one is made per consumed
    record, and a frozen dataclass costs several times as much to build."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()  # (name, value), in order


@dataclass
class IngestResult:
    """What one batch produces: records to send and state to store. The accepted
    events are kept as columns, in input order (``accepted``, ``digests``,
    ``offsets``); ``priced`` and ``seen_items`` give them one tuple per event."""

    accepted: PricedColumns = field(default_factory=PricedColumns)
    digests: list[str] = field(default_factory=list)  # per accepted event: its body digest
    offsets: list[int] = field(default_factory=list)  # per accepted event: its source offset
    redelivered: list[RawEvent] = field(default_factory=list)  # accepted before: nothing again
    rejections: list[dict[str, Any]] = field(default_factory=list)
    seen_updates: dict[str, str] = field(default_factory=dict)

    def accept(self, priced: Priced, digest: str, event: RawEvent) -> None:
        """An accepted event: its priced obligation and its seen entry."""
        event_id, time_ms = priced.event_id, priced.event_time_ms
        self.seen_updates[event_id] = seen_entry(digest, time_ms, event.partition, event.offset)
        self.accepted.append(priced)
        self.digests.append(digest)
        self.offsets.append(event.offset)

    def accept_run(self, events: Sequence[RawEvent], found: LaneResult, first: int, last: int,
                   forms: Callable[[list[bytes]], list[bytes]] | None) -> None:  # fmt: skip
        """The lane's accepted rows ``first`` to ``last`` (positions in ``found``),
        whose events are ``events``, all new: accepted in bulk. ``forms`` makes their
        canonical forms; None where each is its own (``FastLane.own_forms``)."""
        values = map(_VALUE, events)
        digests = body_digests(values if forms is None else forms(list(values)))
        times = found.time_ms[first:last].tolist()
        event_ids = found.event_ids[first:last]
        offsets = list(map(_OFFSET, events))
        entries = seen_entries(digests, times, map(_PARTITION, events), offsets)
        self.seen_updates.update(zip(event_ids, entries, strict=True))
        self.accepted.extend(event_ids, found.keys, found.key_ids[first:last],
                             found.exact[first:last].tolist(), times)  # fmt: skip
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


def body_digests(values: Iterable[bytes]) -> list[str]:
    """Identity of each event's content, to tell a resend from a conflicting reuse of
    an id: the first 32 hex digits of the SHA-256 of its canonical form (``Codec.canonical``,
    which is the record's own bytes for every event written with the current schemas).
    One comprehension for a whole run."""
    sha256 = hashlib.sha256
    return [sha256(value).hexdigest()[:32] for value in values]


def body_digest(value: bytes) -> str:
    return body_digests((value,))[0]


def seen_entries(
    digests: Iterable[str], times_ms: Iterable[int], partitions: Iterable[int],
    offsets: Iterable[int],
) -> list[str]:  # fmt: skip
    """What the de-duplication table stores per event id: digest, event time, source
    partition and offset. Time and partition let the table forget ids older than the
    maximum event age, partition by partition; partition and offset tell a record the
    broker delivers again (after a crash or rebalance) from a participant's resend."""
    sep = SEEN_SEPARATOR
    return [f"{d}{sep}{t}{sep}{p}{sep}{o}"
            for d, t, p, o in zip(digests, times_ms, partitions, offsets, strict=True)]  # fmt: skip


def seen_entry(digest: str, event_time_ms: int, partition: int, offset: int) -> str:
    return seen_entries((digest,), (event_time_ms,), (partition,), (offset,))[0]


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


def currency_hint(
    record_type: str, record: Mapping[str, Any], refdata: ReferenceData
) -> str | None:
    """The currency an event would have settled in, where the reference data tells."""
    if record_type == "Payment":
        currency = record.get("currency")
        return currency if currency in refdata.currencies else None
    if record_type == "MeterReading":
        contract = refdata.contracts.get(str(record.get("contract_id")))
        return contract.currency if contract else None
    book = refdata.price_books.get(str(record.get("price_book_id")))
    return book.currency if book else None


def rejected_record(
    event: RawEvent, reason_code: str, message: str, event_id: str | None = None,
    currency: str | None = None, stage: str = "ingest", principal: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The ``Rejected`` record of an input any stage refuses: the original bytes and
    where they came from, so the record can be inspected and re-driven. A key or value
    too big to fit a record under the size limits is cut, and the message says so (else
    the dead-letter send itself would fail); an over-long event id is left out."""
    original, key = event.value[:REJECTED_ORIGINAL_MAX], event.key
    key = key[:REJECTED_KEY_MAX] if key is not None else None
    if len(original) < len(event.value) or (key is not None and len(key) < len(event.key or b"")):
        message = f"key/value cut to {len(key or b'')}/{len(original)} bytes; {message}"
    if event_id is not None and len(event_id) > EVENT_ID_LENGTH_MAX:
        event_id = None
    return {
        "source_topic": event.topic, "source_partition": event.partition,
        "source_offset": event.offset, "source_key": key, "original": original,
        "reason_code": reason_code, "message": message[:500], "stage": stage,
        "event_id": event_id, "principal": principal,
        "rejected_at": datetime.fromtimestamp(event.timestamp_ms / 1000, tz=UTC),
        "currency": currency,
    }  # fmt: skip


def process_batch(
    events: Sequence[RawEvent],
    *,
    codec: Codec,
    refdata: ReferenceData,
    expected_type: Mapping[str, str],
    seen: Mapping[str, str],
    limits: ValidationLimits = DEFAULT_LIMITS,
    keys_must_match: bool = False,
    lane: FastLane | None = None,
    fast: bool = True,
) -> IngestResult:
    """Decode, check, de-duplicate, validate and price a batch, in input order.
    An event without a Kafka key is always refused; ``keys_must_match`` also refuses
    one whose key is not its contract, provider or payer id (DESIGN section 4).
    ``lane`` (kept by a worker for its cache) accepts the plain events in columns;
    every other event takes the per-event path, and both decide alike (``fast=False``
    sends every event the per-event way: the reference the tests compare with)."""
    result = IngestResult()
    lane = (lane if lane is not None else _lane_for(codec)) if fast else None
    found = LaneResult.concat([])
    if lane is not None:
        found = lane.accept(events, refdata, expected_type, limits, keys_must_match)
    forms = None if lane is None or lane.own_forms else lane.forms.of
    rows = found.rows.tolist()
    done = 0  # events before this one are decided
    for first, last in _runs(found.rows):
        for event in events[done : rows[first]]:
            _decide(result, event, None, codec, refdata, expected_type, seen, limits,
                    keys_must_match)  # fmt: skip
        run = events[rows[first] : rows[first] + last - first]
        if _all_new(found.event_ids[first:last], result.seen_updates, seen):
            result.accept_run(run, found, first, last, forms)
        else:
            for at, event in zip(range(first, last), run, strict=True):
                _decide(result, event, found.priced(at), codec, refdata, expected_type, seen,
                        limits, keys_must_match)  # fmt: skip
        done = rows[first] + last - first
    for event in events[done:]:
        _decide(result, event, None, codec, refdata, expected_type, seen, limits,
                keys_must_match)  # fmt: skip
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


def _decide(
    result: IngestResult, event: RawEvent, accepted: Priced | None, codec: Codec,
    refdata: ReferenceData, expected_type: Mapping[str, str], seen: Mapping[str, str],
    limits: ValidationLimits, keys_must_match: bool,
) -> None:  # fmt: skip
    """One event, in order: the lane's verdict where it is new, else the per-event path."""
    seen_now = result.seen_updates
    if accepted is not None:
        event_id = accepted.event_id
        if seen_now.get(event_id) is None and seen.get(event_id) is None:
            result.accept(accepted, body_digest(codec.canonical(event.value)), event)
            return
    outcome = _check(event, codec, refdata, expected_type, seen, seen_now, limits,
                     keys_must_match)  # fmt: skip
    if isinstance(outcome, dict):
        result.rejections.append(outcome)
    elif outcome is None:
        result.redelivered.append(event)
    else:
        priced, digest = outcome
        try:
            exact = checked_mul(priced.quantity, priced.unit_price)
        except MoneyOverflowError as exc:
            result.rejections.append(rejected_record(
                event, exc.reason_code, str(exc), priced.event_id, priced.currency
            ))  # fmt: skip
            return
        result.accept(priced_of(priced, exact), digest, event)


def _lane_for(codec: Codec) -> FastLane | None:
    return FastLane(codec) if isinstance(codec, SingleObjectCodec) else None


def priced_of(priced: PricedInput, exact: int) -> Priced:
    """An event accepted by the per-event path, as the fast lane gives one."""
    key = (priced.currency, priced.debtor_id, priced.creditor_id, priced.source,
           priced.priority, priced.contract_id, priced.carry_key or None)  # fmt: skip
    return Priced(priced.event_id, key, exact, priced.event_time_ms)


def _check(
    event: RawEvent, codec: Codec, refdata: ReferenceData, expected_type: Mapping[str, str],
    seen: Mapping[str, str], seen_now: Mapping[str, str], limits: ValidationLimits,
    keys_must_match: bool,
) -> dict[str, Any] | tuple[PricedInput, str] | None:  # fmt: skip
    """A rejection, or the priced event and its body digest, or None for a record
    accepted before and read again (``_redelivered``)."""
    try:
        decoded = codec.decode(event.value, topic=event.topic, times_as_ms=True)
    except CodecError as exc:
        return rejected_record(event, exc.reason_code, str(exc))
    record, wanted = decoded.record, expected_type.get(event.topic)
    event_id = record.get("event_id") if isinstance(record.get("event_id"), str) else None
    hint = currency_hint(decoded.name, record, refdata) if wanted == decoded.name else None
    if wanted != decoded.name:
        return rejected_record(event, "WRONG_SCHEMA", f"{decoded.name} on {event.topic}", event_id)
    denied = check_identity(event, decoded.name, record, refdata)  # who produced it, first
    principal = authenticated_principal(event, denied)
    if denied is not None:
        why = (denied.reason_code, denied.message)
        return rejected_record(event, *why, event_id, hint, principal=principal)
    bad_key = key_problem(event.key, decoded.name, record, must_match=keys_must_match)
    if bad_key is not None:
        return rejected_record(event, *bad_key, event_id, hint)
    form = codec.canonical(event.value)
    digest = body_digest(form)
    previous = seen_now.get(str(event_id)) or seen.get(str(event_id))
    if previous is not None:
        same = _same_event(previous, digest, event, form)
        if same and _redelivered(previous, event):
            return None
        code = "DUPLICATE_EVENT" if same else "DUPLICATE_EVENT_CONFLICT"
        text = "event id already accepted" if same else "event id reused with different content"
        return rejected_record(event, code, f"{event_id}: {text}", event_id, hint)
    checked = validate_event(
        decoded.name, record, refdata, reference_time_ms=event.timestamp_ms, limits=limits
    )
    if isinstance(checked, Rejection):
        return rejected_record(
            event, checked.reason_code, checked.message, event_id, hint, principal=principal
        )
    return checked, digest
