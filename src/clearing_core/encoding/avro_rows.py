"""A columnar Avro decoder for flat record types, compiled with Numba.

Why: fastavro builds a dict per record, about 3 µs per event, and the ingest
stage then reads each field back out of it. The three event types are flat
records of strings, longs, ints, enums and optional strings, so one kernel can
read a whole batch of single-object encoded bodies into typed columns: string
fields as (offset, length) into the batch buffer, numbers as int64.

It is deliberately partial: a row it is not sure about (another writer
fingerprint, a varint past 64 bits, a string that is not printable ASCII, a
union branch or enum index out of range, trailing bytes) is marked not
``ok`` and the caller decodes it with the codec, which gives the exact
verdict. So it never decides that an input is bad, only that it is plain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from clearing_core.encoding.codec import Codec, SingleObjectCodec
from clearing_core.encoding.schemas import HEADER_BYTES, SchemaVersion
from clearing_core.jit import I64, Mask, kernel

STRING, OPTIONAL_STRING, LONG, INT, ENUM = 0, 1, 2, 3, 4
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_LONG_NAMES = {"long", "timestamp-millis"}
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class RowPlan:
    """How to read the current version of one flat record type."""

    name: str
    header: bytes  # magic and fingerprint: rows with another writer are not ok
    fields: tuple[str, ...]
    kinds: I64
    enum_sizes: I64  # symbols per ENUM field (0 for other kinds)
    enum_symbols: Mapping[str, tuple[str, ...]]
    timestamps: frozenset[str]  # LONG fields that are timestamp-millis
    dates: frozenset[str]  # INT fields that are dates

    def index(self, field: str) -> int:
        return self.fields.index(field)


@dataclass(frozen=True)
class Rows:
    """Decoded columns of a batch; ``ok[i]`` is False where the codec must decide."""

    ok: Mask
    str_offset: I64  # [row, field]: offset of a string's bytes in the batch buffer
    str_length: I64  # [row, field]: its length in bytes (= characters); -1 for null
    number: I64  # [row, field]: long, int, enum index or union branch


def _kind(field_type: Any) -> tuple[int, tuple[str, ...]] | None:
    if field_type == "string":
        return STRING, ()
    if field_type in ("long", "int"):
        return (LONG if field_type == "long" else INT), ()
    if isinstance(field_type, list) and field_type == ["null", "string"]:
        return OPTIONAL_STRING, ()
    if isinstance(field_type, Mapping):
        if field_type.get("type") == "enum":
            return ENUM, tuple(field_type["symbols"])
        logical = field_type.get("logicalType")
        if field_type.get("type") == "long" and logical in _LONG_NAMES:
            return LONG, ()
        if field_type.get("type") == "int" and logical == "date":
            return INT, ()
    return None


def plan_for(version: SchemaVersion) -> RowPlan | None:
    """The plan for a record type whose fields are all of the kinds read here,
    else None (such a type always goes through the codec)."""
    schema = version.expanded
    if not isinstance(schema, Mapping) or schema.get("type") != "record":
        return None
    names, kinds, sizes, symbols = [], [], [], {}
    logical: dict[str, set[str]] = {"timestamp-millis": set(), "date": set()}
    for field in schema["fields"]:
        kind = _kind(field["type"])
        if kind is None:
            return None
        if isinstance(field["type"], Mapping) and field["type"].get("logicalType") in logical:
            logical[field["type"]["logicalType"]].add(str(field["name"]))
        names.append(str(field["name"]))
        kinds.append(kind[0])
        sizes.append(len(kind[1]))
        if kind[0] == ENUM:
            symbols[str(field["name"])] = kind[1]
    return RowPlan(
        version.short_name, version.header, tuple(names), np.array(kinds, np.int64),
        np.array(sizes, np.int64), symbols, frozenset(logical["timestamp-millis"]),
        frozenset(logical["date"]),
    )  # fmt: skip


def plan_of(codec: Codec, name: str) -> RowPlan | None:
    """The plan of ``name``'s current version where ``codec`` writes single-object
    encodings (the only framing read here), else None."""
    if not isinstance(codec, SingleObjectCodec):
        return None
    return plan_for(codec.catalog.current(name))


def decode_rows(plan: RowPlan, buffer: U8, starts: I64, ends: I64) -> Rows:
    """Read the records ``buffer[starts[i]:ends[i]]`` (each a whole single-object
    encoding) into columns. ``buffer`` is a uint8 array."""
    assert buffer.dtype == np.uint8
    assert starts.shape == ends.shape
    rows, width = len(starts), len(plan.fields)
    header = np.frombuffer(plan.header, np.uint8)
    ok = np.zeros(rows, np.bool_)
    offset = np.zeros((rows, width), np.int64)
    length = np.full((rows, width), -1, np.int64)
    number = np.zeros((rows, width), np.int64)
    _decode(buffer, starts, ends, header, plan.kinds, plan.enum_sizes, ok, offset, length, number)
    return Rows(ok, offset, length, number)


@kernel
def _varint(buffer: U8, at: int, end: int) -> tuple[int, int]:
    """(zigzag-decoded value, next position); next position -1 when not plain."""
    value = np.uint64(0)
    shift = 0
    while at < end:
        byte = np.uint64(buffer[at])
        at += 1
        if shift == 63 and byte > np.uint64(1):
            return 0, -1
        value |= (byte & np.uint64(0x7F)) << np.uint64(shift)
        if byte < np.uint64(0x80):
            half = np.int64(value >> np.uint64(1))
            return int(half ^ -np.int64(value & np.uint64(1))), at
        shift += 7
        if shift > 63:
            return 0, -1
    return 0, -1


@kernel
def _printable_ascii(buffer: U8, at: int, count: int) -> bool:
    plain = True
    for i in range(at, at + count):
        plain = plain and 0x20 <= buffer[i] <= 0x7E
    return plain


@kernel
def _decode_row(
    buffer: U8, at: int, end: int, kinds: I64, enum_sizes: I64, row: int,
    offset: I64, length: I64, number: I64,
) -> bool:  # fmt: skip
    for f in range(len(kinds)):
        kind = kinds[f]
        value, at = _varint(buffer, at, end)
        if at < 0:
            return False
        if kind == 1:  # OPTIONAL_STRING: the branch, then (branch 1) the string
            number[row, f] = value
            if value == 0:
                continue
            if value != 1:
                return False
            value, at = _varint(buffer, at, end)
            if at < 0:
                return False
        if kind <= 1:
            if value < 0 or value > end - at or not _printable_ascii(buffer, at, value):
                return False
            offset[row, f], length[row, f] = at, value
            at += value
        elif (kind == 3 and (value < _INT32_MIN or value > _INT32_MAX)) or (
            kind == 4 and (value < 0 or value >= enum_sizes[f])
        ):
            return False
        else:
            number[row, f] = value
    return at == end


@kernel
def _decode(
    buffer: U8, starts: I64, ends: I64, header: U8, kinds: I64,
    enum_sizes: I64, ok: Mask, offset: I64, length: I64, number: I64,
) -> None:  # fmt: skip
    for row in range(len(starts)):
        start, end = starts[row], ends[row]
        if end - start < HEADER_BYTES:
            continue
        same = True
        for i in range(HEADER_BYTES):
            if buffer[start + i] != header[i]:
                same = False
                break
        if same:
            at = start + HEADER_BYTES
            ok[row] = _decode_row(buffer, at, end, kinds, enum_sizes, row, offset, length, number)


def pack(values: Sequence[bytes]) -> tuple[bytes, U8, I64, I64]:
    """One buffer holding ``values`` back to back, as bytes and as a uint8 array,
    with each value's start and end in it."""
    joined = b"".join(values)
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    ends = np.cumsum(lengths)
    return joined, np.frombuffer(joined, np.uint8), ends - lengths, ends


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # of timestamp-millis and date


def records_of(plan: RowPlan, values: Sequence[bytes]) -> list[dict[str, Any] | None]:
    """Each value as the dict the codec would decode it to (timestamps as aware
    datetimes, exactly as fastavro makes them), or None where the codec must read it."""
    good, columns = columns_of(plan, values)
    out: list[dict[str, Any] | None] = [None] * len(values)
    names = plan.fields
    for i, row in zip(good, zip(*columns.values(), strict=True), strict=True):
        out[i] = dict(zip(names, row, strict=True))
    return out


def columns_of(
    plan: RowPlan, values: Sequence[bytes], fields: Sequence[str] | None = None
) -> tuple[list[int], dict[str, list[Any]]]:
    """The indices of the values read here, and the named fields (all when None) of
    those values as columns of the codec's Python values. For a loop that reads many
    records of one flat type (the netting stage's obligations): a fraction of the
    cost of a codec decode per record."""
    data, buffer, starts, ends = pack(values)
    rows = decode_rows(plan, buffer, starts, ends)
    good = np.flatnonzero(rows.ok)
    names = plan.fields if fields is None else fields
    return good.tolist(), {n: _column(plan, plan.index(n), rows, good, data) for n in names}


def _column(plan: RowPlan, f: int, rows: Rows, good: I64, data: bytes) -> list[Any]:
    """Field ``f`` of the rows ``good``, as the codec's Python values."""
    name, kind = plan.fields[f], plan.kinds[f]
    if kind <= OPTIONAL_STRING:
        at, size = rows.str_offset[good, f].tolist(), rows.str_length[good, f].tolist()
        return [
            None if n < 0 else data[a : a + n].decode("ascii")
            for a, n in zip(at, size, strict=True)
        ]
    numbers: list[Any] = rows.number[good, f].tolist()
    if kind == ENUM:
        symbols = plan.enum_symbols[name]
        return [symbols[n] for n in numbers]
    if name in plan.timestamps:
        return [EPOCH + timedelta(milliseconds=n) for n in numbers]
    if name in plan.dates:
        epoch_day = EPOCH.date()
        return [epoch_day + timedelta(days=n) for n in numbers]
    return numbers
