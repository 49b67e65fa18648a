"""The short failover chaos of every ``make test`` (issue 20): on three nodes, with
two workers running and events streaming, one ``kill -9`` of each kind (the leader
of the busiest obligations partition, the leader of the busiest event partition,
the active controller) and a rolling restart; after each, nothing the cluster
acknowledged is lost or doubled and settlement equals the ground truth to the minor
unit (``make chaos-cluster``: the long version)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos_cluster import KILLS, ROLLING, ClusterPlan, run_on_own_cluster

pytestmark = [pytest.mark.broker, pytest.mark.timeout(1500)]


def test_failover_chaos_short(tmp_path: Path) -> None:
    lines: list[str] = []

    def log(line: str) -> None:  # printed too: pytest shows it if the run raises
        lines.append(line)
        print(line, flush=True)

    plan = ClusterPlan(kinds=(*KILLS, ROLLING), events_per_round=400, stream_seconds=12.0)
    result = run_on_own_cluster(plan, tmp_path, log=log)
    story = "\n".join(lines)
    assert result.rounds == len(plan.kinds), story
    assert (result.broker_kills, result.controller_kills, result.rolling_restarts) == (3, 1, 1)
    assert len(result.failover_seconds) == 3, story  # each kill: a cycle committed after it
    assert result.crashes == 0, story  # a worker may end itself (exit 70), never crash
    assert result.unacked == 0, story  # every refused send was sent again and taken
    assert result.acked >= result.events * 0.9, story  # the run's events, the bad ones too
    assert result.lost == 0, story
    assert result.duplicates == 0, story
    assert result.mismatched_positions == 0, story
    assert result.expected_minor == result.settled_minor > 0, story
