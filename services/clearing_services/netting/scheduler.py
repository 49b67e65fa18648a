"""Scheduled cycle closes: a ``CycleClose`` marker per currency every ``cycle_seconds``.

Why markers are named by time slot: every netting worker runs a scheduler, and
all of them write the marker of slot ``floor(now / cycle_seconds)`` under the
same id, so the netting stage closes each slot once however many schedulers
there are, and a restarted scheduler never closes a slot twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from clearing_core.encoding.codec import Codec
from clearing_services.kafka.clients import produce_all, producer_config
from clearing_services.kafka.topics import OBLIGATIONS_TOPIC

TICK_SECONDS = 0.25
_log = logging.getLogger("clearing.scheduler")


def marker_record(
    marker_id: str, currency: str, reason: str, by: str, at: datetime
) -> dict[str, Any]:
    """A ``CycleClose`` record."""
    return {"marker_id": marker_id, "currency": currency, "reason": reason,
            "requested_by": by, "requested_at": at}  # fmt: skip


def send_markers(bootstrap: str, codec: Codec, markers: list[dict[str, Any]]) -> None:
    """Write markers to the obligations topic, keyed by currency (their partition)."""
    items = [
        (str(m["currency"]).encode(), codec.encode("CycleClose", m, topic=OBLIGATIONS_TOPIC))
        for m in markers
    ]
    produce_all(Producer(producer_config(bootstrap, **{"linger.ms": 0})), OBLIGATIONS_TOPIC, items)


def scheduled_marker(
    currency: str, cycle_seconds: int, now_seconds: float, by: str
) -> dict[str, Any]:
    """The marker of the slot that contains ``now_s`` (seconds since the epoch)."""
    assert cycle_seconds > 0
    slot = int(now_seconds // cycle_seconds)
    at = datetime.fromtimestamp(slot * cycle_seconds, tz=UTC)
    return marker_record(f"sched-{currency}-{cycle_seconds}s-{slot}", currency, "SCHEDULE", by, at)


class CycleScheduler:
    """Writes each currency's marker when its slot changes; runs in a thread."""

    def __init__(
        self, bootstrap: str, codec: Codec, cycle_seconds: Mapping[str, int], by: str,
        clock: Callable[[], float],
    ) -> None:  # fmt: skip
        self.codec = codec
        self.cycle_seconds = dict(cycle_seconds)
        self.by = by
        self.clock = clock
        self.producer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))
        self._last_slot: dict[str, int] = {
            c: int(clock() // s) for c, s in self.cycle_seconds.items()
        }
        self.written = 0

    def tick(self) -> int:
        """Write the markers whose slot has changed since the last tick."""
        due = []
        now = self.clock()
        for currency, seconds in sorted(self.cycle_seconds.items()):
            slot = int(now // seconds)
            if slot != self._last_slot[currency]:
                self._last_slot[currency] = slot
                marker = scheduled_marker(currency, seconds, now, self.by)
                value = self.codec.encode("CycleClose", marker, topic=OBLIGATIONS_TOPIC)
                due.append((currency.encode(), value))
        if due:
            produce_all(self.producer, OBLIGATIONS_TOPIC, due)
            self.written += len(due)
        return len(due)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            self.tick()
