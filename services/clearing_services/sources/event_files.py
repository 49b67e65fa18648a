"""Events from files: JSON lines or CSV, converted by the event schema.

Why a module of its own: ``clearing produce`` and the tests share it, and the
whole file is validated before anything is sent, so a bad line never leaves
half a file on the topic.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearing_core.encoding.codec import Codec, CodecError
from clearing_core.encoding.jsonrecord import from_json
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_services.kafka.topics import EventTopic, event_topic

FILE_LINES_MAX = 10_000_000
LINE_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """One event ready to produce."""

    topic: str
    key: bytes
    value: bytes


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON-like object) for each data line of a JSON-lines or CSV file
    (CSV by suffix; empty cells are left out so defaults apply)."""
    fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        for row in reader:
            if None in row:
                raise InputError(f"{path}:{reader.line_num}: more values than header columns")
            yield reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > LINE_BYTES_MAX:
            raise InputError(f"{path}:{number}: line longer than {LINE_BYTES_MAX} bytes")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        yield number, obj


def encode_event_file(
    path: Path, codec: Codec, catalog: SchemaCatalog, default_type: str | None = None
) -> list[EncodedEvent]:
    """Read and encode every event of a file; the first bad line raises ``InputError``.

    Each JSON line may name its type in a ``"type"`` key (meter, compute, payment),
    else ``default_type`` applies; CSV files need ``default_type``.
    """
    fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    if fmt == "csv" and default_type is None:
        raise InputError(f"{path}: a CSV file needs --type meter|compute|payment")
    events: list[EncodedEvent] = []
    for number, obj in read_rows(path):
        if len(events) >= FILE_LINES_MAX:
            raise InputError(f"{path}: more than {FILE_LINES_MAX} events")
        kind = obj.pop("type", default_type)
        if kind is None:
            raise InputError(f'{path}:{number}: no "type" and no --type given')
        spec: EventTopic = event_topic(str(kind))
        try:
            record = from_json(catalog.current(spec.record_type).parsed, obj)
            value = codec.encode(spec.record_type, record, topic=spec.topic)
        except (InputError, CodecError) as exc:
            raise InputError(f"{path}:{number}: {spec.record_type}: {exc}") from None
        events.append(EncodedEvent(spec.topic, str(record[spec.key_field]).encode(), value))
    if not events:
        raise InputError(f"{path}: no events in the file")
    return events
