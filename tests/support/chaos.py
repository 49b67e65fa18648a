"""Chaos run: real worker processes on a real broker, with faults injected while
events stream in, and the settlement checked against ground truth after every round.

Faults: ``kill -9`` of a worker at a random moment of a round (it is restarted, as
a supervisor would); a broker restart; a worker paused (SIGSTOP) past its session
timeout, which forces a rebalance while it sleeps. The harness is also the
workers' supervisor: a worker that exits by itself is restarted and counted.

After each round every valid event sent so far must have its obligation on the
log, a cycle close must produce its report (no stuck cycle), and the net settled
position of every participant must equal the ground truth exactly.

``python -m tests.support.chaos`` (``make chaos``) runs the long version and prints
one JSON object as its last line; tests/services/runtime/test_chaos.py runs a short one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clearing_core.cycle.markers import marker_record
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.refdata import ReferenceData, load_refdata
from clearing_core.workload.generator import EventGenerator, GeneratedEvent
from clearing_services.kafka.clients import read_topic
from clearing_services.netting.scheduler import send_markers
from clearing_services.operations.audit import coverage
from clearing_services.operations.replay import replay
from tests.support.chaos_truth import (
    Truth,
    receivable_minor,
    settled_positions,
)
from tests.support.pipeline import CLEARING, REFDATA_FILE, REPO, send_events

SESSION_TIMEOUT_S = 10.0  # the workers' consumer session timeout (app.py, netting_worker.py)
ROUND_DEADLINE_S = 240.0


@dataclass(frozen=True)
class ChaosPlan:
    """How much of each fault, over how many rounds of how many events."""

    rounds: int = 4
    events_per_round: int = 600
    kills: int = 3
    broker_restarts: int = 1
    pauses: int = 1
    workers: int = 2
    seed: int = 7
    pause_seconds: float = SESSION_TIMEOUT_S + 6.0

    def faults(self, rng: random.Random) -> list[list[str]]:
        """The faults of each round: spread evenly, order shuffled."""
        kinds = ["kill"] * self.kills + ["broker"] * self.broker_restarts + ["pause"] * self.pauses
        rng.shuffle(kinds)
        rounds: list[list[str]] = [[] for _ in range(self.rounds)]
        for i, kind in enumerate(kinds):
            rounds[i % self.rounds].append(kind)
        return rounds


@dataclass
class ChaosResult:
    kills: int = 0
    broker_restarts: int = 0
    rebalances: int = 0
    worker_restarts: int = 0
    crashes: int = 0  # workers ended by a signal the harness did not send (SIGSEGV, ...)
    rounds: int = 0
    events: int = 0
    expected_minor: int = 0
    settled_minor: int = 0
    duplicates: int = 0
    lost: int = 0
    mismatched_positions: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.mismatched_positions or self.crashes) and (
            self.expected_minor == self.settled_minor
        )


@dataclass
class Fleet:
    """Worker processes in numbered slots, each with its own state folder and log."""

    bootstrap: str
    root: Path
    size: int
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    generation: dict[int, int] = field(default_factory=dict)
    restarts: int = 0
    crashes: int = 0  # self-exits by a signal: a crash, never a clean fatal exit (70)
    exits: list[str] = field(default_factory=list)  # "slot <n>: code <c>" of each self-exit

    def start(self, slot: int) -> None:
        self.generation[slot] = self.generation.get(slot, 0) + 1
        state = self.root / f"slot{slot}"
        state.mkdir(parents=True, exist_ok=True)
        log = (state / "worker.log").open("ab")
        env = {**os.environ, "KAFKA_BOOTSTRAP": self.bootstrap, "CLEARING_STATE_DIR": str(state),
               "CLEARING_WORKER_ID": f"chaos{slot}", "CLEARING_METRICS_PORT": "0",
               "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1",
               # a stuck worker ends itself well within a round (watchdog.py)
               "CLEARING_STALL_SECONDS_MAX": "60",
               # seen-id checkpoints in one folder every slot shares (a shared volume),
               # taken often: a takeover after a kill restores one and the log after it
               "CLEARING_CHECKPOINT_DIR": str(self.root / "checkpoints"),
               "CLEARING_CHECKPOINT_IDS": "10", "CLEARING_LOG_LEVEL": "info"}  # fmt: skip
        self.processes[slot] = subprocess.Popen(
            [*CLEARING, "worker", "all"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def start_all(self) -> None:
        for slot in range(self.size):
            self.start(slot)
            time.sleep(2.0)  # one after the other: fewer rebalances while tables recover

    def supervise(self) -> None:
        """Restart any worker that ended by itself (as systemd's Restart=always would)."""
        for slot, process in list(self.processes.items()):
            if process.poll() is not None:
                self.restarts += 1
                self.crashes += process.returncode < 0
                self.exits.append(f"slot {slot}: exit code {process.returncode}")
                self.start(slot)

    def kill(self, slot: int) -> None:
        process = self.processes[slot]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        self.start(slot)

    def pause(self, slot: int, seconds: float) -> None:
        process = self.processes[slot]
        process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        process.send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class ChaosRun:
    """One run: a fleet, a broker that can be restarted, and the truth so far."""

    def __init__(self, plan: ChaosPlan, bootstrap: str, restart_broker: Callable[[], None],
                 root: Path, log: Callable[[str], None] = print) -> None:  # fmt: skip
        self.plan, self.bootstrap, self.restart_broker = plan, bootstrap, restart_broker
        self.rng = random.Random(plan.seed)
        self.codec = SingleObjectCodec(SchemaCatalog.load())
        self.refdata: ReferenceData = load_refdata(REFDATA_FILE)
        self.fleet = Fleet(bootstrap, root, plan.workers)
        self.truth, self.result, self.log = Truth(), ChaosResult(), log
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        self.generator = EventGenerator(self.refdata, seed=plan.seed, now_ms=now_ms, prefix="x")

    def run(self) -> ChaosResult:
        t0 = time.monotonic()
        self.fleet.start_all()
        try:
            for number, faults in enumerate(self.plan.faults(self.rng), start=1):
                self._round(number, faults)
        finally:
            self.fleet.stop_all()
        self.result.worker_restarts = self.fleet.restarts
        self.result.crashes = self.fleet.crashes
        self.result.seconds = round(time.monotonic() - t0, 1)
        return self.result

    def _round(self, number: int, faults: list[str]) -> None:
        events = self.generator.events(self.plan.events_per_round, bad_ratio=0.02,
                                       duplicate_ratio=0.02)  # fmt: skip
        events = [e for e in events if not e.corrupt]
        self.truth.add(events, self.codec, self.refdata)
        half = len(events) // 2
        self._send(events[:half])
        for fault in faults:
            self._inject(fault)
        self._send(events[half:])
        self.result.events += len(events)
        self._settle_and_check(number)
        self.log(f"round {number}: faults {faults or ['none']}, {self._summary()}")

    def _inject(self, fault: str) -> None:
        slot = self.rng.randrange(self.plan.workers)
        time.sleep(self.rng.uniform(0.0, 3.0))  # a random moment: mid-batch, mid-recovery
        if fault == "kill":
            self.fleet.kill(slot)
            self.result.kills += 1
        elif fault == "pause":
            self.fleet.pause(slot, self.plan.pause_seconds)
            self.result.rebalances += 1
        else:
            self.restart_broker()
            self.result.broker_restarts += 1

    def _send(self, events: list[GeneratedEvent]) -> None:
        for kind in ("meter", "compute", "payment"):
            records = [e.record for e in events if e.kind == kind]
            if records:
                send_events(self.bootstrap, self.codec, kind, records)

    def _settle_and_check(self, number: int) -> None:
        deadline = time.monotonic() + ROUND_DEADLINE_S
        missing = self._wait_for_obligations(deadline)
        self.result.lost = len(missing)
        assert not missing, (
            f"round {number}: {len(missing)} events lost, e.g. {sorted(missing)[:3]}"
        )
        markers = self._close_all(number)
        self._wait_for_reports(markers, deadline)
        expected = self.truth.positions()
        settled = settled_positions(self.bootstrap, self.codec, self.refdata.rails)
        self.result.expected_minor = receivable_minor(expected)
        self.result.settled_minor = receivable_minor(settled)
        wrong = {k for k in expected.keys() | settled.keys() if expected.get(k) != settled.get(k)}
        self.result.mismatched_positions = len(wrong)
        self.result.duplicates = self._duplicates()
        self.result.crashes = self.fleet.crashes
        self.result.rounds = number
        assert self.result.ok, f"round {number}: {self._summary()}, e.g. {sorted(wrong)[:3]}"

    def _wait_for_obligations(self, deadline: float) -> set[str]:
        while True:
            self.fleet.supervise()
            covered = coverage(self.bootstrap, self.codec)
            covered.assert_sound()
            missing = self.truth.valid_ids - set(covered.obligation_of)
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(1.0)

    def _close_all(self, number: int) -> dict[str, str]:
        at = datetime.now(UTC)
        markers = [marker_record(f"chaos-{self.plan.seed}-{number}-{c}", c, "MANUAL", "chaos", at)
                   for c in sorted(self.refdata.currencies)]  # fmt: skip
        send_markers(self.bootstrap, self.codec, markers, self.refdata.obligation_partition)
        return {m["currency"]: m["marker_id"] for m in markers}

    def _wait_for_reports(self, markers: dict[str, str], deadline: float) -> None:
        while True:
            self.fleet.supervise()
            done = {r["marker_id"] for r in self._reports()}
            stuck = [c for c, m in markers.items() if m not in done]
            if not stuck:
                return
            assert time.monotonic() < deadline, f"stuck cycles: {stuck}"
            time.sleep(1.0)

    def _reports(self) -> list[dict[str, Any]]:
        records = read_topic(self.bootstrap, "clearing.cycles", "chaos-read-cycles")
        return [self.codec.decode(r.value).record for r in records]

    def _duplicates(self) -> int:
        """Cycles closed twice for one marker, batches emitted twice, and batches that
        differ from a re-netting of the log that counts every obligation id once."""
        markers = [(r["currency"], r["marker_id"]) for r in self._reports()]
        check = replay(self.bootstrap, self.codec, self.refdata, self.refdata.rails)
        twice = len(markers) - len(set(markers))
        return twice + len(check.emitted_twice) + len(check.different) + len(check.emitted_only)

    def _summary(self) -> str:
        r = self.result
        return (f"events {r.events}, kills {r.kills}, broker restarts {r.broker_restarts}, "
                f"rebalances {r.rebalances}, worker restarts {self.fleet.exits}, "
                f"expected {r.expected_minor}, settled {r.settled_minor}, lost {r.lost}, "
                f"duplicates {r.duplicates}, mismatched {r.mismatched_positions}, "
                f"crashes {self.fleet.crashes}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--events-per-round", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--broker-restarts", type=int, default=2)
    parser.add_argument("--pauses", type=int, default=2)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    args = parser.parse_args(argv)
    plan = ChaosPlan(rounds=args.rounds, events_per_round=args.events_per_round,
                     kills=args.kills, broker_restarts=args.broker_restarts,
                     pauses=args.pauses, seed=args.seed)  # fmt: skip
    result = run_on_own_broker(plan, Path(tempfile.mkdtemp(prefix="clearing-chaos-")))
    print(json.dumps(asdict(result), sort_keys=True))
    return 0 if result.ok else 1


def run_on_own_broker(
    plan: ChaosPlan, root: Path, log: Callable[[str], None] = print
) -> ChaosResult:
    """Start a broker of the run's own, publish the test reference data, run the plan."""
    from tests.support.brokers import start_local_broker

    node = start_local_broker(root / "broker")

    def restart() -> None:
        node.stop()
        time.sleep(2.0)
        node.start()

    try:
        env = {**os.environ, "KAFKA_BOOTSTRAP": node.config.bootstrap,
               "CLEARING_STATE_DIR": str(root / "publisher")}  # fmt: skip
        subprocess.run([*CLEARING, "refdata", "publish", str(REFDATA_FILE)], env=env, cwd=REPO,
                       check=True, capture_output=True, timeout=180)  # fmt: skip
        run = ChaosRun(plan, node.config.bootstrap, restart, root / "workers", log)
        try:
            return run.run()
        except AssertionError as exc:
            log(f"chaos run failed: {exc} (worker logs under {root / 'workers'})")
            return run.result
    finally:
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
