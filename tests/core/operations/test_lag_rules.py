"""The pure lag rules of ``clearing_core.operations.lag``: arithmetic, Burrow-style statuses and the
lag-time estimates, one test per rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing_core.operations.lag import (
    ERR,
    OK,
    REWIND,
    STALL,
    STOP,
    WARN,
    GroupReport,
    OffsetSample,
    PartitionWindow,
    evaluate_partition,
    group_status,
    judged,
    lag_seconds_from_record,
    lag_seconds_interpolated,
    partition_lag,
    partition_status,
    report_json,
)

NOW = 1_800_000_000_000


def window(
    *points: tuple[int | None, int], start: int = 0, step_ms: int = 1000
) -> list[OffsetSample]:
    """Samples (committed, log end) one second apart, the last at NOW."""
    n = len(points)
    return [
        OffsetSample(NOW - (n - 1 - i) * step_ms, committed, end, start)
        for i, (committed, end) in enumerate(points)
    ]


def test_lag_is_log_end_minus_committed_never_negative() -> None:
    assert partition_lag(40, 0, 100) == 60
    assert partition_lag(100, 0, 100) == 0
    assert partition_lag(120, 0, 100) == 0  # a log truncated below the committed offset
    assert partition_lag(5, 10, 100) == 95  # records deleted by retention still count, as in Kafka


def test_lag_without_committed_offset_counts_from_log_start() -> None:
    assert partition_lag(None, 30, 100) == 70
    assert OffsetSample(NOW, None, 100, 30).lag == 70


@given(
    st.one_of(st.none(), st.integers(0, 10**12)),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
)
def test_lag_never_negative(committed: int | None, start: int, end: int) -> None:
    assert partition_lag(committed, start, end) >= 0


def test_ok_when_lag_zero_anywhere_in_window() -> None:
    assert partition_status(window((10, 20), (20, 20), (20, 30)), active=True, now_ms=NOW) == OK
    # even a stopped consumer is fine while it has nothing to read
    assert partition_status(window((20, 20), (20, 20)), active=False, now_ms=NOW) == OK


def test_ok_when_offsets_move_and_lag_decreases() -> None:
    assert partition_status(window((10, 50), (20, 52), (35, 54)), active=True, now_ms=NOW) == OK


def test_warn_when_committing_but_lag_never_decreases() -> None:
    samples = window((10, 50), (20, 70), (30, 90))
    assert partition_status(samples, active=True, now_ms=NOW) == WARN
    # equal lags count as not decreasing (Burrow's checkIfLagNotDecreasing)
    assert partition_status(window((10, 50), (20, 60)), active=True, now_ms=NOW) == WARN


def test_stall_when_members_commit_but_offset_does_not_move() -> None:
    samples = window((10, 50), (10, 50), (10, 60))
    assert partition_status(samples, active=True, now_ms=NOW) == STALL


def test_stop_when_no_progress_and_no_members() -> None:
    samples = window((10, 50), (10, 50), (10, 50))
    assert partition_status(samples, active=False, now_ms=NOW) == STOP
    # never committed, lag from log start, nobody consuming
    assert partition_status(window((None, 5), (None, 5)), active=False, now_ms=NOW) == STOP


def test_stop_or_stall_by_last_commit_time_as_burrow() -> None:
    samples = window((10, 50), (10, 50), (10, 50))  # window spans 2 s
    old_commit = NOW - 60_000  # older than the window: STOP even with members
    assert partition_status(samples, active=True, now_ms=NOW, last_commit_ms=old_commit) == STOP
    recent = NOW - 1_000  # committed inside the window (same offset): STALL
    assert partition_status(samples, active=False, now_ms=NOW, last_commit_ms=recent) == STALL


def test_rewind_when_committed_offset_goes_back() -> None:
    assert partition_status(window((30, 50), (20, 50), (25, 50)), active=True, now_ms=NOW) == REWIND
    # a rewind wins over everything, even a lag of zero
    assert partition_status(window((50, 50), (40, 50)), active=True, now_ms=NOW) == REWIND


def test_single_sample_cannot_show_movement() -> None:
    assert partition_status(window((10, 50)), active=True, now_ms=NOW) == OK
    assert partition_status(window((10, 50)), active=False, now_ms=NOW) == STOP
    assert partition_status(window((50, 50)), active=False, now_ms=NOW) == OK
    assert partition_status([], active=False, now_ms=NOW) == OK


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], OK),
        ([OK, OK], OK),
        ([OK, WARN], WARN),
        ([WARN, STALL], ERR),
        ([OK, STOP], ERR),
        ([REWIND], ERR),
    ],
)
def test_group_status(statuses: list[str], expected: str) -> None:
    assert group_status(statuses) == expected


def test_lag_seconds_from_record() -> None:
    assert lag_seconds_from_record(0, NOW - 60_000, NOW) == 0.0
    assert lag_seconds_from_record(5, NOW - 60_000, NOW) == 60.0
    assert lag_seconds_from_record(5, None, NOW) is None
    assert lag_seconds_from_record(5, 0, NOW) is None  # a record without time
    assert lag_seconds_from_record(5, NOW + 5_000, NOW) == 0.0  # clock skew: never negative


def test_lag_seconds_interpolated_in_history() -> None:
    # log end 100 at NOW-10 s, 200 at NOW: offset 150 was written at NOW-5 s
    history = [OffsetSample(NOW - 10_000, 90, 100), OffsetSample(NOW, 150, 200)]
    assert lag_seconds_interpolated(history, 150, NOW) == pytest.approx(5.0)
    assert lag_seconds_interpolated(history, 100, NOW + 1_000) == pytest.approx(11.0)
    assert lag_seconds_interpolated(history, 200, NOW) == 0.0  # caught up
    assert lag_seconds_interpolated(history, 50, NOW) is None  # older than the history
    flat = [OffsetSample(NOW - 1_000, 10, 100), OffsetSample(NOW, 10, 100)]
    assert lag_seconds_interpolated(flat, 10, NOW) is None
    assert lag_seconds_interpolated([], 10, NOW) is None
    # several samples: the segment that brackets the offset
    steps = [OffsetSample(NOW - 3_000 + i * 1_000, 0, 100 * (i + 1)) for i in range(4)]
    assert lag_seconds_interpolated(steps, 250, NOW) == pytest.approx(1.5)


def test_window_is_bounded() -> None:
    w = PartitionWindow(max_samples=3)
    for i in range(10):
        w.add(OffsetSample(NOW + i, i, 20))
    assert [s.committed for s in w.samples] == [7, 8, 9]


def test_evaluate_partition_and_json_shape() -> None:
    w = PartitionWindow()
    for sample in window((10, 50), (10, 50)):
        w.add(sample)
    report = evaluate_partition(
        "t", 0, w, active=False, now_ms=NOW, record_time_ms=NOW - 30_000, record_probed=True
    )
    assert (report.lag, report.status, report.lag_seconds) == (40, STOP, 30.0)
    # the probe found no data record (only transaction markers): no lag in time
    markers = evaluate_partition("t", 0, w, active=True, now_ms=NOW, record_probed=True)
    assert markers.lag_seconds == 0.0
    unknown = evaluate_partition("t", 0, w, active=True, now_ms=NOW)
    assert unknown.lag_seconds is None
    group = GroupReport("g", "EMPTY", 0, (report,))
    assert group.status == ERR
    assert report_json([group]) == {
        "groups": [
            {
                "group": "g", "state": "EMPTY", "status": ERR, "members": 0,
                "partitions": [
                    {"topic": "t", "partition": 0, "committed_offset": 10, "log_end_offset": 50,
                     "lag": 40, "lag_seconds": 30.0, "status": STOP, "log_start_offset": 0,
                     "lag_from": "committed"},
                ],
            }
        ]
    }  # fmt: skip


def test_evaluate_partition_prefers_interpolation_and_zero_lag_has_zero_time() -> None:
    w = PartitionWindow()
    w.add(OffsetSample(NOW - 10_000, 90, 100))
    w.add(OffsetSample(NOW, 150, 200))
    report = evaluate_partition(
        "t", 1, w, active=True, now_ms=NOW, record_time_ms=NOW - 999_000, record_probed=True
    )
    assert report.lag_seconds == pytest.approx(5.0)
    w.add(OffsetSample(NOW + 1_000, 200, 200))
    assert evaluate_partition("t", 1, w, active=True, now_ms=NOW + 1_000).lag_seconds == 0.0
    never = PartitionWindow()
    never.add(OffsetSample(NOW, None, 100, 40))
    assert evaluate_partition("t", 2, never, active=True, now_ms=NOW).to_json()["lag_from"] == (
        "log_start"
    )


def test_only_transaction_markers_left_counts_as_caught_up() -> None:
    # committed at the commit marker of the last transaction: Kafka reports lag 1 for ever
    samples = window((10, 11), (10, 11), (10, 11))
    assert partition_status(samples, active=True, now_ms=NOW) == STALL
    assert partition_status(samples, active=True, now_ms=NOW, caught_up=True) == OK
    assert partition_status(samples, active=False, now_ms=NOW, caught_up=True) == OK
    w = PartitionWindow()
    for sample in samples:
        w.add(sample)
    report = evaluate_partition("t", 0, w, active=True, now_ms=NOW, record_probed=True)
    assert (report.lag, report.lag_seconds, report.status) == (1, 0.0, OK)


def test_a_state_topic_the_group_never_committed_is_not_judged() -> None:
    """A Faust table's changelog or its leader topic, assigned but read with offsets of
    the app's own: leaving it in made the acks group ERR however well it consumed."""
    assert not judged("clearing-acks_state-changelog", None)
    assert not judged("clearing-__assignor-__leader", None)
    assert judged("clearing-acks_state-changelog", 12)  # committed: the group reads it
    assert judged("clearing.settlement.acks", None)  # input never committed: judged
