"""The Confluent wire format, with confluent-kafka's in-memory registry client
(``mock://``: no registry server is reachable here) and the real broker."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from clearing_core.encoding.codec import (
    MalformedRecordError,
    NotSingleObjectError,
    SingleObjectCodec,
)
from clearing_core.encoding.schemas import SchemaCatalog, load_directory
from clearing_services.kafka.clients import produce_all, producer_config, read_topic
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.registry_codec import ConfluentCodec
from clearing_services.kafka.topics import TopicSpec, create_topics
from clearing_services.settings import load_settings
from tests.conftest import REPO
from tests.support.events import meter_reading, payment

V2_DIR = REPO / "tests" / "data" / "schemas_v2"


def _payment(i: int) -> dict[str, Any]:
    return payment(f"p-{i}", amount_minor=950_000 + i, value_date=date(2026, 11, 30),
                   at=datetime(2026, 11, 24, 8, 0, i % 60, tzinfo=UTC))  # fmt: skip


def _client(unique: str) -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://{unique}"})


def test_settings_choose_the_codec(unique: str) -> None:
    assert isinstance(codec_for(load_settings({})), SingleObjectCodec)
    chosen = codec_for(load_settings({"SCHEMA_REGISTRY_URL": f"mock://{unique}"}))
    assert isinstance(chosen, ConfluentCodec)


def test_wire_format_and_subject(catalog: SchemaCatalog, unique: str) -> None:
    client = _client(unique)
    codec = ConfluentCodec(client, catalog)
    data = codec.encode("Payment", _payment(1), topic="clearing.events.payment")
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert client.get_subjects() == ["clearing.events.payment-clearing.Payment"]
    assert client.get_schema(schema_id).schema_str is not None
    assert codec.decode(data).record == _payment(1)
    as_ms = codec.decode(data, times_as_ms=True).record  # what the ingest stage asks for
    assert as_ms == {**_payment(1), "value_date": 20_787,
                     "reported_at": int(_payment(1)["reported_at"].timestamp() * 1000)}  # fmt: skip
    with pytest.raises(NotSingleObjectError):
        codec.decode(b"\x07" + data[1:])
    with pytest.raises(MalformedRecordError):
        codec.decode(data + b"\x01")


def _reading() -> dict[str, Any]:
    return meter_reading("m", 5, at=datetime(2026, 11, 1, tzinfo=UTC))


def _v1_and_v2(catalog: SchemaCatalog, unique: str) -> tuple[ConfluentCodec, ConfluentCodec]:
    """Codecs of one registry whose current ``MeterReading`` is v1 and v2 (which knows
    v1 as a writer, as docs/schemas.md asks of an upgraded reader)."""
    client = _client(unique)
    v1 = load_directory(REPO / "schemas")
    current = [v for v in v1 if v.short_name != "MeterReading"] + load_directory(V2_DIR)
    v2 = SchemaCatalog(current, writers=v1)
    return ConfluentCodec(client, catalog), ConfluentCodec(client, v2)


def test_registry_evolution_both_ways(catalog: SchemaCatalog, unique: str) -> None:
    old, new = _v1_and_v2(catalog, unique)
    reading = _reading()
    assert new.decode(old.encode("MeterReading", reading, topic="t")).record == {
        **reading, "grid_node": None,
    }  # fmt: skip
    written = new.encode("MeterReading", {**reading, "grid_node": "n"}, topic="t")
    assert old.decode(written).record == reading


def test_one_event_under_two_registry_ids_has_one_canonical_form(
    catalog: SchemaCatalog, unique: str
) -> None:
    """A v1 reading and its v2 resend without a grid node name two registry ids, and
    are the same event: both have the single-object v1 encoding as canonical form
    (what the ingest stage's digest is of); a grid node makes it another event."""
    old, new = _v1_and_v2(catalog, unique)
    first = old.encode("MeterReading", _reading(), topic="t")
    again = new.encode("MeterReading", {**_reading(), "grid_node": None}, topic="t")
    noded_record = {**_reading(), "grid_node": "n"}
    noded = new.encode("MeterReading", noded_record, topic="t")
    assert first[1:5] != again[1:5]
    plain = SingleObjectCodec(catalog).encode("MeterReading", _reading())
    with_node = SingleObjectCodec(new.catalog).encode("MeterReading", noded_record)
    for codec in (old, new):
        assert codec.canonical(first) == codec.canonical(again) == plain
        assert codec.canonical(noded) == with_node


def test_confluent_format_through_the_broker(
    kafka_bootstrap: str, catalog: SchemaCatalog, unique: str
) -> None:
    topic = f"registry.{unique}"
    create_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), [TopicSpec(topic, 2, 1)])
    codec = ConfluentCodec(_client(unique), catalog)
    payments = [_payment(i) for i in range(50)]
    produce_all(
        Producer(producer_config(kafka_bootstrap)), topic,
        [(str(p["event_id"]).encode(), codec.encode("Payment", p, topic=topic)) for p in payments],
    )  # fmt: skip
    back = read_topic(kafka_bootstrap, topic, group=f"g-{unique}")
    decoded = sorted((codec.decode(r.value).record for r in back), key=lambda r: r["amount_minor"])
    assert decoded == payments
