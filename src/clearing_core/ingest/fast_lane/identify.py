"""The fast lane's second step: each row's Kafka key, checked in a kernel.

Who produced the rows needs no check here: the lane reads only events without
headers, so unsigned, and only where the policy lets unsigned events in
(``lane.FastLane.accept``); ``identify.check_identity`` accepts those as they are.
What is left of the step is the key (``envelope.key_problem``): present, and with
``keys_must_match`` the very bytes of the record's key field.
"""

from __future__ import annotations

from typing import cast

from clearing_core.encoding.avro_rows import U8, pack
from clearing_core.ingest.batch import RawBatch
from clearing_core.ingest.envelope import EVENT_KEY_FIELDS
from clearing_core.ingest.fast_lane.decode import Columns
from clearing_core.jit import I64, Mask, kernel


def check_keys(columns: Columns, events: RawBatch, keys_must_match: bool) -> None:
    """Clear the rows whose key is missing or, with ``keys_must_match``, is not the
    record's key field (``events``: the rows' events, in row order)."""
    if len(events) != len(columns.ok):
        raise ValueError(f"check_keys: {len(events)} events for {len(columns.ok)} rows")
    keys_given = events.keys
    present = [k or b"" for k in keys_given] if None in keys_given else keys_given
    _, keys, key_starts, key_ends = pack(cast(list[bytes], present))
    field = columns.plan.index(EVENT_KEY_FIELDS[columns.name])
    rows = columns.rows
    _keys_match(columns.ok, keys, key_starts, key_ends, columns.buffer,
                rows.str_offset[:, field], rows.str_length[:, field], keys_must_match)  # fmt: skip


@kernel
def _keys_match(
    ok: Mask, keys: U8, key_starts: I64, key_ends: I64, values: U8,
    field_offset: I64, field_length: I64, must_match: bool,
) -> None:  # fmt: skip
    """A row stays ok when its Kafka key is present and, if ``must_match``, holds
    exactly the bytes of the record's key field."""
    for i in range(len(ok)):
        size = key_ends[i] - key_starts[i]
        if size <= 0:
            ok[i] = False
        elif must_match and ok[i]:
            if size != field_length[i]:
                ok[i] = False
                continue
            for j in range(size):
                if keys[key_starts[i] + j] != values[field_offset[i] + j]:
                    ok[i] = False
                    break
