"""The fast lane's first step: one event type's rows of a batch, decoded in columns.

The columnar decoder (``clearing_core.encoding.avro_rows``) reads every row of the
current writer schema whose strings are printable ASCII; a row it cannot read,
one over the codec's size limit, or one with a string the rules would refuse for
its length, is left to the per-event path (``ok`` false). Later steps clear the
``ok`` of the rows they are not sure of, and read the strings through ``texts``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clearing_core.encoding.avro_rows import STRING, U8, RowPlan, Rows, decode_rows, pack
from clearing_core.ingest.batch import RawBatch
from clearing_core.ingest.checks import EVENT_ID_LENGTH_MAX, ID_LENGTH_MAX, TEXT_LENGTH_MAX
from clearing_core.jit import I64, Mask

OPTIONAL_TEXT = {"ComputeUsage": "model", "Payment": "reference"}


@dataclass(frozen=True)
class Columns:
    """The rows of one event type, decoded in columns over one buffer of their values."""

    name: str  # the event type
    plan: RowPlan
    rows: Rows
    ok: Mask  # per row: still taken (each step clears the rows it is not sure of)
    data: bytes  # the values back to back
    buffer: U8  # the same bytes, as an array
    text: str  # the same bytes decoded as Latin-1: one character per byte

    def number(self, field: str) -> I64:
        """The numbers (long, int, enum index) of ``field``, per row."""
        return self.rows.number[:, self.plan.index(field)]

    def texts(self, picked: I64, field: str) -> list[str]:
        """The text of ``field`` in each of the rows ``picked``."""
        f = self.plan.index(field)
        if field in self.plan.enum_symbols:
            symbols = self.plan.enum_symbols[field]
            return [symbols[k] for k in self.rows.number[picked, f].tolist()]
        return cut(self.text, self.rows.str_offset[picked, f], self.rows.str_length[picked, f])


def decode_columns(name: str, plan: RowPlan, events: RawBatch, record_bytes_max: int) -> Columns:
    """The events' values (all of type ``name``, read by ``plan``) in columns."""
    data, buffer, starts, ends = pack(events.values)
    rows = decode_rows(plan, buffer, starts, ends)
    ok = rows.ok & (ends - starts <= record_bytes_max)
    ok &= _lengths_ok(plan, rows, OPTIONAL_TEXT.get(name))
    # one character per byte: the lane's strings are ASCII, so offsets carry over
    return Columns(name, plan, rows, ok, data, buffer, data.decode("latin-1"))


def cut(text: str, starts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """``text[start : start + length]`` for each pair, with no Python frame per slice."""
    return list(map(text.__getitem__, map(slice, starts.tolist(), (starts + lengths).tolist())))


def _lengths_ok(plan: RowPlan, rows: Rows, optional: str | None) -> np.ndarray:
    """Required strings non-empty and within their limits; an optional text within its."""
    ok = np.ones(len(rows.ok), np.bool_)
    for f, field in enumerate(plan.fields):
        length = rows.str_length[:, f]
        if field == optional:
            ok &= length <= TEXT_LENGTH_MAX
        elif plan.kinds[f] == STRING:
            top = EVENT_ID_LENGTH_MAX if field == "event_id" else ID_LENGTH_MAX
            ok &= (length >= 1) & (length <= top)
    return ok
