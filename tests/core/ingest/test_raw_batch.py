"""A ``RawBatch`` is its records as columns: it gives back exactly the events it was
made of, by index, slice, iteration, pick and concatenation."""

from __future__ import annotations

import pytest

from clearing_core.ingest.batch import RawBatch, RawEvent

METER, USAGE = "clearing.events.meter", "clearing.events.compute"
SIGNED = (("x-sig", b"s"), ("x-id", b"p"))


def events(count: int, signed_at: int | None = None) -> list[RawEvent]:
    return [RawEvent(METER if i % 3 else USAGE, i % 2, 100 + i, None if i == 4 else b"k%d" % i,
                     b"v%d" % i, 1_795_000_000_000 + i, SIGNED if i == signed_at else ())
            for i in range(count)]  # fmt: skip


@pytest.mark.parametrize("signed_at", [None, 3])
def test_a_batch_gives_back_its_events(signed_at: int | None) -> None:
    given = events(8, signed_at)
    batch = RawBatch.of(given)
    assert len(batch) == 8
    assert list(batch) == given
    assert [batch[i] for i in range(8)] == given
    assert batch[-1] == given[-1]
    assert list(batch[2:6]) == given[2:6]
    assert isinstance(batch[2:6], RawBatch)
    assert list(batch.take([1, 3, 6])) == [given[1], given[3], given[6]]
    assert batch.take(range(8)) is batch  # all of them, in order: no copy
    assert list(RawBatch.concat([batch[:3], batch[3:]])) == given
    assert RawBatch.of(batch) is batch
    assert (batch.headers is None) == (signed_at is None)
    assert batch.keys[4] is None
    assert batch.offsets == [100 + i for i in range(8)]


def test_headers_survive_concatenation_with_a_part_without() -> None:
    plain, signed = RawBatch.of(events(2)), RawBatch.of(events(5, signed_at=3)[2:])
    joined = RawBatch.concat([plain, signed])
    assert joined.headers is not None
    assert list(joined) == events(2) + events(5, signed_at=3)[2:]


def test_columns_of_other_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="columns of"):
        RawBatch([METER], [0], [1], [b"k"], [b"v", b"w"], [0])
    assert list(RawBatch.of([])) == []
    assert len(RawBatch.concat([])) == 0
