"""Avro binary encoding of flat records, written field by field, byte for byte as
fastavro writes them.

Why: fastavro's writer checks every union branch in turn, so an ``Obligation``
(three optional strings) cost about 7 µs to encode, and the ingest stage writes
one per aggregate. Here each field is written column by column from the row
plan of ``clearing_core.avro_rows``. Only plain values are written this way
(str for strings, int within range, a known enum symbol, None or str for an
optional string, an aware datetime for a timestamp); a record with anything
else goes to the codec, which writes it or raises its error. The tests compare
both on random records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from clearing_core.avro_rows import ENUM, EPOCH, INT, LONG, OPTIONAL_STRING, STRING, RowPlan

_SMALL = 1 << 13  # varints of 0..8191 come from a table
_ONE_MS = timedelta(milliseconds=1)
_RANGES = {INT: (-(2**31), 2**31 - 1), LONG: (-(2**63), 2**63 - 1)}


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


def encode_records(
    plan: RowPlan, records: Sequence[Mapping[str, Any]],
    fallback: Callable[[Mapping[str, Any]], bytes],
) -> list[bytes]:  # fmt: skip
    """Each record's single-object encoding (``plan.header`` and body), written column
    by column; a batch with a value that is not plain, or a record without some field
    or with an unknown one, is written record by record, and such a record by
    ``fallback``."""
    try:
        if any(len(record) != len(plan.fields) for record in records):
            raise _NotPlainError
        columns = [_column(plan, f, [r[name] for r in records])
                   for f, name in enumerate(plan.fields)]  # fmt: skip
    except (_NotPlainError, KeyError):
        return [_one(plan, record, fallback) for record in records]
    header = plan.header
    return [b"".join((header, *row)) for row in zip(*columns, strict=True)]


def _column(plan: RowPlan, f: int, values: list[Any]) -> list[bytes]:
    kind, name = plan.kinds[f], plan.fields[f]
    if kind in (STRING, OPTIONAL_STRING):
        if not all(type(v) is str or (v is None and kind == OPTIONAL_STRING) for v in values):
            raise _NotPlainError
        if kind == STRING:
            return [text(v) for v in values]
        return [b"\x00" if v is None else b"\x02" + text(v) for v in values]
    if kind == ENUM:
        table = {symbol: varint(i) for i, symbol in enumerate(plan.enum_symbols[name])}
        return [table[v] for v in values]  # KeyError: not a symbol
    if name in plan.timestamps:
        if not all(type(v) is datetime and v.tzinfo is not None for v in values):
            raise _NotPlainError
        values = [(v - EPOCH) // _ONE_MS for v in values]
    elif name in plan.dates:
        raise _NotPlainError
    low, high = _RANGES[int(kind)]
    if not all(type(v) is int and low <= v <= high for v in values):
        raise _NotPlainError
    return [varint(v) for v in values]


def _one(
    plan: RowPlan, record: Mapping[str, Any], fallback: Callable[[Mapping[str, Any]], bytes]
) -> bytes:
    try:
        if len(record) != len(plan.fields):
            raise _NotPlainError
        return b"".join([plan.header, *(_column(plan, f, [record[name]])[0]
                                        for f, name in enumerate(plan.fields))])  # fmt: skip
    except (_NotPlainError, KeyError):
        return fallback(record)
