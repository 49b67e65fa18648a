"""Three KRaft nodes on loopback (DESIGN section 12): a replicated cluster on one
machine, for the failover tests and for operators who rehearse a broker's death.

Why combined broker+controller nodes with a static quorum: three JVMs are what a
2-core machine can run beside the workers, and a static ``controller.quorum.voters``
needs no bootstrap step (each node is formatted with the same cluster id). Node K
lives in ``<home>/node-K`` with client port ``base + 2(K-1)`` and controller port one
above it, so ``9092, 9094, 9096`` serve clients; ``<home>/cluster.json`` records the
shape, so ``status``, ``stop``, ``logs`` and every client's default bootstrap find
all nodes without being told again. Replication: factor ``min(3, nodes)``,
``min.insync.replicas`` 2 of 3, no unclean leader election (``replication``).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from clearing_services.broker.distribution import BrokerUnavailableError, KafkaDistribution
from clearing_services.broker.local import (
    START_SECONDS_MAX,
    BrokerConfig,
    BrokerStatus,
    LocalBroker,
    kafka_uuid,
)
from clearing_services.settings import BROKER_PORTS_PER_NODE, CLUSTER_FILE, local_addresses

NODE_COUNTS = (1, 3)  # DESIGN section 12: one node, or a quorum of three
REPLICAS_MAX = 3
HEAP_MB_OF_THREE = 512  # each of three JVMs; one node keeps the settings' heap


def replication(nodes: int) -> dict[str, str]:
    """Broker defaults for a cluster of ``nodes``: every internal topic and every
    topic created without a factor replicated ``min(3, nodes)`` times; with three,
    a write needs two in-sync replicas and a replica that fell behind never becomes
    leader (it would lose acknowledged records)."""
    factor = min(REPLICAS_MAX, nodes)
    in_sync = 2 if factor == REPLICAS_MAX else 1
    return {
        "default.replication.factor": str(factor),
        "min.insync.replicas": str(in_sync),
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(factor),
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(in_sync),
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(in_sync),
    }


def node_config(base: BrokerConfig, node_id: int, nodes: int) -> BrokerConfig:
    """Node ``node_id`` (1-based) of a cluster of ``nodes`` described by ``base``."""
    assert 1 <= node_id <= nodes
    port = base.port + BROKER_PORTS_PER_NODE * (node_id - 1)
    voters = ",".join(f"{k}@{base.host}:{base.port + BROKER_PORTS_PER_NODE * (k - 1) + 1}"
                      for k in range(1, nodes + 1))  # fmt: skip
    return replace(
        base, home=base.home / f"node-{node_id}", port=port, controller_port=port + 1,
        node_id=node_id, voters=voters, heap_mb=min(base.heap_mb, HEAP_MB_OF_THREE),
        overrides={**replication(nodes), **base.overrides},
    )  # fmt: skip


@dataclass(frozen=True)
class ClusterStatus:
    """What ``clearing broker status`` reports of a cluster: each node, and the whole
    (running: all nodes answer; degraded: some do; stopped: none runs)."""

    state: str
    bootstrap: str
    nodes: tuple[BrokerStatus, ...]

    @property
    def running(self) -> bool:
        return self.state == "running"


class LocalCluster:
    """Start, stop and inspect the three nodes of a ``BrokerConfig``'s home."""

    def __init__(self, base: BrokerConfig, distribution: KafkaDistribution, nodes: int) -> None:
        if nodes not in NODE_COUNTS[1:]:
            raise BrokerUnavailableError(f"--nodes {nodes}: a cluster has 3 nodes (or use 1)")
        if base.secure:
            raise BrokerUnavailableError("--secure runs one node; a secure cluster is not built")
        self.base = base
        self.nodes = [LocalBroker(node_config(base, k, nodes), distribution)
                      for k in range(1, nodes + 1)]  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return local_addresses(self.base.host, self.base.port, len(self.nodes))

    def node(self, node_id: int) -> LocalBroker:
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerUnavailableError(f"node {node_id}: the cluster has nodes 1 to "
                                         f"{len(self.nodes)}")  # fmt: skip
        return self.nodes[node_id - 1]

    def status(self) -> ClusterStatus:
        each = tuple(node.status() for node in self.nodes)
        running = sum(s.running for s in each)
        state = "running" if running == len(each) else "degraded" if running else "stopped"
        return ClusterStatus(state, self.bootstrap, each)

    def _record(self) -> None:
        self.base.home.mkdir(parents=True, exist_ok=True)
        shape = {"nodes": len(self.nodes), "host": self.base.host, "port": self.base.port}
        (self.base.home / CLUSTER_FILE).write_text(json.dumps(shape) + "\n")
        shared = self.base.home / "cluster.id"  # every node formatted with the same id
        if not shared.is_file():
            shared.write_text(kafka_uuid() + "\n")
        for node in self.nodes:
            node.config.home.mkdir(parents=True, exist_ok=True)
            (node.config.home / "cluster.id").write_text(shared.read_text())

    def start(self, timeout_seconds: float = START_SECONDS_MAX) -> tuple[ClusterStatus, bool]:
        """Launch every node that is not running, then wait for each to answer; the
        status and whether any node was started."""
        self._record()
        launched = {}
        for node in self.nodes:
            if node.status().running:
                continue
            node.stop()  # an unhealthy one
            launched[node.config.node_id] = node.launch()
        for node_id, process in launched.items():
            self.node(node_id).wait_started(process, timeout_seconds)
        return self.status(), bool(launched)

    def stop(self) -> bool:
        """Stop every node at once; True if any was running. At once: one after the
        other, the last node shuts down without a quorum and waits out its whole
        controlled-shutdown time (37 s for three against 8 s)."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            stopped = list(pool.map(LocalBroker.stop, self.nodes))
        return any(stopped)
