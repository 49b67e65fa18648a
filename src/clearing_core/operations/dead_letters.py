"""The dead-letter queue as an operator works it: counts by reason, topic or
participant, which letters a re-drive may send again, and the key that makes a
re-drive happen once per letter.

Why a list of permanent reasons: a re-drive sends the same bytes and headers
again. Where the refusal was about the bytes themselves (malformed Avro, a
signature that does not verify, a negative quantity, an event too old), the same
bytes are refused again, so sending them is noise on the event topics and a
second dead letter. The other reasons name reference data or time (an unknown
participant or contract, a timestamp in the future, an acknowledgement that came
before its batch), which an operator can fix; those are the ones worth a retry.

Why the netting and settlement stages' letters are never re-sent: their sources
are records the clearing house wrote itself (obligations, batches). Sending a
batch to its rail again could pay twice; the fix for those is in the stage.

Pure: no Kafka; ``services/clearing_services/operations/dlq.py`` reads and sends.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from clearing_core.encoding.codec import (
    EmptyRecordError,
    EncodeError,
    InvalidTextError,
    MalformedRecordError,
    NotSingleObjectError,
    RecordTooLargeError,
    TrailingBytesError,
    TruncatedRecordError,
    WrongSchemaError,
)
from clearing_core.encoding.jsonrecord import RecordValueError
from clearing_core.encoding.records import Rejected
from clearing_core.errors import InputError
from clearing_core.ingest.checks import Reason
from clearing_core.ingest.envelope import InputReason
from clearing_core.ingest.identify import SIGNER_HEADER, IdentityReason

# Refusals a retry of the same bytes and headers cannot change.
PERMANENT_REASONS: frozenset[str] = frozenset(str(reason) for reason in {
    *(e.reason_code for e in (
        NotSingleObjectError, TruncatedRecordError, MalformedRecordError, EmptyRecordError,
        TrailingBytesError, InvalidTextError, WrongSchemaError, RecordTooLargeError,
        EncodeError, RecordValueError,
    )),
    InputReason.MISSING_KEY, InputReason.KEY_MISMATCH, InputReason.UNPRINTABLE_FIELD,
    IdentityReason.BAD_SIGNATURE, IdentityReason.UNSIGNED_EVENT,
    Reason.NEGATIVE_QUANTITY, Reason.NON_POSITIVE_AMOUNT, Reason.SELF_PAYMENT,
    Reason.BAD_INTERVAL, Reason.FIELD_TOO_LONG, Reason.EMPTY_FIELD, Reason.TIMESTAMP_TOO_OLD,
    "DUPLICATE_EVENT", "DUPLICATE_EVENT_CONFLICT", "ACK_CONTRADICTS_FINAL",
})  # fmt: skip

# Stages whose sources the clearing house wrote itself: never re-sent.
STAGES_NOT_REDRIVEN: Mapping[str, str] = {
    "netting": "an obligation the ingest stage wrote",
    "settle": "a settlement batch (sent again, it could pay twice)",
}
UNKNOWN_PARTICIPANT_LABEL = "(unknown)"
# On a re-sent record: the place of the dead letter it came from. Refused again, its
# new dead letter carries it, so it counts as that letter re-driven, not a new one.
REDRIVEN_FROM_HEADER = "clearing-redriven-from"
_AGO = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
PARTY_FIELDS = ("reporter_id", "bank_id")  # who sent an event; who sent an ack


class CountBy(StrEnum):
    REASON = "reason"
    TOPIC = "topic"
    PARTICIPANT = "participant"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the DLQ: where it sits, the ``Rejected`` record, and the refused
    original decoded when its bytes decode (``decoded_type`` names the record type)."""

    partition: int
    offset: int
    rejected: Rejected
    decoded_type: str | None = None
    decoded: Mapping[str, object] | None = None

    @property
    def where(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def participant(self) -> str:
        """Who sent the refused record: the party field of the decoded original, else
        its signer header, else the authenticated principal, as far as told."""
        for name in PARTY_FIELDS:
            value = (self.decoded or {}).get(name)
            if isinstance(value, str) and value:
                return value
        for header in self.rejected.get("headers", []):
            if header["name"] == SIGNER_HEADER and header["value"]:
                return header["value"].decode("utf-8", "replace")
        return self.rejected.get("principal") or UNKNOWN_PARTICIPANT_LABEL


def redrive_refusal(letter: DeadLetter) -> str | None:
    """Why ``letter`` may not be re-driven, or None when it may."""
    rejected = letter.rejected
    stage_source = STAGES_NOT_REDRIVEN.get(rejected["stage"])
    if stage_source is not None:
        return f"refused by the {rejected['stage']} stage: its source is {stage_source}"
    if rejected["reason_code"] in PERMANENT_REASONS:
        return f"{rejected['reason_code']} is about the bytes themselves: a retry cannot change it"
    if rejected.get("original_cut", False):
        return "the dead letter holds only part of the original (cut to fit)"
    return None


def count_by(letters: Iterable[DeadLetter], by: CountBy) -> list[tuple[str, int]]:
    """(label, count), the most frequent first, ties by label."""
    counts = Counter(_label(d, by) for d in letters)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _label(letter: DeadLetter, by: CountBy) -> str:
    if by is CountBy.REASON:
        return letter.rejected["reason_code"]
    if by is CountBy.TOPIC:
        return letter.rejected["source_topic"]
    return letter.participant


def redrive_key(letter: DeadLetter) -> bytes:
    """The key of a letter's re-drive record: the place on the DLQ of the letter it
    started as, which a second run finds. A re-sent record refused again is a new
    letter with the first one's key (its REDRIVEN_FROM_HEADER), so a run after a fix
    that did not work sends nothing again: each letter is re-driven once."""
    for header in letter.rejected.get("headers", []):
        if header["name"] == REDRIVEN_FROM_HEADER:
            return header["value"]
    return f"dlq/{letter.partition}/{letter.offset}".encode()


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: an age (``90s``, ``30m``, ``2h``, ``7d``) before ``now``, or an ISO
    8601 time (UTC when it names no zone)."""
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return now - timedelta(seconds=int(ago[1]) * _UNIT_SECONDS[ago[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--since {text!r}: give an age (30m, 2h, 7d) or a time (2026-12-07T09:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
