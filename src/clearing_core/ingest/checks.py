"""The checks the business rules (``validate``) are made of: text, times, parties
and accounts, with the reason codes they refuse with and the limits they apply.

Why apart from the rules: each rule of an event type is a short list of these
checks in a fixed order, the first failure winning (``RejectError``); the fast lane
applies the same limits in columns (``fast_lane``), so both read them here.
Nothing here reads a clock or a setting: the reference time (the record's Kafka
log timestamp) and the limits are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from clearing_core.errors import InputError
from clearing_core.ingest.envelope import InputReason, first_unprintable
from clearing_core.refdata.models import Participant
from clearing_core.refdata.snapshot import ReferenceData

ID_LENGTH_MAX = 64
EVENT_ID_LENGTH_MAX = 128
TEXT_LENGTH_MAX = 256  # payment reference, model name
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class Reason(StrEnum):
    """Rejection reason codes of the business rules (the ``reason_code`` of
    ``clearing.Rejected``; ``envelope.InputReason`` holds those of the envelope,
    ``identify.IdentityReason`` those of the producer check)."""

    UNKNOWN_PARTICIPANT = "UNKNOWN_PARTICIPANT"
    INACTIVE_PARTICIPANT = "INACTIVE_PARTICIPANT"
    UNKNOWN_CONTRACT = "UNKNOWN_CONTRACT"
    UNKNOWN_METER = "UNKNOWN_METER"
    METER_NOT_ON_CONTRACT = "METER_NOT_ON_CONTRACT"
    REPORTER_NOT_PARTY = "REPORTER_NOT_PARTY"
    UNKNOWN_PRICE_BOOK = "UNKNOWN_PRICE_BOOK"
    UNKNOWN_SKU = "UNKNOWN_SKU"
    CUSTOMER_NOT_ALLOWED = "CUSTOMER_NOT_ALLOWED"
    CURRENCY_NOT_ALLOWED = "CURRENCY_NOT_ALLOWED"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    UNKNOWN_PAYMENT_KIND = "UNKNOWN_PAYMENT_KIND"
    NEGATIVE_QUANTITY = "NEGATIVE_QUANTITY"
    QUANTITY_ABOVE_LIMIT = "QUANTITY_ABOVE_LIMIT"
    NON_POSITIVE_AMOUNT = "NON_POSITIVE_AMOUNT"
    SELF_PAYMENT = "SELF_PAYMENT"
    BAD_INTERVAL = "BAD_INTERVAL"
    TIMESTAMP_TOO_OLD = "TIMESTAMP_TOO_OLD"
    TIMESTAMP_IN_FUTURE = "TIMESTAMP_IN_FUTURE"
    CONTRACT_NOT_VALID_AT = "CONTRACT_NOT_VALID_AT"
    FIELD_TOO_LONG = "FIELD_TOO_LONG"
    EMPTY_FIELD = "EMPTY_FIELD"


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Bounds on event times, relative to the reference time passed with each event."""

    max_age_ms: int = 35 * 86_400_000
    max_future_skew_ms: int = 5 * 60_000
    max_meter_interval_ms: int = 86_400_000
    max_usage_window_ms: int = 86_400_000

    def __post_init__(self) -> None:
        assert self.max_age_ms > 0
        assert self.max_future_skew_ms >= 0
        assert self.max_meter_interval_ms > 0
        assert self.max_usage_window_ms > 0


DEFAULT_LIMITS = ValidationLimits()


@dataclass(frozen=True, slots=True)
class Rejection:
    """A verdict of refusal: the reason code and one-line message of a dead letter."""

    reason_code: str
    message: str
    event_id: str | None


class RejectError(Exception):
    """The first failed check: the rule stops there (``validate`` turns it into a
    ``Rejection``)."""

    def __init__(self, reason: Reason | InputReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def to_ms(value: datetime | int) -> int:
    """Milliseconds since the epoch of a decoded timestamp (aware datetime) or int ms."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError("timestamp without a time zone")
        return (value - _EPOCH) // _ONE_MS
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"timestamp must be a datetime or int ms, got {type(value).__name__}")
    return value


def check_text(record: Mapping[str, Any], field: str, limit: int = ID_LENGTH_MAX) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value:
        raise RejectError(Reason.EMPTY_FIELD, f"{field} is empty")
    if len(value) > limit:
        raise RejectError(
            Reason.FIELD_TOO_LONG, f"{field} is {len(value)} characters (max {limit})"
        )
    bad = first_unprintable(value)
    if bad is not None:
        raise RejectError(
            InputReason.UNPRINTABLE_FIELD, f"{field} holds unprintable character U+{ord(bad):04X}"
        )
    return value


def check_optional_text(record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    if not isinstance(value, str):
        return None
    if len(value) > TEXT_LENGTH_MAX:
        raise RejectError(
            Reason.FIELD_TOO_LONG, f"{field} is {len(value)} characters (max {TEXT_LENGTH_MAX})"
        )
    return value


def check_times(
    start_ms: int, end_ms: int, reported_ms: int, max_span_ms: int, now_ms: int,
    limits: ValidationLimits, what: str,
) -> None:  # fmt: skip
    if end_ms <= start_ms:
        raise RejectError(Reason.BAD_INTERVAL, f"{what} ends at or before it starts")
    if end_ms - start_ms > max_span_ms:
        raise RejectError(
            Reason.BAD_INTERVAL, f"{what} lasts {end_ms - start_ms} ms (max {max_span_ms})"
        )
    check_not_future(max(end_ms, reported_ms), now_ms, limits, f"{what} end or reported_at")
    check_not_old(min(start_ms, reported_ms), now_ms, limits, f"{what} start or reported_at")


def check_not_future(at_ms: int, now_ms: int, limits: ValidationLimits, what: str) -> None:
    if at_ms > now_ms + limits.max_future_skew_ms:
        raise RejectError(
            Reason.TIMESTAMP_IN_FUTURE,
            f"{what} is {at_ms - now_ms} ms after the log time (max {limits.max_future_skew_ms})",
        )


def check_not_old(at_ms: int, now_ms: int, limits: ValidationLimits, what: str) -> None:
    if at_ms < now_ms - limits.max_age_ms:
        raise RejectError(
            Reason.TIMESTAMP_TOO_OLD,
            f"{what} is {now_ms - at_ms} ms before the log time "
            f"(max {limits.max_age_ms}: the de-duplication window)",
        )


def participant(refdata: ReferenceData, participant_id: str, field: str) -> Participant:
    found = refdata.participants.get(participant_id)
    if found is None:
        raise RejectError(
            Reason.UNKNOWN_PARTICIPANT, f"{field} {participant_id!r} is not a participant"
        )
    return found


def require_active(*parties: Participant) -> None:
    for party in parties:
        if not party.active:
            raise RejectError(Reason.INACTIVE_PARTICIPANT, f"{party.participant_id!r} is inactive")


def require_account(refdata: ReferenceData, participant_id: str, currency: str) -> None:
    if refdata.account(participant_id, currency) is None:
        raise RejectError(
            Reason.CURRENCY_NOT_ALLOWED, f"{participant_id!r} has no {currency} account"
        )
