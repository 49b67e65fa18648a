"""``clearing produce`` and ``clearing cycle close`` against the real broker, and the
JSON conversion they rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.jsonrecord import RecordValueError, from_json, to_json
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_services.kafka.clients import read_topic
from clearing_services.kafka.topics import create_topics, load_topic_plan
from tests.conftest import REFDATA_FILE


def _clearing(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "clearing_services.cli", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def _events(run: str) -> list[dict[str, object]]:
    return [
        {"type": "meter", "event_id": f"{run}-m1", "reporter_id": "SOLAR-QINGHAI-07",
         "contract_id": "PPA-1", "meter_id": "M-1", "interval_start": "2026-11-24T00:00:00Z",
         "interval_end": "2026-11-24T00:15:00+00:00", "energy_wh": 1250000,
         "reported_at": 1795526100000},
        {"type": "compute", "event_id": f"{run}-c1", "reporter_id": "GPUCLOUD-SG-02",
         "provider_id": "GPUCLOUD-SG-02", "customer_id": "AILAB-HK-03", "price_book_id": "PB-1",
         "sku": "gpu_second", "quantity": 3600, "usage_start": "2026-11-24T00:00:00Z",
         "usage_end": "2026-11-24T01:00:00Z", "reported_at": "2026-11-24T01:00:05Z"},
        {"type": "payment", "event_id": f"{run}-p1", "reporter_id": "DC-SHENZHEN-01",
         "payer_id": "DC-SHENZHEN-01", "payee_id": "EPC-WUHAN-11", "kind": "OM_FEE",
         "currency": "CNH", "amount_minor": 300000, "value_date": "2026-11-30",
         "reported_at": "2026-11-24T08:00:00Z"},
    ]  # fmt: skip


def test_from_json_converts_by_schema_and_names_bad_fields(catalog: SchemaCatalog) -> None:
    payment = {k: v for k, v in _events("x")[2].items() if k != "type"}
    record = from_json(catalog.current("Payment").parsed, payment)
    assert record["value_date"] == date(2026, 11, 30)
    assert record["reported_at"] == datetime(2026, 11, 24, 8, tzinfo=UTC)
    assert to_json(record)["reported_at"] == "2026-11-24T08:00:00.000Z"
    bad = [
        ({**payment, "amount_minor": "12.5"}, "amount_minor: '12.5' is not an integer"),
        ({**payment, "kind": "BRIBE"}, "kind: 'BRIBE' is not one of"),
        ({**payment, "reported_at": "2026-11-24T08:00:00"}, "has no time zone"),
        ({**payment, "amount_minor": 2**63}, "amount_minor: 9223372036854775808 is out of range"),
        ({**payment, "colour": "red"}, "unknown field 'colour'"),
        ({k: v for k, v in payment.items() if k != "payer_id"}, "payer_id: missing"),
    ]
    for obj, message in bad:
        with pytest.raises(RecordValueError, match=message.replace("(", r"\(")):
            from_json(catalog.current("Payment").parsed, obj)


def test_produce_file_then_read_back(
    kafka_bootstrap: str, tmp_path: Path, unique: str, codec: SingleObjectCodec
) -> None:
    create_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), load_topic_plan().topics)
    events = _events(unique)
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    done = _clearing("produce", str(source), "--json", bootstrap=kafka_bootstrap)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["produced"] == {
        "clearing.events.compute": 1, "clearing.events.meter": 1, "clearing.events.payment": 1,
    }  # fmt: skip
    for topic, record_type, key in [
        ("clearing.events.meter", "MeterReading", "PPA-1"),
        ("clearing.events.compute", "ComputeUsage", "GPUCLOUD-SG-02"),
        ("clearing.events.payment", "Payment", "DC-SHENZHEN-01"),
    ]:
        ours = [
            r for r in read_topic(kafka_bootstrap, topic, group=f"t-{unique}")
            if codec.decode_as(r.value, record_type)["event_id"].startswith(unique)
        ]  # fmt: skip
        assert len(ours) == 1
        assert ours[0].key == key.encode()


def test_a_bad_line_stops_the_whole_file(kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    events = _events(unique)
    events[2]["amount_minor"] = "lots"
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    done = _clearing("produce", str(source), bootstrap=kafka_bootstrap)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"error: {source}:3: Payment: amount_minor: 'lots' is not an integer"
    )
    meter = read_topic(kafka_bootstrap, "clearing.events.meter", group=f"b-{unique}")
    assert not [r for r in meter if unique.encode() in r.value]


def test_produce_csv_needs_and_uses_type(kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    source = tmp_path / "payments.csv"
    source.write_text(
        "event_id,reporter_id,payer_id,payee_id,kind,currency,amount_minor,reference,value_date,"
        "reported_at\n"
        f"{unique}-1,DC-1,DC-1,EPC-1,OM_FEE,CNH,100,,2026-11-30,2026-11-24T00:00:00Z\n"
        f"{unique}-2,DC-1,DC-1,EPC-1,TRANSFER,USD,250,INV-9,2026-11-30,2026-11-24T00:00:00Z\n"
    )
    without = _clearing("produce", str(source), bootstrap=kafka_bootstrap)
    assert without.returncode == 2
    assert "needs --type" in without.stderr
    done = _clearing(
        "produce", str(source), "--type", "payment", "--json", bootstrap=kafka_bootstrap
    )
    assert json.loads(done.stdout)["produced"] == {"clearing.events.payment": 2}


def test_cycle_close_writes_a_marker(
    kafka_bootstrap: str, codec: SingleObjectCodec, unique: str
) -> None:
    create_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), load_topic_plan().topics)
    published = _clearing("refdata", "publish", str(REFDATA_FILE), bootstrap=kafka_bootstrap)
    assert published.returncode == 0, published.stderr  # the plan names CNH's partition: 0
    done = _clearing("cycle", "close", "--currency", "cnh", "--by", unique, "--json",
                     bootstrap=kafka_bootstrap)  # fmt: skip
    assert done.returncode == 0, done.stderr
    marker_id = json.loads(done.stdout)["marker_id"]
    found = [
        (r.partition, codec.decode(r.value).record)
        for r in read_topic(kafka_bootstrap, "clearing.obligations", group=f"c-{unique}")
        if r.key == b"CNH"
    ]
    ours = [m for p, m in found if m["marker_id"] == marker_id and p == 0]
    assert len(ours) == 1
    unknown = _clearing("cycle", "close", "--currency", "XAU", bootstrap=kafka_bootstrap)
    assert unknown.returncode != 0
    assert "unknown currency 'XAU'" in unknown.stderr  # no marker nobody would read
    assert ours[0]["requested_by"] == unique
    assert ours[0]["reason"] == "MANUAL"
    bad = _clearing("cycle", "close", "--currency", "C1", bootstrap=kafka_bootstrap)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --currency 'C1' is not a 3-letter currency code"
