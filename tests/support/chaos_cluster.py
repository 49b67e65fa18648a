"""Failover chaos on three KRaft nodes (issue 20): two workers run and events stream
while a broker is killed with ``kill -9`` (the leader of the busiest obligations
partition, the leader of the busiest event partition, the active controller) and
restarted after its partitions have failed over; and a rolling restart of all three.

After every fault the round is audited as ``make chaos`` audits it (every valid
event on exactly one obligation, settlement equal to the ground truth to the minor
unit, every cycle closed, no crash), and by the producer's side: every event id the
cluster acknowledged reached an obligation, and every failed send was resent until
acknowledged or is reported. A worker that ends itself (exit 70) is restarted and
counted. Failover time: from the kill to the next cycle committed on every currency
(markers sent right after the kill).

``python -m tests.support.chaos_cluster`` (``make chaos-cluster``) runs the long
version and prints one JSON object as its last line; tests/services/broker/
test_cluster_chaos.py runs a short one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from clearing_core.cycle.markers import marker_record
from clearing_services.broker.cluster import LocalCluster
from clearing_services.broker.select import local_cluster
from clearing_services.kafka.topics import EVENT_TOPIC_NAMES, OBLIGATIONS_TOPIC
from clearing_services.netting.scheduler import send_markers
from clearing_services.settings import BROKER_PORTS_PER_NODE, load_settings
from tests.support.acked_stream import Acknowledged, Stream, resend_failed
from tests.support.brokers import HEAP_MB, free_ports
from tests.support.chaos import ROUND_DEADLINE_S, ChaosPlan, ChaosResult, ChaosRun
from tests.support.cluster_faults import ClusterFaults
from tests.support.pipeline import CLEARING, REFDATA_FILE, REPO

NODES = 3
KILLS = ("obligations-leader", "event-leader", "controller")
ROLLING = "rolling"
DOWN_AFTER_FAILOVER_SECONDS = 5.0  # a killed node stays down this long past its failover


@dataclass(frozen=True)
class ClusterPlan(ChaosPlan):
    """One fault per round, in this order; events stream over ``stream_seconds``."""

    kinds: tuple[str, ...] = (*KILLS, *KILLS, ROLLING)
    stream_seconds: float = 20.0

    def faults(self, rng: object) -> list[list[str]]:
        return [[kind] for kind in self.kinds]


@dataclass
class ClusterResult(ChaosResult):
    broker_kills: int = 0
    controller_kills: int = 0
    rolling_restarts: int = 0
    acked: int = 0
    send_failures: int = 0
    resent: int = 0
    unacked: int = 0
    warm_up_seconds: float = 0.0  # the workers' start to their first cycle of every currency
    failover_seconds: list[float] = field(default_factory=list)  # kill -> next cycle
    recovery_seconds: list[float] = field(default_factory=list)  # restart -> ISR whole
    rolling_seconds: list[float] = field(default_factory=list)  # each node's stop -> ISR whole

    @property
    def ok(self) -> bool:
        return super().ok and not self.unacked

    def line(self) -> dict[str, object]:
        """The last line's fields: the issue's, then the details."""
        keys = ("broker_kills", "controller_kills", "rolling_restarts", "expected_minor",
                "settled_minor", "lost", "duplicates", "crashes", "seconds", "events",
                "acked", "send_failures", "resent", "unacked", "worker_restarts",
                "mismatched_positions", "warm_up_seconds", "failover_seconds", "recovery_seconds",
                "rolling_seconds")  # fmt: skip
        return {key: getattr(self, key) for key in keys}


class ClusterChaosRun(ChaosRun):
    """A chaos run whose faults hit the brokers of a three-node cluster."""

    def __init__(self, plan: ClusterPlan, cluster: LocalCluster, root: Path,
                 log: Callable[[str], None] = print) -> None:  # fmt: skip
        super().__init__(plan, cluster.bootstrap, lambda: None, root, log)
        self.cluster_plan = plan
        self.faults = ClusterFaults(cluster, on_wait=self.fleet.supervise)
        self.acknowledged = Acknowledged()
        self.result: ClusterResult = ClusterResult()

    def _round(self, number: int, faults: list[str]) -> None:
        if number == 1:  # failover times measure failover, not the workers' start
            t0 = time.monotonic()
            self._wait_for_cycles(f"warm-up-{self.plan.seed}")
            self.result.warm_up_seconds = round(time.monotonic() - t0, 1)
        events = self.generator.events(self.plan.events_per_round, bad_ratio=0.02,
                                       duplicate_ratio=0.02)  # fmt: skip
        events = [e for e in events if not e.corrupt]
        self.truth.add(events, self.codec, self.refdata)
        stream = Stream(self.bootstrap, self.codec, events, self.acknowledged,
                        self.cluster_plan.stream_seconds)  # fmt: skip
        stream.start()
        for fault in faults:
            time.sleep(self.rng.uniform(2.0, 6.0))  # events on their way, some mid-batch
            self._inject_fault(number, fault)
        stream.finish()
        self.result.resent += resend_failed(self.bootstrap, self.codec, self.acknowledged)
        self.result.send_failures = self.acknowledged.failures
        self.result.unacked = len(self.acknowledged.failed)
        self.result.events += len(events)
        assert not self.result.unacked, f"round {number}: sends refused after every resend: " + (
            ", ".join(f"{e.record['event_id']} {why}" for e, why in self.acknowledged.failed[:3])
        )
        self._settle_and_check(number)
        self._check_acknowledged(number)
        self.log(f"round {number}: fault {faults}, {self._summary()}, "
                 f"failovers {self.result.failover_seconds}")  # fmt: skip

    def _inject_fault(self, number: int, fault: str) -> None:
        if fault == ROLLING:
            self._rolling_restart()
            return
        if fault == "controller":
            node, where = self.faults.active_controller(), "the active controller"
        else:
            topics = (OBLIGATIONS_TOPIC,) if fault == "obligations-leader" else EVENT_TOPIC_NAMES
            node, partition = self.faults.busiest_leader(topics)
            where = f"the leader of {partition}"
        self.log(f"round {number}: kill -9 of node {node}, {where}")
        t0 = time.monotonic()
        self.faults.kill(node)
        self.result.broker_kills += 1
        self.result.controller_kills += fault == "controller"
        self._wait_for_cycles(f"failover-{self.plan.seed}-{number}")
        self.result.failover_seconds.append(round(time.monotonic() - t0, 1))
        time.sleep(DOWN_AFTER_FAILOVER_SECONDS)
        self.faults.restart()
        self.result.recovery_seconds.append(round(self.faults.wait_healthy(), 1))

    def _rolling_restart(self) -> None:
        """Each node in turn: controlled shutdown, start, wait for the ISR to be whole."""
        for node in range(1, NODES + 1):
            t0 = time.monotonic()
            self.faults.stop(node)
            self.faults.restart()
            self.faults.wait_healthy()
            self.result.rolling_seconds.append(round(time.monotonic() - t0, 1))
        self.result.rolling_restarts += 1

    def _wait_for_cycles(self, prefix: str) -> None:
        """Close a cycle of every currency now and wait until each is committed."""
        at = datetime.now(UTC)
        markers = [marker_record(f"{prefix}-{c}", c, "MANUAL", "chaos", at)
                   for c in sorted(self.refdata.currencies)]  # fmt: skip
        send_markers(self.bootstrap, self.codec, markers, self.refdata.obligation_partition)
        deadline = time.monotonic() + ROUND_DEADLINE_S
        self._wait_for_reports({m["currency"]: m["marker_id"] for m in markers}, deadline)

    def _check_acknowledged(self, number: int) -> None:
        """Every valid event of the truth was acknowledged by the cluster, so with no
        valid event lost (the round's audit) every acknowledged one is on an obligation."""
        self.result.acked = len(self.acknowledged.ids)
        unacked_truth = self.truth.valid_ids - self.acknowledged.ids
        assert not unacked_truth, f"round {number}: valid events never acknowledged: " + (
            ", ".join(sorted(unacked_truth)[:3])
        )


def run_on_own_cluster(
    plan: ClusterPlan, root: Path, log: Callable[[str], None] = print
) -> ClusterResult:
    """Start three nodes of the run's own, publish the test reference data, run."""
    ports = free_ports(NODES * BROKER_PORTS_PER_NODE)
    cluster = local_cluster(load_settings(), NODES, home=root / "kafka", port=ports,
                            heap_mb=HEAP_MB)  # fmt: skip
    started = time.monotonic()
    cluster.start()
    log(f"three nodes up in {time.monotonic() - started:.1f} s at {cluster.bootstrap}")
    try:
        env = {**os.environ, "KAFKA_BOOTSTRAP": cluster.bootstrap,
               "CLEARING_STATE_DIR": str(root / "publisher")}  # fmt: skip
        subprocess.run([*CLEARING, "refdata", "publish", str(REFDATA_FILE)], env=env, cwd=REPO,
                       check=True, capture_output=True, timeout=180)  # fmt: skip
        run = ClusterChaosRun(plan, cluster, root / "workers", log)
        try:
            return run.run()  # type: ignore[return-value]
        except AssertionError as exc:
            log(f"cluster chaos failed: {exc} (worker logs under {root / 'workers'}, "
                f"broker logs under {root / 'kafka'})")  # fmt: skip
            return run.result
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds-of-kills", type=int, default=2,
                        help="each round kills an obligations leader, an event leader "
                        "and the controller")  # fmt: skip
    parser.add_argument("--rolling-restarts", type=int, default=1)
    parser.add_argument("--events-per-round", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    args = parser.parse_args(argv)
    kinds = KILLS * args.rounds_of_kills + (ROLLING,) * args.rolling_restarts
    plan = ClusterPlan(kinds=kinds, events_per_round=args.events_per_round, seed=args.seed)
    result = run_on_own_cluster(plan, Path(tempfile.mkdtemp(prefix="clearing-chaos-cluster-")))
    print(json.dumps(result.line(), sort_keys=False))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
