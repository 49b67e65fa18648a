"""The mission end to end on a real broker: events in, settlement batches out,
through real worker processes (Faust agents and the netting loop).

The known scenario runs once for the module (``scenario``), its acknowledgements once
after it (``acknowledged``); each test checks one thing of what they left. Their reads
are made as they finish, before the later tests close more cycles.

A module-scoped broker of its own keeps the contract's fixed topic names and
consumer groups clear of the other tests."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.kafka.clients import produce_all, producer_config
from clearing_services.operations.audit import coverage
from tests.support.events import compute_usage, meter_reading, payment, settlement_ack
from tests.support.pipeline import (
    batches,
    clearing,
    close_cycle,
    decoded,
    flows,
    generated,
    scrape,
    send_events,
    send_generated,
    wait_for_dlq,
    wait_for_obligation,
    wait_for_reports,
    wait_until,
    worker,
)

pytestmark = pytest.mark.own_broker
HOUSE = "CLEARING_HOUSE"
RAILS = ("cnh-cips", "cnh-stable", "usd-swift")
USD_1, USD_2 = "usd-swift-USD-00000001", "usd-swift-USD-00000002"


@dataclass(frozen=True)
class Scenario:
    cnh: dict[str, Any]  # the cycle reports
    usd: dict[str, Any]
    batches: dict[str, dict[str, dict[str, Any]]]  # rail -> batch id -> batch
    dlq_reasons: list[str]
    positions: dict[tuple[str, str], int]  # (participant, currency) -> net
    metrics: dict[str, float]
    replay: subprocess.CompletedProcess[str]


def send_scenario(bootstrap: str, codec: SingleObjectCodec) -> None:
    send_events(bootstrap, codec, "meter", [
        meter_reading("m-1", 10_000_000),                     # 10 MWh x 350 CNH = 350,000 fen
        meter_reading("m-1", 10_000_000),                     # the same event again
        meter_reading("m-2", 7, contract_id="PPA-UNKNOWN"),   # bad: unknown contract
    ])  # fmt: skip
    send_events(bootstrap, codec, "payment", [
        payment("p-1", "DC-SHENZHEN-01", "LEASECO-HK-01", "FINANCE_LEASE_RENT", 120_000),
        payment("p-2", "LEASECO-HK-01", "SOLAR-QINGHAI-07", "OM_FEE", 50_000),
        payment("p-3", "DC-SHENZHEN-01", "DC-SHENZHEN-01", "TRANSFER", 1),  # bad: self
    ])  # fmt: skip
    send_events(bootstrap, codec, "compute", [compute_usage("c-1", 1_000_000)])  # 10.00 USD
    produce_all(Producer(producer_config(bootstrap)), "clearing.events.compute",
                [(b"GPUCLOUD-SG-02", b"\xc3\x01\x00\x01")])  # bad: truncated  # fmt: skip


@pytest.fixture(scope="module")
def scenario(bootstrap: str, state: Path, codec: SingleObjectCodec) -> Scenario:
    """The known scenario through one worker, both currencies closed once."""
    with worker(bootstrap, state) as process:
        send_scenario(bootstrap, codec)
        wait_for_dlq(bootstrap, codec, 4)
        close_cycle(bootstrap, state, "CNH")
        close_cycle(bootstrap, state, "USD")
        (cnh,) = wait_for_reports(bootstrap, codec, "CNH", 1)
        (usd,) = wait_for_reports(bootstrap, codec, "USD", 1)
        metrics = scrape(process.metrics_url)
    positions = {(p["participant_id"], p["currency"]): p["net_minor"]
                 for p in decoded(bootstrap, codec, "clearing.positions", "pos-1")}  # fmt: skip
    return Scenario(
        cnh, usd, {rail: batches(bootstrap, codec, rail) for rail in RAILS},
        sorted(r["reason_code"] for r in decoded(bootstrap, codec, "clearing.dlq", "dlq-1")),
        positions, metrics, clearing(bootstrap, state, "replay", "--json"),
    )  # fmt: skip


def test_the_cnh_cycle_nets_the_valid_events(scenario: Scenario) -> None:
    cnh = scenario.cnh
    assert (cnh["obligation_count"], cnh["gross_minor"], cnh["net_minor"]) == (3, 520_000, 470_000)


def test_the_cnh_cycle_counts_its_rejections(scenario: Scenario) -> None:
    # the resent meter event and the self-payment are CNH's; an unknown contract has no currency
    assert (scenario.cnh["duplicate_count"], scenario.cnh["rejected_count"]) == (0, 2)


def test_the_treasury_moves_the_net_between_the_cnh_rails(scenario: Scenario) -> None:
    assert scenario.cnh["treasury"] == [
        {"from_rail": "cnh-cips", "to_rail": "cnh-stable", "amount_minor": 470_000}
    ]


def test_the_cips_batch_collects_from_the_net_payer(scenario: Scenario) -> None:
    assert flows(scenario.batches["cnh-cips"]["cnh-cips-CNH-00000001"]) == [
        ("DC-SHENZHEN-01", HOUSE, 470_000, 470_000),
    ]


def test_the_stablecoin_batch_pays_the_net_receivers_in_token_units(scenario: Scenario) -> None:
    assert flows(scenario.batches["cnh-stable"]["cnh-stable-CNH-00000001"]) == [
        (HOUSE, "LEASECO-HK-01", 70_000, 700_000_000),
        (HOUSE, "SOLAR-QINGHAI-07", 400_000, 4_000_000_000),
    ]


def test_the_usd_cycle_nets_the_compute_usage(scenario: Scenario) -> None:
    assert (scenario.usd["gross_minor"], scenario.usd["net_minor"]) == (1_000, 1_000)


def test_the_usd_batch_passes_the_usage_through_the_house(scenario: Scenario) -> None:
    assert flows(scenario.batches["usd-swift"][USD_1]) == [
        (HOUSE, "GPUCLOUD-SG-02", 1_000, 1_000),
        ("DC-SHENZHEN-01", HOUSE, 1_000, 1_000),
    ]


def test_every_bad_event_reaches_the_dlq_with_its_reason(scenario: Scenario) -> None:
    assert scenario.dlq_reasons == [
        "DUPLICATE_EVENT", "SELF_PAYMENT", "TRUNCATED_AVRO", "UNKNOWN_CONTRACT",
    ]  # fmt: skip


def test_positions_are_each_participants_net(scenario: Scenario) -> None:
    assert scenario.positions[("DC-SHENZHEN-01", "CNH")] == -470_000
    assert scenario.positions[("SOLAR-QINGHAI-07", "CNH")] == 400_000


def test_a_replay_gives_every_batch_again(scenario: Scenario) -> None:
    assert scenario.replay.returncode == 0, scenario.replay.stdout + scenario.replay.stderr
    assert '"batches_identical": 3' in scenario.replay.stdout


def test_the_worker_counts_events_rejections_and_records(scenario: Scenario) -> None:
    metrics = scenario.metrics
    assert metrics['clearing_events_in_total{stage="ingest",topic="clearing.events.meter"}'] == 3
    assert metrics['clearing_rejects_total{reason="SELF_PAYMENT",stage="ingest"}'] == 1
    assert metrics['clearing_records_out_total{topic="clearing.obligations"}'] == 4


def test_the_worker_measures_the_cycle(scenario: Scenario) -> None:
    metrics = scenario.metrics
    assert metrics['clearing_cycles_total{currency="CNH"}'] == 1
    assert metrics['clearing_cycle_gross_minor{currency="CNH"}'] == 520_000
    assert metrics['clearing_netting_efficiency_ratio{currency="CNH"}'] == pytest.approx(
        1 - 470_000 / 520_000
    )


@dataclass(frozen=True)
class Acknowledged:
    failed: dict[str, Any]  # the instructions of USD batch 1 the bank failed and settled
    settled: dict[str, Any]
    report: dict[str, Any]  # the next USD cycle's
    next_batch: dict[str, Any]
    dlq_reasons: list[str]  # of the acknowledgements
    carried: list[str]  # obligations carried from failed settlements
    states: dict[str, str]  # instruction -> status


@pytest.fixture(scope="module")
def acknowledged(
    scenario: Scenario, bootstrap: str, state: Path, codec: SingleObjectCodec
) -> Acknowledged:
    """After the scenario, the bank fails DC's USD payment to the house and settles the
    house's payment to GPUCLOUD, then repeats both (no-ops) and contradicts both (a
    FAILED after the SETTLED would make the house pay twice); USD closes again."""
    usd_batch = scenario.batches["usd-swift"][USD_1]
    (failed,) = [i for i in usd_batch["instructions"] if i["payer_id"] == "DC-SHENZHEN-01"]
    (settled,) = [i for i in usd_batch["instructions"] if i["payee_id"] == "GPUCLOUD-SG-02"]
    unknown = {"batch_id": "usd-swift-USD-00000099", "rail_id": "usd-swift"}
    first = [settlement_ack(usd_batch, failed, "FAILED"),
             settlement_ack(usd_batch, settled, "SETTLED"),
             settlement_ack(unknown, {"instruction_id": "x"}, "SETTLED")]  # fmt: skip
    then = [settlement_ack(usd_batch, failed, "FAILED"),
            settlement_ack(usd_batch, settled, "SETTLED"),  # identical repeats: no-ops
            settlement_ack(usd_batch, failed, "SETTLED"),
            settlement_ack(usd_batch, settled, "FAILED")]  # contradictions  # fmt: skip
    acks_out = Producer(producer_config(bootstrap))
    with worker(bootstrap, state):
        for sent, rejected in ((first, 1), (then, 3)):
            items = [(a["batch_id"].encode(), codec.encode("SettlementAck", a)) for a in sent]
            produce_all(acks_out, "clearing.settlement.acks", items)
            wait_for_dlq(bootstrap, codec, 4 + rejected)
        wait_for_obligation(bootstrap, codec, "f:" + failed["instruction_id"])
        close_cycle(bootstrap, state, "USD")
        report = wait_for_reports(bootstrap, codec, "USD", 2)[1]
    dlq = [r for r in decoded(bootstrap, codec, "clearing.dlq", "dlq-2") if r["stage"] == "acks"]
    carried = [r["obligation_id"] for r in decoded(bootstrap, codec, "clearing.obligations",
               "obl-2") if r.get("source") == "FAILED_SETTLEMENT"]  # fmt: skip
    states = {r["instruction_id"]: r["status"]
              for r in decoded(bootstrap, codec, "clearing.settlement.status", "st-2")}  # fmt: skip
    return Acknowledged(
        failed, settled, report, batches(bootstrap, codec, "usd-swift")[USD_2],
        sorted(r["reason_code"] for r in dlq), carried, states,
    )  # fmt: skip


def test_a_failed_payment_is_carried_into_the_next_cycle_once(acknowledged: Acknowledged) -> None:
    report = acknowledged.report
    assert (report["failed_carried_count"], report["failed_carried_minor"]) == (1, 1_000)
    assert report["duplicate_count"] == 0  # the repeated FAILED was not carried again


def test_the_next_batch_collects_the_failed_amount_again(acknowledged: Acknowledged) -> None:
    assert flows(acknowledged.next_batch) == [("DC-SHENZHEN-01", HOUSE, 1_000, 1_000)]


def test_unknown_and_contradicting_acknowledgements_are_refused(acknowledged: Acknowledged) -> None:
    assert acknowledged.dlq_reasons == [
        "ACK_CONTRADICTS_FINAL", "ACK_CONTRADICTS_FINAL", "UNKNOWN_BATCH",
    ]  # fmt: skip


def test_the_carried_obligation_is_the_failed_instruction(acknowledged: Acknowledged) -> None:
    assert acknowledged.carried == ["f:" + acknowledged.failed["instruction_id"]]


def test_each_instruction_keeps_its_first_final_state(acknowledged: Acknowledged) -> None:
    assert acknowledged.states == {
        acknowledged.failed["instruction_id"]: "FAILED",
        acknowledged.settled["instruction_id"]: "SETTLED",
    }


def test_a_worker_killed_mid_cycle_loses_nothing_and_counts_nothing_twice(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    first, second = generated(seed=21, count=800), generated(seed=22, count=800)
    valid = sum(1 for e in [*first, *second] if e.expect is None)
    before = len(wait_for_reports(bootstrap, codec, "CNH", 0))
    with worker(bootstrap, state, worker_id="w4") as doomed:
        send_generated(bootstrap, codec, first)
        wait_until(
            "the first events' obligations", lambda: coverage(bootstrap, codec).events("s21")
        )
        doomed.send_signal(signal.SIGKILL)  # mid-stream, mid-cycle: nothing closed yet
    with worker(bootstrap, state, worker_id="w5"):
        send_generated(bootstrap, codec, second)
        wait_until(  # the killed worker's sessions must time out first
            "every valid event carried across the kill",
            lambda: len(coverage(bootstrap, codec).events("s21", "s22")) >= valid,
            timeout_seconds=300,
        )
        close_cycle(bootstrap, state, "CNH")
        wait_for_reports(bootstrap, codec, "CNH", before + 1)
    # nothing lost: every valid event is carried by an obligation on the log; nothing
    # counted twice: each event by one obligation, whose event count and digest agree,
    # and the emitted batches equal a replay that counts every obligation id once
    covered = coverage(bootstrap, codec)
    covered.assert_sound()
    assert len(covered.events("s21", "s22")) == valid
    replayed = clearing(bootstrap, state, "replay", "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
