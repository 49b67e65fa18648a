"""Scheduled cycle closes: a ``CycleClose`` marker per currency every ``cycle_seconds``.

Every netting worker runs a scheduler; all of them write each slot's marker under
the slot's one id (``clearing_core.cycle.markers``), so a slot closes once however
many schedulers there are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import Producer

from clearing_core.cycle.markers import scheduled_marker, time_slot
from clearing_core.encoding.codec import Codec
from clearing_core.encoding.records import CycleClose
from clearing_core.refdata import ReferenceData
from clearing_services.kafka.clients import produce_all, producer_config
from clearing_services.kafka.topics import OBLIGATIONS_TOPIC

TICK_SECONDS = 0.25
_log = logging.getLogger("clearing.scheduler")


PartitionOf = Callable[[str], int]  # a currency's own partition of the obligations topic


def send_markers(
    bootstrap: str, codec: Codec, markers: Sequence[CycleClose], partition_of: PartitionOf
) -> None:
    """Write markers to the obligations topic, keyed by currency, each on its currency's
    own partition (``partition_of``: the reference data's plan)."""
    items = [
        (str(m["currency"]).encode(), codec.encode("CycleClose", m, topic=OBLIGATIONS_TOPIC))
        for m in markers
    ]
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))
    produce_all(producer, OBLIGATIONS_TOPIC, items, _by_currency(partition_of))


def _by_currency(partition_of: PartitionOf) -> Callable[[str, bytes | None], int]:
    return lambda _topic, key: partition_of((key or b"").decode())


class CycleScheduler:
    """Writes each currency's marker when its slot changes; runs in a thread. The
    currencies, their cycles and their partitions are the reference data's in force at
    each tick, so a currency added while the worker runs is scheduled from its first
    whole slot."""

    def __init__(
        self, bootstrap: str, codec: Codec, refdata: Callable[[], ReferenceData], by: str,
        clock: Callable[[], float],
    ) -> None:  # fmt: skip
        self.codec = codec
        self.refdata = refdata
        self.by = by
        self.clock = clock
        self.producer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))
        self._last_slot: dict[str, int] = {}
        self.written = 0

    def tick(self) -> int:
        """Write the markers whose slot has changed since the last tick."""
        due = []
        now, refdata = self.clock(), self.refdata()
        for currency in sorted(refdata.currencies):
            seconds = refdata.cycle_seconds_for(currency)
            slot = time_slot(now, seconds)
            last = self._last_slot.setdefault(currency, slot)  # first seen: the next slot
            if slot != last:
                self._last_slot[currency] = slot
                marker = scheduled_marker(currency, seconds, now, self.by)
                value = self.codec.encode("CycleClose", marker, topic=OBLIGATIONS_TOPIC)
                due.append((currency.encode(), value))
        if due:
            produce_all(self.producer, OBLIGATIONS_TOPIC, due,
                        _by_currency(refdata.obligation_partition))  # fmt: skip
            self.written += len(due)
        return len(due)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_SECONDS):
            self.tick()
