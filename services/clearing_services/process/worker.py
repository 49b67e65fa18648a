"""One worker process: the ingest loop, the netting loop and the cycle scheduler of its
roles, and the followers of reference data and batches, as threads; the Faust
acknowledgements agent on the main thread.

Several processes share the work through consumer groups; any unexpected error
in any part ends the whole process without committing (see ``app.fatal``).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from clearing_core.cycle.context import ContextsInForce
from clearing_core.cycle.ledger import CycleOutcome
from clearing_core.encoding.codec import Codec
from clearing_core.errors import ClearingError
from clearing_core.refdata import ReferenceData
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.ingest.worker import IngestWorker
from clearing_services.kafka.clients import admin_client
from clearing_services.kafka.refdata import (
    RefdataFollower,
    RefdataHolder,
    load_refdata_from_topics,
)
from clearing_services.kafka.topics import (
    ACKS_TOPIC,
    OBLIGATIONS_TOPIC,
    ParticipantTopics,
    TopicPlan,
    create_topics,
    ensure_partitions,
    load_topic_plan,
)
from clearing_services.netting.scheduler import CycleScheduler
from clearing_services.netting.worker import NettingWorker
from clearing_services.process.health import watch_lag, watch_overdue, watch_replicas
from clearing_services.process.watchdog import StallDetector, watch_stalls
from clearing_services.runtime.failure import fatal, keep_journal
from clearing_services.runtime.metrics import Metrics
from clearing_services.settings import Settings
from clearing_services.settlement.acks_agent import APP_ID, Runtime, build_app
from clearing_services.settlement.batch_index import BatchIndex
from clearing_services.settlement.token_setup import embedded_settlers

ROLES = ("ingest", "netting", "acks", "settle")  # "all": every one; or a comma list
GC_YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython: 700)
SIGNAL_WAIT_SECONDS = 0.5  # the main thread waits for SIGINT or SIGTERM in steps this long
_log = logging.getLogger("clearing.worker")


@dataclass
class WorkerProcess:
    """The threads and objects of one worker process."""

    settings: Settings
    codec: Codec
    roles: set[str]
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    netting: NettingWorker | None = None
    ingest: IngestWorker | None = None
    runtime: Runtime | None = None
    metrics: Metrics = field(default_factory=Metrics)

    def shutdown(self, timeout_seconds: float = 15.0) -> None:
        """Stop the threads and let them close their consumers (leaving their groups
        at once rather than after a session timeout)."""
        self.stop.set()
        deadline = time.monotonic() + timeout_seconds
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        def guarded() -> None:
            try:
                target(self.stop)
            except Exception as exc:
                fatal(name, exc)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)


def log_cycle(outcome: CycleOutcome) -> None:
    r = outcome.report
    _log.warning(
        "cycle %s: %d obligations, gross %d, net %d (efficiency %.1f%%), %d instructions, "
        "%d deferred, batches %s",
        r["cycle_id"], r["obligation_count"], r["gross_minor"], r["net_minor"],
        100 * r["netting_efficiency"], r["instruction_count"], r["deferred_count"],
        ",".join(r["batch_ids"]) or "-",
    )  # fmt: skip


def parse_roles(role: str) -> set[str]:
    """``all``, one role, or a comma list of roles (``ingest,netting,acks``)."""
    roles = set(ROLES) if role == "all" else {r.strip() for r in role.split(",")}
    unknown = sorted(roles - set(ROLES))
    if unknown or not roles:
        raise ClearingError(f"unknown worker role {', '.join(unknown) or role!r}: use "
                            f"all, or any of {', '.join(ROLES)} (comma-separated)")  # fmt: skip
    return roles


def start_worker(settings: Settings, codec: Codec, role: str) -> WorkerProcess:
    """Load the reference data, make sure the topics exist, start the threads."""
    roles = parse_roles(role)
    bootstrap = settings.bootstrap()
    refdata = load_refdata_from_topics(bootstrap, codec, group="clearing-refdata-load")
    plan = load_topic_plan()
    _make_topics(bootstrap, refdata, plan)
    statement_topics = ParticipantTopics(bootstrap, plan, known=refdata.participants)
    process = WorkerProcess(settings, codec, roles)
    journal = settings.state_dir / "failures" / f"{settings.worker_id}.jsonl"
    for kind, count in keep_journal(journal).items():  # every kind's series, 0 included
        process.metrics.failures.labels(kind).inc(count)
    try:
        process.metrics.serve(settings.metrics_port)
    except OSError as exc:
        raise ClearingError(
            f"cannot serve metrics on port {settings.metrics_port} ({exc.strerror}); "
            "set CLEARING_METRICS_PORT to a free port, or 0 for none"
        ) from None
    process.spawn("lag", lambda stop: watch_lag(bootstrap, process.metrics, stop))
    process.spawn("replicas", lambda stop: watch_replicas(bootstrap, process.metrics, stop))
    holder = RefdataHolder(refdata)
    process.spawn("refdata", RefdataFollower(bootstrap, codec, holder).run)
    if "netting" in roles:
        _start_netting(process, bootstrap, holder, statement_topics)
    if "ingest" in roles:
        on_disk = settings.store_url.startswith("rocksdb:")  # else in memory (tests, benches)
        seen_dir = settings.state_dir / "ingest-seen" / settings.worker_id if on_disk else None
        process.ingest = IngestWorker(
            bootstrap, codec, holder.get, settings.worker_id, metrics=process.metrics,
            seen_dir=seen_dir, batch_max=settings.ingest_batch_max,
            checkpoint_dir=settings.checkpoint_dir if on_disk else None,
            checkpoint_ids=settings.checkpoint_ids,
        )  # fmt: skip
        process.ingest.rehearse(int(time.time() * 1000))  # before the first real batch
        process.spawn("ingest", process.ingest.run)
        _watch_stalls(process, INGEST_GROUP, process.ingest.owned)
    if "settle" in roles:
        for settler in embedded_settlers(settings, codec, holder, process.metrics):
            process.spawn(f"settle-{settler.rail_id}", settler.run)
    runtime = Runtime(codec, holder, None, statement_topics, process.metrics)
    if "acks" in roles:
        runtime.batches = BatchIndex(bootstrap, codec, lambda: holder.get().rails)
        process.spawn("batches", runtime.batches.run)
        index = runtime.batches
        process.spawn("overdue", lambda stop: watch_overdue(index, holder, process.metrics, stop))
    process.runtime = runtime
    return process


def _make_topics(bootstrap: str, refdata: ReferenceData, plan: TopicPlan) -> None:
    """Every topic the worker writes exists, and clearing.obligations has a partition
    for each currency of the plan (a currency published since it was made)."""
    admin = admin_client(bootstrap)
    create_topics(admin, plan.for_rails(refdata.rails, refdata.participants))
    ensure_partitions(admin, OBLIGATIONS_TOPIC, refdata.obligation_partitions)


def _start_netting(
    process: WorkerProcess, bootstrap: str, holder: RefdataHolder,
    statement_topics: ParticipantTopics,
) -> None:  # fmt: skip
    """The netting loop and the cycle scheduler beside it."""
    settings, codec, refdata = process.settings, process.codec, holder.get()
    process.netting = NettingWorker(
        bootstrap, codec, ContextsInForce(holder.get), settings.worker_id, on_cycle=log_cycle,
        metrics=process.metrics, warm_currencies=sorted(refdata.currencies),
        statement_topics=statement_topics,
    )  # fmt: skip
    process.spawn("netting", process.netting.run)
    for currency in sorted(refdata.currencies):  # a close is due within its cycle: from now
        process.metrics.schedule_seconds.labels(currency).set(refdata.cycle_seconds_for(currency))
        process.metrics.last_close.labels(currency).set(time.time())
    scheduler = CycleScheduler(bootstrap, codec, holder.get, settings.worker_id, time.time)
    scheduler.tick()  # each currency's current slot taken: its first marker ends it
    process.spawn("scheduler", scheduler.run)


def tune_gc() -> None:
    """Fewer, cheaper cyclic collections. Why: the batch loops allocate a few
    tuples and strings per event, so CPython's default young threshold (700) ran a
    collection every few dozen events, and each older-generation one scanned the
    whole heap (reference data, ledgers, Faust). Nothing is cyclic on the hot
    path, so collecting rarely loses nothing: ``process_batch`` and aggregation
    went from 9.6 to 5.5 µs an event with a 2M-object heap (docs/performance-history.md).
    Objects alive after start are frozen out of the scans for good."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


def run_worker(settings: Settings, codec: Codec, role: str, log_level: str) -> None:
    """Run until SIGINT/SIGTERM."""
    tune_gc()
    process = start_worker(settings, codec, role)
    gc.freeze()  # what start built lives as long as the process
    agent_roles = process.roles & {"acks"}
    if not agent_roles:
        _wait_for_signal(process.stop)
        process.shutdown()
        return
    assert process.runtime is not None
    app = build_app(settings, process.runtime, agent_roles)
    _watch_agents(process, app)
    worker: Any = QuietWorker(app, loglevel=log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if worker._signal_stop_time is None:  # mode's Worker: no SIGTERM/SIGINT came
            _faust_ended(exc, app)
        raise
    finally:
        process.shutdown()


class QuietWorker(faust.Worker):
    """Faust's worker without its terminal spinner. The spinner's log handler sets the
    root logger to DEBUG for good, so every ``log.debug`` in aiokafka's and Faust's
    send and fetch paths built a record for nothing: 14% of an ingest worker's time
    (docs/performance-history.md). It also wrote terminal control codes into the logs."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def _faust_ended(exc: SystemExit, app: faust.App) -> None:
    """Faust ended without being asked to: mode's worker turns any error during its
    run or its shutdown into a bare ``exit(1)`` that says nothing. Say what is known
    and end the process as every fatal error does, for its supervisor to restart."""
    reason = (
        exc.__context__  # the error mode caught and swallowed
        or getattr(app, "crash_reason", None)
        or RuntimeError(f"exit status {exc.code}")
    )
    fatal("the Faust worker (acknowledgements agent)", reason)


def _watch_agents(process: WorkerProcess, app: faust.App) -> None:
    """Start the stall watchdog over the partitions Faust has given this worker."""

    def owned() -> list[tuple[str, int]]:
        # Only look once Faust has made its consumer (``app.consumer`` would make one
        # here, on the wrong thread); before its first assignment it owns nothing.
        if getattr(app, "_consumer", None) is None:
            return []
        try:
            assigned = app.consumer.assignment()
        except Exception:  # an aiokafka consumer not started yet or being rebuilt
            return []
        return sorted((tp.topic, tp.partition) for tp in assigned if tp.topic == ACKS_TOPIC)

    _watch_stalls(process, APP_ID, owned)


def _watch_stalls(
    process: WorkerProcess, group: str, owned: Callable[[], list[tuple[str, int]]]
) -> None:
    """End the process when ``group`` has records waiting behind an unmoved commit on
    partitions this process owns, for longer than the settings allow."""
    settings = process.settings

    def stalled(partitions: list[tuple[str, int]]) -> None:
        fatal("watchdog", RuntimeError(
            f"{group}: no commit for {settings.stall_seconds_max} s with records waiting "
            f"on {partitions}"
        ), stacks=True)  # fmt: skip

    detector = StallDetector(float(settings.stall_seconds_max))
    process.spawn(f"watchdog-{group}", lambda stop: watch_stalls(
        settings.bootstrap(), group, owned, detector, time.monotonic, stalled, stop,
    ))  # fmt: skip


def _wait_for_signal(stop: threading.Event) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(SIGNAL_WAIT_SECONDS):
        pass
