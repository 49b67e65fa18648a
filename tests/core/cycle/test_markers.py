"""Scheduled markers are named by time slot: every scheduler writes a slot's marker under
the slot's one id, so however many schedulers run, each slot closes once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.cycle.markers import marker_record, scheduled_marker, time_slot
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.errors import InputError

NOW_SECONDS = datetime(2026, 11, 24, 9, 0, 30, tzinfo=UTC).timestamp()


def test_a_slot_s_marker() -> None:
    marker = scheduled_marker("CNH", 60, NOW_SECONDS + 12.5, by="worker-2")
    slot = int(NOW_SECONDS // 60)
    assert marker == {
        "marker_id": f"sched-CNH-60s-{slot}", "currency": "CNH", "reason": "SCHEDULE",
        "requested_by": "worker-2", "requested_at": datetime(2026, 11, 24, 9, tzinfo=UTC),
    }  # fmt: skip


@given(
    cycle_seconds=st.integers(1, 86_400),
    slot_start_ms=st.integers(0, 7 * 10**12),  # any time until 2191
    first_ms=st.integers(0, 86_400_000),
    second_ms=st.integers(0, 86_400_000),
)
def test_two_schedulers_in_one_slot_write_one_marker(
    cycle_seconds: int, slot_start_ms: int, first_ms: int, second_ms: int
) -> None:
    slot_ms = cycle_seconds * 1000
    start_ms = slot_start_ms - slot_start_ms % slot_ms
    a = scheduled_marker("USD", cycle_seconds, (start_ms + first_ms % slot_ms) / 1000, by="a")
    b = scheduled_marker("USD", cycle_seconds, (start_ms + second_ms % slot_ms) / 1000, by="b")
    after = scheduled_marker("USD", cycle_seconds, (start_ms + slot_ms) / 1000, by="a")
    assert a["marker_id"] == b["marker_id"] != after["marker_id"]
    assert a["requested_at"] == b["requested_at"] < after["requested_at"]
    assert a["requested_at"].timestamp() * 1000 == start_ms


def test_currencies_and_cycle_lengths_have_their_own_markers() -> None:
    ids = {
        scheduled_marker(currency, seconds, NOW_SECONDS, by="w")["marker_id"]
        for currency in ("CNH", "USD")
        for seconds in (60, 3600)
    }
    assert len(ids) == 4


def test_a_cycle_must_have_a_length() -> None:
    assert time_slot(NOW_SECONDS, 86_400) == int(NOW_SECONDS // 86_400)
    for seconds in (0, -60):
        with pytest.raises(InputError, match=f"a cycle of {seconds} seconds"):
            time_slot(NOW_SECONDS, seconds)


def test_markers_are_cycle_close_records(codec: SingleObjectCodec) -> None:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    for marker in (scheduled_marker("CNH", 60, NOW_SECONDS, by="w"),
                   marker_record("manual-1", "CNH", "MANUAL", "ops", at)):  # fmt: skip
        assert codec.decode(codec.encode("CycleClose", marker)).record == marker
