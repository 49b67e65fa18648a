"""Checks of an event's envelope and text that come before its business rules.

Why a separate set of reason codes: ``checks.Reason`` names what is wrong
with a decoded record against the reference data; the codes here name what is
wrong with how it arrived (its Kafka key) or with the characters of its ids,
which no reference-data lookup can explain. Both end in ``clearing.dlq`` the
same way; docs/rejections.md lists every code.

Keys (DESIGN section 4): a meter reading is keyed by its contract id, compute
usage by its provider id and a payment by its payer id. A record under another
key lands on another partition than its peers, so its per-partition
de-duplication and ordering no longer hold: it is refused, never re-keyed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

KEY_SHOWN_MAX = 80  # characters of a bad key quoted in a message


class InputReason(StrEnum):
    """Rejection reason codes of the envelope and text checks."""

    MISSING_KEY = "MISSING_KEY"
    KEY_MISMATCH = "KEY_MISMATCH"
    UNPRINTABLE_FIELD = "UNPRINTABLE_FIELD"


EVENT_KEY_FIELDS: Mapping[str, str] = {
    "MeterReading": "contract_id",
    "ComputeUsage": "provider_id",
    "Payment": "payer_id",
}


def key_problem(
    key: bytes | None, record_type: str, record: Mapping[str, Any], *, must_match: bool
) -> tuple[str, str] | None:
    """``(reason_code, message)`` when an event's Kafka key is missing or, with
    ``must_match``, is not the record's key field (UTF-8); else None."""
    field = EVENT_KEY_FIELDS.get(record_type.removeprefix("clearing."))
    if field is None:
        return None
    if not key:
        return InputReason.MISSING_KEY, f"no Kafka key (a {record_type} is keyed by {field})"
    if must_match and key != str(record.get(field, "")).encode():
        shown = key.decode("utf-8", errors="replace")[:KEY_SHOWN_MAX]
        value = str(record.get(field, ""))[:KEY_SHOWN_MAX]
        return InputReason.KEY_MISMATCH, f"key {shown!r} is not the {field} {value!r}"
    return None


def first_unprintable(text: str) -> str | None:
    """The first character of ``text`` that is not printable (controls, format
    characters such as zero-width spaces, separators other than the ASCII space,
    unassigned or private code points), or None."""
    if text.isprintable():
        return None
    return next(c for c in text if not c.isprintable())
