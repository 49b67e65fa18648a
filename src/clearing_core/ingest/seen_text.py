"""Body digests and seen entries of many events at once, written by kernels.

Why: a ``hashlib`` object, its hex digest and an f-string per accepted event were
about a fifth of the ingest stage's CPU offline (py-spy on ``bench/prepare.py``:
12% the digests, 7% the entries). Here one
kernel hashes every event of a run with OpenSSL's SHA-256 (the library ``hashlib``
itself uses) and writes the hex digests and the entries as fixed-width UTF-32
rows, which numpy turns into Python strings in C. The strings are the very ones
``hashlib`` and the f-string make (``tests/core/ingest/test_seen_text.py`` compares
them exactly). Where libcrypto or its SHA-256 functions cannot be loaded,
``hashlib`` hashes one event at a time, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import llvmlite.binding as llvm
import numpy as np
import numpy.typing as npt
from numba import types

from clearing_core.jit import I64, kernel

DIGEST_HEX_DIGITS = 32  # of a body digest: the first 128 bits of the SHA-256, in hex
SEPARATOR = "|"  # between an entry's fields (``records.SEEN_SEPARATOR``)
KERNEL_EVENTS_MIN = 32  # measured: 16 events took 23 us by the kernels, 16 by hashlib; 32: 29, 32
_SHA256_CONTEXT_BYTES = 256  # sizeof(SHA256_CTX) is 112 in OpenSSL 1.1 and 3
U32 = npt.NDArray[np.uint32]


def _libcrypto_loaded() -> bool:
    """Whether OpenSSL's SHA-256 functions are loaded for the kernels (the symbols
    resolve by name when a kernel is compiled or loaded from Numba's cache)."""
    path = ctypes.util.find_library("crypto")
    if path is None:
        return False
    try:
        library = ctypes.CDLL(path)
        if not all(hasattr(library, f"SHA256_{f}") for f in ("Init", "Update", "Final")):
            return False
        llvm.load_library_permanently(path)
    except OSError:
        return False
    return True


LIBCRYPTO = _libcrypto_loaded()
# OpenSSL's SHA-256 by parts, called from the kernels (its one-call SHA256() fetches
# the algorithm from a provider on every call: three times slower per event, measured)
_init: Any = types.ExternalFunction("SHA256_Init", types.intc(types.voidptr))
_update: Any = types.ExternalFunction(
    "SHA256_Update", types.intc(types.voidptr, types.voidptr, types.uintp)
)
_final: Any = types.ExternalFunction("SHA256_Final", types.intc(types.voidptr, types.voidptr))


@kernel
def _sha256_hex(buffer: npt.NDArray[np.uint8], ends: I64, digits: int) -> U32:
    """Per value (``buffer[ends[i-1]:ends[i]]``), the first ``digits`` hex digits of
    its SHA-256, as UTF-32 code points."""
    count = len(ends)
    out = np.zeros((count, digits), np.uint32)
    context = np.empty(_SHA256_CONTEXT_BYTES, np.uint8)
    digest = np.empty(32, np.uint8)
    base, at = buffer.ctypes.data, 0
    for i in range(count):
        ok = _init(context.ctypes.data)
        ok &= _update(context.ctypes.data, base + at, ends[i] - at)
        ok &= _final(digest.ctypes.data, context.ctypes.data)
        if ok != 1:
            raise RuntimeError("OpenSSL SHA-256 failed")
        for j in range(digits):
            nibble = (digest[j >> 1] >> (4 * (1 - (j & 1)))) & 15
            out[i, j] = nibble + (48 if nibble < 10 else 87)  # 0-9, a-f
        at = ends[i]
    return out


@kernel
def _digit_count(value: int) -> int:
    """Decimal digits of a value >= 0."""
    count = 1
    while value >= 10:
        count += 1
        value //= 10
    return count


@kernel
def _put_int(out: U32, row: int, end: int, value: int) -> None:
    """``str(value)`` of a value >= 0 at ``out[row]``, ending before ``end``."""
    position = end - 1
    out[row, position] = 48 + value % 10
    value //= 10
    while value > 0:
        position -= 1
        out[row, position] = 48 + value % 10
        value //= 10


@kernel
def _entries(digests: U32, lengths: I64, times: I64, partitions: I64, offsets: I64,
             separator: int) -> U32:  # fmt: skip
    """Per row ``f"{digest}|{time}|{partition}|{offset}"`` as UTF-32, zero-padded."""
    count = len(lengths)
    digits = np.empty((count, 3), np.int64)
    width = 1
    for i in range(count):
        digits[i, 0] = _digit_count(times[i])
        digits[i, 1] = _digit_count(partitions[i])
        digits[i, 2] = _digit_count(offsets[i])
        width = max(width, lengths[i] + 3 + digits[i, 0] + digits[i, 1] + digits[i, 2])
    out = np.zeros((count, width), np.uint32)
    for i in range(count):
        at = lengths[i]
        for j in range(at):
            out[i, j] = digests[i, j]
        out[i, at] = separator
        at += 1 + digits[i, 0]
        _put_int(out, i, at, times[i])
        out[i, at] = separator
        at += 1 + digits[i, 1]
        _put_int(out, i, at, partitions[i])
        out[i, at] = separator
        at += 1 + digits[i, 2]
        _put_int(out, i, at, offsets[i])
    return out


def _strings(rows: U32) -> list[str]:
    """Zero-padded UTF-32 rows as Python strings (numpy drops the trailing zeros)."""
    if rows.shape[0] == 0:
        return []
    return list(np.ascontiguousarray(rows).view(f"<U{rows.shape[1]}").ravel().tolist())


def _digest_rows(values: Sequence[bytes]) -> U32:
    ends = np.cumsum(np.fromiter(map(len, values), np.int64, len(values)))
    buffer = np.frombuffer(b"".join(values) or b"\x00", np.uint8)
    return _sha256_hex(buffer, ends, DIGEST_HEX_DIGITS)


def body_digests(values: Iterable[bytes]) -> list[str]:
    """Identity of each event's content, to tell a resend from a conflicting reuse of
    an id: the first 32 hex digits of the SHA-256 of its canonical form
    (``Codec.canonical``, which is the record's own bytes for every event written
    with the current schemas). In one kernel call where libcrypto is loaded and
    there are enough of them, else by ``hashlib``."""
    values = values if isinstance(values, list) else list(values)
    if not LIBCRYPTO or len(values) < KERNEL_EVENTS_MIN:
        return list(map(body_digest, values))
    return _strings(_digest_rows(values))


def body_digest(value: bytes) -> str:
    """``body_digests`` of one value, by ``hashlib`` (a kernel call costs more)."""
    return hashlib.sha256(value).hexdigest()[:DIGEST_HEX_DIGITS]


def seen_entry(digest: str, event_time_ms: int, partition: int, offset: int) -> str:
    """``seen_entries`` of one event."""
    return f"{digest}{SEPARATOR}{event_time_ms}{SEPARATOR}{partition}{SEPARATOR}{offset}"


def _int64s(values: Iterable[int], count: int) -> I64:
    """int64 column; a value outside int64 is an ``OverflowError``, as the writers'."""
    column: Any = values if isinstance(values, list | np.ndarray) else list(values)
    array = np.asarray(column, np.int64)
    if array.shape != (count,):
        raise ValueError(f"a column of {array.shape} values, not {count}")
    return array


def seen_entries(
    digests: Sequence[str], times_ms: Iterable[int], partitions: Iterable[int],
    offsets: Iterable[int],
) -> list[str]:  # fmt: skip
    """What the de-duplication table stores per event id: its digest, event time,
    source partition and offset, ``|`` between them. Time and partition let the
    table forget ids older than the maximum event age, partition by partition;
    partition and offset tell a record the broker delivers again (after a crash or
    rebalance) from a participant's resend. Written by a kernel."""
    count = len(digests)
    if count < KERNEL_EVENTS_MIN or not all(map(str.isascii, digests)):
        return _entry_strings(digests, None, times_ms, partitions, offsets)
    lengths = np.fromiter(map(len, digests), np.int64, count)
    codes = np.array(digests, f"<U{max(int(lengths.max()), 1)}").view(np.uint32)
    return _entry_strings(digests, (codes.reshape(count, -1), lengths), times_ms, partitions,
                          offsets)  # fmt: skip


def _entry_strings(
    digests: Sequence[str], codes: tuple[U32, I64] | None, times_ms: Iterable[int],
    partitions: Iterable[int], offsets: Iterable[int],
) -> list[str]:  # fmt: skip
    """The entries, by the kernel from the digests' UTF-32 ``codes`` (rows and lengths)
    where given and every number is >= 0, else one by one (``seen_entry``)."""
    count = len(digests)
    columns = [_int64s(c, count) for c in (times_ms, partitions, offsets)]
    if codes is None or any(bool((column < 0).any()) for column in columns if count):
        return list(map(seen_entry, digests, *(column.tolist() for column in columns)))
    (rows, lengths), (times, parts, offs) = codes, columns
    return _strings(_entries(rows, lengths, times, parts, offs, ord(SEPARATOR)))


def digested(
    values: Sequence[bytes], times_ms: I64, partitions: Sequence[int], offsets: Sequence[int]
) -> tuple[list[str], list[str]]:
    """The body digests of ``values`` and the seen entries of the events they are,
    from one pass of the kernels where they can (identical to ``body_digests`` and
    ``seen_entries``)."""
    count = len(values)
    if not LIBCRYPTO or count < KERNEL_EVENTS_MIN:
        digests = body_digests(values)
        return digests, seen_entries(digests, times_ms, partitions, offsets)
    codes = _digest_rows(values)
    digests = _strings(codes)
    lengths = np.full(count, DIGEST_HEX_DIGITS, np.int64)
    return digests, _entry_strings(digests, (codes, lengths), times_ms, partitions, offsets)
