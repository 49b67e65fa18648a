"""The filter in front of the seen-id store (``clearing_core.ingest.seen_filter``):
it never rules out an id it was given, its kernels set exactly the bits a naive
Python Bloom filter sets, segments double, and expiry drops only whole old segments."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.ingest import seen_filter
from clearing_core.ingest.seen_filter import PROBES, SEGMENT_IDS_MIN, SeenFilter, id_hashes

MASK64 = (1 << 64) - 1


def naive_bits(hashes: list[int], words: int) -> list[int]:
    """The words a textbook double-hashing Bloom filter sets, in Python integers."""

    def mix(h: int) -> int:
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
        return h ^ (h >> 31)

    bits = [0] * words
    for h in hashes:
        step, at = mix(h) | 1, h
        for _ in range(PROBES):
            bit = at % (words * 64)
            bits[bit // 64] |= 1 << (bit % 64)
            at = (at + step) & MASK64
    return bits


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=300))
def test_every_id_added_is_a_maybe_and_the_bits_are_the_naive_ones(ids: list[str]) -> None:
    found = SeenFilter()
    hashes = id_hashes(ids)
    found.add(hashes, newest_ms=5)
    assert found.maybe(hashes).all()  # no id it was given is ever ruled out
    (segment,) = found.segments
    expected = naive_bits([int(h) for h in hashes], len(segment.bits))
    assert segment.bits.tolist() == expected


def test_new_ids_are_mostly_ruled_out() -> None:
    found = SeenFilter()
    found.add(id_hashes([f"old-{i}" for i in range(50_000)]), newest_ms=5)
    new = found.maybe(id_hashes([f"new-{i}" for i in range(100_000)]))
    assert new.mean() < 0.02  # about 0.8% at 10 bits and 7 probes per id


def test_segments_double_and_expire_whole_once_older_than_the_horizon() -> None:
    found = SeenFilter()
    first = id_hashes([f"a-{i}" for i in range(SEGMENT_IDS_MIN)])
    second = id_hashes([f"b-{i}" for i in range(SEGMENT_IDS_MIN + 10)])
    found.add(first, newest_ms=1_000)
    found.add(second, newest_ms=2_000)
    assert [s.capacity for s in found.segments] == [
        SEGMENT_IDS_MIN,
        SEGMENT_IDS_MIN,
        2 * SEGMENT_IDS_MIN,
    ]
    assert [s.count for s in found.segments] == [SEGMENT_IDS_MIN, SEGMENT_IDS_MIN, 10]
    assert found.forget_before(1_000) == 0  # not older than the horizon
    assert found.forget_before(1_001) == SEGMENT_IDS_MIN
    assert len(found) == SEGMENT_IDS_MIN + 10
    assert found.maybe(second).all()
    assert found.maybe(first).mean() < 0.05  # gone, but for false hits


def test_a_segment_sized_past_the_maximum_is_capped() -> None:
    assert seen_filter._new_segment(10**12).capacity == seen_filter.SEGMENT_IDS_MAX
    bits = seen_filter._new_segment(0).bits
    assert bits.dtype == np.uint64
    assert len(bits) * 64 >= SEGMENT_IDS_MIN * seen_filter.BITS_PER_ID
