"""Avro binary encoding of flat records, written column by column in a Numba
kernel, byte for byte as fastavro writes them.

Why: fastavro's writer checks every union branch in turn, so an ``Obligation``
(three optional strings) cost about 7 µs to encode, and the ingest stage writes
one per aggregate and a ``SeenEvents`` item per event. Here the values of each
field are gathered into a column (numbers as int64, strings joined into one
buffer with their lengths) and one kernel writes every row. Only plain values
are written this way (str for strings, int within range, a known enum symbol,
None or str for an optional string, a timestamp in ms); columns with anything
else are refused (``encode_columns`` gives None) and the caller writes those
records with the codec, which writes them or raises its error. The tests
compare both on random records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from clearing_core.encoding.avro_rows import (
    ENUM,
    INT,
    LONG,
    OPTIONAL_STRING,
    STRING,
    U8,
    RowPlan,
)
from clearing_core.jit import I64, kernel

_SMALL = 1 << 13  # varints of 0..8191 come from a table
_RANGES = {INT: (-(2**31), 2**31 - 1), LONG: (-(2**63), 2**63 - 1)}
_VARINT_BYTES_MAX = 10
_TEXT, _OPTIONAL_TEXT, _INTEGER = {str}, {str, type(None)}, {int}  # the plain types, exactly
Column = list[Any]  # one field's values: int for numbers and enums, str or None for text


def _zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_VARINT = [_zigzag_varint(n) for n in range(_SMALL)]


def varint(n: int) -> bytes:
    """Avro's zig-zag variable-length encoding of an int or long."""
    return _VARINT[n] if 0 <= n < _SMALL else _zigzag_varint(n)


def text(value: str) -> bytes:
    data = value.encode()
    return varint(len(data)) + data


class _NotPlainError(Exception):
    """A value this writer does not take: the codec writes the record."""


def encode_columns(plan: RowPlan, columns: Mapping[str, Column]) -> list[bytes] | None:
    """Records given as columns by field name (timestamps in ms since the epoch), each
    as its single-object encoding; None where the columns are not exactly the plan's
    fields or hold a value that is not plain (the caller then writes records)."""
    if set(columns) != set(plan.fields):
        return None
    if not any(columns.values()):
        return []  # no records
    try:
        values = [_column(plan, f, columns[name])
                  for f, name in enumerate(plan.fields)]  # fmt: skip
    except (_NotPlainError, KeyError):
        return None
    return _rows(*write_rows(plan.header, plan.kinds, values, len(values[0]) if values else 0))


def _rows(data: bytes, ends: I64) -> list[bytes]:
    bounds = ends.tolist()
    return [data[start:end] for start, end in zip([0, *bounds], bounds, strict=False)]


def _column(plan: RowPlan, f: int, values: Column) -> Column:
    """The field's values as the writer takes them (strings and None as they are,
    enum symbols as their index, timestamps in ms); anything else is not plain."""
    kind, name = plan.kinds[f], plan.fields[f]
    if kind in (STRING, OPTIONAL_STRING):
        if not set(map(type, values)) <= (_TEXT if kind == STRING else _OPTIONAL_TEXT):
            raise _NotPlainError
        return values
    if kind == ENUM:
        index = {symbol: i for i, symbol in enumerate(plan.enum_symbols[name])}
        return [index[v] for v in values]  # KeyError: not a symbol
    if name in plan.dates:
        raise _NotPlainError
    low, high = _RANGES[int(kind)]
    if values and not (set(map(type, values)) <= _INTEGER and low <= min(values)
                       and max(values) <= high):  # fmt: skip
        raise _NotPlainError
    return values


def write_rows(
    header: bytes, kinds: I64, columns: Sequence[Column], rows: int
) -> tuple[bytes, I64]:
    """``rows`` records written back to back, each ``header`` then its fields from
    ``columns`` (plain values, as ``_column`` gives them); and where each row ends."""
    assert len(columns) == len(kinds)
    number = np.zeros((rows, len(kinds)), np.int64)
    length = np.full((rows, len(kinds)), -1, np.int64)
    offset = np.zeros((rows, len(kinds)), np.int64)
    texts: list[bytes] = []
    base = 0
    for f, values in enumerate(columns):
        assert len(values) == rows
        if kinds[f] > OPTIONAL_STRING:
            number[:, f] = np.array(values, np.int64) if rows else 0
            continue
        data, sizes = _joined(values)
        length[:, f] = sizes
        offset[:, f] = base + np.cumsum(np.maximum(sizes, 0)) - np.maximum(sizes, 0)
        texts.append(data)
        base += len(data)
    strings = b"".join(texts)
    bound = rows * (len(header) + len(kinds) * (_VARINT_BYTES_MAX + 1)) + len(strings)
    out = np.empty(bound, np.uint8)
    ends = np.zeros(rows, np.int64)
    _write(np.frombuffer(header, np.uint8), kinds, number, np.frombuffer(strings, np.uint8),
           offset, length, out, ends)  # fmt: skip
    return out[: int(ends[-1]) if rows else 0].tobytes(), ends


def _joined(values: Column) -> tuple[bytes, I64]:
    """A text column's UTF-8 bytes back to back, and each value's length in bytes
    (-1 for None)."""
    missing = None in values
    plain = [v if v is not None else "" for v in values] if missing else values
    data = "".join(plain).encode()
    sizes = np.fromiter(map(len, plain), np.int64, len(plain))
    if len(data) != int(sizes.sum()):  # not all ASCII: count the bytes
        sizes = np.fromiter((len(v.encode()) for v in plain), np.int64, len(plain))
    if missing:
        sizes[[i for i, v in enumerate(values) if v is None]] = -1
    return data, sizes


@kernel
def _put_varint(out: U8, at: int, n: int) -> int:
    z = np.uint64((np.int64(n) << np.int64(1)) ^ (np.int64(n) >> np.int64(63)))
    while z > np.uint64(0x7F):
        out[at] = np.uint8((z & np.uint64(0x7F)) | np.uint64(0x80))
        at += 1
        z >>= np.uint64(7)
    out[at] = np.uint8(z)
    return at + 1


@kernel
def _write(
    header: U8, kinds: I64, number: I64, strings: U8, offset: I64, length: I64,
    out: U8, ends: I64,
) -> None:  # fmt: skip
    at = 0
    for row in range(number.shape[0]):
        for i in range(len(header)):
            out[at + i] = header[i]
        at += len(header)
        for f in range(len(kinds)):
            kind = kinds[f]
            if kind > 1:  # LONG, INT, ENUM: the value
                at = _put_varint(out, at, number[row, f])
                continue
            size = length[row, f]
            if kind == 1:  # OPTIONAL_STRING: the branch, then (branch 1) the string
                out[at] = 0 if size < 0 else 2
                at += 1
                if size < 0:
                    continue
            at = _put_varint(out, at, size)
            start = offset[row, f]
            for i in range(size):
                out[at + i] = strings[start + i]
            at += size
        ends[row] = at
