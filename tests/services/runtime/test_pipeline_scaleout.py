"""Scale-out: two worker processes share the partitions and give the batches a replay
(one process re-netting the log) gives. A broker of its own, so the Faust tables
start empty and no other test's cycles shift the numbering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.operations.audit import coverage
from tests.support.chaos import Fleet
from tests.support.pipeline import (
    clearing,
    close_cycle,
    generated,
    group_members,
    send_generated,
    wait_for_reports,
    wait_until,
)

pytestmark = pytest.mark.own_broker
GROUPS = ("clearing-ingest", "clearing-netting")


def test_two_workers_share_the_work_and_agree_with_one(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    """Two worker processes under a supervisor, as in production: one that ends
    itself (a stall caught by the watchdog, any fatal error) is started again."""
    events = generated(seed=11, count=1_500)
    valid = sum(1 for e in events if e.expect is None)
    fleet = Fleet(bootstrap, state / "fleet", size=2)
    fleet.start_all()
    try:
        wait_for_members(bootstrap, 2)
        share_and_close(bootstrap, state, codec, events, valid, fleet)
    finally:
        fleet.stop_all()
    covered = coverage(bootstrap, codec)
    covered.assert_sound()
    assert len(covered.events("s11")) == valid
    replayed = clearing(bootstrap, state, "replay", "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def wait_for_members(bootstrap: str, count: int) -> None:
    wait_until(
        f"{count} workers in both groups",
        lambda: min(group_members(bootstrap, g) for g in GROUPS) >= count,
        timeout_seconds=180,
    )


def share_and_close(
    bootstrap: str, state: Path, codec: SingleObjectCodec, events: list[Any], valid: int,
    fleet: Fleet,
) -> None:  # fmt: skip
    import time

    before = {c: len(wait_for_reports(bootstrap, codec, c, 0)) for c in ("CNH", "USD")}
    send_generated(bootstrap, codec, events)
    deadline = time.monotonic() + 240
    while len(coverage(bootstrap, codec).events("s11")) < valid:
        assert time.monotonic() < deadline, (
            f"not every valid event became an obligation {fleet.exits}"
        )
        fleet.supervise()
        time.sleep(1)
    for currency in ("CNH", "USD"):
        close_cycle(bootstrap, state, currency)
        wait_for_reports(bootstrap, codec, currency, before[currency] + 1)
