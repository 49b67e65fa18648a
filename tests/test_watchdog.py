"""The stall watchdog's decision, with time passed in."""

from __future__ import annotations

from clearing_services.watchdog import StallDetector

TP = ("clearing.events.meter", 3)


def test_an_unchanged_commit_with_records_waiting_stalls_after_the_limit() -> None:
    detector = StallDetector(stall_seconds_max=300.0)
    assert detector.observe(0.0, {TP: (10, 50)}) == []
    assert detector.observe(299.0, {TP: (10, 60)}) == []
    assert detector.observe(300.0, {TP: (10, 60)}) == [TP]


def test_progress_restarts_the_clock() -> None:
    detector = StallDetector(stall_seconds_max=300.0)
    detector.observe(0.0, {TP: (10, 50)})
    assert detector.observe(250.0, {TP: (11, 50)}) == []
    assert detector.observe(500.0, {TP: (11, 50)}) == []
    assert detector.observe(550.0, {TP: (11, 50)}) == [TP]


def test_nothing_waiting_is_never_a_stall() -> None:
    detector = StallDetector(stall_seconds_max=10.0)
    for t in range(0, 1000, 50):
        assert detector.observe(float(t), {TP: (50, 50)}) == []


def test_a_partition_that_moves_away_and_back_starts_afresh() -> None:
    detector = StallDetector(stall_seconds_max=100.0)
    detector.observe(0.0, {TP: (10, 50)})
    assert detector.observe(60.0, {}) == []
    assert detector.observe(120.0, {TP: (10, 50)}) == []
    assert detector.observe(219.0, {TP: (10, 50)}) == []
    assert detector.observe(220.0, {TP: (10, 50)}) == [TP]


def test_records_arriving_then_drained_clear_the_clock() -> None:
    detector = StallDetector(stall_seconds_max=100.0)
    detector.observe(0.0, {TP: (10, 50)})
    detector.observe(50.0, {TP: (50, 50)})
    assert detector.observe(120.0, {TP: (50, 70)}) == []
    assert detector.observe(219.0, {TP: (50, 70)}) == []
    assert detector.observe(220.0, {TP: (50, 70)}) == [TP]
