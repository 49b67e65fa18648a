"""What a worker reports about the pipeline around it, for Prometheus and its alert
rules (infra/prometheus/alerts.yml): the consumer groups' lag and Burrow-style
status, the partitions short of replicas or without a leader, and the
instructions past their acknowledgement timeout.

Why the worker and not a separate exporter: every deployment runs workers, so the
figures an alert needs are there whenever the pipeline is; and the group status
is computed by the same ``LagMonitor`` as ``clearing lag``, so the alert and the
command say the same thing. Each watcher only observes: a failed probe (the
broker restarting) is logged and tried again, never a reason to end the worker.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from clearing_core.operations.lag import ERR, GROUP_STATUSES
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.kafka.clients import admin_client
from clearing_services.kafka.refdata import RefdataHolder
from clearing_services.kafka.topics import ACKS_TOPIC, EVENT_TOPIC_NAMES, OBLIGATIONS_TOPIC
from clearing_services.kafka.waits import METADATA_TIMEOUT_SECONDS
from clearing_services.netting.worker import GROUP as NETTING_GROUP
from clearing_services.operations.lag import LagError, LagMonitor
from clearing_services.runtime.metrics import Metrics
from clearing_services.settlement.acks_agent import APP_ID
from clearing_services.settlement.batch_index import BatchIndex

LAG_EVERY_SECONDS = 10.0
REPLICAS_EVERY_SECONDS = 5.0
LAG_WINDOW_SAMPLES = 12  # two minutes of samples decide STALL, STOP, WARN
OVERDUE_EVERY_SECONDS = 30.0
TOPIC_PREFIX = "clearing"  # the partitions whose replication is watched
# the pipeline's groups, with the topics each consumes
LAG_GROUPS = {
    INGEST_GROUP: EVENT_TOPIC_NAMES,
    NETTING_GROUP: (OBLIGATIONS_TOPIC,),
    APP_ID: (ACKS_TOPIC,),
}
_log = logging.getLogger("clearing.worker")


def watch_lag(bootstrap: str, metrics: Metrics, stop: threading.Event) -> None:
    """Every LAG_EVERY_SECONDS: each pipeline group's lag per topic and its status
    (0 OK, 1 WARN, 2 ERR)."""
    # whichever of the groups exist: one not formed yet is no error
    monitor = LagMonitor(bootstrap, list(LAG_GROUPS), window=LAG_WINDOW_SAMPLES, require=False)
    said: dict[str, str] = {}  # group -> the status last logged
    with monitor:
        while not stop.wait(LAG_EVERY_SECONDS):
            try:
                _sample_groups(monitor, metrics, said)
            except (KafkaException, LagError, TimeoutError) as exc:
                _log.warning("lag not measured this time: %r", exc)


def watch_replicas(bootstrap: str, metrics: Metrics, stop: threading.Event) -> None:
    """Every REPLICAS_EVERY_SECONDS: the partitions under-replicated or offline. A
    thread of its own: while a broker is dead, a lag sample can wait out its request
    timeouts, and these gauges are what the operator needs then."""
    admin = admin_client(bootstrap)
    while not stop.wait(REPLICAS_EVERY_SECONDS):
        try:
            _count_replicas(admin, metrics)
        except (KafkaException, TimeoutError) as exc:
            _log.warning("replication not measured this time: %r", exc)


def _sample_groups(monitor: LagMonitor, metrics: Metrics, said: dict[str, str]) -> None:
    """Each pipeline group's gauges; a warning when a group turns ERR (once, not every
    sample while it stays so)."""
    monitor.sample()
    for report in monitor.report(probe=True):
        wanted = LAG_GROUPS.get(report.group)
        if wanted is None:
            continue
        per_topic = dict.fromkeys(wanted, 0)
        for partition in report.partitions:
            if partition.topic in per_topic:
                per_topic[partition.topic] += partition.lag
        for topic, lag in per_topic.items():
            metrics.lag_records.labels(report.group, topic).set(lag)
        metrics.group_status.labels(report.group).set(GROUP_STATUSES.index(report.status))
        if report.status == ERR and said.get(report.group) != ERR:
            bad = [f"{p.topic}[{p.partition}] {p.status}" for p in report.partitions
                   if p.status not in ("OK", "WARN")]  # fmt: skip
            _log.warning("consumer group %s is ERR: %s", report.group, ", ".join(bad))
        said[report.group] = report.status


def _count_replicas(admin: AdminClient, metrics: Metrics) -> None:
    under, offline = replica_counts(admin, TOPIC_PREFIX)
    metrics.under_replicated.set(under)
    metrics.offline_partitions.set(offline)


def replica_counts(admin: AdminClient, prefix: str = "") -> tuple[int, int]:
    """(under-replicated, offline) partitions of the topics named ``prefix...``, as the
    cluster metadata says now: fewer in-sync replicas than replicas, or no leader."""
    topics = admin.list_topics(timeout=METADATA_TIMEOUT_SECONDS).topics
    under = offline = 0
    for name, topic in topics.items():
        if not name.startswith(prefix):
            continue
        for partition in topic.partitions.values():
            if partition.leader < 0:
                offline += 1
            elif len(partition.isrs) < len(partition.replicas):
                under += 1
    return under, offline


def watch_overdue(
    index: BatchIndex, holder: RefdataHolder, metrics: Metrics, stop: threading.Event
) -> None:
    """Report instructions still PENDING past their rail's ack_timeout_seconds: a gauge
    per rail, and a warning each time a rail's count changes. Never settled or failed
    by the clock (DESIGN section 11): a person chases the bank."""
    said: dict[str, int] = {}
    while not stop.wait(OVERDUE_EVERY_SECONDS):
        timeouts = {r: x.ack_timeout_seconds for r, x in holder.get().rails.items()}
        late = index.overdue(int(time.time() * 1000), timeouts)
        for rail in sorted(set(late) | set(said)):
            count = late.get(rail, 0)
            metrics.overdue.labels(rail).set(count)
            if count and said.get(rail) != count:
                _log.warning(
                    "%s: %d instructions without a final acknowledgement past %d s "
                    "(OVERDUE in clearing cycles)", rail, count, timeouts[rail],
                )  # fmt: skip
            said[rail] = count
