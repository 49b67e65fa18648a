"""``clearing replay`` on a real broker with real workers: each cycle re-netted with the
reference data it was closed with, a consistent cut while the workers close cycles,
differences named by batch id, and state that cannot be read stops a worker instead
of being skipped. A broker of its own: the tests write to the contract's topics."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from clearing_core.cycle.context import VersionedContexts
from clearing_core.cycle.rejections import RejectionWindow
from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.refdata import load_refdata
from clearing_services.kafka.clients import produce_all, producer_config, read_topic
from clearing_services.kafka.refdata import load_refdata_from_topics
from clearing_services.kafka.topics import DLQ_TOPIC
from clearing_services.netting.rejections import UnreadableRejectionError, count_rejections
from clearing_services.netting.state import STATE_TOPIC, load_states
from clearing_services.operations.replay import renet, replay
from tests.support.events import payment
from tests.support.pipeline import (
    REFDATA_FILE,
    batches,
    clearing,
    close_cycle,
    send_events,
    wait_for_carried,
    wait_for_reports,
    worker,
)

pytestmark = pytest.mark.own_broker
DC, LEASE = "DC-SHENZHEN-01", "LEASECO-HK-01"


def refdata_file(tmp: Path, name: str, dc_cap: int | None = None, cycle_seconds: int | None = None
                 ) -> Path:  # fmt: skip
    """The pipeline's reference data with DC's CNH cap, or CNH's schedule, changed."""
    data = yaml.safe_load(REFDATA_FILE.read_text())
    for participant in data["participants"]:
        for account in participant["accounts"]:
            if participant["participant_id"] == DC and account["currency"] == "CNH" and dc_cap:
                account["net_debit_cap_minor"] = dc_cap
    for rail in data["rails"]:
        if rail["currency"] == "CNH" and cycle_seconds:
            rail["cycle_seconds"] = cycle_seconds
    path = tmp / name
    path.write_text(yaml.safe_dump(data))
    return path


def pay_and_close(bootstrap: str, state: Path, codec: SingleObjectCodec, event_id: str,
                  amount: int) -> dict[str, Any]:  # fmt: skip
    """One DC -> LEASECO payment in a cycle of its own; its report."""
    before = len(wait_for_reports(bootstrap, codec, "CNH", 0))
    send_events(bootstrap, codec, "payment",
                [payment(event_id, DC, LEASE, "FINANCE_LEASE_RENT", amount)])  # fmt: skip
    wait_for_carried(bootstrap, codec, [event_id])
    close_cycle(bootstrap, state, "CNH")
    return wait_for_reports(bootstrap, codec, "CNH", before + 1)[-1]


def publish(bootstrap: str, state: Path, path: Path) -> str:
    done = clearing(bootstrap, state, "refdata", "publish", str(path), "--json")
    assert done.returncode == 0, done.stderr
    return str(load_refdata(path).digest)


def test_a_cap_tightened_after_some_cycles_replays_identical(
    bootstrap: str, state: Path, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    with worker(bootstrap, state):
        first = pay_and_close(bootstrap, state, codec, "cap-1", 120_000)  # no cap: all settles
        tight = publish(bootstrap, state, refdata_file(tmp_path, "tight.yaml", dc_cap=50_000))
        deadline = time.monotonic() + 60
        while True:  # until the worker closes with the tightened cap
            later = pay_and_close(bootstrap, state, codec, f"cap-{time.time_ns()}", 10_000)
            if later["refdata_digest"] == tight:
                break
            assert time.monotonic() < deadline, "the worker never took the new reference data"
    assert first["refdata_digest"] != tight
    assert first["deferred_count"] == 0
    latest = load_refdata_from_topics(bootstrap, codec, "t-refdata")
    assert latest.digest == tight
    report = replay(bootstrap, codec, latest, latest.rails)
    assert report.ok, report.problems()
    assert report.different == report.emitted_only == report.refdata_unknown == []
    assert f"cnh-cips-CNH-{first['cycle_seq']:08d}" in report.identical
    # what the test guards against: the first cycle re-netted with today's cap defers
    # DC's 120,000 over its 50,000 cap, so its batches would differ
    log = read_topic(bootstrap, "clearing.obligations", "t-log")
    with_today = renet(log, codec, VersionedContexts(latest, {}, {}))
    first_id = f"cnh-cips-CNH-{first['cycle_seq']:08d}"
    emitted = {
        (r.key or b"").decode(): r.value
        for r in read_topic(bootstrap, "clearing.settlement.batches.cnh-cips", "t-b")
    }
    assert with_today.batches.get(first_id) != emitted[first_id]  # deferred: no batch at all


def test_batches_of_cycles_closed_after_the_read_are_after_the_cut(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    """A scheduled close between the replay's read of the log and of the batch topics."""
    snapshot = read_topic(bootstrap, "clearing.obligations", "t-snapshot")
    with worker(bootstrap, state):
        closed = pay_and_close(bootstrap, state, codec, f"cut-{time.time_ns()}", 7_000)
    latest = load_refdata_from_topics(bootstrap, codec, "t-refdata")
    report = replay(bootstrap, codec, latest, latest.rails, obligations=snapshot)
    assert report.ok, report.problems()
    assert sorted(report.after_cut) == sorted(closed["batch_ids"])
    assert report.emitted_only == []


def test_replays_while_the_scheduler_closes_every_second_all_agree(
    bootstrap: str, state: Path, codec: SingleObjectCodec, tmp_path: Path
) -> None:
    """Real scheduled closes during real replays, payments streaming all the while:
    every replay agrees. (Whether a close falls between a replay's reads is up to the
    clock; the test above makes that case happen every time.)"""
    publish(bootstrap, state, refdata_file(tmp_path, "fast.yaml", cycle_seconds=1))
    outcomes: list[dict[str, Any]] = []
    stop = threading.Event()

    def stream() -> None:
        n = 0
        while not stop.wait(0.2):
            n += 1
            send_events(
                bootstrap,
                codec,
                "payment",
                [payment(f"sched-{n}-{time.time_ns()}", DC, LEASE, "OM_FEE", n)],
            )

    with worker(bootstrap, state):
        wait_for_reports(bootstrap, codec, "CNH", len(wait_for_reports(bootstrap, codec, "CNH", 0))
                         + 3)  # the scheduler closes CNH every second  # fmt: skip
        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        try:
            for _ in range(5):
                done = clearing(bootstrap, state, "replay", "--json")
                assert done.returncode == 0, done.stdout + done.stderr
                outcomes.append(json.loads(done.stdout))
        finally:
            stop.set()
            sender.join()
    cycles = [o["cycles"] for o in outcomes]
    assert cycles == sorted(set(cycles)), cycles  # the scheduler kept closing all the while
    assert all(o["batches_identical"] for o in outcomes)


def test_a_difference_is_named_by_batch_id_and_exits_1(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    emitted = batches(bootstrap, codec, "cnh-cips")
    real = emitted["cnh-cips-CNH-00000001"]
    forged = {**real, "batch_id": "cnh-cips-CNH-00000000", "cycle_seq": 1}
    items = [(b"cnh-cips-CNH-00000001", codec.encode("SettlementBatch", real)),  # twice
             (b"cnh-cips-CNH-00000000", codec.encode("SettlementBatch", forged))]  # fmt: skip
    produce_all(Producer(producer_config(bootstrap)), "clearing.settlement.batches.cnh-cips",
                items)  # fmt: skip
    done = clearing(bootstrap, state, "replay")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert any("emitted twice" in line and "cnh-cips-CNH-00000001" in line for line in lines)
    assert any("emitted only" in line and "cnh-cips-CNH-00000000" in line for line in lines)


def test_an_unreadable_netting_state_stops_the_worker_naming_it(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    """Not a fresh ledger at cycle 0 reusing batch ids, nor an older state."""
    good = [r for r in read_topic(bootstrap, STATE_TOPIC, "t-state") if r.key == b"CNH"][-1]
    states = Producer(producer_config(bootstrap))
    produce_all(states, STATE_TOPIC, [(b"CNH", b"\xc3\x01not a state")])
    with worker(bootstrap, state, role="netting", worker_id="w-bad-state") as process:
        process.wait(timeout=120)
    log = (state / "worker-w-bad-state.log").read_text()
    assert process.returncode == 70, log
    assert "the netting state of CNH is unreadable" in log
    produce_all(states, STATE_TOPIC, [(b"CNH", good.value)])  # a later good one supersedes it
    assert load_states(bootstrap, codec, "t-states")["CNH"]["cycle_seq"] >= 1


def test_an_unreadable_dead_letter_stops_the_rejection_count(
    bootstrap: str, codec: SingleObjectCodec
) -> None:
    """Last in the module: every later close of the module's currencies would stop too."""
    produce_all(Producer(producer_config(bootstrap)), DLQ_TOPIC, [(b"x", b"\xc3\x01garbage")])
    now = datetime.now(UTC)
    with pytest.raises(UnreadableRejectionError, match=r"clearing.dlq@\d+:\d+: unreadable"):
        count_rejections(bootstrap, codec, RejectionWindow("CNH", now - timedelta(hours=1), now))
