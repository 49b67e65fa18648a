"""The stall watchdog of the ingest loop and the acks agent.

A worker can hold partitions with records waiting and yet commit nothing, for
ever: a Faust agent wedged on a lost future (faust-streaming issues #74 and #596
describe such hangs), or a librdkafka call that ignores its timeout. Nothing fails, so
nothing restarts it, and its partitions stay with it. The watchdog notices that
the committed offset of a partition it owns has not moved for
``stall_seconds_max`` while the partition has records waiting, and ends the
process (exit 70, as every fatal error does); its supervisor starts a fresh
worker that takes the partitions over in seconds. Nothing is lost: offsets past
the last processed record were never committed.

The netting stage is not watched this way: it commits only when a cycle closes,
so an unchanged offset with records waiting is its normal state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaException

from clearing_services.kafka.groups import group_offsets

TopicPart = tuple[str, int]
_log = logging.getLogger("clearing.watchdog")


@dataclass
class StallDetector:
    """Which partitions have had records waiting behind an unchanged committed offset
    for at least ``stall_seconds_max``. Time is passed in, so it is tested exactly."""

    stall_seconds_max: float
    _since: dict[TopicPart, tuple[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.stall_seconds_max > 0

    def observe(
        self, now_seconds: float, offsets: Mapping[TopicPart, tuple[int, int]]
    ) -> list[TopicPart]:
        """``offsets``: (committed, log end) of each partition this worker owns now."""
        stalled = []
        for tp in list(self._since):
            if tp not in offsets:
                del self._since[tp]  # moved to another worker
        for tp, (committed, end) in sorted(offsets.items()):
            if end <= committed:
                self._since.pop(tp, None)  # nothing waiting: not stalled, however long
                continue
            previous = self._since.get(tp)
            if previous is None or previous[0] != committed:
                self._since[tp] = (committed, now_seconds)
            elif now_seconds - previous[1] >= self.stall_seconds_max:
                stalled.append(tp)
        return stalled


def watch_stalls(
    bootstrap: str, group: str, owned: Callable[[], list[TopicPart]], detector: StallDetector,
    clock: Callable[[], float], on_stall: Callable[[list[TopicPart]], None],
    stop: threading.Event, every_seconds: float = 15.0,
) -> None:  # fmt: skip
    """Check every ``every_seconds``; a failed probe (the broker away) is only logged."""
    while not stop.wait(every_seconds):
        partitions = owned()
        if not partitions:
            continue
        try:
            offsets = group_offsets(bootstrap, group, partitions)
        except (KafkaException, TimeoutError) as exc:
            _log.warning("watchdog probe of group %s failed this time: %r", group, exc)
            continue
        stalled = detector.observe(clock(), offsets)
        if stalled:
            on_stall(stalled)
