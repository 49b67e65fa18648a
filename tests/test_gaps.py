"""The ingest agents' own offset check (services/clearing_services/gaps.py)."""

from __future__ import annotations

from clearing_core.ingest import RawEvent
from clearing_services.gaps import PartitionCursor, complete

TOPIC = "clearing.events.meter"
TP = (TOPIC, 2)


def events(*offsets: int) -> list[RawEvent]:
    return [RawEvent(TOPIC, 2, o, b"k", f"v{o}".encode(), 0) for o in offsets]


class Log:
    """A partition's log: offsets 0..99, where ``markers`` hold transaction markers."""

    def __init__(self, committed: int, markers: frozenset[int] = frozenset()) -> None:
        self.committed, self.markers, self.reads = committed, markers, []

    def committed_of(self, tp: tuple[str, int]) -> int:
        assert tp == TP
        return self.committed

    def read(self, tp: tuple[str, int], start: int, end: int) -> list[RawEvent]:
        self.reads.append((start, end))
        return events(*[o for o in range(start, end) if o not in self.markers])


def offsets(records: list[RawEvent]) -> list[int]:
    return [r.offset for r in records]


def test_a_batch_that_continues_where_it_must_is_left_alone() -> None:
    cursor, log = PartitionCursor(), Log(committed=10)
    batch = events(10, 11, 12)
    assert offsets(complete(cursor, batch, log.committed_of, log.read)) == [10, 11, 12]
    cursor.advance(TP, [10, 11, 12])
    assert offsets(complete(cursor, events(13, 14), log.committed_of, log.read)) == [13, 14]
    assert log.reads == []


def test_a_record_skipped_at_the_head_is_read_and_put_first() -> None:
    """The committed offset is 10 but the consumer hands over 11 onwards: record 10
    would be committed past and lost (faust-streaming #606)."""
    cursor, log = PartitionCursor(), Log(committed=10)
    assert offsets(complete(cursor, events(11, 12), log.committed_of, log.read)) == [10, 11, 12]
    assert log.reads == [(10, 11)]
    assert cursor.filled_records == 1


def test_records_skipped_between_batches_and_inside_one_are_filled() -> None:
    cursor, log = PartitionCursor(), Log(committed=0)
    cursor.advance(TP, offsets(complete(cursor, events(0, 1, 2), log.committed_of, log.read)))
    done = complete(cursor, events(6, 7, 9), log.committed_of, log.read)
    assert offsets(done) == [3, 4, 5, 6, 7, 8, 9]
    assert log.reads == [(3, 6), (8, 9)]


def test_transaction_markers_read_empty_and_change_nothing() -> None:
    cursor, log = PartitionCursor(), Log(committed=0, markers=frozenset({3, 4}))
    cursor.advance(TP, [0, 1, 2])
    assert offsets(complete(cursor, events(5, 6), log.committed_of, log.read)) == [5, 6]
    assert cursor.filled_records == 0


def test_records_delivered_again_are_kept_and_move_nothing_back() -> None:
    """After a rebalance the consumer may start again below where this worker was."""
    cursor, log = PartitionCursor(), Log(committed=0)
    cursor.advance(TP, [0, 1, 2, 3, 4])
    assert offsets(complete(cursor, events(2, 3, 4, 5), log.committed_of, log.read)) == [2, 3, 4, 5]
    cursor.advance(TP, [2, 3, 4, 5])
    assert cursor.next_offset[TP] == 6
    assert log.reads == []


def test_a_new_assignment_continues_from_the_committed_offset() -> None:
    cursor, log = PartitionCursor(), Log(committed=0)
    cursor.advance(TP, [0, 1, 2])
    cursor.forget()
    log.committed = 40
    assert offsets(complete(cursor, events(42), log.committed_of, log.read)) == [40, 41, 42]


def test_continues_tells_when_no_read_is_needed() -> None:
    cursor = PartitionCursor()
    assert not cursor.continues(events(0, 1))  # after an assignment: ask the group first
    cursor.advance(TP, [0, 1, 2])
    assert cursor.continues(events(3, 4, 5))
    assert cursor.continues(events(1, 2, 3))  # delivered again, in order
    assert not cursor.continues(events(4, 5))  # record 3 left out
    assert not cursor.continues(events(3, 5))  # record 4 left out
    assert not cursor.continues(events(4, 3))  # out of order
