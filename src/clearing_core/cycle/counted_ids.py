"""Which obligation ids the last few closed cycles counted, as 128-bit digests in arrays.

Why: a currency drops late duplicates of ids counted in its last ``SEEN_CYCLES``
closed cycles. Kept as Python sets of ``str`` those ids were most of the netting
process's memory: 129 bytes per id for ids like ``m:<uuid>`` (38 characters: an
88-byte ``str`` and its slot of the set; 109 bytes for ``m:mtr-<12 digits>``),
measured with ``tracemalloc`` over 200,000 ids, so 10^7 ids a cycle over 8 cycles
took about 10 GB. Here a closed cycle is one array of its ids' BLAKE2b-128 digests
(two ``uint64`` words a row, sorted on the first, no repeats) and a directory of where
each bucket of first words starts (at most 1 byte per id): 16.7 bytes per id,
measured the same way. The bound: 17 bytes x the distinct ids of the last ``cycles``
closed cycles (10^7 a cycle x 8 = 1.36 GB), and for a moment, while the newest cycle
is sorted in (at the first look-up after its close, not in the close), a few copies of
that one cycle. A look-up reads two directory entries and a few adjacent rows per
cycle, compiled; a batch goes in the order of its first words, reading each cycle
forwards.

Why 128 bits of a cryptographic hash: a false "already counted" would drop an
obligation, that is lose money. With n ids remembered, the chance that any two
distinct ids share a digest is at most n^2 / 2^129 (the birthday bound): below
2e-23 for n = 10^8; making two ids collide on purpose costs about 2^64 hashes.
Ids are hashed once per batch (``digests_of``); the ledger reuses those digests
to look the batch up and then to remember it.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from clearing_core.jit import kernel

DIGEST_BYTES = 16
Rows = npt.NDArray[np.uint64]  # (n, 2): a digest's two words, native byte order
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Cycle = tuple[Rows, I64]  # a closed cycle: its rows sorted on the first word, its directory
BOOLS = npt.NDArray[np.bool_]
INTP = npt.NDArray[np.intp]
_BLANK = hashlib.blake2b(digest_size=DIGEST_BYTES)
_NO_ROWS = np.zeros((0, 2), dtype=np.uint64)
_WORDS = struct.Struct("=QQ")  # the two words of a digest, as the arrays read them


def digests_of(obligation_ids: Iterable[str]) -> bytes:
    """The ids' digests, ``DIGEST_BYTES`` each, in order. Why ``surrogatepass``: any
    ``str`` an id set took must hash (distinct strings stay distinct bytes)."""
    blank = _BLANK.copy  # copying a blank hasher is faster than making one per id
    parts = []
    for oid in obligation_ids:
        h = blank()
        h.update(oid.encode("utf-8", "surrogatepass"))
        parts.append(h.digest())
    return b"".join(parts)


def _whole(digests: bytes | bytearray) -> bytes | bytearray:
    if len(digests) % DIGEST_BYTES:
        raise ValueError(f"{len(digests)} bytes is not a whole number of digests")
    return digests


def _rows(digests: bytes | bytearray) -> Rows:
    return np.frombuffer(_whole(digests), dtype=np.uint64).reshape(-1, 2)


def _closed_cycle(rows: Rows) -> Cycle:
    """``rows`` sorted on the first word, repeats dropped, and their directory."""
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    repeat = np.zeros(len(rows), dtype=bool)
    repeat[1:] = (rows[1:, 0] == rows[:-1, 0]) & (rows[1:, 1] == rows[:-1, 1])
    rows = np.ascontiguousarray(rows[~repeat] if repeat.any() else rows)
    return rows, _directory(rows[:, 0])


def _directory(firsts: npt.NDArray[np.uint64]) -> I64:
    """Where each bucket of first words starts (2^k buckets on the top k bits, k so
    that a bucket holds 8 to 16 digests; one more entry: the end). Why: a look-up
    then reads two entries and a few adjacent rows instead of a binary search's ~18
    scattered ones, the cost of one id's look-up (``CurrencyLedger.add``)."""
    bits = max(1, len(firsts).bit_length() - 4)
    directory = np.empty((1 << bits) + 1, dtype=np.int64)
    starts = np.arange(1 << bits, dtype=np.uint64) << np.uint64(64 - bits)
    directory[:-1] = np.searchsorted(firsts, starts)
    directory[-1] = len(firsts)
    return directory


_NO_CYCLE: Cycle = (_NO_ROWS, _directory(_NO_ROWS[:, 0]))


@kernel
def _found(rows: Rows, directory: I64, shift: np.uint64, first: np.uint64,
           second: np.uint64) -> bool:  # fmt: skip
    """Whether ``rows`` hold the digest (``first``, ``second``). Equal first words are
    rare but possible: each row of such a run is compared on its second word."""
    bucket = np.int64(first >> shift)
    i, end = directory[bucket], directory[bucket + 1]
    while i < end and rows[i, 0] < first:
        i += 1
    while i < end and rows[i, 0] == first:
        if rows[i, 1] == second:
            return True
        i += 1
    return False


@kernel
def _found_one(cycles: tuple[Rows, ...], directory: I64, where: I64, shifts: U64,
               first: np.uint64, second: np.uint64) -> bool:  # fmt: skip
    """Whether a cycle holds the digest; cycle k's directory is ``directory[where[k]:]``."""
    for k in range(len(cycles)):
        if _found(cycles[k], directory[where[k] :], shifts[k], first, second):
            return True
    return False


@kernel
def _found_each(cycles: tuple[Rows, ...], directory: I64, where: I64, shifts: U64,
                ordered: Rows, order: INTP, found: BOOLS) -> None:  # fmt: skip
    """``found[order[j]]`` when a cycle holds ``ordered[j]``, the queries sorted on their
    first word (``order``), so that each cycle is read forwards."""
    for k in range(len(cycles)):
        rows, own = cycles[k], directory[where[k] :]
        for j in range(order.shape[0]):
            if not found[order[j]]:
                found[order[j]] = _found(rows, own, shifts[k], ordered[j, 0], ordered[j, 1])


class CountedIds:
    """Digests of the ids counted in the last ``cycles`` closed cycles of a currency."""

    def __init__(self, cycles: int) -> None:
        self._capacity = cycles
        self._cycles: deque[Cycle] = deque(maxlen=cycles)
        self._remembered = bytearray()  # digests that belong to the newest cycle, unsorted
        self._pad()

    def add_cycle(self, digests: bytes | bytearray) -> None:
        """A cycle closed with these ids; the oldest of more than ``cycles`` is forgotten.
        They are sorted in on the next look-up (about 100 ns an id): not while closing."""
        self._settle()
        self._cycles.append(_NO_CYCLE)
        self._pad()
        self._remembered += _whole(digests)

    def remember(self, digests: bytes | bytearray) -> None:
        """Add ids to the newest closed cycle (one empty cycle first when none closed),
        as a restart re-reads them; sorted in on the next look-up, so cheap per call."""
        if not self._cycles:
            self._cycles.append(_NO_CYCLE)
            self._pad()
        self._remembered += _whole(digests)

    def _settle(self) -> None:
        if self._remembered:
            remembered = _rows(bytes(self._remembered))
            self._cycles[-1] = _closed_cycle(np.concatenate([self._cycles[-1][0], remembered]))
            self._remembered = bytearray()
            self._pad()

    def _pad(self) -> None:
        """What the kernels are given: a tuple of exactly ``cycles`` arrays (one compiled
        variant), the directories in one array (fewer arguments to pass per call), where
        each starts and each one's shift (2^k buckets: a word's bucket is word >> 64 - k)."""
        cycles = [*self._cycles, *(_NO_CYCLE,) * (self._capacity - len(self._cycles))]
        self._rows = tuple(rows for rows, _ in cycles)
        self._directory = np.concatenate([directory for _, directory in cycles])
        sizes = [len(directory) for _, directory in cycles]
        self._where = np.cumsum([0, *sizes[:-1]], dtype=np.int64)
        self._shifts = np.array([65 - (n - 1).bit_length() for n in sizes], dtype=np.uint64)
        for k, (rows, _) in enumerate(list(self._cycles)):  # held once: views of that array
            start = int(self._where[k])
            self._cycles[k] = (rows, self._directory[start : start + sizes[k]])

    def contains(self, digest: bytes) -> bool:
        """Was this one id (its digest) counted in one of the remembered cycles?"""
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"{len(digest)} bytes is not one digest")
        self._settle()
        if not self._cycles:
            return False
        first, second = _WORDS.unpack(digest)
        return bool(_found_one(self._rows, self._directory, self._where, self._shifts,
                               np.uint64(first), np.uint64(second)))  # fmt: skip

    def mask(self, digests: bytes) -> BOOLS:
        """Per digest (in order): was its id counted in one of the remembered cycles?"""
        queries = _rows(digests)
        self._settle()
        found = np.zeros(len(queries), dtype=bool)
        if self._cycles and len(queries):
            order = np.argsort(queries[:, 0])
            _found_each(self._rows, self._directory, self._where, self._shifts, queries[order],
                        order, found)  # fmt: skip
        return found

    def contains_any(self, digests: bytes) -> bool:
        return bool(self.mask(digests).any())

    def __len__(self) -> int:
        """Digests held: each cycle's distinct ids (an id of two cycles counts twice)."""
        self._settle()
        return sum(len(rows) for rows, _ in self._cycles)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays: ``DIGEST_BYTES`` per id held, and at most one more
        per id for the directories (24 bytes at least a cycle)."""
        self._settle()
        return sum(rows.nbytes + directory.nbytes for rows, directory in self._cycles)

    @property
    def cycle_count(self) -> int:
        return len(self._cycles)
