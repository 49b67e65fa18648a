"""The kernels that write body digests and seen entries make exactly the strings
``hashlib`` and the f-string make (the naive reference below), on every path:
OpenSSL's SHA-256 in a kernel, ``hashlib`` when libcrypto is not loaded, and the
fallbacks for negative numbers and non-ASCII digests."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.ingest import seen_text
from clearing_core.ingest.records import body_digest, seen_entry, seen_parts
from clearing_core.ingest.seen_text import (
    KERNEL_EVENTS_MIN,
    body_digests,
    digested,
    seen_entries,
)

INT64_MAX = 2**63 - 1
numbers = st.one_of(st.sampled_from([0, 1, 9, 10, 99, 100, INT64_MAX]),
                    st.integers(0, INT64_MAX))  # fmt: skip
events = st.lists(st.tuples(st.binary(max_size=300), numbers, st.integers(0, 2**31 - 1), numbers),
                  max_size=3 * KERNEL_EVENTS_MIN)  # fmt: skip


def naive_digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()[:32]


def naive_entry(digest: str, time_ms: int, partition: int, offset: int) -> str:
    return f"{digest}|{time_ms}|{partition}|{offset}"


def test_the_kernel_is_the_one_in_use() -> None:
    assert seen_text.LIBCRYPTO, "libcrypto's SHA-256 not loaded: the ingest stage hashes slowly"


@settings(max_examples=60, deadline=None)
@given(events)
def test_digests_and_entries_are_the_reference_strings(
    rows: list[tuple[bytes, int, int, int]],
) -> None:
    values = [r[0] for r in rows]
    digests = [naive_digest(v) for v in values]
    entries = [naive_entry(d, t, p, o) for d, (_, t, p, o) in zip(digests, rows, strict=True)]
    times = np.array([r[1] for r in rows], np.int64)
    partitions, offsets = [r[2] for r in rows], [r[3] for r in rows]
    assert body_digests(values) == digests
    assert seen_entries(digests, times, partitions, offsets) == entries
    assert digested(values, times, partitions, offsets) == (digests, entries)


def test_a_large_run_and_the_single_forms_agree() -> None:
    values = [bytes([i % 256]) * (i % 200) for i in range(5_000)]
    times = np.arange(1_795_000_000_000, 1_795_000_005_000, dtype=np.int64)
    digests, entries = digested(values, times, [7] * 5_000, list(range(5_000)))
    assert digests == [body_digest(v) for v in values]
    assert entries == [seen_entry(d, int(t), 7, o)
                       for o, (d, t) in enumerate(zip(digests, times, strict=True))]  # fmt: skip
    assert seen_parts(entries[4_321]) == (digests[4_321], int(times[4_321]), 7, 4_321)


def test_without_libcrypto_hashlib_gives_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [b"v%d" % i for i in range(3 * KERNEL_EVENTS_MIN)]
    expected = body_digests(values)
    monkeypatch.setattr(seen_text, "LIBCRYPTO", False)
    assert body_digests(values) == expected == [naive_digest(v) for v in values]
    times = np.full(len(values), 5, np.int64)
    assert digested(values, times, [1] * len(values), [2] * len(values))[0] == expected


def test_negative_numbers_and_other_digests_take_the_reference_path() -> None:
    count = 2 * KERNEL_EVENTS_MIN
    digests = ["é" * 3] + ["ab" * (i % 20) for i in range(1, count)]  # non-ASCII, ragged
    times = [-(2**63)] + [-1] * (count - 1)
    assert seen_entries(digests, times, [0] * count, list(range(count))) == [
        naive_entry(d, t, 0, o) for o, (d, t) in enumerate(zip(digests, times, strict=True))
    ]
    values = [b"x"] * count
    expected = [naive_entry(naive_digest(b"x"), t, 3, 4) for t in times]
    assert digested(values, np.array(times), [3] * count, [4] * count)[1] == expected


def test_a_number_outside_int64_is_an_overflow_and_columns_must_agree() -> None:
    count = KERNEL_EVENTS_MIN
    with pytest.raises(OverflowError):
        seen_entries(["d"] * count, [2**63] * count, [0] * count, [0] * count)
    with pytest.raises(ValueError, match="values, not"):
        seen_entries(["d"] * count, [0] * (count - 1), [0] * count, [0] * count)


def test_nothing_in_nothing_out() -> None:
    assert body_digests([]) == []
    assert digested([], np.zeros(0, np.int64), [], []) == ([], [])
    assert seen_entries([], [], [], []) == []
