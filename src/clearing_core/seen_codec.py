"""``SeenEvents`` records written by hand, byte for byte as fastavro writes them.

Why: the ingest stage writes one ``SeenEvents`` item per accepted event, and
fastavro's writer (a dict per item, then a lookup per field) cost about 3 µs an
event with the dicts. This writes the Avro binary encoding of the current
schema directly from the seen entries. It is used only while the current
schema is exactly the layout below (``matches``); the tests compare it with
the codec on random records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clearing_core.avro_write import text, varint

# (name, Avro type) of SeenEvents and of its array's items, in order.
SEEN_EVENTS_LAYOUT = (("source_topic", "string"), ("source_partition", "int"))
SEEN_EVENT_LAYOUT = (
    ("event_id", "string"), ("body_digest", "string"), ("event_time_ms", "long"),
    ("source_offset", "long"), ("obligation_id", "string"),
)  # fmt: skip


def matches(schema: Mapping[str, Any]) -> bool:
    """Whether an expanded ``SeenEvents`` schema has exactly the layout written here."""
    fields = [(f["name"], f["type"]) for f in schema.get("fields", [])]
    if len(fields) != 3 or tuple(fields[:2]) != SEEN_EVENTS_LAYOUT or fields[2][0] != "events":
        return False
    array = fields[2][1]
    if not isinstance(array, Mapping) or array.get("type") != "array":
        return False
    items = array.get("items")
    if not isinstance(items, Mapping) or items.get("type") != "record":
        return False
    return tuple((f["name"], f["type"]) for f in items["fields"]) == SEEN_EVENT_LAYOUT


def encode_seen_events(
    header: bytes, topic: str, partition: int, events: Sequence[tuple[str, str, int, int, str]]
) -> bytes:
    """One record: ``header`` (magic and fingerprint), the source, and the events as
    (event id, body digest, event time ms, source offset, obligation id)."""
    parts = [header, text(topic), varint(partition)]
    if events:
        parts.append(varint(len(events)))  # one block of items, then the empty block
        carrier: dict[str, bytes] = {}  # an aggregate carries many events
        times: dict[int, bytes] = {}  # event times repeat (interval ends)
        for event_id, digest, time_ms, offset, obligation_id in events:
            time_bytes = times.get(time_ms)
            if time_bytes is None:
                time_bytes = times[time_ms] = varint(time_ms)
            oid = carrier.get(obligation_id)
            if oid is None:
                oid = carrier[obligation_id] = text(obligation_id)
            parts += (text(event_id), text(digest), time_bytes, varint(offset), oid)
    parts.append(b"\x00")
    return b"".join(parts)
