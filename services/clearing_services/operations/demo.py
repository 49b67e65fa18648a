"""The demo: the whole clearing house on the embedded default, end to end.

A real broker, the default reference data (hundreds of participants, three
currencies, five rails), a worker process, rounds of realistic mixed events
(with some bad and duplicate ones), cycle closes, a table per cycle as reports
arrive, and a replay that must reproduce every batch byte for byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from confluent_kafka import Consumer, TopicPartition

from clearing_core.cycle.markers import marker_record
from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.records import CycleReport
from clearing_core.errors import ClearingError
from clearing_core.refdata import ReferenceData
from clearing_core.workload.generator import EventGenerator
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.kafka.clients import admin_client, consumer_config, watermarks
from clearing_services.kafka.groups import group_lag
from clearing_services.kafka.refdata import publish_refdata
from clearing_services.kafka.topics import (
    CYCLES_TOPIC,
    EVENT_TOPIC_NAMES,
    create_topics,
    load_topic_plan,
)
from clearing_services.kafka.waits import METADATA_TIMEOUT_SECONDS
from clearing_services.netting.scheduler import send_markers
from clearing_services.operations.replay import ReplayReport, replay
from clearing_services.settings import Settings
from clearing_services.sources.publish import encode_generated, publish

WORKER_START_SECONDS_MAX = 120.0
CYCLE_WAIT_SECONDS_MAX = 120.0
WORKER_STOP_SECONDS_MAX = 60.0  # after SIGTERM, before SIGKILL
POLL_SECONDS = 0.5  # between two looks at the worker's groups or the ingest lag
WATCH_WAIT_SECONDS = 0.2  # one consume() of the cycle reports
COMMIT_GRACE_SECONDS = 1.0  # the last batch is committed a moment after its outputs


class DemoError(ClearingError):
    """The demo could not run to the end."""


@dataclass
class DemoPlan:
    rounds: int = 6
    events_per_round: int = 4_000
    bad_ratio: float = 0.01
    duplicate_ratio: float = 0.01
    seed: int = 2026
    run_id: str = field(default_factory=lambda: f"{int(time.time()):x}")


@dataclass
class DemoResult:
    cycles: list[CycleReport] = field(default_factory=list)
    produced: int = 0
    replay: ReplayReport = field(default_factory=ReplayReport)


class CycleWatcher:
    """Reads cycle reports as they are committed, from the moment it is created."""

    def __init__(self, bootstrap: str, codec: Codec) -> None:
        self.codec = codec
        self.consumer = Consumer(consumer_config(bootstrap, "clearing-demo-watch"))
        partitions = (
            self.consumer.list_topics(CYCLES_TOPIC, timeout=METADATA_TIMEOUT_SECONDS)
            .topics[CYCLES_TOPIC]
            .partitions
        )
        self.consumer.assign(
            [
                TopicPartition(
                    CYCLES_TOPIC, p, watermarks(self.consumer, TopicPartition(CYCLES_TOPIC, p))[1]
                )
                for p in sorted(partitions)
            ]
        )
        self.seen: dict[str, CycleReport] = {}

    def poll(self) -> list[CycleReport]:
        fresh: list[CycleReport] = []
        for message in self.consumer.consume(1000, timeout=WATCH_WAIT_SECONDS):
            if message.error() is not None:
                continue
            try:
                report = cast(CycleReport, self.codec.decode(message.value() or b"").record)
            except CodecError:
                continue
            self.seen[report["marker_id"]] = report
            fresh.append(report)
        return fresh

    def wait(self, marker_ids: Iterable[str], on_report: Callable[[CycleReport], None]) -> None:
        wanted = set(marker_ids)
        deadline = time.monotonic() + CYCLE_WAIT_SECONDS_MAX
        while not wanted <= set(self.seen):
            if time.monotonic() > deadline:
                missing = sorted(wanted - set(self.seen))
                raise DemoError(f"no cycle report for {missing}: is the worker running?")
            for report in self.poll():
                on_report(report)

    def close(self) -> None:
        self.consumer.close()


def wait_until_ingested(bootstrap: str, timeout_seconds: float = 60.0) -> None:
    """Give the ingest loop the time to catch up, so a round's events land in the
    round's cycles (a close with ingest lag simply leaves the rest to the next cycle)."""
    deadline = time.monotonic() + timeout_seconds
    while (
        sum(group_lag(bootstrap, INGEST_GROUP, EVENT_TOPIC_NAMES).values()) > 0
        and time.monotonic() < deadline
    ):
        time.sleep(POLL_SECONDS)
    time.sleep(COMMIT_GRACE_SECONDS)


def start_demo_worker(settings: Settings, log_file: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.bootstrap(),
        "CLEARING_STATE_DIR": str(settings.state_dir),
        "CLEARING_WORKER_ID": "demo-1",
    }
    log = log_file.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "clearing_services.cli", "worker", "all"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_SECONDS_MAX)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def prepare(settings: Settings, codec: Codec, refdata: ReferenceData) -> None:
    bootstrap = settings.bootstrap()
    specs = load_topic_plan().for_rails(refdata.rails)
    create_topics(admin_client(bootstrap), specs)
    publish_refdata(bootstrap, codec, refdata, by="demo")


def wait_for_worker(bootstrap: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    """The worker is up once both its consumer groups have a member."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + WORKER_START_SECONDS_MAX
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the worker exited with {process.returncode}; see {log_file}")
        described = admin.describe_consumer_groups([INGEST_GROUP, "clearing-netting"])
        if all(
            len(f.result(timeout=METADATA_TIMEOUT_SECONDS).members) > 0 for f in described.values()
        ):
            return
        time.sleep(POLL_SECONDS)
    raise DemoError(f"the worker did not start in {WORKER_START_SECONDS_MAX:.0f} s; see {log_file}")


def run_rounds(
    settings: Settings,
    codec: Codec,
    refdata: ReferenceData,
    plan: DemoPlan,
    on_report: Callable[[CycleReport], None],
    on_round: Callable[[int, int], None],
) -> DemoResult:
    """Produce each round's events, close every currency, wait for its reports."""
    bootstrap = settings.bootstrap()
    result = DemoResult()
    watcher = CycleWatcher(bootstrap, codec)

    def collect(report: CycleReport) -> None:
        result.cycles.append(report)
        on_report(report)

    try:
        for round_no in range(1, plan.rounds + 1):
            generator = EventGenerator(
                refdata,
                seed=plan.seed + round_no,
                now_ms=int(time.time() * 1000),
                prefix=f"demo-{plan.run_id}-r{round_no}",
            )
            events = generator.events(plan.events_per_round, plan.bad_ratio, plan.duplicate_ratio)
            publish(bootstrap, [encode_generated(codec, e) for e in events])
            result.produced += len(events)
            on_round(round_no, len(events))
            wait_until_ingested(bootstrap)
            now = datetime.now(UTC)
            markers = [
                marker_record(f"demo-{plan.run_id}-r{round_no}-{c}", c, "MANUAL", "demo", now)
                for c in sorted(refdata.currencies)
            ]
            send_markers(bootstrap, codec, markers)
            watcher.wait([m["marker_id"] for m in markers], collect)
    finally:
        watcher.close()
    result.replay = replay(bootstrap, codec, refdata, refdata.rails)
    return result
