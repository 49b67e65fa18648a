"""The single-object codec: every schema round trips, every bad byte string is a
typed error, fingerprints are the specification's CRC-64-AVRO, and schemas evolve."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from functools import partial

import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing_core.encoding.codec import (
    CodecError,
    EncodeError,
    MalformedRecordError,
    NotSingleObjectError,
    RecordTooLargeError,
    SingleObjectCodec,
    TruncatedRecordError,
    UnknownSchemaError,
    WrongSchemaError,
)
from clearing_core.encoding.schemas import SchemaCatalog, load_directory
from tests.conftest import REPO
from tests.support.avro_strategies import records
from tests.support.events import meter_reading

V2_DIR = REPO / "tests" / "data" / "schemas_v2"
CATALOG = SchemaCatalog.load()
RECORD_TYPES = [v.short_name for v in CATALOG if v.parsed["type"] == "record"]
CONTRACT_TYPES = {
    "MeterReading", "ComputeUsage", "Payment", "Obligation", "CycleClose", "SettlementBatch",
    "SettlementAck", "Position", "CycleReport", "Rejected", "Participant", "Rail",
    "PpaContract", "PriceBook", "PaymentKindSpec", "Currency",
}  # fmt: skip


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it (Rabin fingerprint)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


# Published vectors of the Avro project (share/test/data/schema-tests.txt), signed 64-bit.
SPEC_VECTORS = [
    ('"null"', 7195948357588979594),
    ('"boolean"', -6970731678124411036),
    ('"int"', 8247732601305521295),
    ('"long"', -3434872931120570953),
    ('"string"', -8142146995180207161),
    ('{"name":"foo","type":"fixed","size":15}', 1756455273707447556),
    ('{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
     7843277075252814651),
]  # fmt: skip


def test_contract_has_every_record_type() -> None:
    assert set(RECORD_TYPES) >= CONTRACT_TYPES


@pytest.mark.parametrize(("canonical", "signed"), SPEC_VECTORS)
def test_reference_crc_matches_the_avro_project_vectors(canonical: str, signed: int) -> None:
    assert _crc64_avro(canonical.encode()) == signed & (2**64 - 1)


@pytest.mark.parametrize(
    ("schema", "canonical"),
    [
        ({"type": "long", "logicalType": "timestamp-millis"}, '"long"'),
        ({"type": "fixed", "name": "foo", "size": 15, "doc": "x"}, SPEC_VECTORS[5][0]),
        (
            {"type": "record", "name": "foo", "doc": "d", "fields": [
                {"name": "f1", "type": "boolean", "default": True, "doc": "d"}]},
            SPEC_VECTORS[6][0],
        ),
    ],
)  # fmt: skip
def test_canonical_form_follows_the_spec(schema: dict[str, object], canonical: str) -> None:
    assert to_parsing_canonical_form(parse_schema(schema, named_schemas={})) == canonical


@pytest.mark.parametrize("name", RECORD_TYPES)
def test_header_is_magic_and_spec_fingerprint_of_canonical_form(name: str) -> None:
    version = CATALOG.current(name)
    expected = _crc64_avro(version.canonical_form.encode()).to_bytes(8, "little")
    assert version.fingerprint == expected
    assert version.header == b"\xc3\x01" + expected
    assert json.loads(version.canonical_form)["name"] == f"clearing.{name}"


@pytest.mark.parametrize("name", RECORD_TYPES)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_every_schema_round_trips(name: str, data: st.DataObject) -> None:
    codec = SingleObjectCodec(CATALOG)
    record = data.draw(records(CATALOG.current(name).parsed))
    encoded = codec.encode(name, record)
    assert encoded.startswith(CATALOG.current(name).header)
    decoded = codec.decode(encoded)
    assert decoded.name == name
    assert decoded.record == record


@pytest.mark.parametrize("name", RECORD_TYPES)
@settings(max_examples=8, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_every_truncation_is_a_typed_error(name: str, data: st.DataObject) -> None:
    codec = SingleObjectCodec(CATALOG)
    encoded = codec.encode(name, data.draw(records(CATALOG.current(name).parsed)))
    for cut in range(len(encoded)):
        with pytest.raises(CodecError):
            codec.decode(encoded[:cut])


_meter = partial(meter_reading, event_id="m-1", energy_wh=1_234_567,
                 at=datetime(2026, 11, 1, tzinfo=UTC))  # fmt: skip


def test_bad_inputs_raise_typed_errors_with_reason_codes() -> None:
    codec = SingleObjectCodec(CATALOG)
    good = codec.encode("MeterReading", _meter())
    cases = [
        (b"", TruncatedRecordError),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", NotSingleObjectError),
        (b'{"json": true}', NotSingleObjectError),
        (b"\xc3\x01" + b"\xff" * 8 + good[10:], UnknownSchemaError),
        (good[:9], TruncatedRecordError),
        (good + b"\x00", MalformedRecordError),
        (b"\xc3\x01" + good[2:10] + b"\xff" * 30, MalformedRecordError),
    ]
    for data, error in cases:
        with pytest.raises(error) as caught:
            codec.decode(data)
        assert caught.value.reason_code
        assert "\n" not in str(caught.value)


def test_encode_refuses_records_that_do_not_fit_the_schema() -> None:
    codec = SingleObjectCodec(CATALOG)
    with pytest.raises(EncodeError):
        codec.encode("MeterReading", _meter(energy_wh="12"))
    with pytest.raises(EncodeError):
        codec.encode("MeterReading", {"event_id": "x"})
    with pytest.raises(EncodeError):
        codec.encode("MeterReading", _meter(energy_wh=2**63))


def test_size_limit_and_expected_type() -> None:
    small = SingleObjectCodec(CATALOG, record_bytes_max=64)
    with pytest.raises(RecordTooLargeError):
        small.encode("MeterReading", _meter(event_id="x" * 100))
    codec = SingleObjectCodec(CATALOG)
    with pytest.raises(WrongSchemaError):
        codec.decode_as(codec.encode("MeterReading", _meter()), "Payment")


def _v2_catalog() -> SchemaCatalog:
    v1 = load_directory(REPO / "schemas")
    v2_meter = load_directory(V2_DIR)
    current = [v for v in v1 if v.name != "clearing.MeterReading"] + v2_meter
    return SchemaCatalog(current, writers=v1)


def test_newer_reader_reads_records_of_the_old_writer() -> None:
    old_bytes = SingleObjectCodec(CATALOG).encode("MeterReading", _meter())
    new_codec = SingleObjectCodec(_v2_catalog())
    assert new_codec.catalog.current("MeterReading").fingerprint != old_bytes[2:10]
    decoded = new_codec.decode(old_bytes)
    assert decoded.record == {**_meter(), "grid_node": None}


def test_old_reader_reads_records_of_the_newer_writer() -> None:
    new_bytes = SingleObjectCodec(_v2_catalog()).encode(
        "MeterReading", _meter(grid_node="QH-330kV-07")
    )
    old_codec = SingleObjectCodec(CATALOG.with_writers(load_directory(V2_DIR)))
    assert old_codec.decode(new_bytes).record == _meter()
    with pytest.raises(UnknownSchemaError):
        SingleObjectCodec(CATALOG).decode(new_bytes)


_ONE_MS = timedelta(milliseconds=1)


def _as_ms(value: object) -> object:
    """What ``times_as_ms`` must give for a decoded value: ints for times and dates."""
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_MS
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days
    if isinstance(value, dict):
        return {k: _as_ms(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_ms(v) for v in value]
    return value


@pytest.mark.parametrize("name", ["MeterReading", "ComputeUsage", "Payment", "Obligation"])
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_times_as_ms_gives_the_encoded_integers(name: str, data: st.DataObject) -> None:
    codec = SingleObjectCodec(CATALOG)
    record = data.draw(records(CATALOG.current(name).parsed))
    encoded = codec.encode(name, record)
    as_ms = codec.decode(encoded, times_as_ms=True)
    assert as_ms.name == name
    assert as_ms.record == _as_ms(codec.decode(encoded).record)
