"""Scheduled cycle closes: a ``CycleClose`` marker per currency every ``cycle_seconds``.

Every netting worker runs a scheduler; all of them write each slot's marker under
the slot's one id (``clearing_core.cycle.markers``), so a slot closes once however
many schedulers there are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import Producer

from clearing_core.cycle.markers import scheduled_marker, time_slot
from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import CycleClose
from clearing_services.kafka.clients import produce_all, producer_config
from clearing_services.kafka.topics import OBLIGATIONS_TOPIC

TICK_SECONDS = 0.25
_log = logging.getLogger("clearing.scheduler")


def send_markers(bootstrap: str, codec: Codec, markers: Sequence[CycleClose]) -> None:
    """Write markers to the obligations topic, keyed by currency (their partition)."""
    items = [
        (str(m["currency"]).encode(), codec.encode("CycleClose", m, topic=OBLIGATIONS_TOPIC))
        for m in markers
    ]
    produce_all(Producer(producer_config(bootstrap, **{"linger.ms": 0})), OBLIGATIONS_TOPIC, items)


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
            c: time_slot(clock(), s) for c, s in self.cycle_seconds.items()
        }
        self.written = 0

    def tick(self) -> int:
        """Write the markers whose slot has changed since the last tick."""
        due = []
        now = self.clock()
        for currency, seconds in sorted(self.cycle_seconds.items()):
            slot = time_slot(now, seconds)
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
