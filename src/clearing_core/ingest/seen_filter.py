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

The hashes are Python's ``hash`` of the id strings: computed in C, cached on the
string, and salted per process. That is enough here because a filter lives in one
process only (rebuilt from the seen topic at every assignment) and decides nothing
by itself.
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


def id_hashes(event_ids: Sequence[str]) -> U64:
    """The 64-bit hash of each id, as the filter takes them."""
    return np.fromiter(map(hash, event_ids), np.int64, len(event_ids)).view(np.uint64)


@dataclass
class _Segment:
    bits: U64  # a power of two of them, 64 per word
    capacity: int
    count: int = 0
    newest_ms: int = _TIME_NONE


@dataclass
class SeenFilter:
    """The ids given to ``add``, as a segmented Bloom filter (see the module)."""

    segments: list[_Segment] = field(default_factory=list)

    def add(self, hashes: U64, newest_ms: int) -> None:
        """Remember ``hashes`` (of ids whose newest event time is ``newest_ms``)."""
        at = 0
        while at < len(hashes):
            if not self.segments or self.segments[-1].count >= self.segments[-1].capacity:
                self.segments.append(_new_segment(len(self)))
            segment = self.segments[-1]
            part = hashes[at : at + segment.capacity - segment.count]
            _add(segment.bits, part, PROBES)
            segment.count += len(part)
            segment.newest_ms = max(segment.newest_ms, newest_ms)
            at += len(part)

    def maybe(self, hashes: U64) -> Mask:
        """Per hash: False where its id was certainly never added."""
        found = np.zeros(len(hashes), np.bool_)
        for segment in self.segments:
            _probe(segment.bits, hashes, PROBES, found)
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


def _new_segment(held: int) -> _Segment:
    capacity = min(SEGMENT_IDS_MAX, max(SEGMENT_IDS_MIN, held))
    bits = 1 << max(6, (capacity * BITS_PER_ID - 1).bit_length())
    return _Segment(np.zeros(bits // 64, np.uint64), capacity)


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
