"""Faults on a local three-node cluster, aimed where they hurt: the leader of the
busiest partition of a topic, the active KRaft controller, each node in turn.

Who leads a partition comes from the cluster metadata; which node is the active
controller from the quorum-state file each voter keeps (``__cluster_metadata-0``):
a client asking DescribeCluster through a broker is told a random broker, not the
controller (KIP-919), and the quorum tool would start a JVM for every question.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from clearing_services.broker.cluster import LocalCluster
from clearing_services.kafka.clients import admin_client, log_ends
from clearing_services.process.health import replica_counts

HEALTHY_SECONDS_MAX = 240.0  # a restarted node catches up on every partition
RECHECK_SECONDS = 1.0
QUORUM_STATE = Path("data") / "__cluster_metadata-0" / "quorum-state"


class ClusterFaults:
    """Kill, restart and inspect the nodes of a running ``LocalCluster``."""

    def __init__(self, cluster: LocalCluster, on_wait: Callable[[], None] = lambda: None) -> None:
        self.cluster = cluster
        self.on_wait = on_wait  # called while waiting (the fleet's supervisor)

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def busiest_leader(self, topics: Iterable[str]) -> tuple[int, str]:
        """(node id, "topic[partition]") of the leader of the partition holding the
        most records among ``topics``."""
        metadata = admin_client(self.bootstrap).list_topics(timeout=30).topics
        best: tuple[int, str, int] = (0, "", -1)
        for topic in topics:
            partitions = metadata[topic].partitions
            ends = log_ends(self.bootstrap, topic, partitions)
            for number, (_, high) in ends.items():
                if high > best[2] and partitions[number].leader > 0:
                    best = (partitions[number].leader, f"{topic}[{number}]", high)
        assert best[0] > 0, f"no partition of {list(topics)} has a leader"
        return best[0], best[1]

    def active_controller(self) -> int:
        """The controller leader of the newest epoch any running voter has written."""
        views = []
        for node in self.cluster.nodes:
            state_file = node.config.home / QUORUM_STATE
            if node.status().running and state_file.is_file():
                state = json.loads(state_file.read_text())
                if state.get("leaderId", -1) > 0:
                    views.append((int(state["leaderEpoch"]), int(state["leaderId"])))
        assert views, "no running voter names a controller leader"
        return max(views)[1]

    def kill(self, node_id: int) -> None:
        """``kill -9`` of the node: no controlled shutdown, no flush."""
        node = self.cluster.node(node_id)
        pid = node.status().pid
        assert pid is not None, f"node {node_id} is not running"
        os.kill(pid, signal.SIGKILL)
        while node.status().state != "stopped":
            time.sleep(0.1)

    def stop(self, node_id: int) -> None:
        """A controlled shutdown (SIGTERM): leadership moves before the node leaves."""
        assert self.cluster.node(node_id).stop(), f"node {node_id} was not running"

    def restart(self) -> None:
        """Start every node that is down, with its data as it was left."""
        status, started = self.cluster.start()
        assert started, "no node was down"
        assert status.running, f"cluster not running again: {status.state}"

    def wait_healthy(self) -> float:
        """Seconds until every node runs and no partition is under-replicated or
        offline (the ISR whole again)."""
        t0 = time.monotonic()
        deadline = t0 + HEALTHY_SECONDS_MAX
        admin = admin_client(self.bootstrap)
        while True:
            self.on_wait()
            counts = replica_counts(admin)
            if counts == (0, 0) and self.cluster.status().running:
                return time.monotonic() - t0
            assert time.monotonic() < deadline, (
                f"not healthy in {HEALTHY_SECONDS_MAX:.0f} s: (under-replicated, offline) "
                f"= {counts}"
            )
            time.sleep(RECHECK_SECONDS)
