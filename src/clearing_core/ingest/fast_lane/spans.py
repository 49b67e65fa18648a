"""Rows grouped by the bytes of a span of each, in kernels: the fast lane's way of
seeing each distinct profile (``validate``) or id (``payments``) once in Python.

Rows are grouped by a 64-bit FNV-1a hash of their span, and each row's bytes are
then compared with its group's first row's, so a hash collision never merges two
spans: it only leaves the colliding row to the per-event path.
"""

from __future__ import annotations

import numpy as np

from clearing_core.encoding.avro_rows import U8
from clearing_core.jit import I64, Mask, kernel

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def span_groups(buffer: U8, begin: I64, end: I64, ok: Mask) -> tuple[I64, I64, I64, Mask]:
    """The ok rows grouped by the bytes of their span ``buffer[begin:end]``: the ok
    rows, the first row of each group, each ok row's group, and whether each ok row's
    bytes equal its group's first row's (rows are grouped by a hash, so a collision
    shows as False and never merges two spans). Python then sees each group once."""
    if not len(begin) == len(end) == len(ok):
        raise ValueError(f"span_groups: {len(begin)} begins, {len(end)} ends, {len(ok)} rows")
    good = np.flatnonzero(ok)
    if len(good) and not (begin[good].min() >= 0 and end[good].max() <= len(buffer)
                          and np.all(begin[good] <= end[good])):  # fmt: skip
        raise ValueError("span_groups: a span outside the buffer")
    hashes = np.zeros(len(begin), np.int64)
    _span_hashes(buffer, begin, end, ok, hashes)
    _, first_at, inverse = np.unique(hashes[good], return_index=True, return_inverse=True)
    firsts = good[first_at]
    same = np.zeros(len(good), np.bool_)
    _same_spans(buffer, begin, end, good, firsts[inverse], same)
    return good, firsts, np.asarray(inverse, np.int64).reshape(-1), same


@kernel
def _span_hashes(buffer: U8, begin: I64, end: I64, ok: Mask, hashes: I64) -> None:
    """FNV-1a (64 bits) of ``buffer[begin[i]:end[i]]`` per ok row: a row's profile
    bytes as one number, so that only distinct profiles reach Python."""
    for row in range(len(begin)):
        if not ok[row]:
            continue
        h = np.uint64(_FNV_OFFSET)
        for i in range(begin[row], end[row]):
            h = (h ^ np.uint64(buffer[i])) * np.uint64(_FNV_PRIME)
        hashes[row] = np.int64(h)


@kernel
def _same_spans(buffer: U8, begin: I64, end: I64, rows: I64, firsts: I64, same: Mask) -> None:
    """Whether each row's span holds exactly the bytes of its representative's (the
    first row with the same hash): a hash collision never mixes two profiles."""
    for k in range(len(rows)):
        row, first = rows[k], firsts[k]
        size = end[row] - begin[row]
        equal = size == end[first] - begin[first]
        i = 0
        while equal and i < size:
            equal = buffer[begin[row] + i] == buffer[begin[first] + i]
            i += 1
        same[k] = equal
