"""Avro single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint + body).

Why single-object encoding: every record carries the fingerprint of the
schema it was written with, so any reader that knows that schema version can
decode it with no registry, and topics may carry several record types (the
obligations topic carries ``Obligation`` and ``CycleClose``). Every way a
byte string can be wrong maps to a typed ``CodecError`` with a reason code,
so the ingest stage can dead-letter it instead of crashing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast

from fastavro import schemaless_reader, schemaless_writer

from clearing_core.encoding.canonical import CanonicalForms
from clearing_core.encoding.schemas import (
    FINGERPRINT_BYTES,
    HEADER_BYTES,
    SINGLE_OBJECT_MAGIC,
    SchemaCatalog,
    SchemaVersion,
    without_time_types,
)

RECORD_BYTES_MAX = 1 << 20  # no contract record comes near 1 MiB; bigger is an attack or a bug
# Types allowed to be larger, each up to its topic's max.message.bytes (infra/topics.yaml):
# the netting state carries a cycle's deferred obligations (~130 bytes each), so a cycle
# that defers 10,000 obligations under tight caps already needs 1.4 MB.
TYPE_BYTES_MAX = {"NettingState": 16 << 20, "RefdataVersion": 16 << 20}
PREFIX_PROBE_BYTES = 4096  # zeros added to tell a cut record from garbage (strings cut shorter)
R = TypeVar("R")  # a record's TypedDict (clearing_core.encoding.records)


class CodecError(ValueError):
    """A record could not be encoded or decoded. ``reason_code`` goes to the DLQ."""

    reason_code: ClassVar[str] = "MALFORMED_AVRO"


class NotSingleObjectError(CodecError):
    reason_code = "BAD_MAGIC"


class UnknownSchemaError(CodecError):
    reason_code = "UNKNOWN_SCHEMA"


class TruncatedRecordError(CodecError):
    reason_code = "TRUNCATED_AVRO"


class MalformedRecordError(CodecError):
    reason_code = "MALFORMED_AVRO"


class EmptyRecordError(TruncatedRecordError):
    """No bytes at all: an empty value or a tombstone (null value) on a data topic."""

    reason_code = "EMPTY_VALUE"


class TrailingBytesError(MalformedRecordError):
    """A complete record followed by bytes that belong to no field."""

    reason_code = "TRAILING_BYTES"


class InvalidTextError(MalformedRecordError):
    """A string field whose bytes are not valid UTF-8."""

    reason_code = "INVALID_UTF8"


class WrongSchemaError(CodecError):
    reason_code = "WRONG_SCHEMA"


class RecordTooLargeError(CodecError):
    reason_code = "RECORD_TOO_LARGE"


class EncodeError(CodecError):
    reason_code = "INVALID_RECORD"


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded record and the short name of its type (``MeterReading``, ...)."""

    name: str
    record: dict[str, Any]

    def as_record(self, kind: type[R]) -> R:
        """The record as ``kind``, the TypedDict of its type in ``encoding.records``, so
        that mypy checks the fields read from it; another type is a WrongSchemaError."""
        if self.name != kind.__name__:
            raise WrongSchemaError(f"expected {kind.__name__}, got {self.name}")
        return cast(R, self.record)


class Codec(Protocol):
    """What the services need from a codec; single-object and Confluent both fit."""

    def encode(self, name: str, record: Mapping[str, Any], *, topic: str = "") -> bytes: ...

    def decode(self, data: bytes, *, topic: str = "", times_as_ms: bool = False) -> Decoded:
        """``times_as_ms``: timestamps as int ms since the epoch, dates as int days."""
        ...

    def canonical(self, data: bytes) -> bytes:
        """The canonical form of a record that decodes (``clearing_core.encoding.canonical``):
        the same bytes for the same event, whichever schema version wrote it."""
        ...


# Appended to a body whose encoding ends in a raw read (a string): a string cut short
# by the end of the data then reads the sentinel too, so the reader ends past the
# data and the cut is seen, with no Python-level read on every field (fastavro reads
# a plain BytesIO in C; a strict subclass cost half the decode speed).
_SENTINEL = b"\x00"


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    """Everything decode needs for one writer fingerprint, looked up once."""

    name: str
    writer: Any
    reader: Any
    sentinel: bool  # the encoding ends in a raw read: decode with ``_SENTINEL`` after it


class SingleObjectCodec:
    """Encode with the current version of a type; decode any known writer version
    into the current version of the same type (Avro schema resolution)."""

    def __init__(self, catalog: SchemaCatalog, record_bytes_max: int = RECORD_BYTES_MAX) -> None:
        assert record_bytes_max > HEADER_BYTES
        self.catalog = catalog
        self.record_bytes_max = record_bytes_max
        self._plans: dict[bytes, _ReadPlan] = {}
        self._ms_plans: dict[bytes, _ReadPlan] = {}
        self.forms = CanonicalForms(catalog)
        self._own_form: dict[bytes, bool] = {}  # per header: records are their own form

    def encode(self, name: str, record: Mapping[str, Any], *, topic: str = "") -> bytes:
        version = self.catalog.current(name)
        buffer = io.BytesIO()
        buffer.write(version.header)
        try:
            schemaless_writer(buffer, version.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{version.short_name}: {exc}") from exc
        data = buffer.getvalue()
        limit = self._limit(version.short_name)
        if len(data) > limit:
            raise RecordTooLargeError(f"{version.short_name}: {len(data)} bytes > {limit}")
        return data

    def canonical(self, data: bytes) -> bytes:
        """``data`` itself where its writer has no older version (every record written
        with the current schemas today: one lookup), else its older form."""
        header = data[:HEADER_BYTES]
        if self._own_form.get(header):
            return data
        writer = self.writer_version(data)
        self._own_form[bytes(header)] = not self.forms.older(writer)
        form = self.forms.of(writer, data[HEADER_BYTES:])
        return data if form is None else form

    def writes_canonical(self, name: str) -> bool:
        """Whether every record the current version of ``name`` writes is its own
        canonical form: then the fast lane hashes the bytes it has."""
        return not self.forms.older(self.catalog.current(name))

    def _limit(self, short_name: str) -> int:
        return max(self.record_bytes_max, TYPE_BYTES_MAX.get(short_name, 0))

    def writer_version(self, data: bytes) -> SchemaVersion:
        """The schema version a record was written with, from its header."""
        if not data:
            raise EmptyRecordError("empty value (0 bytes): no record at all")
        if len(data) < HEADER_BYTES:
            if data[: len(SINGLE_OBJECT_MAGIC)] != SINGLE_OBJECT_MAGIC[: len(data)]:
                raise NotSingleObjectError("not Avro single-object encoding (bad magic)")
            raise TruncatedRecordError(f"{len(data)} bytes is shorter than the 10-byte header")
        if data[:2] != SINGLE_OBJECT_MAGIC:
            raise NotSingleObjectError(
                f"not Avro single-object encoding (starts {data[:2].hex()}, expected c301)"
            )
        fp = bytes(data[2:HEADER_BYTES])
        assert len(fp) == FINGERPRINT_BYTES
        version = self.catalog.by_fingerprint(fp)
        if version is None:
            raise UnknownSchemaError(f"no schema with fingerprint {fp.hex()}")
        return version

    def _plan(self, data: bytes) -> _ReadPlan:
        """How to read records with this header; raises the precise error when unknown."""
        plan = self._plans.get(data[:HEADER_BYTES])
        if plan is None:
            writer = self.writer_version(data)
            reader = self.catalog.current(writer.name)
            plan = _ReadPlan(
                name=reader.short_name,
                writer=writer.parsed,
                reader=None if reader.fingerprint == writer.fingerprint else reader.parsed,
                sentinel=writer.tail_is_raw,
            )
            self._plans[bytes(data[:HEADER_BYTES])] = plan
        return plan

    def _plan_ms(self, data: bytes) -> _ReadPlan:
        """The plan of ``_plan`` with time logical types left out (``times_as_ms``)."""
        plan = self._ms_plans.get(data[:HEADER_BYTES])
        if plan is None:
            base = self._plan(data)
            writer = self.writer_version(data)
            reader = self.catalog.current(writer.name)
            plan = _ReadPlan(
                name=base.name,
                writer=without_time_types(writer.expanded),
                reader=None if base.reader is None else without_time_types(reader.expanded),
                sentinel=base.sentinel,
            )
            self._ms_plans[bytes(data[:HEADER_BYTES])] = plan
        return plan

    def decode(self, data: bytes, *, topic: str = "", times_as_ms: bool = False) -> Decoded:
        if len(data) > max(self.record_bytes_max, *TYPE_BYTES_MAX.values()):
            raise RecordTooLargeError(f"{len(data)} bytes > {self.record_bytes_max}")
        # the header alone names the type and so its limit
        plan = self._plan_ms(data) if times_as_ms else self._plan(data)
        if len(data) > self._limit(plan.name):
            raise RecordTooLargeError(f"{plan.name}: {len(data)} bytes > {self._limit(plan.name)}")
        size = len(data)
        buffer = io.BytesIO(data + _SENTINEL if plan.sentinel else data)
        buffer.seek(HEADER_BYTES)
        try:
            record = schemaless_reader(buffer, plan.writer, plan.reader)
        except (EOFError, StopIteration) as exc:
            raise TruncatedRecordError(f"{plan.name}: body ends early") from exc
        except UnicodeDecodeError as exc:
            # a string cut short by the end of the data (into the sentinel, if any)
            if buffer.tell() > size or (not plan.sentinel and buffer.tell() >= size):
                raise TruncatedRecordError(f"{plan.name}: body ends early") from exc
            raise InvalidTextError(f"{plan.name}: a string field is not UTF-8 ({exc})") from exc
        except Exception as exc:  # fastavro raises many types for corrupt bodies
            if buffer.tell() >= size and self._is_prefix(plan, data):
                raise TruncatedRecordError(f"{plan.name}: body ends early") from exc
            raise MalformedRecordError(f"{plan.name}: corrupt body ({exc})") from exc
        if buffer.tell() > size:
            raise TruncatedRecordError(f"{plan.name}: body ends early")
        if buffer.tell() < size:
            raise TrailingBytesError(
                f"{plan.name}: {size - buffer.tell()} trailing bytes after the record"
            )
        if not isinstance(record, dict):
            raise WrongSchemaError(f"{plan.name} is not a record type")
        return Decoded(plan.name, record)

    @staticmethod
    def _is_prefix(plan: _ReadPlan, data: bytes) -> bool:
        """Whether a body that failed at its end reads once zeros are added: then it is
        the start of some valid record (cut short), not garbage. Zeros complete any
        varint and read as empty strings, zero longs and first branches."""
        padded = io.BytesIO(data + bytes(PREFIX_PROBE_BYTES))
        padded.seek(HEADER_BYTES)
        try:
            schemaless_reader(padded, plan.writer, plan.reader)
        except Exception:
            return False
        return True

    def decode_as(self, data: bytes, name: str) -> dict[str, Any]:
        """Decode and insist on one record type (e.g. events of one topic)."""
        decoded = self.decode(data)
        if decoded.name != name.rsplit(".", 1)[-1]:
            raise WrongSchemaError(f"expected {name}, got {decoded.name}")
        return decoded.record
