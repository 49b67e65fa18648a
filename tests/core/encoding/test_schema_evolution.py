"""Schema evolution of the four event schemas (issue 7, item 4).

A v2 of ``MeterReading``, ``ComputeUsage``, ``Payment`` (what participants send) and
``SettlementAck`` (what banks send) adds optional fields with a null default. For
each: records of the v2 writer are read by current (v1) readers, the added fields
dropped; records of the v1 writer are read by v2 readers, the defaults filled in;
the pair is backward and forward compatible under the Avro resolution rules (the
``avro`` package's checker, and fastavro over generated records); and real worker
processes told about the v2 writers (``CLEARING_WRITER_SCHEMAS``, docs/schemas.md)
price v2 events into the same obligations as their v1 twins and accept a v2
acknowledgement (on a broker of the module's own: the workers use the contract's
topics and consumer groups, which must stay clear of the other tests).

The v2 files: ``tests/data/schemas_v2/clearing.MeterReading.avsc`` (also used by
tests/core/encoding/test_codec.py, which reads that directory as "the v2 MeterReading") and
``tests/data/schemas_v2/events/`` for the other three.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing_core.encoding.codec import SingleObjectCodec, UnknownSchemaError
from clearing_core.encoding.schemas import (
    SchemaCatalog,
    SchemaVersion,
    load_directory,
    schema_json,
    version_from_schema,
)
from clearing_core.errors import InputError
from clearing_services.kafka.codecs import codec_for
from clearing_services.settings import load_settings
from tests.conftest import REPO
from tests.support.avro_strategies import records
from tests.support.events import compute_usage, meter_reading, payment, settlement_ack

V2_DIRS = (REPO / "tests/data/schemas_v2", REPO / "tests/data/schemas_v2/events")
WRITER_SCHEMAS_ENV = os.pathsep.join(str(d) for d in V2_DIRS)
ADDED: dict[str, dict[str, Any]] = {
    "MeterReading": {"grid_node": "QH-330kV-07"},
    "ComputeUsage": {"region": "ap-southeast-1"},
    "Payment": {"source_system": "erp-sz-01"},
    "SettlementAck": {
        "note": "released after a liquidity top-up",
        "settled_at": datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
    },
}
NAMES = sorted(ADDED)
INVOICE = "INV-2026-11-0042"
pytestmark = pytest.mark.own_broker  # for the tests of (d) only, which ask for a broker

V1_VERSIONS = load_directory(REPO / "schemas")
V2_VERSIONS = {v.short_name: v for d in V2_DIRS for v in load_directory(d)}
# Current readers: the contract's schemas/, plus the v2 writers (what a worker started
# with CLEARING_WRITER_SCHEMAS knows).
V1_READER = SingleObjectCodec(SchemaCatalog.load().with_writer_dirs(V2_DIRS))
V1_ONLY = SingleObjectCodec(SchemaCatalog.load())
# Upgraded readers: v2 is the current version of all four; v1 stays readable.
V2_READER = SingleObjectCodec(
    SchemaCatalog(
        [v for v in V1_VERSIONS if v.short_name not in V2_VERSIONS] + list(V2_VERSIONS.values()),
        writers=V1_VERSIONS,
    )
)


def v1_of(name: str) -> SchemaVersion:
    return V1_READER.catalog.current(name)


def test_the_v2_files_are_the_four_event_schemas_with_optional_fields_added() -> None:
    assert sorted(V2_VERSIONS) == NAMES
    for name in NAMES:
        v1 = json.loads(Path(v1_of(name).source).read_text())
        v2 = json.loads(Path(V2_VERSIONS[name].source).read_text())
        assert (v2["name"], v2["namespace"]) == (v1["name"], v1["namespace"])
        assert [f["name"] for f in v2["fields"][: len(v1["fields"])]] == [
            f["name"] for f in v1["fields"]
        ]
        assert v2["doc"] == v1["doc"]
        added = v2["fields"][len(v1["fields"]) :]
        assert [f["name"] for f in added] == list(ADDED[name])
        for field in added:
            assert field["type"][0] == "null", field
            assert field["default"] is None, field
            assert field["doc"].startswith("v2: "), field


def sample(name: str) -> dict[str, Any]:
    """A realistic v1 record of each type."""
    t = datetime(2026, 11, 24, 8, 15, tzinfo=UTC)
    samples: dict[str, dict[str, Any]] = {
        "MeterReading": meter_reading("m-1", 10_000_000, at=t),
        "ComputeUsage": compute_usage("c-1", at=t),
        "Payment": payment("p-1", at=t, reference=INVOICE, value_date=date(2026, 11, 30)),
        "SettlementAck": settlement_ack(
            {"batch_id": "usd-swift-USD-00000001", "rail_id": "usd-swift"},
            {"instruction_id": "i-1"}, "FAILED", at=t, reason="insufficient funds",
        ),
    }  # fmt: skip
    return samples[name]


# (a) a v2-written record is read by a current (v1) reader into the v1 shape


@pytest.mark.parametrize("name", NAMES)
def test_a_current_reader_reads_a_v2_record_into_the_v1_shape(name: str) -> None:
    v2_bytes = V2_READER.encode(name, {**sample(name), **ADDED[name]})
    assert v2_bytes[2:10] == V2_VERSIONS[name].fingerprint
    decoded = V1_READER.decode(v2_bytes)
    assert (decoded.name, decoded.record) == (name, sample(name))
    with pytest.raises(UnknownSchemaError):  # without the v2 writer schema: dead-lettered
        V1_ONLY.decode(v2_bytes)


# (b) a v1-written record is read by a v2 reader with the defaults filled in


@pytest.mark.parametrize("name", NAMES)
def test_a_v2_reader_reads_a_v1_record_with_the_defaults(name: str) -> None:
    v1_bytes = V1_ONLY.encode(name, sample(name))
    assert v1_bytes[2:10] == v1_of(name).fingerprint
    decoded = V2_READER.decode(v1_bytes)
    assert decoded.record == {**sample(name), **dict.fromkeys(ADDED[name])}


# (c) backward and forward compatibility under the Avro resolution rules


def _compatible(reader: SchemaVersion, writer: SchemaVersion) -> SchemaCompatibilityType:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro_parse(schema_json(reader)), avro_parse(schema_json(writer))
    )
    return result.compatibility


@pytest.mark.parametrize("name", NAMES)
def test_v1_and_v2_are_backward_and_forward_compatible(name: str) -> None:
    v1, v2 = v1_of(name), V2_VERSIONS[name]
    assert _compatible(reader=v2, writer=v1) is SchemaCompatibilityType.compatible  # backward
    assert _compatible(reader=v1, writer=v2) is SchemaCompatibilityType.compatible  # forward


@pytest.mark.parametrize("name", NAMES)
def test_the_checker_refuses_an_added_field_without_a_default(name: str) -> None:
    """The checker is not vacuous: the same v2 with its added fields required is
    readable by v1 (forward) but breaks v2 readers of v1 records (backward)."""
    schema = json.loads(schema_json(V2_VERSIONS[name]))
    for field in schema["fields"][len(v1_of(name).expanded["fields"]) :]:
        del field["default"]
    strict = version_from_schema(schema)
    assert _compatible(reader=strict, writer=v1_of(name)) is SchemaCompatibilityType.incompatible
    assert _compatible(reader=v1_of(name), writer=strict) is SchemaCompatibilityType.compatible


def _strategy(version: SchemaVersion) -> st.SearchStrategy[Any]:
    return records(version.parsed)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_v1_records_read_by_v2_readers(name: str, data: st.DataObject) -> None:
    """Backward: every v1 record decodes under v2 with the added fields null."""
    record = data.draw(_strategy(v1_of(name)))
    decoded = V2_READER.decode(V1_ONLY.encode(name, record))
    assert decoded.record == {**record, **dict.fromkeys(ADDED[name])}


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_v2_records_read_by_v1_readers(name: str, data: st.DataObject) -> None:
    """Forward: every v2 record (added fields null or set) decodes under v1 without them,
    and re-encoding that under v1 gives the bytes a v1 writer would have written."""
    record = data.draw(_strategy(V2_VERSIONS[name]))
    decoded = V1_READER.decode(V2_READER.encode(name, record))
    v1_shape = {k: v for k, v in record.items() if k not in ADDED[name]}
    assert decoded.record == v1_shape
    assert V1_READER.encode(name, decoded.record) == V1_ONLY.encode(name, v1_shape)


# How a worker learns the v2 writers: CLEARING_WRITER_SCHEMAS (docs/schemas.md)


def test_workers_learn_extra_writer_schemas_from_the_setting() -> None:
    v2_bytes = V2_READER.encode("Payment", {**sample("Payment"), **ADDED["Payment"]})
    plain = codec_for(load_settings({}))
    with pytest.raises(UnknownSchemaError):
        plain.decode(v2_bytes)
    told = codec_for(load_settings({"CLEARING_WRITER_SCHEMAS": WRITER_SCHEMAS_ENV}))
    assert told.decode(v2_bytes).record == sample("Payment")
    # the readers stay v1: what a told worker writes is what any v1 reader reads
    assert told.encode("Payment", sample("Payment")) == V1_ONLY.encode("Payment", sample("Payment"))


def test_a_bad_writer_schema_setting_fails_at_start_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="CLEARING_WRITER_SCHEMAS: schema directory not found"):
        codec_for(load_settings({"CLEARING_WRITER_SCHEMAS": str(missing)}))
    stranger = {"type": "record", "name": "Invoice", "namespace": "clearing",
                "fields": [{"name": "id", "type": "string"}]}  # fmt: skip
    (tmp_path / "clearing.Invoice.avsc").write_text(json.dumps(stranger))
    with pytest.raises(InputError, match="Invoice, which has no current version"):
        codec_for(load_settings({"CLEARING_WRITER_SCHEMAS": str(tmp_path)}))


# (d) end to end through a real worker process on a real broker


def _events(prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The same three events as pipeline test's scenario, under ids of their own."""
    return {"meter": [meter_reading(f"{prefix}-m-1", 10_000_000)],
            "compute": [compute_usage(f"{prefix}-c-1")],
            "payment": [payment(f"{prefix}-p-1", reference=INVOICE)]}  # fmt: skip


def _wait_for(
    bootstrap: str, topic: str, pick: Callable[[dict[str, Any]], object], wanted: set[Any]
) -> list[dict[str, Any]]:
    """The records of ``topic`` whose ``pick`` is one of ``wanted``, once each has one."""
    from tests.support.pipeline import decoded

    deadline = time.monotonic() + 120
    while True:
        records = decoded(bootstrap, V1_ONLY, topic, f"w-{time.time_ns()}")
        found = [r for r in records if pick(r) in wanted]
        missing = wanted - {pick(r) for r in found}
        if not missing:
            return found
        assert time.monotonic() < deadline, f"missing on {topic}: {sorted(missing)}"
        time.sleep(0.5)


def _wait_for_obligations(bootstrap: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    found = _wait_for(bootstrap, "clearing.obligations", lambda r: r.get("obligation_id"), ids)
    return {r["obligation_id"]: r for r in found}


def test_a_worker_prices_v2_events_like_their_v1_twins_and_accepts_a_v2_ack(
    bootstrap: str, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.pipeline import (
        batches,
        close_cycle,
        decoded,
        send_events,
        wait_for_reports,
        worker,
    )

    monkeypatch.setenv("CLEARING_WRITER_SCHEMAS", WRITER_SCHEMAS_ENV)  # the worker's env
    old, new = _events("v1"), _events("v2")
    added = {"meter": "MeterReading", "compute": "ComputeUsage", "payment": "Payment"}
    with worker(bootstrap, state, worker_id="evo-1"):
        pairs = {"m:v1-m-1": "m:v2-m-1", "c:v1-c-1": "c:v2-c-1", "p:v1-p-1": "p:v2-p-1"}
        # v1 first and v2 once v1 is ingested: twins in one ingest batch would be
        # pre-aggregated into one obligation, and here each is compared on its own
        for kind in added:
            send_events(bootstrap, V1_ONLY, kind, old[kind])
        found = _wait_for_obligations(bootstrap, set(pairs))
        for kind, name in added.items():
            send_events(bootstrap, V2_READER, kind, [{**r, **ADDED[name]} for r in new[kind]])
        found |= _wait_for_obligations(bootstrap, set(pairs.values()))
        close_cycle(bootstrap, state, "USD")
        (usd,) = wait_for_reports(bootstrap, V1_ONLY, "USD", 1)
        (batch,) = batches(bootstrap, V1_ONLY, "usd-swift").values()
        (owed,) = [i for i in batch["instructions"] if i["payer_id"] == "DC-SHENZHEN-01"]
        ack = {**sample("SettlementAck"), "batch_id": batch["batch_id"],
               "instruction_id": owed["instruction_id"], "acked_at": datetime.now(UTC),
               **ADDED["SettlementAck"]}  # fmt: skip
        from confluent_kafka import Producer

        from clearing_services.kafka.clients import produce_all, producer_config

        item = (ack["batch_id"].encode(), V2_READER.encode("SettlementAck", ack))
        produce_all(Producer(producer_config(bootstrap)), "clearing.settlement.acks", [item])
        carried = _wait_for_obligations(bootstrap, {"f:" + owed["instruction_id"]})

    for v1_id, v2_id in pairs.items():
        assert found[v1_id]["amount_minor"] > 0
        assert {**found[v2_id], "obligation_id": v1_id} == found[v1_id]
    # both compute twins (10.00 USD each) are in the closed USD cycle
    assert (usd["obligation_count"], usd["gross_minor"]) == (2, 2_000)
    assert carried["f:" + owed["instruction_id"]]["amount_minor"] == owed["amount_minor"]
    dlq = decoded(bootstrap, V1_ONLY, "clearing.dlq", f"dlq-{time.time_ns()}")
    assert [(r["reason_code"], r["message"]) for r in dlq] == []


def test_a_v2_resend_of_a_v1_event_is_a_duplicate_after_a_restart(
    bootstrap: str, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15, item 6: a meter reading sent as v1; then, to an ingest worker started
    again (its seen state read back from clearing.ingest.seen.meter), the same reading
    from a v2 writer with no grid node, and a v2 one with another energy. The first
    resend is the same event (``DUPLICATE_EVENT``), the second a conflict, and the
    reading has one obligation."""
    from tests.support.pipeline import decoded, send_events, worker

    monkeypatch.setenv("CLEARING_WRITER_SCHEMAS", WRITER_SCHEMAS_ENV)  # the worker's env
    (reading,) = _events("dup")["meter"]
    with worker(bootstrap, state, role="ingest", worker_id="dup-1"):
        send_events(bootstrap, V1_ONLY, "meter", [reading])
        _wait_for_obligations(bootstrap, {"m:dup-m-1"})
    resend = {**reading, "grid_node": None}
    other = {**resend, "energy_wh": reading["energy_wh"] + 1}
    sent = {V2_READER.encode("MeterReading", r): r for r in (resend, other)}
    with worker(bootstrap, state, role="ingest", worker_id="dup-2"):
        send_events(bootstrap, V2_READER, "meter", list(sent.values()))
        rejected = _wait_for(bootstrap, "clearing.dlq", lambda r: r["original"], set(sent))
    assert {sent[r["original"]]["energy_wh"]: r["reason_code"] for r in rejected} == {
        reading["energy_wh"]: "DUPLICATE_EVENT",
        other["energy_wh"]: "DUPLICATE_EVENT_CONFLICT",
    }  # fmt: skip
    obligations = decoded(bootstrap, V1_ONLY, "clearing.obligations", f"o-{time.time_ns()}")
    assert [o.get("obligation_id") for o in obligations].count("m:dup-m-1") == 1


def test_acks_written_before_pending_existed_stay_readable() -> None:
    """SettlementAck gained the PENDING symbol (issue 18): records on the topic written
    with the earlier version (schemas/history/) decode into the current one."""
    earlier = SingleObjectCodec(SchemaCatalog.load(REPO / "schemas/history"))
    old_bytes = earlier.encode("SettlementAck", sample("SettlementAck"))
    assert old_bytes[2:10] != v1_of("SettlementAck").fingerprint
    decoded = V1_ONLY.decode(old_bytes)
    assert (decoded.name, decoded.record) == ("SettlementAck", sample("SettlementAck"))


def test_dead_letters_written_before_they_kept_headers_stay_readable() -> None:
    """Rejected gained the original's headers and ``original_cut`` (issue 19): a dead
    letter written with the earlier version decodes with no headers, not cut."""
    earlier = SingleObjectCodec(SchemaCatalog.load(REPO / "schemas/history"))
    letter = {"source_topic": "clearing.events.payment", "source_partition": 1,
              "source_offset": 42, "source_key": b"DC-SHENZHEN-01", "original": b"\xc3\x01",
              "reason_code": "TRUNCATED_AVRO", "message": "truncated", "stage": "ingest",
              "event_id": None, "principal": None, "currency": None,
              "rejected_at": datetime(2026, 11, 24, 8, 15, tzinfo=UTC)}  # fmt: skip
    old_bytes = earlier.encode("Rejected", letter)
    assert old_bytes[2:10] != v1_of("Rejected").fingerprint
    decoded = V1_ONLY.decode(old_bytes)
    assert decoded.record == {**letter, "headers": [], "original_cut": False}
