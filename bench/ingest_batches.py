"""Generated valid events as an ingest worker receives them: batches of records per
(topic, partition), with running offsets. Shared by the offline benches of the
ingest stage's work (``bench/prepare.py``, ``bench/compression.py``)."""

from __future__ import annotations

import zlib

from clearing_core.encoding.codec import Codec
from clearing_core.ingest.batch import RawBatch, RawEvent
from clearing_core.refdata import ReferenceData
from clearing_core.workload.generator import EventGenerator
from clearing_services.ingest.prepare import Groups
from clearing_services.sources.publish import encode_generated

PARTITIONS = 6  # of each event topic, as the bench's broker makes them


def generated_batches(
    refdata: ReferenceData, codec: Codec, events: int, batch: int, seed: int, now_ms: int
) -> list[Groups]:
    """``events`` generated valid events (the e2e mix), ``batch`` at a time, each
    batch grouped per (topic, partition by the key's CRC-32) in offset order."""
    generator = EventGenerator(refdata, seed=seed, now_ms=now_ms, prefix=f"gen{seed}")
    offsets: dict[tuple[str, int], int] = {}
    out: list[Groups] = []
    for start in range(0, events, batch):
        groups: dict[tuple[str, int], list[RawEvent]] = {}
        for event in generator.events(min(batch, events - start)):
            encoded = encode_generated(codec, event)  # as `clearing produce` sends it
            tp = (encoded.topic, zlib.crc32(encoded.key) % PARTITIONS)
            offset = offsets.get(tp, 0)
            offsets[tp] = offset + 1
            groups.setdefault(tp, []).append(
                RawEvent(*tp, offset, encoded.key, encoded.value, now_ms)
            )
        generator.accepted.clear()  # kept for duplicates, which no bench asks for
        out.append({tp: RawBatch.of(rows) for tp, rows in groups.items()})  # as consumed
    return out
