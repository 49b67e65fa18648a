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
from clearing_core.operations.finality import CycleFinality
from clearing_core.refdata import ExportFormat, ReferenceData
from clearing_core.workload.generator import EventGenerator
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.kafka.clients import admin_client, consumer_config
from clearing_services.kafka.groups import group_lag
from clearing_services.kafka.refdata import publish_refdata
from clearing_services.kafka.settling import watermarks
from clearing_services.kafka.topics import (
    CYCLES_TOPIC,
    EVENT_TOPIC_NAMES,
    create_topics,
    load_topic_plan,
)
from clearing_services.kafka.waits import METADATA_TIMEOUT_SECONDS
from clearing_services.netting.scheduler import send_markers
from clearing_services.operations.chain_audit import audit_rail, quiet_reading
from clearing_services.operations.finality import finality
from clearing_services.operations.replay import ReplayReport, replay
from clearing_services.settings import Settings
from clearing_services.settlement.token_setup import (
    RailSetup,
    embedded_token_rails,
    fund,
    set_up_rail,
)
from clearing_services.sources.publish import encode_generated, publish

SHORT_PER_RAIL = 3  # demo participants per token rail that start without funding
FINALITY_WAIT_SECONDS_MAX = 120.0
BANK_REJECT_RATIO = 0.05  # of the bank rails' instructions: AM04, AC01, ... then carried
EARLIER_CYCLES_CHECKED = 50  # per currency: an interrupted run's batches settle first
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
    finality: list[CycleFinality] = field(default_factory=list)
    chain_audit: dict[str, list[str]] = field(default_factory=dict)  # rail -> mismatches


def short_participants(refdata: ReferenceData, rail_id: str) -> list[str]:
    """The demo participants of a token rail that start without funding: the PPA buyers
    with the most meters (the most likely payers of any cycle), so failures show."""
    rail = refdata.rails[rail_id]
    on_rail = {p for p, x in refdata.participants.items() if x.active and
               any(a.rail_id == rail_id for a in x.accounts)}  # fmt: skip
    meters: dict[str, int] = {}
    for contract in refdata.contracts.values():
        if contract.buyer_id in on_rail and contract.currency == rail.currency:
            meters[contract.buyer_id] = meters.get(contract.buyer_id, 0) + len(contract.meter_ids)
    return sorted(meters, key=lambda p: (-meters[p], p))[:SHORT_PER_RAIL]


@dataclass
class ChainRun:
    """The token rails of a demo run: how they were set up, every account's balance
    before the first cycle, and the tokens minted since (the audit's terms)."""

    setups: list[RailSetup]
    before: dict[str, dict[str, int]]
    earlier: dict[str, set[str]] = field(default_factory=dict)  # batches before the run
    minted: dict[str, dict[str, int]] = field(default_factory=dict)
    audit: dict[str, list[str]] = field(default_factory=dict)  # rail -> mismatches


def set_up_chain(settings: Settings, refdata: ReferenceData) -> ChainRun:
    """Each token rail's contracts on the embedded chain (once), every demo account
    prefunded, a few short (their payments fail until ``fund_short``)."""
    rails = embedded_token_rails(refdata)
    setups = [set_up_rail(settings, refdata, r, short=frozenset(short_participants(refdata, r)))
              for r in rails]  # fmt: skip
    return ChainRun(setups, {})


def take_balances(settings: Settings, codec: Codec, refdata: ReferenceData, run: ChainRun) -> None:
    """The audit's starting balances, once whatever an earlier (interrupted) run left
    unsettled has settled: the audit counts this run's batches only."""
    wait_for_finality(settings, codec, refdata, None)
    for rail in embedded_token_rails(refdata):
        reading = quiet_reading(settings, codec, refdata, rail)
        if reading is None:
            raise DemoError(f"{rail}: earlier instructions are still unacknowledged; the "
                            "chain's balances cannot be taken for the audit")  # fmt: skip
        batches, _, run.before[rail] = reading
        run.earlier[rail] = {b["batch_id"] for b in batches}


def fund_short(settings: Settings, refdata: ReferenceData, run: ChainRun) -> dict[str, list[str]]:
    """Funding arrives for the short participants: their carried payments settle next."""
    out = {}
    for rail in embedded_token_rails(refdata):
        out[rail] = short_participants(refdata, rail)
        minted = run.minted.setdefault(rail, {})
        for funding in fund(settings, refdata, rail, out[rail]):
            minted[funding.account] = minted.get(funding.account, 0) + funding.tokens
    return out


def audit_chain(settings: Settings, codec: Codec, refdata: ReferenceData, run: ChainRun) -> None:
    """Balances on chain against the settled instructions of the run's batches (every
    batch since the balances were taken: timer closes too)."""
    for rail in embedded_token_rails(refdata):
        earlier = run.earlier.get(rail, set())
        run.audit[rail] = audit_rail(settings, codec, refdata, rail, run.before[rail],
                                     run.minted.get(rail, {}), earlier)  # fmt: skip


def wait_for_finality(
    settings: Settings, codec: Codec, refdata: ReferenceData, cycle_ids: set[str] | None
) -> list[CycleFinality]:
    """The finality of the demo's cycles (None: the last cycles of earlier runs) once
    every instruction of the token rails and of the simulated banks' rails has its
    final acknowledgement."""
    rails = set(embedded_token_rails(refdata)) | set(bank_rails(refdata))
    deadline = time.monotonic() + FINALITY_WAIT_SECONDS_MAX
    last = EARLIER_CYCLES_CHECKED if cycle_ids is None else len(cycle_ids) + 1
    while True:
        found = [c for c in finality(settings.bootstrap(), codec, refdata, None, last)
                 if cycle_ids is None or c["cycle_id"] in cycle_ids]  # fmt: skip
        pending = sum(r["pending"] for c in found for r in c["rails"] if r["rail_id"] in rails)
        if pending == 0 or time.monotonic() > deadline:
            return found
        time.sleep(POLL_SECONDS)


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


def _spawn(settings: Settings, args: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """A ``clearing`` command of the demo, in the background, its output in ``log_file``."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.bootstrap(),
        "CLEARING_STATE_DIR": str(settings.state_dir),
        "CLEARING_WORKER_ID": "demo-1",
    }
    log = log_file.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "clearing_services.cli", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def start_demo_worker(settings: Settings, log_file: Path) -> subprocess.Popen[bytes]:
    return _spawn(settings, ["worker", "all"], log_file)


def bank_rails(refdata: ReferenceData) -> list[str]:
    """The ISO 20022 rails: a simulated bank answers each in the demo."""
    return sorted(r.rail_id for r in refdata.rails.values()
                  if r.export_format is ExportFormat.ISO20022)  # fmt: skip


def start_banks(settings: Settings, refdata: ReferenceData) -> list[subprocess.Popen[bytes]]:
    """``clearing bank simulate`` per ISO 20022 rail, rejecting a few instructions; their
    pacs.009 and pacs.002 documents under $CLEARING_STATE_DIR/bank/<rail>."""
    return [
        _spawn(settings, ["bank", "simulate", "--rail", rail, "--reject-ratio",
                          str(BANK_REJECT_RATIO)], settings.state_dir / f"demo-bank-{rail}.log")
        for rail in bank_rails(refdata)
    ]  # fmt: skip


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_SECONDS_MAX)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def prepare(settings: Settings, codec: Codec, refdata: ReferenceData) -> None:
    bootstrap = settings.bootstrap()
    specs = load_topic_plan().for_rails(refdata.rails, refdata.participants)
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
    on_funding: Callable[[dict[str, list[str]]], None],
    chain: ChainRun,
) -> DemoResult:
    """Produce each round's events, close every currency, wait for its reports; halfway,
    funding arrives for the short participants; at the end, the token rails' finality."""
    bootstrap = settings.bootstrap()
    result = DemoResult()
    take_balances(settings, codec, refdata, chain)
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
            send_markers(bootstrap, codec, markers, refdata.obligation_partition)
            watcher.wait([m["marker_id"] for m in markers], collect)
            if round_no == max(1, plan.rounds // 2):
                on_funding(fund_short(settings, refdata, chain))
    finally:
        watcher.close()
    result.finality = wait_for_finality(settings, codec, refdata,
                                        {r["cycle_id"] for r in result.cycles})  # fmt: skip
    audit_chain(settings, codec, refdata, chain)
    result.chain_audit = chain.audit
    result.replay = replay(bootstrap, codec, refdata, refdata.rails)
    return result
