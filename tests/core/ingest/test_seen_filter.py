"""The filter in front of the seen-id store (``clearing_core.ingest.seen_filter``):
it never rules out an id it was given, its kernels set exactly the bits a naive
Python Bloom filter sets, segments double, and expiry drops only whole old segments."""

from __future__ import annotations

import numpy as np
import pytest
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


def naive_hash(text: str) -> int:
    """FNV-1a over the UTF-8 bytes, then splitmix64's finaliser, in Python integers."""
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
    return h ^ (h >> 31)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=200))
def test_id_hashes_are_the_naive_stable_hash_of_the_utf8_bytes(ids: list[str]) -> None:
    """The same in every process (no salt): a filter saved by one owner is read by the
    next. Non-ASCII ids take the per-id encoding path, with the same answer."""
    assert id_hashes(ids).tolist() == [naive_hash(i) for i in ids]


def test_ids_holding_a_nul_or_empty_ids_hash_like_any_other() -> None:
    """The ids are split on the NUL that joins them unless one holds a NUL itself; then
    each is encoded on its own: the same hashes either way."""
    for ids in (["a\x00b", "c"], ["", "x", ""], ["\x00"], ["é", ""]):
        assert id_hashes(ids).tolist() == [naive_hash(i) for i in ids]
    assert id_hashes([]).tolist() == []


def test_segments_are_numbered_for_good_and_a_mis_sized_one_is_refused() -> None:
    """Serials never repeat, even once every segment has expired (a checkpoint names a
    full segment's file by it); a segment that cannot be one of this filter's is refused."""
    found = SeenFilter()
    found.add(id_hashes([f"a-{i}" for i in range(SEGMENT_IDS_MIN + 5)]), newest_ms=7)
    assert [s.serial for s in found.segments] == [0, 1]
    found.forget_before(8)
    found.add(id_hashes(["b"]), newest_ms=9)
    assert [s.serial for s in found.segments] == [2]
    with pytest.raises(ValueError, match="not a segment"):
        seen_filter.Segment(np.zeros(3, np.uint64), capacity=10)  # not a power of two
    with pytest.raises(ValueError, match="not a segment"):
        seen_filter.Segment(np.zeros(4, np.uint64), capacity=10, count=11)
