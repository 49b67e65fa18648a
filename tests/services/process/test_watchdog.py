"""The stall watchdog's decision, with time passed in; how a hung process ends."""

from __future__ import annotations

import subprocess
import sys

from clearing_services.process.watchdog import StallDetector
from clearing_services.runtime.failure import EXIT_FATAL

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


def test_a_deadline_ends_a_hung_process_with_status_70_and_every_threads_stack() -> None:
    """Where it hung is what an operator needs from the log of a process the watchdog or
    a deadline ended; the exception alone says only that it did."""
    script = (
        "import io, logging, sys, time\n"
        "logging.basicConfig(stream=sys.__stderr__)\n"
        "sys.stderr = io.StringIO()  # as Faust's worker does: no file descriptor behind it\n"
        "from clearing_services.runtime.failure import deadline\n"
        "def wedged_in_a_call():\n"
        "    time.sleep(60)\n"
        "with deadline(0.5, 'a call that never returns'):\n"
        "    wedged_in_a_call()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == EXIT_FATAL
    assert "a call that never returns failed, exiting without committing" in done.stderr
    assert "in wedged_in_a_call" in done.stderr  # the main thread's stack, where it hung
