"""Prometheus metrics of a worker process, served on ``/metrics``.

Why one registry object passed around rather than module globals: a test (or
two workers in one process) gets its own registry, and every metric the
operators rely on is listed here, in one place, with its unit in the name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from clearing_core.encoding.records import CycleReport

CYCLE_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RESTORE_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class Metrics:
    """The worker's metrics; ``serve`` exposes them over HTTP."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self._record_metrics(r)
        self._cycle_metrics(r)
        self._settlement_metrics(r)
        self._health_metrics(r)
        # process_start_time_seconds and friends: a restart shows as a new start time
        ProcessCollector(registry=r)

    def _health_metrics(self, r: CollectorRegistry) -> None:
        """The pipeline around the worker (``process/health.py``) and the worker's own
        failures (``runtime/failure.py``)."""
        self.lag_records = Gauge(
            "clearing_consumer_lag_records", "Records not yet committed by a consumer group.",
            ["group", "topic"], registry=r,
        )  # fmt: skip
        self.group_status = Gauge(
            "clearing_consumer_group_status", "A pipeline group's status as `clearing lag` "
            "judges it: 0 OK, 1 WARN, 2 ERR (a partition STALL, STOP or REWIND).", ["group"],
            registry=r,
        )  # fmt: skip
        self.under_replicated = Gauge(
            "clearing_under_replicated_partitions", "Partitions of the clearing topics with "
            "fewer in-sync replicas than replicas.", registry=r,
        )  # fmt: skip
        self.offline_partitions = Gauge(
            "clearing_offline_partitions", "Partitions of the clearing topics without a "
            "leader.", registry=r,
        )  # fmt: skip
        self.failures = Counter(
            "clearing_worker_failures", "Times this worker id ended itself (exit 70), by "
            "kind (invariant, stall, error); kept across restarts in the state folder.",
            ["kind"], registry=r,
        )  # fmt: skip

    def _record_metrics(self, r: CollectorRegistry) -> None:
        """What the stages read, write, reject, drop and retry."""
        self.events_in = Counter(
            "clearing_events_in", "Records read by a stage, per topic.", ["stage", "topic"],
            registry=r,
        )  # fmt: skip
        self.records_out = Counter(
            "clearing_records_out", "Records written, per topic.", ["topic"], registry=r
        )
        self.rejects = Counter(
            "clearing_rejects", "Records dead-lettered, per stage and reason code.",
            ["stage", "reason"], registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            "clearing_duplicate_obligations", "Obligations dropped because their id was "
            "already counted.", ["currency"], registry=r,
        )  # fmt: skip
        self.aggregated = Counter(
            "clearing_obligations_aggregated", "Obligations the ingest stage folded into "
            "others by pre-aggregation (events accepted = obligations written + this).",
            registry=r,
        )  # fmt: skip
        self.redelivered = Counter(
            "clearing_events_redelivered", "Event records accepted before and read again "
            "(consumer offsets moved back): skipped, their obligations are on the log.",
            registry=r,
        )  # fmt: skip
        self.aborted = Counter(
            "clearing_transactions_aborted", "Transactions a stage aborted and retried "
            "because a rebalance made its consumer group generation stale.", ["stage"],
            registry=r,
        )  # fmt: skip
        self.restore_seconds = Histogram(
            "clearing_seen_restore_seconds", "Taking an event partition over: its seen ids "
            "restored from a checkpoint and the seen log after it, or from the whole log.",
            ["source"], buckets=RESTORE_BUCKETS_SECONDS, registry=r,
        )  # fmt: skip
        self.restore_records = Counter(
            "clearing_seen_restore_records", "SeenEvents records read back at takeovers "
            "(after the checkpoint restored, or all of them).", ["source"], registry=r,
        )  # fmt: skip
        self.checkpoints = Counter(
            "clearing_seen_checkpoints", "Checkpoints of an event partition's seen ids "
            "written (CLEARING_CHECKPOINT_IDS ids apart).", registry=r,
        )  # fmt: skip

    def _cycle_metrics(self, r: CollectorRegistry) -> None:
        """Each currency's cycle closes and the figures of its last cycle."""
        self.cycle_seconds = Histogram(
            "clearing_cycle_close_seconds", "From reading a cycle-close marker to the last "
            "output committed.", ["currency"], buckets=CYCLE_BUCKETS_SECONDS, registry=r,
        )  # fmt: skip
        self.cycles = Counter("clearing_cycles", "Cycles closed.", ["currency"], registry=r)
        self.efficiency = Gauge(
            "clearing_netting_efficiency_ratio", "1 - net/settled gross of the last cycle.",
            ["currency"], registry=r,
        )  # fmt: skip
        self.gross_minor = Gauge(
            "clearing_cycle_gross_minor", "Gross of the last cycle, minor units.", ["currency"],
            registry=r,
        )  # fmt: skip
        self.net_minor = Gauge(
            "clearing_cycle_net_minor", "Net of the last cycle, minor units.", ["currency"],
            registry=r,
        )  # fmt: skip
        self.deferred_minor = Gauge(
            "clearing_deferred_minor", "Value deferred by the liquidity limits in the last "
            "cycle, minor units.", ["currency"], registry=r,
        )  # fmt: skip
        self.open_obligations = Gauge(
            "clearing_open_obligations", "Obligations in the open cycle.", ["currency"],
            registry=r,
        )  # fmt: skip
        self.last_close = Gauge(
            "clearing_cycle_last_close_timestamp_seconds", "When this worker last closed a "
            "cycle of the currency (its start, before the first).", ["currency"], registry=r,
        )  # fmt: skip
        self.schedule_seconds = Gauge(
            "clearing_cycle_schedule_seconds", "The currency's cycle_seconds in the "
            "reference data: a close is due this often.", ["currency"], registry=r,
        )  # fmt: skip

    def _settlement_metrics(self, r: CollectorRegistry) -> None:
        """What the token-rail settlement agents send to the chain and get back."""
        self.chain_calls = Counter(
            "clearing_chain_calls", "Settlement-contract calls, per rail: sent by this "
            "agent, or found recorded on the chain (reconciled after a crash).",
            ["rail", "how"], registry=r,
        )  # fmt: skip
        self.chain_instructions = Counter(
            "clearing_chain_instructions", "Instructions executed on the chain, per rail and "
            "outcome (SETTLED, FAILED).", ["rail", "status"], registry=r,
        )  # fmt: skip
        self.chain_gas = Counter(
            "clearing_chain_gas_used", "Gas used by the settlement calls this agent sent.",
            ["rail"], registry=r,
        )  # fmt: skip
        self.chain_errors = Counter(
            "clearing_chain_errors", "Chain errors that ended a settlement agent (unreachable "
            "node, wrong chain or code, reverted or stuck transaction).", ["rail"], registry=r,
        )  # fmt: skip
        self.overdue = Gauge(
            "clearing_instructions_overdue", "Instructions without a final acknowledgement "
            "past their rail's ack_timeout_seconds, per rail (the acks worker's batches).",
            ["rail"], registry=r,
        )  # fmt: skip
        self.acks = Counter(
            "clearing_acks_applied", "Acknowledgements that changed an instruction's state, "
            "per rail and the state (SETTLED, FAILED, PENDING).", ["rail", "status"],
            registry=r,
        )  # fmt: skip
        self.chain_call_seconds = Histogram(
            "clearing_chain_call_seconds", "From asking the chain to holding a call's outcomes.",
            ["rail"], buckets=CYCLE_BUCKETS_SECONDS, registry=r,
        )  # fmt: skip

    def cycle_closed(self, report: CycleReport, seconds: float) -> None:
        currency = str(report["currency"])
        self.cycles.labels(currency).inc()
        self.cycle_seconds.labels(currency).observe(seconds)
        self.efficiency.labels(currency).set(float(report["netting_efficiency"]))
        self.gross_minor.labels(currency).set(int(report["gross_minor"]))
        self.net_minor.labels(currency).set(int(report["net_minor"]))
        self.deferred_minor.labels(currency).set(int(report["deferred_minor"]))
        self.open_obligations.labels(currency).set(0)
        self.last_close.labels(currency).set(time.time())

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` from a daemon thread (port 0: not at all)."""
        if port:
            start_http_server(port, addr=host, registry=self.registry)


class StageTiming:
    """Where a loop's time goes, logged at INFO every ``every_seconds``: per stage, the
    seconds spent, the calls and the items. Cheap enough to stay on."""

    def __init__(self, log: logging.Logger, every_seconds: float = 10.0) -> None:
        self.log = log
        self.every_seconds = every_seconds
        self.since = time.monotonic()
        self.stages: dict[str, list[float]] = {}

    def add(self, stage: str, seconds: float, items: int) -> None:
        entry = self.stages.setdefault(stage, [0.0, 0.0, 0.0])
        entry[0] += seconds
        entry[1] += 1
        entry[2] += items

    def maybe_log(self) -> bool:
        """Log if ``every_seconds`` have passed; whether it did."""
        elapsed = time.monotonic() - self.since
        if elapsed < self.every_seconds:
            return False
        parts = [f"{name} {s:.1f} s/{int(n)} calls/{int(k)} items"
                 for name, (s, n, k) in self.stages.items()]  # fmt: skip
        self.log.info("last %.0f s: %s", elapsed, "; ".join(parts))
        self.since, self.stages = time.monotonic(), {}
        return True
