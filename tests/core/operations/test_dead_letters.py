"""The DLQ rules an operator relies on (issue 19): which dead letters a re-drive may
send again, how they are counted, who sent them, and ``--since``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clearing_core.encoding.records import Rejected
from clearing_core.errors import InputError
from clearing_core.ingest.batch import RawEvent
from clearing_core.ingest.identify import SIGNER_HEADER
from clearing_core.ingest.records import (
    REJECTED_HEADERS_MAX,
    REJECTED_ORIGINAL_MAX,
    rejected_record,
)
from clearing_core.operations.dead_letters import (
    REDRIVEN_FROM_HEADER,
    CountBy,
    DeadLetter,
    count_by,
    parse_since,
    redrive_key,
    redrive_refusal,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
EVENT = RawEvent("clearing.events.payment", 2, 17, b"NEWCO", b"\xc3\x01payment", 1_765_000_000_000,
                 ((SIGNER_HEADER, b"NEWCO"), ("trace-id", b"t-1")))  # fmt: skip


def letter(reason: str = "UNKNOWN_PARTICIPANT", stage: str = "ingest", offset: int = 0,
           decoded: dict[str, Any] | None = None, **changes: Any) -> DeadLetter:  # fmt: skip
    rejected: Rejected = {**rejected_record(EVENT, reason, "why", stage=stage), **changes}  # type: ignore[typeddict-item]
    return DeadLetter(0, offset, rejected, "Payment" if decoded else None, decoded)


def test_a_dead_letter_keeps_the_headers_of_the_refused_record() -> None:
    rejected = rejected_record(EVENT, "BAD_SIGNATURE", "forged")
    assert rejected["headers"] == [{"name": SIGNER_HEADER, "value": b"NEWCO"},
                                   {"name": "trace-id", "value": b"t-1"}]  # fmt: skip
    assert rejected["original_cut"] is False


def test_headers_too_big_for_a_dead_letter_are_cut_and_the_letter_marked() -> None:
    big = EVENT._replace(headers=(("a", b"x" * REJECTED_HEADERS_MAX), ("b", b"y")))
    rejected = rejected_record(big, "UNKNOWN_PARTICIPANT", "why")
    assert (len(rejected["headers"]), rejected["original_cut"]) == (0, True)
    assert rejected["message"].startswith("key/value cut to 5/")
    assert "headers to 0 of 2" in rejected["message"]
    long = EVENT._replace(value=b"v" * (REJECTED_ORIGINAL_MAX + 1), headers=())
    assert rejected_record(long, "UNKNOWN_PARTICIPANT", "why")["original_cut"] is True


@pytest.mark.parametrize(("reason", "stage", "cut", "refused"), [
    ("UNKNOWN_PARTICIPANT", "ingest", False, None),
    ("UNKNOWN_CONTRACT", "ingest", False, None),
    ("TIMESTAMP_IN_FUTURE", "ingest", False, None),
    ("UNKNOWN_BATCH", "acks", False, None),
    ("UNKNOWN_SCHEMA", "ingest", False, None),  # readable once the workers are upgraded
    ("MALFORMED_AVRO", "ingest", False, "about the bytes themselves"),
    ("TRUNCATED_AVRO", "ingest", False, "about the bytes themselves"),
    ("BAD_SIGNATURE", "ingest", False, "about the bytes themselves"),
    ("DUPLICATE_EVENT_CONFLICT", "ingest", False, "about the bytes themselves"),
    ("TIMESTAMP_TOO_OLD", "ingest", False, "about the bytes themselves"),
    ("ACK_CONTRADICTS_FINAL", "acks", False, "about the bytes themselves"),
    ("AMOUNT_OVERFLOW", "netting", False, "obligation the ingest stage wrote"),
    ("RAIL_MISMATCH", "settle", False, "could pay twice"),
    ("UNKNOWN_PARTICIPANT", "ingest", True, "only part of the original"),
])  # fmt: skip
def test_only_letters_a_retry_can_change_are_redriven(
    reason: str, stage: str, cut: bool, refused: str | None
) -> None:
    why = redrive_refusal(letter(reason, stage, original_cut=cut))
    assert why == refused if refused is None else refused in (why or "")


def test_dead_letters_are_counted_by_reason_topic_and_the_participant_that_sent_them() -> None:
    letters = [
        letter(decoded={"reporter_id": "DC-SHENZHEN-01"}),   # the decoded reporter first
        letter(decoded={"reporter_id": "DC-SHENZHEN-01"}),
        letter("TRUNCATED_AVRO"),                             # the signer header
        letter("TRUNCATED_AVRO", headers=[], principal="BANK-HK-01"),  # the principal
        letter("UNKNOWN_BATCH", "acks", headers=[], source_topic="clearing.settlement.acks"),
        letter("UNKNOWN_BATCH", "acks", decoded={"bank_id": "BANK-SH-01"}),
    ]  # fmt: skip
    assert count_by(letters, CountBy.PARTICIPANT) == [
        ("DC-SHENZHEN-01", 2), ("(unknown)", 1), ("BANK-HK-01", 1), ("BANK-SH-01", 1),
        ("NEWCO", 1)]  # fmt: skip
    assert count_by(letters, CountBy.REASON) == [
        ("TRUNCATED_AVRO", 2), ("UNKNOWN_BATCH", 2), ("UNKNOWN_PARTICIPANT", 2)]  # fmt: skip
    assert count_by(letters, CountBy.TOPIC) == [
        ("clearing.events.payment", 5), ("clearing.settlement.acks", 1)]  # fmt: skip


def test_each_letter_has_its_own_redrive_key() -> None:
    keys = {redrive_key(letter(offset=o)) for o in range(3)}
    assert keys == {b"dlq/0/0", b"dlq/0/1", b"dlq/0/2"}


def test_a_redriven_record_refused_again_keeps_the_key_of_its_first_letter() -> None:
    """Else a run after a fix that did not work would send it again, and again."""
    headers = [{"name": "trace-id", "value": b"t-1"},
               {"name": REDRIVEN_FROM_HEADER, "value": b"dlq/1/4"}]  # fmt: skip
    again = letter(offset=9, headers=headers)
    assert redrive_key(again) == b"dlq/1/4"


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", NOW - timedelta(seconds=90)),
    ("30m", NOW - timedelta(minutes=30)),
    ("2h", NOW - timedelta(hours=2)),
    ("7d", NOW - timedelta(days=7)),
    ("2026-12-07T08:00:00Z", datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),
    ("2026-12-07T08:00:00", datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),  # UTC when no zone
    ("2026-12-07T16:00:00+08:00", datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),
])  # fmt: skip
def test_since_is_an_age_or_a_time(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "5w", "-2h", ""])
def test_a_since_that_is_neither_is_one_line(text: str) -> None:
    with pytest.raises(InputError, match=r"^--since .*: give an age"):
        parse_since(text, NOW)
