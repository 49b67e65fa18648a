"""The canonical form of a record: what makes two records the same event.

Why: the ingest stage keeps a digest of each accepted event and compares a later
event with the same id against it (``DUPLICATE_EVENT`` when the same,
``DUPLICATE_EVENT_CONFLICT`` when not). A producer that upgrades to a newer version
of the schema and sends again an event it first sent as v1 sends other bytes for
the same content: another fingerprint, and a null for each field that v2 added. So
the digest is of the record's canonical form, not of the bytes that came.

The canonical form of a record is its single-object encoding in the oldest version
of its type that holds it: of the known versions (the catalog's) that are the
writer's version less some fields that are optional (a union that starts with null,
null by default), the one with the fewest fields whose missing fields are all null
in the record. A v2 meter reading without a grid node is thus encoded as v1, byte
for byte what the v1 writer wrote; one with a grid node stays v2: it says something
the v1 event did not, so it is another event.

Why the oldest version and not the reader's own: the form does not depend on the
reader, so a reader upgrade (v2 current, v1 kept as a writer) changes no digest,
and digests in the seen state stay comparable across it. And a record whose writer
has no older version (every event written with the current schemas today) is its
own canonical form: the digests of those did not change with this rule, and the
fast lane hashes the bytes it has.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import SchemaParseException, UnknownType

from clearing_core.encoding.schemas import (
    SchemaCatalog,
    SchemaVersion,
    version_from_schema,
    without_time_types,
)


@dataclass(frozen=True)
class OlderForm:
    """An older version of a writer's type, which holds the writer's records that
    leave ``dropped`` null."""

    version: SchemaVersion
    dropped: tuple[str, ...]  # the writer's fields it lacks
    schema_ms: Any  # its schema without time logical types (records are read as ints)
    cut: bool  # ``dropped`` are the writer's last fields: a null one is its last byte


class CanonicalForms:
    """The older forms of each writer version, found once; records moved to them."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.catalog = catalog
        self._older: dict[bytes, tuple[OlderForm, ...]] = {}
        self._readers: dict[bytes, Any] = {}

    def older(self, writer: SchemaVersion) -> tuple[OlderForm, ...]:
        """The known older forms of ``writer``, oldest (fewest fields) first; none
        where every record ``writer`` writes is its own canonical form."""
        found = self._older.get(writer.fingerprint)
        if found is None:
            forms = _older_forms(writer, self.catalog.versions_of(writer.name))
            found = tuple(sorted(forms, key=lambda form: -len(form.dropped)))
            self._older[writer.fingerprint] = found
        return found

    def of(self, writer: SchemaVersion, body: bytes) -> bytes | None:
        """The canonical form of the record whose body (a valid one) ``writer``
        wrote, or None where that is the record itself (``writer.header + body``)."""
        record = None
        for form in self.older(writer):
            end = len(body) - len(form.dropped)
            if form.cut and end > 0 and complete(form, body[:end]):
                return form.version.header + body[:end]  # its fields were null: one byte each
            if record is None:
                record = self._read(writer, body)
            if all(record.get(name) is None for name in form.dropped):
                out = io.BytesIO()
                out.write(form.version.header)
                schemaless_writer(out, form.schema_ms, record)
                return out.getvalue()
        return None

    def _read(self, writer: SchemaVersion, body: bytes) -> dict[str, Any]:
        reader = self._readers.get(writer.fingerprint)
        if reader is None:
            reader = self._readers[writer.fingerprint] = without_time_types(writer.expanded)
        record = schemaless_reader(io.BytesIO(body), reader, None)
        assert isinstance(record, dict)
        return record


def complete(form: OlderForm, body: bytes) -> bool:
    """Whether ``body`` is exactly one record of ``form``'s version. For a writer's body
    less its last ``len(form.dropped)`` bytes (``form.cut``) that holds exactly when
    those fields are null, each in one byte: then this is the record in that version,
    with no decode and encode (a null's branch takes one byte, a string's at least two)."""
    data = body + b"\x00" if form.version.tail_is_raw else body  # a string cut short reads it
    buffer = io.BytesIO(data)
    try:
        schemaless_reader(buffer, form.schema_ms, None)
    except Exception:  # fastavro raises many types for what is not a record
        return False
    return buffer.tell() == len(body)


def _older_forms(writer: SchemaVersion, versions: Sequence[SchemaVersion]) -> Iterator[OlderForm]:
    """Each of ``versions`` that is exactly ``writer`` less some optional fields: the
    same parsing canonical form once those fields are taken out of ``writer``."""
    fields = writer.expanded.get("fields") if writer.expanded.get("type") == "record" else None
    if not fields:
        return
    for version in versions:
        kept = {field["name"] for field in version.expanded.get("fields", ())}
        dropped = [field for field in fields if field["name"] not in kept]
        if version.fingerprint == writer.fingerprint or not dropped:
            continue
        if not all(map(_optional, dropped)):
            continue
        less = {**writer.expanded, "fields": [f for f in fields if f["name"] in kept]}
        try:
            same = version_from_schema(less).canonical_form == version.canonical_form
        except (SchemaParseException, UnknownType):  # a dropped field defined a named type
            continue
        if same:
            names = tuple(str(field["name"]) for field in dropped)
            cut = names == tuple(str(field["name"]) for field in fields[len(fields) - len(names) :])
            yield OlderForm(version, names, without_time_types(version.expanded), cut)


def _optional(field: Mapping[str, Any]) -> bool:
    """A field a record may leave out: a union that starts with null, null by default."""
    kind = field.get("type")
    return (isinstance(kind, list) and kind[:1] == ["null"] and "default" in field
            and field["default"] is None)  # fmt: skip
