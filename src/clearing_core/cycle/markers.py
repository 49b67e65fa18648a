"""Cycle-close markers: the ``CycleClose`` records that end a currency's cycle.

Why scheduled markers are named by time slot: every netting worker runs a
scheduler, and all of them write the marker of slot ``floor(now / cycle_seconds)``
under the same id, so the netting stage closes each slot once however many
schedulers there are (the fold ignores a marker id it closed already), and a
restarted scheduler never closes a slot twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clearing_core.encoding.records import CloseReason, CycleClose
from clearing_core.errors import InputError


def marker_record(
    marker_id: str, currency: str, reason: CloseReason, by: str, at: datetime
) -> CycleClose:
    """A ``CycleClose`` record."""
    return {"marker_id": marker_id, "currency": currency, "reason": reason,
            "requested_by": by, "requested_at": at}  # fmt: skip


def time_slot(now_seconds: float, cycle_seconds: int) -> int:
    """The slot of ``cycle_seconds`` that holds ``now_seconds`` (seconds since the epoch)."""
    if cycle_seconds <= 0:
        raise InputError(f"a cycle of {cycle_seconds} seconds: it must be positive")
    return int(now_seconds // cycle_seconds)


def scheduled_marker_id(currency: str, cycle_seconds: int, slot: int) -> str:
    """The one id of a slot's scheduled marker, whichever scheduler writes it."""
    return f"sched-{currency}-{cycle_seconds}s-{slot}"


def scheduled_marker(currency: str, cycle_seconds: int, now_seconds: float, by: str) -> CycleClose:
    """The marker of the slot that holds ``now_seconds``, stamped with the slot's start."""
    slot = time_slot(now_seconds, cycle_seconds)
    at = datetime.fromtimestamp(slot * cycle_seconds, tz=UTC)
    marker_id = scheduled_marker_id(currency, cycle_seconds, slot)
    return marker_record(marker_id, currency, "SCHEDULE", by, at)
