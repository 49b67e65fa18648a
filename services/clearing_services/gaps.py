"""Every record of a partition, in order: the ingest agents' own check on Faust.

Faust's fetcher takes any jump in a partition's offsets for a legitimate gap
(compaction, transaction markers) and later commits past it. After rebalances and
broker restarts it has skipped real records that way (see faust-streaming issues
#596 and #606): the record was never handed to an agent, the offset after it was
committed, and the event was lost without a trace. The chaos run found such losses.

So each agent knows where each of its partitions must continue: after an
assignment, at the group's committed offset; then after the last record it
processed. A batch that starts further on has skipped records; they are read
straight from the broker and processed first, in order. A range that holds only
transaction markers or aborted records reads empty, and nothing is done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from clearing_core.ingest import RawEvent

TopicPart = tuple[str, int]
CommittedOf = Callable[[TopicPart], int]
ReadRange = Callable[[TopicPart, int, int], list[RawEvent]]
_log = logging.getLogger("clearing.gaps")


@dataclass
class PartitionCursor:
    """The next offset each partition must deliver; forgotten on every rebalance."""

    next_offset: dict[TopicPart, int] = field(default_factory=dict)
    filled_records: int = 0

    def forget(self) -> None:
        self.next_offset.clear()

    def missing(
        self, tp: TopicPart, offsets: Sequence[int], committed_of: CommittedOf
    ) -> list[tuple[int, int]]:
        """The ranges ``[start, end)`` skipped before or between ``offsets`` (ascending)."""
        expected = self.next_offset.get(tp)
        if expected is None:
            expected = committed_of(tp)
        ranges = []
        for offset in offsets:
            if offset > expected:
                ranges.append((expected, offset))
            expected = max(expected, offset + 1)
        return ranges

    def continues(self, events: Sequence[RawEvent]) -> bool:
        """Whether ``events`` (one partition) follow on where it must, in order, with no
        record left out: then nothing needs reading or sorting."""
        if not events:
            return True
        expected = self.next_offset.get((events[0].topic, events[0].partition))
        if expected is None:
            return False
        for event in events:
            if event.offset > expected:
                return False
            expected = max(expected, event.offset + 1)
        return all(a.offset < b.offset for a, b in pairwise(events))

    def advance(self, tp: TopicPart, offsets: Sequence[int]) -> None:
        if offsets:
            self.next_offset[tp] = max(self.next_offset.get(tp, 0), max(offsets) + 1)


def complete(
    cursor: PartitionCursor, events: list[RawEvent], committed_of: CommittedOf, read: ReadRange
) -> list[RawEvent]:
    """``events`` of one partition, in offset order, with every skipped record added."""
    if not events:
        return events
    tp = (events[0].topic, events[0].partition)
    ordered = sorted(events, key=lambda e: e.offset)
    ranges = cursor.missing(tp, [e.offset for e in ordered], committed_of)
    if not ranges:
        return ordered
    filled = [record for start, end in ranges for record in read(tp, start, end)]
    if filled:
        cursor.filled_records += len(filled)
        _log.warning(
            "%s[%d]: %d records in %s were skipped by the consumer; read and processed",
            tp[0], tp[1], len(filled), ranges,
        )  # fmt: skip
    return sorted([*filled, *ordered], key=lambda e: e.offset)
