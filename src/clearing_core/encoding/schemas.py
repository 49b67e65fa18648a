"""Avro schema catalog: every record type of the contract, by name and by fingerprint.

The catalog is what makes single-object encoding work without a registry: a
reader finds the writer's schema from the 8-byte CRC-64-AVRO fingerprint in
the record header, and resolves it against its own (current) version of the
same record name. Old versions stay readable as long as their schema file is
loaded as a writer version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
FINGERPRINT_BYTES = 8
HEADER_BYTES = len(SINGLE_OBJECT_MAGIC) + FINGERPRINT_BYTES
NAMESPACE = "clearing"
HISTORY_DIR = "history"  # earlier versions of the contract's schemas, read as writers


class SchemaCatalogError(ValueError):
    """A schema file is missing, invalid, or conflicts with another."""


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one named Avro type, parsed and fingerprinted."""

    name: str
    expanded: Mapping[str, Any] = field(repr=False, compare=False)
    parsed: Any = field(repr=False, compare=False)
    canonical_form: str = field(repr=False)
    fingerprint: bytes
    source: str = ""
    # True when the last value of the encoding is a string, bytes or fixed: a body
    # cut inside it would decode without error, so the codec reads it strictly.
    tail_is_raw: bool = False

    @property
    def header(self) -> bytes:
        """Single-object encoding header: magic then the little-endian fingerprint."""
        return SINGLE_OBJECT_MAGIC + self.fingerprint

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def crc64_avro_fingerprint(canonical_form: str) -> bytes:
    """CRC-64-AVRO (Rabin) of a parsing canonical form, as the 8 little-endian bytes
    that single-object encoding puts after the magic."""
    return bytes.fromhex(fingerprint(canonical_form, "CRC-64-AVRO"))


def version_from_schema(schema: Mapping[str, Any], source: str = "") -> SchemaVersion:
    """Parse a fully expanded schema (a dict with all named types defined inline)."""
    parsed = parse_schema(dict(schema), named_schemas={})
    canonical = to_parsing_canonical_form(parsed)
    name = parsed["name"] if isinstance(parsed, dict) else str(parsed)
    return SchemaVersion(
        name=name,
        expanded=dict(schema),
        parsed=parsed,
        canonical_form=canonical,
        fingerprint=crc64_avro_fingerprint(canonical),
        source=source,
        tail_is_raw=_tail_is_raw(parsed),
    )


TIME_LOGICAL_TYPES = frozenset(
    {"timestamp-millis", "timestamp-micros", "local-timestamp-millis", "date", "time-millis"}
)


def without_time_types(schema: Any) -> Any:
    """``schema`` with its time logical types left out, parsed: a decoder then yields
    the encoded integers (ms since the epoch, days) and builds no datetime objects,
    which is half of an event's decode time (the ingest stage asks for this)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            kept = {k: strip(v) for k, v in node.items() if k != "__fastavro_parsed"}
            if kept.get("logicalType") in TIME_LOGICAL_TYPES:
                del kept["logicalType"]
            return kept
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return parse_schema(strip(schema), named_schemas={})


def _tail_is_raw(schema: Any) -> bool:
    """Whether the encoding can end with a length-prefixed or fixed-size raw read.

    Varints, booleans, floats and array/map terminators all fail on a short
    read; ``read(n)`` of strings, bytes and fixed silently returns less.
    """
    if isinstance(schema, list):
        return any(_tail_is_raw(branch) for branch in schema)
    if isinstance(schema, str):
        return schema in {"string", "bytes"}
    kind = schema.get("type")
    if kind == "record":
        fields = schema.get("fields", [])
        return bool(fields) and _tail_is_raw(fields[-1]["type"])
    if kind == "fixed":
        return True
    if isinstance(kind, (dict, list)):
        return _tail_is_raw(kind)
    return kind in {"string", "bytes"}


def load_directory(directory: Path) -> list[SchemaVersion]:
    """Load every ``*.avsc`` in a directory; references to named types in sibling
    files named ``<full name>.avsc`` are resolved and expanded."""
    if not directory.is_dir():
        raise SchemaCatalogError(f"schema directory not found: {directory}")
    versions = []
    for path in sorted(directory.glob("*.avsc")):
        try:
            expanded = load_schema(str(path), named_schemas={}, _write_hint=False)
        except Exception as exc:  # fastavro raises several types for bad files
            raise SchemaCatalogError(f"{path.name}: invalid Avro schema: {exc}") from exc
        if not isinstance(expanded, dict):
            raise SchemaCatalogError(f"{path.name}: a named type (record or enum) is expected")
        versions.append(version_from_schema(expanded, source=str(path)))
    if not versions:
        raise SchemaCatalogError(f"no *.avsc files in {directory}")
    return versions


def default_schema_dir() -> Path:
    """``schemas/`` of the working tree, or the copy packed into the wheel."""
    packaged = Path(__file__).parents[1] / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "schemas"


class SchemaCatalog:
    """Current (reader) versions by name; every known (writer) version by fingerprint."""

    def __init__(
        self, current: Iterable[SchemaVersion], writers: Iterable[SchemaVersion] = ()
    ) -> None:
        self._current: dict[str, SchemaVersion] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for version in current:
            if version.name in self._current:
                raise SchemaCatalogError(f"two current versions of {version.name}")
            self._current[version.name] = version
            self._add_writer(version)
        for version in writers:
            self._add_writer(version)

    def _add_writer(self, version: SchemaVersion) -> None:
        known = self._by_fingerprint.get(version.fingerprint)
        if known is not None and known.canonical_form != version.canonical_form:
            raise SchemaCatalogError(
                f"fingerprint collision between {known.source} and {version.source}"
            )
        self._by_fingerprint.setdefault(version.fingerprint, version)

    @classmethod
    def load(cls, directory: Path | None = None, writer_dirs: Iterable[Path] = ()) -> SchemaCatalog:
        """The schemas of ``directory`` (default: the contract's), and as writers the
        earlier versions kept in its ``history/``: records already on the topics stay
        readable after a schema gains a field or a symbol."""
        base = directory or default_schema_dir()
        current = load_directory(base)
        history = [base / HISTORY_DIR] if (base / HISTORY_DIR).is_dir() else []
        writers = [v for d in [*history, *writer_dirs] for v in load_directory(d)]
        return cls(current, writers)

    def with_writers(self, writers: Iterable[SchemaVersion]) -> SchemaCatalog:
        """A catalog that can also read records written with ``writers``."""
        return SchemaCatalog(self._current.values(), [*self._by_fingerprint.values(), *writers])

    def with_writer_dirs(self, directories: Iterable[Path]) -> SchemaCatalog:
        """A catalog that also reads records written with the schemas in ``directories``
        (e.g. a v2 that producers use before the readers are upgraded).

        Every schema there must be a version of a record type this catalog has a current
        version of: records are always decoded into the current version, so a writer
        schema of an unknown type could never be read and is refused here, at start.
        """
        writers = [v for d in directories for v in load_directory(d)]
        for version in writers:
            if version.name not in self._current:
                raise SchemaCatalogError(
                    f"{Path(version.source).name}: writer schema of {version.name}, "
                    "which has no current version"
                )
        return self.with_writers(writers)

    def current(self, name: str) -> SchemaVersion:
        full = name if "." in name else f"{NAMESPACE}.{name}"
        try:
            return self._current[full]
        except KeyError:
            raise SchemaCatalogError(f"unknown record type {name!r}") from None

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def versions_of(self, full_name: str) -> list[SchemaVersion]:
        """Every known version (current and writers) of one record type."""
        return [v for v in self._by_fingerprint.values() if v.name == full_name]

    def names(self) -> list[str]:
        return sorted(self._current)

    def __iter__(self) -> Iterator[SchemaVersion]:
        return iter(self._current[n] for n in self.names())

    def describe(self) -> list[dict[str, str]]:
        """Name, fingerprint (hex, as on the wire) and source of each current schema."""
        return [
            {"name": v.name, "fingerprint": v.fingerprint.hex(), "source": Path(v.source).name}
            for v in self
        ]


def schema_json(version: SchemaVersion) -> str:
    """The expanded schema with docs, defaults and logical types, for registries
    (the canonical form drops defaults, which compatibility checks need)."""
    return json.dumps(version.expanded, sort_keys=True)
