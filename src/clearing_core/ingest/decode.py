"""The ingest stage's first step, one event at a time: the record of each event the
fast lane did not take, checked to be of its topic's type.

The fast lane decodes its events in columns instead (``fast_lane.decode``). Here
the codec decodes each to a dict (times as ms), which the later steps read; an
event it cannot read, or of another type than its topic carries, is refused. The
currency the event would settle in is noted for its dead letter, should a later
step refuse it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.ingest.batch import Case, RawEvent, Refused
from clearing_core.refdata import ReferenceData


def decode_events(
    events: Sequence[RawEvent], positions: Iterable[int], codec: Codec,
    refdata: ReferenceData, expected_type: Mapping[str, str],
) -> list[Case]:  # fmt: skip
    """A case for each event at ``positions`` of the batch, in their order."""
    return [_decoded(Case(at, events[at]), codec, refdata, expected_type) for at in positions]


def _decoded(
    case: Case, codec: Codec, refdata: ReferenceData, expected_type: Mapping[str, str]
) -> Case:
    event = case.event
    try:
        decoded = codec.decode(event.value, topic=event.topic, times_as_ms=True)
    except CodecError as exc:
        case.refused = Refused(exc.reason_code, str(exc))
        return case
    record = decoded.record
    event_id = record.get("event_id")
    case.event_id = event_id if isinstance(event_id, str) else None
    if expected_type.get(event.topic) != decoded.name:
        case.refused = Refused("WRONG_SCHEMA", f"{decoded.name} on {event.topic}", case.event_id)
        return case
    case.name, case.record = decoded.name, record
    case.hint = currency_hint(decoded.name, record, refdata)
    return case


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
