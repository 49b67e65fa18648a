"""The mission end to end on a real broker: events in, settlement batches out,
through real worker processes (Faust agents and the netting loop).

A module-scoped broker of its own keeps the contract's fixed topic names and
consumer groups clear of the other tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_services.kafka.clients import produce_all, producer_config
from clearing_services.operations.audit import coverage
from tests.support.pipeline import (
    REFDATA_FILE,
    batches,
    clearing,
    decoded,
    flows,
    meter,
    now,
    own_broker,
    payment,
    publish_test_refdata,
    scrape,
    send_events,
    wait_for_dlq,
    wait_for_obligation,
    wait_for_reports,
    worker,
)

pytestmark = pytest.mark.broker
HOUSE = "CLEARING_HOUSE"


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with own_broker(tmp_path_factory.mktemp("pipeline-broker")) as address:
        yield address


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory, bootstrap: str) -> Path:
    return publish_test_refdata(bootstrap, tmp_path_factory.mktemp("pipeline-state"))


def usage(event_id: str, tokens: int) -> dict[str, Any]:
    t = now()
    return {"event_id": event_id, "reporter_id": "GPUCLOUD-SG-02", "provider_id": "GPUCLOUD-SG-02",
            "customer_id": "DC-SHENZHEN-01", "price_book_id": "PB-GPUCLOUD-SG-02",
            "sku": "output_token", "quantity": tokens, "model": "llm-70b",
            "usage_start": t - timedelta(minutes=1), "usage_end": t, "reported_at": t}  # fmt: skip


def close(bootstrap: str, state: Path, currency: str) -> None:
    done = clearing(bootstrap, state, "cycle", "close", "--currency", currency)
    assert done.returncode == 0, done.stderr


def test_known_scenario_gives_exactly_the_expected_batches(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    with worker(bootstrap, state) as process:
        send_events(bootstrap, codec, "meter", [
            meter("m-1", 10_000_000),                     # 10 MWh x 350 CNH = 350,000 fen
            meter("m-1", 10_000_000),                     # the same event again
            meter("m-2", 7, contract="PPA-UNKNOWN"),      # bad: unknown contract
        ])  # fmt: skip
        send_events(bootstrap, codec, "payment", [
            payment("p-1", "DC-SHENZHEN-01", "LEASECO-HK-01", "FINANCE_LEASE_RENT", 120_000),
            payment("p-2", "LEASECO-HK-01", "SOLAR-QINGHAI-07", "OM_FEE", 50_000),
            payment("p-3", "DC-SHENZHEN-01", "DC-SHENZHEN-01", "TRANSFER", 1),  # bad: self
        ])  # fmt: skip
        send_events(bootstrap, codec, "compute", [usage("c-1", 1_000_000)])  # 10.00 USD
        produce_all(Producer(producer_config(bootstrap)), "clearing.events.compute",
                    [(b"GPUCLOUD-SG-02", b"\xc3\x01\x00\x01")])  # bad: truncated  # fmt: skip
        wait_for_dlq(bootstrap, codec, 4)
        close(bootstrap, state, "CNH")
        close(bootstrap, state, "USD")
        (cnh,) = wait_for_reports(bootstrap, codec, "CNH", 1)
        (usd,) = wait_for_reports(bootstrap, codec, "USD", 1)
        metrics = scrape(process.metrics_url)

    assert (cnh["obligation_count"], cnh["gross_minor"], cnh["net_minor"]) == (3, 520_000, 470_000)
    # the resent meter event and the self-payment are CNH's; an unknown contract has no currency
    assert (cnh["duplicate_count"], cnh["rejected_count"]) == (0, 2)
    assert cnh["treasury"] == [
        {"from_rail": "cnh-cips", "to_rail": "cnh-stable", "amount_minor": 470_000}
    ]
    assert flows(batches(bootstrap, codec, "cnh-cips")["cnh-cips-CNH-00000001"]) == [
        ("DC-SHENZHEN-01", HOUSE, 470_000, 470_000),
    ]
    assert flows(batches(bootstrap, codec, "cnh-stable")["cnh-stable-CNH-00000001"]) == [
        (HOUSE, "LEASECO-HK-01", 70_000, 700_000_000),
        (HOUSE, "SOLAR-QINGHAI-07", 400_000, 4_000_000_000),
    ]
    assert (usd["gross_minor"], usd["net_minor"]) == (1_000, 1_000)
    assert flows(batches(bootstrap, codec, "usd-swift")["usd-swift-USD-00000001"]) == [
        (HOUSE, "GPUCLOUD-SG-02", 1_000, 1_000),
        ("DC-SHENZHEN-01", HOUSE, 1_000, 1_000),
    ]
    reasons = sorted(r["reason_code"] for r in decoded(bootstrap, codec, "clearing.dlq", "dlq-1"))
    assert reasons == ["DUPLICATE_EVENT", "SELF_PAYMENT", "TRUNCATED_AVRO", "UNKNOWN_CONTRACT"]
    positions = {(p["participant_id"], p["currency"]): p["net_minor"]
                 for p in decoded(bootstrap, codec, "clearing.positions", "pos-1")}  # fmt: skip
    assert positions[("DC-SHENZHEN-01", "CNH")] == -470_000
    assert positions[("SOLAR-QINGHAI-07", "CNH")] == 400_000

    replayed = clearing(bootstrap, state, "replay", "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert '"batches_identical": 3' in replayed.stdout

    meter_in = 'clearing_events_in_total{stage="ingest",topic="clearing.events.meter"}'
    assert metrics[meter_in] == 3
    assert metrics['clearing_rejects_total{reason="SELF_PAYMENT",stage="ingest"}'] == 1
    assert metrics['clearing_records_out_total{topic="clearing.obligations"}'] == 4
    assert metrics['clearing_cycles_total{currency="CNH"}'] == 1
    assert metrics['clearing_cycle_gross_minor{currency="CNH"}'] == 520_000
    assert metrics['clearing_netting_efficiency_ratio{currency="CNH"}'] == pytest.approx(
        1 - 470_000 / 520_000
    )


def test_a_failed_acknowledgement_moves_its_amount_into_the_next_cycle(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    """Runs after the scenario above: the bank fails DC's USD payment to the house and
    settles the house's payment to GPUCLOUD; repeats change nothing, contradictions of
    a final state are refused (a FAILED after the SETTLED would make the house pay twice)."""
    usd_batch = batches(bootstrap, codec, "usd-swift")["usd-swift-USD-00000001"]
    (failed,) = [i for i in usd_batch["instructions"] if i["payer_id"] == "DC-SHENZHEN-01"]
    (settled,) = [i for i in usd_batch["instructions"] if i["payee_id"] == "GPUCLOUD-SG-02"]

    def ack(instruction: dict[str, Any], status: str, batch_id: str = "usd-swift-USD-00000001"
            ) -> dict[str, Any]:  # fmt: skip
        return {"batch_id": batch_id, "instruction_id": instruction["instruction_id"],
                "rail_id": "usd-swift", "status": status,
                "reason_code": "AM04" if status == "FAILED" else None, "reason": None,
                "bank_id": "BANK-1", "bank_reference": None, "acked_at": now()}  # fmt: skip

    first = [ack(failed, "FAILED"), ack(settled, "SETTLED"),
             ack({"instruction_id": "x"}, "SETTLED", "usd-swift-USD-00000099")]  # fmt: skip
    then = [
        ack(failed, "FAILED"),
        ack(settled, "SETTLED"),  # identical repeats: no-ops
        ack(failed, "SETTLED"),
        ack(settled, "FAILED"),
    ]  # contradictions: refused
    acks_out = Producer(producer_config(bootstrap))
    with worker(bootstrap, state):
        for sent in (first, then):
            items = [(a["batch_id"].encode(), codec.encode("SettlementAck", a)) for a in sent]
            produce_all(acks_out, "clearing.settlement.acks", items)
            wait_for_dlq(bootstrap, codec, 4 + (1 if sent is first else 3))
        wait_for_obligation(bootstrap, codec, "f:" + failed["instruction_id"])
        close(bootstrap, state, "USD")
        reports = wait_for_reports(bootstrap, codec, "USD", 2)
    second = reports[1]
    assert (second["failed_carried_count"], second["failed_carried_minor"]) == (1, 1_000)
    assert second["duplicate_count"] == 0  # the repeated FAILED was not carried again
    assert flows(batches(bootstrap, codec, "usd-swift")["usd-swift-USD-00000002"]) == [
        ("DC-SHENZHEN-01", HOUSE, 1_000, 1_000),
    ]
    dlq = [r for r in decoded(bootstrap, codec, "clearing.dlq", "dlq-2") if r["stage"] == "acks"]
    assert sorted(r["reason_code"] for r in dlq) == [
        "ACK_CONTRADICTS_FINAL", "ACK_CONTRADICTS_FINAL", "UNKNOWN_BATCH",
    ]  # fmt: skip
    carried = [r for r in decoded(bootstrap, codec, "clearing.obligations", "obl-2")
               if r.get("source") == "FAILED_SETTLEMENT"]  # fmt: skip
    assert [r["obligation_id"] for r in carried] == ["f:" + failed["instruction_id"]]
    states = {r["instruction_id"]: r["status"]
              for r in decoded(bootstrap, codec, "clearing.settlement.status", "st-2")}  # fmt: skip
    assert states == {failed["instruction_id"]: "FAILED", settled["instruction_id"]: "SETTLED"}


def generated(seed: int, count: int) -> list[Any]:
    from clearing_core.refdata import load_refdata
    from clearing_core.workload.generator import EventGenerator

    refdata = load_refdata(REFDATA_FILE)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    gen = EventGenerator(refdata, seed=seed, now_ms=now_ms, prefix=f"s{seed}")
    return gen.events(count, bad_ratio=0.02, duplicate_ratio=0.02)


def send_generated(bootstrap: str, codec: SingleObjectCodec, events: list[Any]) -> None:
    for kind in ("meter", "compute", "payment"):
        records = [e.record for e in events if e.kind == kind and not e.corrupt]
        if records:
            send_events(bootstrap, codec, kind, records)


def group_members(bootstrap: str, group: str) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.describe_consumer_groups([group]).values()
    return len(future.result(timeout=10).members)


def test_a_worker_killed_mid_cycle_loses_nothing_and_counts_nothing_twice(
    bootstrap: str, state: Path, codec: SingleObjectCodec
) -> None:
    import signal
    import time

    first, second = generated(seed=21, count=800), generated(seed=22, count=800)
    valid = sum(1 for e in [*first, *second] if e.expect is None)
    before = len(wait_for_reports(bootstrap, codec, "CNH", 0))
    with worker(bootstrap, state, worker_id="w4") as doomed:
        send_generated(bootstrap, codec, first)
        deadline = time.monotonic() + 120
        while not coverage(bootstrap, codec).events("s21"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        doomed.send_signal(signal.SIGKILL)  # mid-stream, mid-cycle: nothing closed yet
    with worker(bootstrap, state, worker_id="w5"):
        send_generated(bootstrap, codec, second)
        deadline = time.monotonic() + 300  # the killed worker's sessions must time out first
        while len(coverage(bootstrap, codec).events("s21", "s22")) < valid:
            assert time.monotonic() < deadline, "events were lost across the kill"
            time.sleep(1)
        close(bootstrap, state, "CNH")
        wait_for_reports(bootstrap, codec, "CNH", before + 1)
    # nothing lost: every valid event is carried by an obligation on the log; nothing
    # counted twice: each event by one obligation, whose event count and digest agree,
    # and the emitted batches equal a replay that counts every obligation id once
    covered = coverage(bootstrap, codec)
    covered.assert_sound()
    assert len(covered.events("s21", "s22")) == valid
    replayed = clearing(bootstrap, state, "replay", "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
