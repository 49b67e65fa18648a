"""The Confluent wire format (magic byte 0 + 4-byte schema id + Avro body).

Used when ``SCHEMA_REGISTRY_URL`` is set, for shops whose tooling expects a
Schema Registry. Registry traffic goes through confluent-kafka's client;
bodies are the same fastavro encoding as single-object records, and reads
resolve the writer's schema against the current version of the same type.
Subjects follow TopicRecordNameStrategy (``<topic>-<record full name>``)
because one topic carries several record types.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from clearing_core.encoding.canonical import CanonicalForms
from clearing_core.encoding.codec import (
    Decoded,
    EncodeError,
    MalformedRecordError,
    NotSingleObjectError,
    TruncatedRecordError,
    UnknownSchemaError,
)
from clearing_core.encoding.schemas import (
    SchemaCatalog,
    SchemaVersion,
    schema_json,
    version_from_schema,
    without_time_types,
)

CONFLUENT_MAGIC = 0
_HEADER = struct.Struct(">bI")


class ConfluentCodec:
    """Encode and decode through a Schema Registry, caching ids both ways."""

    def __init__(self, client: SchemaRegistryClient, catalog: SchemaCatalog) -> None:
        self.client = client
        self.catalog = catalog
        self._ids: dict[tuple[str, str], int] = {}
        self._writers: dict[int, tuple[str, Any]] = {}
        self._ms_schemas: dict[int, tuple[Any, Any]] = {}  # (writer, reader), times as ints
        self._versions: dict[int, SchemaVersion] = {}  # the writers, for canonical forms
        self.forms = CanonicalForms(catalog)

    def _schema_id(self, topic: str, name: str) -> int:
        version = self.catalog.current(name)
        key = (topic, version.name)
        if key not in self._ids:
            subject = f"{topic}-{version.name}"
            self._ids[key] = self.client.register_schema(
                subject, Schema(schema_json(version), "AVRO")
            )
        return self._ids[key]

    def encode(self, name: str, record: Mapping[str, Any], *, topic: str = "") -> bytes:
        version = self.catalog.current(name)
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(CONFLUENT_MAGIC, self._schema_id(topic, name)))
        try:
            schemaless_writer(buffer, version.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{version.short_name}: {exc}") from exc
        return buffer.getvalue()

    def _writer(self, schema_id: int) -> tuple[str, Any]:
        if schema_id not in self._writers:
            try:
                registered = self.client.get_schema(schema_id)
            except Exception as exc:  # the client raises its own error types
                raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from exc
            raw = json.loads(registered.schema_str or "null")
            parsed = parse_schema(raw, named_schemas={})
            if not isinstance(parsed, dict) or parsed.get("type") != "record":
                raise UnknownSchemaError(f"schema id {schema_id} is not a record schema")
            self._writers[schema_id] = (str(parsed["name"]), parsed)
            self._versions[schema_id] = version_from_schema(raw)
        return self._writers[schema_id]

    def canonical(self, data: bytes) -> bytes:
        """The canonical form (``clearing_core.encoding.canonical``) of a record that decodes,
        always single-object framed: the same event has the same form whichever
        registry id (one per topic and version) its record names."""
        _, schema_id = _HEADER.unpack_from(data)
        self._writer(schema_id)
        version, body = self._versions[schema_id], data[_HEADER.size :]
        return self.forms.of(version, body) or version.header + body

    def _without_time_types(
        self, schema_id: int, writer: Any, reader: SchemaVersion
    ) -> tuple[Any, Any]:
        if schema_id not in self._ms_schemas:
            self._ms_schemas[schema_id] = (
                without_time_types(writer),
                without_time_types(reader.expanded),
            )
        return self._ms_schemas[schema_id]

    def decode(self, data: bytes, *, topic: str = "", times_as_ms: bool = False) -> Decoded:
        if len(data) < _HEADER.size:
            raise TruncatedRecordError(f"{len(data)} bytes is shorter than the 5-byte header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != CONFLUENT_MAGIC:
            raise NotSingleObjectError(f"not the Confluent wire format (magic {magic})")
        name, writer = self._writer(schema_id)
        reader = self.catalog.current(name)
        reader_schema = reader.parsed
        if times_as_ms:
            writer, reader_schema = self._without_time_types(schema_id, writer, reader)
        buffer = io.BytesIO(data)
        buffer.seek(_HEADER.size)
        try:
            record = schemaless_reader(buffer, writer, reader_schema)
        except (EOFError, StopIteration) as exc:
            raise TruncatedRecordError(f"{reader.short_name}: body ends early") from exc
        except Exception as exc:  # corrupt bodies raise many types
            raise MalformedRecordError(f"{reader.short_name}: corrupt body ({exc})") from exc
        if buffer.tell() != len(data):
            raise MalformedRecordError(f"{reader.short_name}: trailing bytes after the record")
        assert isinstance(record, dict)
        return Decoded(reader.short_name, record)
