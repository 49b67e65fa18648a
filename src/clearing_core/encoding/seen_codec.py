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

import numpy as np

from clearing_core.encoding.avro_rows import LONG, STRING
from clearing_core.encoding.avro_write import text, varint, write_rows

# (name, Avro type) of SeenEvents and of its array's items, in order.
SEEN_EVENTS_LAYOUT = (("source_topic", "string"), ("source_partition", "int"))
SEEN_EVENT_LAYOUT = (
    ("event_id", "string"), ("body_digest", "string"), ("event_time_ms", "long"),
    ("source_offset", "long"), ("obligation_id", "string"),
)  # fmt: skip
_ITEM_KINDS = np.array([STRING, STRING, LONG, LONG, STRING], np.int64)


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


def encode_seen_columns(
    header: bytes, topic: str, partition: int, columns: Sequence[list[Any]], chunk_events: int
) -> list[bytes]:
    """The events given as columns (event ids, body digests, event times ms, source
    offsets, obligation ids) as records of ``chunk_events`` each (one record when
    there are none): the items are written once, in one kernel call, and each record
    takes its slice. A time or offset outside int64 is an ``OverflowError``."""
    assert chunk_events > 0
    count = len(columns[0])
    items, ends = write_rows(b"", _ITEM_KINDS, columns, count)
    lead = header + text(topic) + varint(partition)
    bounds = [0, *ends.tolist()]
    records = []
    for first in range(0, max(count, 1), chunk_events):
        last = min(first + chunk_events, count)
        if last == first:
            records.append(lead + b"\x00")
            continue
        body = items[bounds[first] : bounds[last]]
        records.append(b"".join((lead, varint(last - first), body, b"\x00")))
    return records
