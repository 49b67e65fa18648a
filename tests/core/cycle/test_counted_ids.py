"""The closed cycles' counted ids kept as digests (``counted_ids``) answer exactly as
the sets of strings they replaced: checked against that naive model on random id
streams over many cycles, through expiry after ``SEEN_CYCLES`` closes and a restart's
``remember``, and through ``CurrencyLedger.add`` and ``add_batch``."""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Iterable
from datetime import timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing_core.cycle.counted_ids import DIGEST_BYTES, CountedIds, digests_of
from clearing_core.cycle.ledger import SEEN_CYCLES, CurrencyLedger
from tests.core.cycle.test_cycle import T0, context, marker, obligation
from tests.core.cycle.test_cycle_batches import LOG_MS0, batch_of


class NaiveIds:
    """The model: what the ledger kept before, a set of strings per closed cycle."""

    def __init__(self, cycles: int) -> None:
        self.closed: deque[set[str]] = deque(maxlen=cycles)

    def add_cycle(self, ids: Iterable[str]) -> None:
        self.closed.append(set(ids))

    def remember(self, ids: Iterable[str]) -> None:
        if not self.closed:
            self.closed.append(set())
        self.closed[-1].update(ids)

    def mask(self, ids: list[str]) -> list[bool]:
        return [any(i in c for c in self.closed) for i in ids]


POOL = [f"m:mtr-{i:012d}" for i in range(12)] + [f"p:agg:{i:032x}" for i in range(12)]
ids = st.lists(st.sampled_from(POOL) | st.text(max_size=4), max_size=25)
ops = st.lists(st.tuples(st.sampled_from(["close", "remember", "query"]), ids), max_size=40)


@settings(max_examples=300, deadline=None)
@given(cycles=st.integers(1, SEEN_CYCLES + 1), stream=ops)
def test_any_id_stream_is_answered_as_the_sets_of_strings_did(
    cycles: int, stream: list[tuple[str, list[str]]]
) -> None:
    """Closes and remembered ids pile up between look-ups (they are sorted in lazily)."""
    digests, naive = CountedIds(cycles), NaiveIds(cycles)
    for op, batch in stream:
        if op == "close":
            digests.add_cycle(digests_of(batch))
            naive.add_cycle(batch)
        elif op == "remember":
            digests.remember(digests_of(batch))
            naive.remember(batch)
        else:
            expected = naive.mask(batch)
            assert digests.mask(digests_of(batch)).tolist() == expected
            assert [digests.contains(digests_of([i])) for i in batch] == expected
            assert digests.contains_any(digests_of(batch)) == any(expected)
    assert digests.cycle_count == len(naive.closed)
    distinct = sum(len(c) for c in naive.closed)
    assert len(digests) == distinct
    directories = digests.nbytes - DIGEST_BYTES * distinct  # 24 bytes at least a cycle
    assert 24 * len(naive.closed) <= directories <= distinct + 24 * len(naive.closed)
    every = [i for c in naive.closed for i in c]
    assert digests.mask(digests_of(every)).all()


def packed(pairs: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("=QQ", first, second) for first, second in pairs)


# first words: a few small ones (long runs of equal ones), the edges of the directory's
# buckets (2^k buckets on the top k bits, k up to 4 here) and any other
EDGES = sorted({(j << (64 - k)) + d for k in range(1, 5) for j in range(1 << k) for d in (-1, 0)
                if 0 <= (j << (64 - k)) + d < 2**64} | {2**64 - 1})  # fmt: skip
firsts = st.integers(0, 3) | st.sampled_from(EDGES) | st.integers(0, 2**64 - 1)
words = st.lists(st.tuples(firsts, st.integers(0, 3)), max_size=70)


@settings(max_examples=300, deadline=None)
@given(cycles=st.lists(words, max_size=10), queries=words)
def test_digests_sharing_their_first_word_are_told_apart(
    cycles: list[list[tuple[int, int]]], queries: list[tuple[int, int]]
) -> None:
    """Rare with real digests (2^-64 a pair) but never a false duplicate: every digest
    of a run with the same first word is compared on its second; and a digest on the
    edge of a bucket of the directory is found in its own."""
    counted = CountedIds(SEEN_CYCLES)
    kept: deque[set[tuple[int, int]]] = deque(maxlen=SEEN_CYCLES)
    for cycle in cycles:
        counted.add_cycle(packed(cycle))
        kept.append(set(cycle))
    expected = [any(q in c for c in kept) for q in queries]
    assert counted.mask(packed(queries)).tolist() == expected
    assert [counted.contains(packed([q])) for q in queries] == expected


def test_a_large_stream_matches_the_sets_of_strings() -> None:
    """Cycles of thousands of ids, batches that mix new ids with ones of every age."""
    rng = random.Random(3)
    counted, naive = CountedIds(SEEN_CYCLES), NaiveIds(SEEN_CYCLES)
    history: list[str] = []
    hits = 0
    for _ in range(SEEN_CYCLES + 4):
        fresh = [f"m:{rng.getrandbits(128):032x}" for _i in range(4_000)]
        batch = fresh[:2_000] + rng.sample(history, min(len(history), 2_000))
        rng.shuffle(batch)
        expected = naive.mask(batch)
        assert counted.mask(digests_of(batch)).tolist() == expected
        hits += sum(expected)
        counted.add_cycle(digests_of(fresh))
        naive.add_cycle(fresh)
        history += fresh
    assert 0 < hits < 2_000 * (SEEN_CYCLES + 3)  # old ids were found, expired ones not


def test_a_cycle_is_forgotten_after_seen_cycles_more_closes() -> None:
    counted = CountedIds(SEEN_CYCLES)
    counted.add_cycle(digests_of(["a", "b"]))
    for n in range(SEEN_CYCLES - 1):
        counted.add_cycle(digests_of([f"later-{n}"]))
    assert counted.mask(digests_of(["a", "b", "c"])).tolist() == [True, True, False]
    counted.add_cycle(digests_of(["later"]))
    assert not counted.contains_any(digests_of(["a", "b"]))
    assert counted.contains_any(digests_of(["later-0"]))


def test_remembered_ids_join_the_newest_closed_cycle() -> None:
    counted = CountedIds(2)
    counted.remember(digests_of(["r1"]))  # none closed yet: an empty cycle takes them
    counted.remember(digests_of(["r2", "r1"]))
    assert (counted.cycle_count, len(counted)) == (1, 2)
    counted.add_cycle(digests_of(["c1"]))
    counted.remember(digests_of(["r3"]))  # into c1's cycle
    assert counted.mask(digests_of(["r1", "r2", "r3", "c1"])).all()
    counted.add_cycle(digests_of(["c2"]))  # the remembered cycle drops out
    assert counted.mask(digests_of(["r1", "r2", "r3", "c1", "c2"])).tolist() == [
        False, False, True, True, True,
    ]  # fmt: skip


def test_digests_are_sixteen_bytes_and_any_string_hashes() -> None:
    lone = ["\ud800", "\ud801", "é", "e\u0301"]  # lone surrogates, two spellings of é
    digests = digests_of(lone)
    assert len(digests) == DIGEST_BYTES * len(lone)
    each = {digests[i : i + DIGEST_BYTES] for i in range(0, len(digests), DIGEST_BYTES)}
    assert len(each) == len(lone)
    counted = CountedIds(1)
    counted.add_cycle(digests[:DIGEST_BYTES])
    assert counted.mask(digests).tolist() == [True, False, False, False]
    assert counted.mask(b"").shape == (0,)
    assert isinstance(counted.mask(digests), np.ndarray)


# ---------------------------------------------------------------- through the ledger


def close(ledger: CurrencyLedger, n: int) -> int:
    """Close the ledger's cycle; the report's duplicate count."""
    at = T0 + timedelta(minutes=n)
    return ledger.close(marker(n), at, context()).report["duplicate_count"]


def test_a_duplicate_from_a_closed_cycle_in_the_window_is_dropped() -> None:
    ledger = CurrencyLedger("CNH")
    assert ledger.add(obligation("a", "DC", "SOLAR", 100))
    assert ledger.add_batch(batch_of([obligation("b", "GPU", "SOLAR", 200)], LOG_MS0)) == 0
    close(ledger, 1)
    for n in range(2, SEEN_CYCLES + 2):  # cycle 1 is one of the last SEEN_CYCLES closed
        assert not ledger.add(obligation("a", "DC", "SOLAR", 100))
        late = [obligation("b", "GPU", "SOLAR", 200), obligation(f"new-{n}", "DC", "GPU", 5)]
        assert ledger.add_batch(batch_of(late, LOG_MS0 + n)) == 1
        assert ledger.open_count == 1  # only the new one counted
        assert close(ledger, n) == 2
    assert ledger.add(obligation("a", "DC", "SOLAR", 100))  # forgotten: counted again
    assert ledger.add_batch(batch_of([obligation("b", "GPU", "SOLAR", 200)], LOG_MS0)) == 0
    assert ledger.open_count == 2
    assert not ledger.add(obligation("new-2", "DC", "GPU", 5))  # still in the window


def test_a_batch_of_new_ids_is_counted_in_bulk_past_closed_cycles() -> None:
    ledger = CurrencyLedger("CNH")
    for n in range(1, 4):
        rows = [obligation(f"c{n}-{i}", "DC", "SOLAR", 10 + i) for i in range(50)]
        assert ledger.add_batch(batch_of(rows, LOG_MS0)) == 0
        close(ledger, n)
    rows = [obligation(f"c4-{i}", "DC", "SOLAR", 10 + i) for i in range(50)]
    assert ledger.add_batch(batch_of(rows, LOG_MS0)) == 0
    mixed = [obligation(f"c{n}-7", "DC", "SOLAR", 17) for n in (1, 2, 3, 4, 5)]
    assert ledger.add_batch(batch_of(mixed, LOG_MS0)) == 4
    assert ledger.open_count == 51
    assert close(ledger, 4) == 4


def test_ids_remembered_after_a_restart_are_dropped_until_they_expire() -> None:
    """A worker resumes a currency at cycle 5 and re-reads the ids of its recent
    cycles one by one (``remember_counted_ids``), as the old sets did."""
    ledger = CurrencyLedger("CNH", cycle_seq=5)
    for oid in ("x", "y", "x"):
        ledger.remember([oid])
    assert not ledger.add(obligation("x", "DC", "SOLAR", 100))
    late = [obligation("y", "DC", "SOLAR", 1), obligation("z", "GPU", "SOLAR", 2)]
    assert ledger.add_batch(batch_of(late, LOG_MS0)) == 1
    for n in range(6, 5 + SEEN_CYCLES):  # the remembered ids outlive SEEN_CYCLES - 1 closes
        close(ledger, n)
        assert not ledger.add(obligation("x", "DC", "SOLAR", 100))
    close(ledger, 5 + SEEN_CYCLES)
    assert ledger.add(obligation("x", "DC", "SOLAR", 100))
    assert ledger.add_batch(batch_of([obligation("y", "DC", "SOLAR", 1)], LOG_MS0)) == 0


chunks = st.lists(st.lists(st.sampled_from(POOL[:16]), min_size=1, max_size=6), max_size=5)


@settings(max_examples=40, deadline=None)
@given(remembered=st.lists(st.sampled_from(POOL[:16]), max_size=4),
       cycles=st.lists(chunks, min_size=1, max_size=SEEN_CYCLES + 3))  # fmt: skip
def test_the_ledger_drops_what_the_sets_of_strings_dropped(
    remembered: list[str], cycles: list[list[list[str]]]
) -> None:
    """Chunks of a cycle go in through ``add_batch`` or ``add`` by turns; every return
    value and every cycle's duplicate count is the naive model's."""
    ledger, naive = CurrencyLedger("CNH", cycle_seq=2), NaiveIds(SEEN_CYCLES)
    ledger.remember(remembered)
    naive.remember(remembered)
    for n, cycle in enumerate(cycles, start=3):
        opened: set[str] = set()
        duplicates = 0
        for k, chunk in enumerate(cycle):
            new = []
            for oid in chunk:
                new.append(oid not in opened and not naive.mask([oid])[0])
                if new[-1]:
                    opened.add(oid)  # a duplicate is not counted in this cycle
            rows = [obligation(oid, "DC", "SOLAR", 1 + i) for i, oid in enumerate(chunk)]
            if k % 2:
                assert [ledger.add(r) for r in rows] == new
            else:
                assert ledger.add_batch(batch_of(rows, LOG_MS0)) == new.count(False)
            duplicates += new.count(False)
        assert close(ledger, n) == duplicates
        naive.add_cycle(opened)
