"""JSON <-> Avro record values, driven by the schema.

Why: operators and banks hand the CLI JSON-lines and CSV files (events,
acknowledgements) and read ``--json`` output; JSON has no timestamps, dates or
bytes, so each is converted by the schema's logical type. Every conversion
error names the field path, so a bad line gives one clear message.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime
from typing import Any

from clearing_core.errors import InputError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class RecordValueError(InputError):
    """A JSON value does not fit the schema."""

    reason_code = "BAD_FIELD"


def _timestamp(value: Any, path: str) -> datetime:
    if isinstance(value, bool):
        raise RecordValueError(f"{path}: expected a timestamp, got {value!r}")
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordValueError(f"{path}: {value!r} is not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise RecordValueError(f"{path}: {value!r} has no time zone (add Z or +hh:mm)")
        return parsed.astimezone(UTC)
    raise RecordValueError(f"{path}: expected a timestamp, got {type(value).__name__}")


def _date(value: Any, path: str) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise RecordValueError(f"{path}: {value!r} is not an ISO 8601 date") from None
    raise RecordValueError(f"{path}: expected a date string, got {type(value).__name__}")


def _integer(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RecordValueError(f"{path}: expected an integer, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise RecordValueError(f"{path}: {value!r} is not an integer") from None
    if not low <= value <= high:
        raise RecordValueError(f"{path}: {value} is out of range")
    return int(value)


# Primitives whose JSON value is already the Python value: its type and, for the error,
# what was expected.
_EXPECTED: dict[str, tuple[type, str]] = {
    "boolean": (bool, "true or false"),
    "string": (str, "a string"),
}


def _primitive(kind: str, value: Any, path: str) -> Any:
    if kind == "null":
        if value is not None:
            raise RecordValueError(f"{path}: expected null")
        return None
    if kind == "int":
        return _integer(value, path, INT32_MIN, INT32_MAX)
    if kind == "long":
        return _integer(value, path, INT64_MIN, INT64_MAX)
    if kind in {"float", "double"}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if kind in _EXPECTED:
        python_type, expected = _EXPECTED[kind]
        if not isinstance(value, python_type):
            raise RecordValueError(f"{path}: expected {expected}, got {value!r}")
        return value
    if kind == "bytes":
        try:
            return base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise RecordValueError(f"{path}: expected base64 bytes") from None
    raise RecordValueError(f"{path}: unsupported type {kind}")


def from_json(schema: Any, value: Any, path: str = "") -> Any:
    """Convert a JSON value to what the Avro encoder expects for ``schema``
    (a fastavro-parsed schema)."""
    if isinstance(schema, list):
        return _union_from_json(schema, value, path)
    if isinstance(schema, str):
        return _primitive(schema, value, path)
    logical = schema.get("logicalType")
    if logical == "timestamp-millis":
        return _timestamp(value, path)
    if logical == "date":
        return _date(value, path)
    kind = schema["type"]
    if kind == "record":
        return _record_from_json(schema, value, path)
    if kind == "enum":
        if value not in schema["symbols"]:
            raise RecordValueError(
                f"{path}: {value!r} is not one of {', '.join(schema['symbols'])}"
            )
        return value
    if kind == "array":
        if not isinstance(value, list):
            raise RecordValueError(f"{path}: expected a list")
        return [from_json(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise RecordValueError(f"{path}: expected an object")
        return {k: from_json(schema["values"], v, f"{path}.{k}") for k, v in value.items()}
    return from_json(kind, value, path)


def _union_from_json(branches: list[Any], value: Any, path: str) -> Any:
    if value is None and "null" in branches:
        return None
    errors = []
    for branch in branches:
        if branch == "null":
            continue
        try:
            return from_json(branch, value, path)
        except RecordValueError as exc:
            errors.append(str(exc))
    raise RecordValueError(errors[0] if len(errors) == 1 else f"{path}: matches no union branch")


def _record_from_json(schema: Any, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordValueError(f"{path or 'record'}: expected an object")
    known = {f["name"] for f in schema["fields"]}
    unknown = sorted(set(value) - known)
    if unknown:
        raise RecordValueError(f"{path or 'record'}: unknown field {unknown[0]!r}")
    out: dict[str, Any] = {}
    for field in schema["fields"]:
        name = field["name"]
        where = f"{path}.{name}" if path else name
        if name in value:
            out[name] = from_json(field["type"], value[name], where)
        elif "default" not in field:
            raise RecordValueError(f"{where}: missing")
    return out


def to_json(value: Any) -> Any:
    """A decoded record as plain JSON: timestamps ISO 8601 UTC with milliseconds,
    dates ISO, bytes base64."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value
