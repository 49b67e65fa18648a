"""The generated TypedDicts (clearing_core.encoding.records) match the schemas: the
committed file is what the generator writes today, and what the codec decodes has
exactly the fields and value types the TypedDicts declare."""

from __future__ import annotations

import difflib
import json
import shutil
import types
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing_core.encoding import records, records_gen
from clearing_core.encoding.codec import SingleObjectCodec, WrongSchemaError
from clearing_core.encoding.schemas import SchemaCatalog, SchemaCatalogError
from tests.conftest import REPO
from tests.support.avro_strategies import records as avro_records

CATALOG = SchemaCatalog.load()
RECORD_TYPES = [v.short_name for v in CATALOG if v.parsed["type"] == "record"]


def _schemas_with(tmp_path: Path, name: str, field: dict[str, Any]) -> Path:
    """A copy of schemas/ where record ``name`` has one more field."""
    copy = tmp_path / "schemas"
    shutil.copytree(REPO / "schemas", copy)
    path = copy / f"clearing.{name}.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append(field)
    path.write_text(json.dumps(schema))
    return copy


def test_committed_records_are_what_the_schemas_generate() -> None:
    committed = Path(records.__file__).read_text().splitlines(keepends=True)
    generated = records_gen.generate(CATALOG).splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(committed, generated, "records.py", "from schemas/"))
    assert not diff, f"records.py differs from the schemas (run make records):\n{diff}"


def test_a_field_added_to_a_schema_is_drift(tmp_path: Path) -> None:
    field = {"name": "settled_on_rail", "type": ["null", "string"], "default": None}
    changed = records_gen.generate(SchemaCatalog.load(_schemas_with(tmp_path, "Position", field)))
    assert changed != Path(records.__file__).read_text()
    assert "    settled_on_rail: NotRequired[str | None]\n" in changed
    assert records_gen.main(["--check", "--schemas", str(tmp_path / "schemas")]) == 1
    assert records_gen.main(["--check"]) == 0


def test_an_unknown_logical_type_is_refused_not_guessed(tmp_path: Path) -> None:
    field = {"name": "at", "type": {"type": "long", "logicalType": "local-timestamp-millis"}}
    catalog = SchemaCatalog.load(_schemas_with(tmp_path, "Position", field))
    with pytest.raises(SchemaCatalogError, match="local-timestamp-millis"):
        records_gen.generate(catalog)


def test_every_record_type_of_the_catalog_has_a_typeddict() -> None:
    assert RECORD_TYPES
    for name in RECORD_TYPES:
        assert is_typeddict(getattr(records, name)), name


def _problems(value: Any, annotation: Any, where: str) -> list[str]:
    """Where ``value`` is not of ``annotation`` (a generated TypedDict's field type)."""
    origin = get_origin(annotation)
    if is_typeddict(annotation):
        return _record_problems(value, annotation, where)
    if origin is types.UnionType:
        fits = [_problems(value, branch, where) for branch in get_args(annotation)]
        return [] if any(not f for f in fits) else [f"{where}: {value!r} is not {annotation}"]
    if origin is Literal:
        return [] if value in get_args(annotation) else [f"{where}: {value!r} not a symbol"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} is not a list"]
        (item,) = get_args(annotation)
        return [p for i, v in enumerate(value) for p in _problems(v, item, f"{where}[{i}]")]
    if annotation is datetime:
        aware = isinstance(value, datetime) and value.tzinfo is not None
        return [] if aware else [f"{where}: {value!r} is not an aware datetime"]
    exact = {date: date, type(None): type(None), int: int, bool: bool}  # bool is an int
    if annotation in exact:
        return [] if type(value) is exact[annotation] else [f"{where}: {value!r} not {annotation}"]
    return [] if isinstance(value, annotation) else [f"{where}: {value!r} not {annotation}"]


def _record_problems(value: Any, kind: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__} is not a dict"]
    declared = kind.__required_keys__ | kind.__optional_keys__
    if set(value) != declared:
        return [f"{where}: keys {sorted(value)} are not {kind.__name__}'s {sorted(declared)}"]
    hints = get_type_hints(kind)
    return [p for key in value for p in _problems(value[key], hints[key], f"{where}.{key}")]


@pytest.mark.parametrize("name", RECORD_TYPES)
@settings(max_examples=15, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_what_the_codec_decodes_is_the_typeddict(name: str, data: st.DataObject) -> None:
    codec = SingleObjectCodec(CATALOG)
    version = CATALOG.current(name)
    decoded = codec.decode(codec.encode(name, data.draw(avro_records(version.parsed))))
    kind = getattr(records, name)
    assert set(decoded.record) == kind.__required_keys__ | kind.__optional_keys__
    assert _problems(decoded.record, kind, name) == []


@pytest.mark.parametrize("name", RECORD_TYPES)
def test_the_fields_a_writer_may_leave_out_are_those_with_defaults(name: str) -> None:
    fields = CATALOG.current(name).expanded["fields"]
    kind = getattr(records, name)
    assert kind.__optional_keys__ == {f["name"] for f in fields if "default" in f}
    assert kind.__required_keys__ == {f["name"] for f in fields if "default" not in f}


def test_a_decoded_record_is_typed_only_as_its_own_type() -> None:
    codec = SingleObjectCodec(CATALOG)
    marker: records.CycleClose = {
        "marker_id": "m-1", "currency": "USD", "reason": "MANUAL", "requested_by": "ops",
        "requested_at": datetime(2026, 3, 1, tzinfo=UTC),
    }  # fmt: skip
    decoded = codec.decode(codec.encode("CycleClose", marker))
    assert decoded.as_record(records.CycleClose) is decoded.record
    assert decoded.as_record(records.CycleClose) == marker
    with pytest.raises(WrongSchemaError, match="expected Obligation, got CycleClose"):
        decoded.as_record(records.Obligation)
