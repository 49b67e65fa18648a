"""A filter in front of the seen-id store: which of a batch's event ids may have been
accepted before, from 64-bit hashes, in one kernel call per segment.

Why: on disk (RocksDB) every lookup of an id was a Python call into the store, one
per event, while nearly every event is new. The ingest stage now hashes a batch's
ids once (``id_hashes``), asks this filter, and reads from the store only the
ids it cannot rule out (a batched ``multi_get``); the store's exact keys decide.
A Bloom filter never forgets an id it was given, so a hit is only a maybe and a
miss is certain: nothing accepted before is taken for new.

Segments: ids go into the newest segment until it holds its capacity; the next
one is twice as large (up to ``SEGMENT_IDS_MAX``), so a partition of n ids has
about log2(n) segments, each ``BITS_PER_ID`` bits per id (0.8% false hits with
``PROBES`` probes). Each segment knows the newest event time among its ids, so
expiry drops whole segments older than the horizon without a scan (the store's
own expiry is RocksDB's TTL).

The hashes are stable (FNV-1a over each id's UTF-8 bytes, then splitmix64's
finaliser, in one kernel call per batch), not Python's per-process salted ``hash``:
a filter is saved with its partition's checkpoint and loaded by the partition's
next owner, another process. A filter decides nothing by itself, so a hash of this
quality is enough: a collision costs one read of the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from clearing_core.jit import Mask, kernel

U64 = npt.NDArray[np.uint64]
BITS_PER_ID = 10
PROBES = 7
SEGMENT_IDS_MIN = 1 << 16
SEGMENT_IDS_MAX = 1 << 23  # 8M ids: a 10 MiB segment
_TIME_NONE = -(2**63)
_TIME_NEVER = 2**63 - 1


def id_hashes(event_ids: Sequence[str]) -> U64:
    """The stable 64-bit hash of each id, as the filter takes them: the same in every
    process (the ids joined once, hashed by one kernel call)."""
    count = len(event_ids)
    hashes = np.empty(count, np.uint64)
    joined = "\0".join(event_ids).encode()
    if count and joined.count(b"\0") == count - 1:  # no id holds a NUL: they split it
        _fnv_split(np.frombuffer(joined, np.uint8), hashes)
        return hashes
    encoded = [event_id.encode() for event_id in event_ids]
    lengths = np.fromiter(map(len, encoded), np.int64, count)
    _fnv(np.frombuffer(b"".join(encoded), np.uint8), np.cumsum(lengths), hashes)
    return hashes


@dataclass
class Segment:
    """Ids added in a row. Once full (``count == capacity``) it never changes again, so
    a checkpoint saves it once and links it from the checkpoints after."""

    bits: U64  # a power of two of them, 64 per word
    capacity: int
    count: int = 0
    newest_ms: int = _TIME_NONE
    serial: int = 0  # the filter's segments are numbered in the order they were made
    oldest_ms: int = _TIME_NEVER  # with newest_ms: the range of times its ids came with

    def __post_init__(self) -> None:
        words = len(self.bits)
        if not (words and words & (words - 1) == 0 and 0 <= self.count <= self.capacity):
            raise ValueError(f"segment {self.serial}: {words} words, {self.count} ids of "
                             f"{self.capacity}: not a segment of this filter")  # fmt: skip


@dataclass
class SeenFilter:
    """The ids given to ``add``, as a segmented Bloom filter (see the module)."""

    segments: list[Segment] = field(default_factory=list)
    next_serial: int = 0  # never reused, even once every segment has expired

    def add(self, hashes: U64, newest_ms: int) -> None:
        """Remember ``hashes`` (of ids whose newest event time is ``newest_ms``)."""
        at = 0
        while at < len(hashes):
            if not self.segments or self.segments[-1].count >= self.segments[-1].capacity:
                self.segments.append(_new_segment(len(self), self.next_serial))
                self.next_serial += 1
            segment = self.segments[-1]
            part = hashes[at : at + segment.capacity - segment.count]
            _add(segment.bits, part, PROBES)
            segment.count += len(part)
            segment.newest_ms = max(segment.newest_ms, newest_ms)
            segment.oldest_ms = min(segment.oldest_ms, newest_ms)
            at += len(part)

    def maybe(self, hashes: U64) -> Mask:
        """Per hash: False where its id was certainly never added."""
        found = np.zeros(len(hashes), np.bool_)
        for segment in self.segments:
            _probe(segment.bits, hashes, PROBES, found)
        return found

    def hits(self, hashes: U64) -> list[tuple[Segment, Mask]]:
        """Per segment, which of ``hashes`` it may hold: where an id may be, by the
        times of the segments that hit (for the few ids ``maybe`` could not rule out)."""
        found = []
        for segment in self.segments:
            mask = np.zeros(len(hashes), np.bool_)
            _probe(segment.bits, hashes, PROBES, mask)
            found.append((segment, mask))
        return found

    def forget_before(self, horizon_ms: int) -> int:
        """Drop the segments whose every id is older than ``horizon_ms``; the count of
        ids dropped."""
        kept = [s for s in self.segments if s.newest_ms >= horizon_ms]
        dropped = len(self) - sum(s.count for s in kept)
        self.segments = kept
        return dropped

    def __len__(self) -> int:
        return sum(s.count for s in self.segments)

    @property
    def nbytes(self) -> int:
        return sum(s.bits.nbytes for s in self.segments)


def _new_segment(held: int, serial: int = 0) -> Segment:
    capacity = min(SEGMENT_IDS_MAX, max(SEGMENT_IDS_MIN, held))
    bits = 1 << max(6, (capacity * BITS_PER_ID - 1).bit_length())
    return Segment(np.zeros(bits // 64, np.uint64), capacity, serial=serial)


@kernel
def _fnv(data: npt.NDArray[np.uint8], ends: npt.NDArray[np.int64], out: U64) -> None:
    """FNV-1a of each id's bytes (``data[ends[i-1]:ends[i]]``), finished by ``_mix``
    so that the low bits the probes use depend on every byte."""
    start = 0
    for i in range(len(ends)):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(start, ends[i]):
            h = (h ^ np.uint64(data[j])) * np.uint64(0x100000001B3)
        out[i] = _mix(h)
        start = ends[i]


@kernel
def _fnv_split(data: npt.NDArray[np.uint8], out: U64) -> None:
    """``_fnv`` of the ids in ``data`` separated by NUL bytes (none inside an id):
    the boundaries found in the same pass, no lengths asked of Python."""
    i, h = 0, np.uint64(0xCBF29CE484222325)
    for j in range(len(data)):
        byte = data[j]
        if byte == 0:
            out[i] = _mix(h)
            i, h = i + 1, np.uint64(0xCBF29CE484222325)
        else:
            h = (h ^ np.uint64(byte)) * np.uint64(0x100000001B3)
    out[i] = _mix(h)


@kernel
def _mix(h: Any) -> Any:
    """splitmix64's finaliser: the second probe hash from the first."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@kernel
def _add(bits: U64, hashes: U64, probes: int) -> None:
    mask = np.uint64(len(bits) * 64 - 1)
    for h in hashes:
        step = _mix(h) | np.uint64(1)
        at = h
        for _ in range(probes):
            bit = at & mask
            bits[bit >> np.uint64(6)] |= np.uint64(1) << (bit & np.uint64(63))
            at += step


@kernel
def _probe(bits: U64, hashes: U64, probes: int, found: Mask) -> None:
    mask = np.uint64(len(bits) * 64 - 1)
    for i in range(len(hashes)):
        if found[i]:
            continue
        h = hashes[i]
        step = _mix(h) | np.uint64(1)
        at = h
        hit = True
        for _ in range(probes):
            bit = at & mask
            if not bits[bit >> np.uint64(6)] & (np.uint64(1) << (bit & np.uint64(63))):
                hit = False
                break
            at += step
        found[i] = hit
