"""The short chaos run of every ``make test``: workers killed with SIGKILL, the broker
restarted and a worker paused past its session timeout while events stream in; after
every round the settlement equals the ground truth exactly (``make chaos``: the long
version)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos import ChaosPlan, run_on_own_broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(1500)]


def test_chaos_short(tmp_path: Path) -> None:
    lines: list[str] = []
    plan = ChaosPlan(rounds=3, events_per_round=600, kills=3, broker_restarts=1, pauses=1)
    result = run_on_own_broker(plan, tmp_path, log=lines.append)
    story = "\n".join(lines)
    assert result.rounds == plan.rounds, story
    assert (result.kills, result.broker_restarts, result.rebalances) == (3, 1, 1), story
    assert result.crashes == 0, story  # a worker may end itself (exit 70), never crash
    assert result.lost == 0, story
    assert result.duplicates == 0, story
    assert result.mismatched_positions == 0, story
    assert result.expected_minor == result.settled_minor > 0, story
    # the killed workers' partitions were taken over from seen-id checkpoints
    logs = [path.read_text(errors="replace") for path in tmp_path.glob("workers/slot*/worker.log")]
    assert any("checkpoint at" in text for text in logs), story
